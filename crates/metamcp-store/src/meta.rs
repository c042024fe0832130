//! Small markers of the store's own life in the `meta` table (beside `config_version`), such
//! as "the environment's bootstrap has run". They are not configuration: writing one does
//! not bump the version.

use crate::{StoreError, Tx};

impl Tx {
    /// The marker `key`, if set.
    pub async fn meta_value(&mut self, key: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(self.conn())
            .await?)
    }

    /// Sets the marker `key` (never `config_version`).
    pub async fn set_meta_value(&mut self, key: &str, value: i64) -> Result<(), StoreError> {
        if key == "config_version" {
            return Err(StoreError::Invalid("config_version is not a marker".into()));
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(self.write_conn()?)
        .await?;
        Ok(())
    }
}
