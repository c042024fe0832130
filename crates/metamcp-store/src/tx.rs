//! Transactions: the one way configuration is read and written.
//!
//! A [`Tx`] is a database transaction plus what the store needs around it (the cipher for
//! secret columns, the backend). Every configuration read and write (servers, namespaces and
//! their members, tool rules, endpoints, API keys, settings, reset requests) is a method of
//! `Tx`, so a caller can compose any number of them into one atomic change: an admin
//! operation, or a whole `metamcp apply`. Running gateways see either none or all of it.
//!
//! Invariants:
//! - A write transaction that changed configuration bumps `meta.config_version` exactly once,
//!   at [`Tx::commit`], and on PostgreSQL sends `NOTIFY metamcp_config` in the same
//!   transaction (delivered only if it commits). A transaction that wrote nothing, or is
//!   rolled back, leaves the counter alone.
//! - SQLite write transactions begin with `BEGIN IMMEDIATE`: they take the write lock up
//!   front (waiting up to the busy timeout), so they cannot fail half-way with
//!   `SQLITE_BUSY` when another process writes between their reads and their writes.
//! - Read transactions see one consistent state: SQLite's deferred `BEGIN` (a WAL snapshot
//!   from the first read on), PostgreSQL's `REPEATABLE READ READ ONLY`. Writing in one is an
//!   error, never a silent upgrade.
//! - A `Tx` dropped without commit rolls back (sqlx's `Transaction` does so on drop).

use sqlx::any::Any;
use sqlx::{AnyConnection, Transaction};

use crate::{Backend, Store, StoreError, changes, secrets};

/// One transaction on the store. See the module documentation.
pub struct Tx {
    inner: Transaction<'static, Any>,
    pub(crate) store: Store,
    writable: bool,
    changed: bool,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("backend", &self.store.backend())
            .field("writable", &self.writable)
            .field("changed", &self.changed)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Begins a write transaction (see [`Tx`]).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let inner = match self.backend() {
            Backend::Sqlite => self.pool().begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool().begin().await?,
        };
        Ok(Tx {
            inner,
            store: self.clone(),
            writable: true,
            changed: false,
        })
    }

    /// Begins a read-only transaction that sees one consistent state.
    pub async fn begin_read(&self) -> Result<Tx, StoreError> {
        let inner = match self.backend() {
            Backend::Sqlite => self.pool().begin().await?,
            Backend::Postgres => {
                self.pool()
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
        };
        Ok(Tx {
            inner,
            store: self.clone(),
            writable: false,
            changed: false,
        })
    }

    /// Runs `f` in one write transaction: commits when it returns `Ok`, rolls back when it
    /// returns `Err` (or the commit fails).
    pub async fn write<T, E>(&self, f: impl AsyncFnOnce(&mut Tx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let tx = self.begin().await?;
        finish(tx, f).await
    }

    /// Runs `f` in one read-only transaction.
    pub async fn read<T, E>(&self, f: impl AsyncFnOnce(&mut Tx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let tx = self.begin_read().await?;
        finish(tx, f).await
    }
}

async fn finish<T, E>(mut tx: Tx, f: impl AsyncFnOnce(&mut Tx) -> Result<T, E>) -> Result<T, E>
where
    E: From<StoreError>,
{
    match f(&mut tx).await {
        Ok(v) => {
            tx.commit().await?;
            Ok(v)
        }
        Err(e) => {
            if let Err(rb) = tx.rollback().await {
                tracing::debug!(error = %rb, "rollback failed; the connection discards it");
            }
            Err(e)
        }
    }
}

impl Tx {
    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// Whether a write in this transaction changed configuration (and commit will bump the
    /// version).
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Commits. If configuration changed, bumps `config_version` first (and on PostgreSQL
    /// notifies) and returns the new version.
    pub async fn commit(mut self) -> Result<Option<i64>, StoreError> {
        let version = if self.changed {
            Some(changes::bump(&mut self.inner, self.store.backend()).await?)
        } else {
            None
        };
        self.inner.commit().await?;
        Ok(version)
    }

    /// Whether this transaction changed configuration (its commit will bump the version).
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// Discards everything this transaction did.
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.inner.rollback().await?;
        Ok(())
    }

    /// The connection, for reads.
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }

    /// The connection, for a configuration write; an error in a read-only transaction.
    /// Call [`Tx::mark_changed`] once the write took effect.
    pub(crate) fn write_conn(&mut self) -> Result<&mut AnyConnection, StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly);
        }
        Ok(&mut self.inner)
    }

    /// Records that configuration changed: the commit bumps the version.
    pub(crate) fn mark_changed(&mut self) {
        self.changed = true;
    }

    pub(crate) fn cipher(&self) -> &secrets::Cipher {
        self.store.cipher()
    }
}
