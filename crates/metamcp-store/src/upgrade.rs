//! Bringing stored values up to the current formats when a store is opened (after the schema
//! migrations): secret columns still sealed as `v1:` — bound only to their column — are
//! re-sealed as `v2:`, bound to their row and naming their key.
//!
//! Invariants:
//! - One transaction for the whole upgrade, which does not bump `config_version` (the
//!   configuration means the same before and after).
//! - Idempotent and safe with several processes opening the same store at once: a cheap read
//!   first finds whether anything is left to do; each row is then updated only if it still
//!   holds the value that was read (compare-and-set), so a value two processes upgrade
//!   concurrently is written once.
//! - A value that cannot be opened (the configured key is not the one it was sealed with) is
//!   left untouched and counted: the store still opens, and reading that server reports the
//!   wrong key as before. The next open with the right key upgrades it.

use sqlx::Row;

use crate::secrets::{Binding, Cipher};
use crate::{Store, StoreError};

/// The secret columns of `servers`.
const SEALED_COLUMNS: [&str; 3] = ["env", "headers", "bearer_token"];

/// What an upgrade did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Upgraded {
    /// Values re-sealed from v1 to v2.
    pub(crate) resealed: u64,
    /// v1 values that could not be opened with the configured key (left as they are).
    pub(crate) unreadable: u64,
}

/// Upgrades what needs it, and logs what it did.
pub(crate) async fn run(store: &Store) -> Result<Upgraded, StoreError> {
    let pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM servers WHERE env LIKE 'v1:%' OR headers LIKE 'v1:%' \
         OR bearer_token LIKE 'v1:%'",
    )
    .fetch_one(store.pool())
    .await?;
    if pending == 0 {
        return Ok(Upgraded::default());
    }
    let mut tx = store.begin().await?;
    let cipher = tx.cipher().clone();
    let rows = sqlx::query("SELECT id, name, env, headers, bearer_token FROM servers")
        .fetch_all(tx.write_conn()?)
        .await?;
    let mut done = Upgraded::default();
    for row in &rows {
        let id: String = row.try_get("id")?;
        let name: String = row.try_get("name")?;
        for column in SEALED_COLUMNS {
            let Some(old) = row.try_get::<Option<String>, _>(column)? else {
                continue;
            };
            if !Cipher::is_v1(&old) {
                continue;
            }
            let at = Binding {
                table: "servers",
                column,
                row: &id,
            };
            let plain = match cipher.open(at, &old) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(server = %name, column, error = %e, "cannot open a v1 secret");
                    done.unreadable += 1;
                    continue;
                }
            };
            let new = cipher.seal(at, &plain)?;
            // why: the column name comes from SEALED_COLUMNS, never from input.
            let updated = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE servers SET {column} = $1 WHERE id = $2 AND {column} = $3"
            )))
            .bind(new)
            .bind(&id)
            .bind(&old)
            .execute(tx.write_conn()?)
            .await?;
            done.resealed += updated.rows_affected();
        }
    }
    tx.commit().await?;
    if done.unreadable > 0 {
        tracing::warn!(
            values = done.unreadable,
            "v1 secrets could not be opened with the configured key and were left as they are"
        );
    }
    if done.resealed > 0 {
        tracing::info!(
            values = done.resealed,
            "upgraded sealed secrets to format v2 (bound to their server's row, with a key id)"
        );
    }
    Ok(done)
}
