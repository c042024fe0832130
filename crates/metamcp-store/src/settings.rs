//! Global key/value settings (`settings` table) the CLI and admin side set and the gateway
//! reads (defaults it applies, feature switches). The store treats keys and values as opaque
//! text; their meaning and validation belong to the caller.

use sqlx::Row;

use crate::db::now_ms;
use crate::{StoreError, Tx};

impl Tx {
    pub async fn get_setting(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        let value = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(self.conn())
            .await?;
        Ok(value)
    }

    /// Sets (creates or replaces) a setting.
    pub async fn set_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        if key.trim().is_empty() {
            return Err(StoreError::Invalid("setting key must not be empty".into()));
        }
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(value)
        .bind(now_ms())
        .execute(self.write_conn()?)
        .await?;
        self.mark_changed();
        Ok(())
    }

    /// All settings, ordered by key.
    pub async fn list_settings(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT key, value FROM settings")
            .fetch_all(self.conn())
            .await?;
        let mut out = rows
            .iter()
            .map(|r| Ok((r.try_get("key")?, r.try_get("value")?)))
            .collect::<Result<Vec<(String, String)>, sqlx::Error>>()?;
        out.sort();
        Ok(out)
    }
}
