//! The configuration change counter (`meta.config_version`) and how others learn it moved.
//!
//! [`Tx::commit`] calls [`bump`] inside the transaction when it changed configuration, so the
//! counter moves exactly once, when the change commits; on PostgreSQL the same transaction sends `NOTIFY metamcp_config`, which
//! PostgreSQL delivers only on commit. Readers use [`Store::watch_changes`]: a task that polls
//! the counter (the only mechanism on SQLite, where CLI processes write the same file) and,
//! on PostgreSQL, also LISTENs so other replicas wake at once.
//!
//! Invariant: the watch task never panics on database trouble; it logs, keeps the last known
//! version and tries again on the next tick. It ends when every receiver is gone.

use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::{Backend, Store, StoreError, Tx};

/// PostgreSQL NOTIFY channel that carries the new `config_version` as payload.
pub const NOTIFY_CHANNEL: &str = "metamcp_config";

/// Shortest poll interval accepted by [`Store::watch_changes`].
const MIN_POLL: Duration = Duration::from_millis(10);

/// Increments `config_version` within the caller's transaction and returns the new value.
pub(crate) async fn bump(conn: &mut AnyConnection, backend: Backend) -> Result<i64, StoreError> {
    let version: i64 = sqlx::query_scalar(
        "UPDATE meta SET value = value + 1 WHERE key = 'config_version' RETURNING value",
    )
    .fetch_one(&mut *conn)
    .await?;
    if backend == Backend::Postgres {
        // why: pg_notify returns `void`, a type the Any driver cannot decode, so select a
        // constant from it instead of the result itself.
        sqlx::query("SELECT 1 FROM pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(version.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(version)
}

async fn version(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    let v = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'config_version'")
        .fetch_one(conn)
        .await?;
    Ok(v)
}

impl Tx {
    /// The configuration version this transaction sees; it grows by one with every
    /// committed configuration change.
    pub async fn config_version(&mut self) -> Result<i64, StoreError> {
        version(self.conn()).await
    }
}

impl Store {
    /// The current configuration version (outside any transaction).
    pub async fn config_version(&self) -> Result<i64, StoreError> {
        version(&mut *self.pool().acquire().await?).await
    }

    /// Follows `config_version`. The returned receiver starts at `-1` ("not read yet"); a
    /// spawned task publishes the current version at once and then every change it sees,
    /// polling every `poll` (at least 10 ms) and, on PostgreSQL, waking immediately on
    /// `NOTIFY metamcp_config`. A consumer that loaded its state before calling this therefore
    /// cannot miss a change made in between: its first `changed()` fires right away.
    ///
    /// The task ends once all receivers are dropped. Database errors are logged and retried.
    ///
    /// # Panics
    /// Outside a Tokio runtime, like `tokio::spawn`.
    pub fn watch_changes(&self, poll: Duration) -> watch::Receiver<i64> {
        let (tx, rx) = watch::channel(-1);
        let store = self.clone();
        tokio::spawn(async move { store.watch_task(tx, poll.max(MIN_POLL)).await });
        rx
    }

    async fn watch_task(self, tx: watch::Sender<i64>, poll: Duration) {
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listener: Option<PgListener> = None;
        // why: one warning per outage (of the LISTEN connection or of the database), not one
        // per tick.
        let (mut listen_failing, mut failing) = (false, false);
        loop {
            tokio::select! {
                () = tx.closed() => return,
                _ = ticker.tick() => {}
                res = next_notification(&mut listener) => {
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "lost LISTEN {NOTIFY_CHANNEL}; reconnecting");
                        listener = None;
                    }
                }
            }
            if listener.is_none()
                && let Some(url) = &self.inner.pg_url
            {
                match listen(url).await {
                    Ok(l) => {
                        if listen_failing {
                            tracing::info!("listening on {NOTIFY_CHANNEL} again");
                        }
                        listen_failing = false;
                        listener = Some(l);
                    }
                    Err(e) if listen_failing => {
                        tracing::debug!(error = %e, "LISTEN {NOTIFY_CHANNEL} failed again");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot LISTEN {NOTIFY_CHANNEL}; polling only");
                        listen_failing = true;
                    }
                }
            }
            match self.config_version().await {
                Ok(v) => {
                    if failing {
                        tracing::info!("configuration store reachable again");
                        failing = false;
                    }
                    tx.send_if_modified(|cur| {
                        let changed = *cur != v;
                        *cur = v;
                        changed
                    });
                }
                Err(e) => {
                    if failing {
                        tracing::debug!(error = %e, "reading config_version failed again");
                    } else {
                        tracing::warn!(error = %e, "cannot read config_version; will retry");
                        failing = true;
                    }
                }
            }
        }
    }
}

async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect(url).await?;
    l.listen(NOTIFY_CHANNEL).await?;
    Ok(l)
}

/// Waits for the next notification, or forever when not listening.
async fn next_notification(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        Some(l) => l.recv().await.map(drop),
        None => std::future::pending().await,
    }
}
