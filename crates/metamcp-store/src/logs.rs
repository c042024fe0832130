//! Persisted upstream log lines (`server_logs` table): what a server wrote to stderr and its
//! lifecycle events, so `metamcp logs SERVER` works from another process and after a restart.
//!
//! Bounded per server: every append trims the server's lines to the newest `keep`. Logs are
//! observations, not configuration, so they never bump `config_version`.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::error::on_foreign_key;
use crate::{Store, StoreError, Tx, servers};

/// One log line with its time (epoch milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub ts_ms: i64,
    pub line: String,
}

impl Store {
    /// Appends `lines` (in order) to the server's log, then deletes all but its newest `keep`
    /// lines. `NotFound` if the server id does not exist (e.g. removed meanwhile).
    pub async fn append_server_logs(
        &self,
        server_id: &str,
        lines: &[LogLine],
        keep: usize,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        for l in lines {
            sqlx::query("INSERT INTO server_logs (server_id, ts, line) VALUES ($1, $2, $3)")
                .bind(server_id)
                .bind(l.ts_ms)
                .bind(l.line.as_str())
                .execute(&mut *conn)
                .await
                .map_err(on_foreign_key("server", server_id))?;
        }
        // The id of the newest line beyond `keep`; it and everything older go. With fewer
        // lines the subquery is NULL and nothing is deleted.
        sqlx::query(
            "DELETE FROM server_logs WHERE server_id = $1 AND id <= (SELECT id FROM server_logs \
             WHERE server_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .bind(server_id)
        .bind(i64::try_from(keep).unwrap_or(i64::MAX))
        .execute(&mut *conn)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A log line with where it sits in the log, for following it live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Increases with every line written, across servers.
    pub id: i64,
    pub server: String,
    pub ts_ms: i64,
    pub line: String,
}

impl Tx {
    /// Up to `limit` lines of any server written after line `after_id`, oldest first; with
    /// `after_id` < 0, the newest `limit` lines.
    pub async fn server_logs_since(
        &mut self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn();
        let rows = if after_id < 0 {
            sqlx::query(
                "SELECT l.id, s.name, l.ts, l.line FROM server_logs l JOIN servers s \
                 ON s.id = l.server_id ORDER BY l.id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(conn)
            .await?
        } else {
            sqlx::query(
                "SELECT l.id, s.name, l.ts, l.line FROM server_logs l JOIN servers s \
                 ON s.id = l.server_id WHERE l.id > $1 ORDER BY l.id LIMIT $2",
            )
            .bind(after_id)
            .bind(limit)
            .fetch_all(conn)
            .await?
        };
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(LogEntry {
                    id: r.try_get("id")?,
                    server: r.try_get("name")?,
                    ts_ms: r.try_get("ts")?,
                    line: r.try_get("line")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        if after_id < 0 {
            out.reverse();
        }
        Ok(out)
    }

    /// The newest `limit` lines of the server named `server_name`, oldest first.
    pub async fn server_logs(
        &mut self,
        server_name: &str,
        limit: usize,
    ) -> Result<Vec<LogLine>, StoreError> {
        let conn = self.conn();
        let server_id = servers::id_by_name(conn, server_name).await?;
        let rows = sqlx::query(
            "SELECT id, ts, line FROM server_logs WHERE server_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(server_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(conn)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(LogLine {
                    ts_ms: r.try_get("ts")?,
                    line: r.try_get("line")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        out.reverse();
        Ok(out)
    }
}
