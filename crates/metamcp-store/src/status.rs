//! What running gateways report about their upstreams (`server_status`), and operator
//! requests to reset a server's failure state (`server_resets`). Status writes are frequent
//! and do not bump `config_version`; a reset request does, so gateways apply it at once.

use sqlx::Row;

use crate::db::now_ms;
use crate::{Store, StoreError, Tx, servers};

/// One upstream's state as a gateway last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub server_id: String,
    pub state: String,
    pub failures: i64,
    pub restarts: i64,
    pub last_error: Option<String>,
    pub pid: Option<i64>,
    pub updated_at: i64,
}

impl Store {
    /// Records the gateway's view of its upstreams (replacing earlier reports).
    pub async fn put_server_statuses(&self, statuses: &[ServerStatus]) -> Result<(), StoreError> {
        if statuses.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for s in statuses {
            sqlx::query(
                "INSERT INTO server_status (server_id, state, failures, restarts, last_error, pid, updated_at) \
                 SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM servers WHERE id = $1) \
                 ON CONFLICT (server_id) DO UPDATE SET state = excluded.state, failures = excluded.failures, \
                 restarts = excluded.restarts, last_error = excluded.last_error, pid = excluded.pid, \
                 updated_at = excluded.updated_at",
            )
            .bind(&s.server_id)
            .bind(&s.state)
            .bind(s.failures)
            .bind(s.restarts)
            .bind(s.last_error.as_deref())
            .bind(s.pid)
            .bind(s.updated_at)
            .execute(tx.write_conn()?)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Tx {
    /// The latest reports, by server id.
    pub async fn server_statuses(&mut self) -> Result<Vec<ServerStatus>, StoreError> {
        let rows = sqlx::query(
            "SELECT server_id, state, failures, restarts, last_error, pid, updated_at FROM server_status",
        )
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ServerStatus {
                    server_id: r.try_get("server_id")?,
                    state: r.try_get("state")?,
                    failures: r.try_get("failures")?,
                    restarts: r.try_get("restarts")?,
                    last_error: r.try_get("last_error")?,
                    pid: r.try_get("pid")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Asks running gateways to clear `name`'s failure state (backoff, open circuit) now.
    pub async fn request_server_reset(&mut self, name: &str) -> Result<(), StoreError> {
        let conn = self.write_conn()?;
        let id = servers::id_by_name(conn, name).await?;
        sqlx::query(
            "INSERT INTO server_resets (server_id, requested_at) VALUES ($1, $2) \
             ON CONFLICT (server_id) DO UPDATE SET requested_at = excluded.requested_at",
        )
        .bind(&id)
        .bind(now_ms())
        .execute(conn)
        .await?;
        self.mark_changed();
        Ok(())
    }

    /// Reset requests: `(server id, requested_at)`.
    pub async fn server_resets(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT server_id, requested_at FROM server_resets")
            .fetch_all(self.conn())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("server_id")?, r.try_get("requested_at")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
