//! Bringing stored values up to the current formats when a store is opened (after the schema
//! migrations): secret columns still sealed as `v1:` — bound only to their column — are
//! re-sealed as `v2:`, bound to their row and naming their key; URLs stored in clear with
//! credentials in them (written before migration 0007) are split into the redacted `url`
//! and the sealed `url_secret`.
//!
//! Invariants:
//! - One transaction for the whole upgrade, which does not bump `config_version` (the
//!   configuration means the same before and after).
//! - Idempotent and safe with several processes opening the same store at once: a cheap read
//!   first finds whether anything is left to do; each row is then updated only if it still
//!   holds the value that was read (compare-and-set), so a value two processes upgrade
//!   concurrently is written once.
//! - Nothing is sealed with a key that does not open what is already stored: if any stored
//!   secret does not open with the configured key (a wrong `METAMCP_SECRET_KEY`), nothing is
//!   upgraded and a warning says so. The store still opens, reading those servers reports
//!   the wrong key as before, and the next open with the right key upgrades everything.

use metamcp_core::secrets::split_url;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::secrets::{Binding, Cipher};
use crate::{Store, StoreError, Tx};

/// The secret columns of `servers`.
const SEALED_COLUMNS: [&str; 3] = ["env", "headers", "bearer_token"];

/// What an upgrade did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Upgraded {
    /// Values re-sealed from v1 to v2.
    pub(crate) resealed: u64,
    /// URLs whose credentials were moved into `url_secret`.
    pub(crate) urls: u64,
    /// Stored secrets that do not open with the configured key (then nothing is upgraded).
    pub(crate) unreadable: u64,
}

/// Upgrades what needs it, and logs what it did.
pub(crate) async fn run(store: &Store) -> Result<Upgraded, StoreError> {
    // why: a cheap read first, so an up-to-date store (the usual case) takes no write lock.
    // A URL with '@' or '?' may have credentials; which ones do is decided below.
    let pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM servers WHERE env LIKE 'v1:%' OR headers LIKE 'v1:%' \
         OR bearer_token LIKE 'v1:%' \
         OR (url_secret IS NULL AND (url LIKE '%@%' OR url LIKE '%?%'))",
    )
    .fetch_one(store.pool())
    .await?;
    if pending == 0 {
        return Ok(Upgraded::default());
    }
    let mut tx = store.begin().await?;
    let cipher = tx.cipher().clone();
    let rows =
        sqlx::query("SELECT id, name, env, headers, bearer_token, url, url_secret FROM servers")
            .fetch_all(tx.write_conn()?)
            .await?;
    let mut done = Upgraded::default();
    // why: a wrong key would seal the upgraded values so that the right key cannot open
    // them; check every stored secret opens before sealing anything.
    for row in &rows {
        let id: String = row.try_get("id")?;
        for column in SEALED_COLUMNS.iter().chain(&["url_secret"]) {
            if let Some(v) = row.try_get::<Option<String>, _>(*column)?
                && cipher.open(at(column, &id), &v).is_err()
            {
                done.unreadable += 1;
            }
        }
    }
    if done.unreadable > 0 {
        tracing::warn!(
            values = done.unreadable,
            "stored secrets do not open with the configured secret key; nothing was upgraded"
        );
        tx.rollback().await?;
        return Ok(done);
    }
    for row in &rows {
        let id: String = row.try_get("id")?;
        for column in SEALED_COLUMNS {
            let Some(old) = row.try_get::<Option<String>, _>(column)? else {
                continue;
            };
            if !Cipher::is_v1(&old) {
                continue;
            }
            let plain = cipher.open(at(column, &id), &old).map_err(|e| {
                let name: String = row.try_get("name").unwrap_or_default();
                StoreError::Decrypt(format!("cannot upgrade {column} of server {name:?}: {e}"))
            })?;
            let new = cipher.seal(at(column, &id), &plain)?;
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
        done.urls += move_url_credentials(&mut tx, &cipher, row, &id).await?;
    }
    tx.commit().await?;
    if done.resealed > 0 {
        tracing::info!(
            values = done.resealed,
            "upgraded sealed secrets to format v2 (bound to their server's row, with a key id)"
        );
    }
    if done.urls > 0 {
        tracing::info!(
            servers = done.urls,
            "moved credentials out of stored upstream URLs into sealed columns"
        );
    }
    Ok(done)
}

fn at<'a>(column: &'static str, id: &'a str) -> Binding<'a> {
    Binding {
        table: "servers",
        column,
        row: id,
    }
}

/// Splits a clear URL with credentials into its redacted form and the sealed whole;
/// returns 1 if it did.
async fn move_url_credentials(
    tx: &mut Tx,
    cipher: &Cipher,
    row: &AnyRow,
    id: &str,
) -> Result<u64, StoreError> {
    let (Some(url), None) = (
        row.try_get::<Option<String>, _>("url")?,
        row.try_get::<Option<String>, _>("url_secret")?,
    ) else {
        return Ok(0);
    };
    let (shown, credentials) = split_url(&url);
    if credentials.is_empty() {
        return Ok(0);
    }
    let json = serde_json::to_string(&url).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let sealed = cipher.seal(at("url_secret", id), json.as_bytes())?;
    let updated = sqlx::query(
        "UPDATE servers SET url = $1, url_secret = $2 \
         WHERE id = $3 AND url = $4 AND url_secret IS NULL",
    )
    .bind(shown)
    .bind(sealed)
    .bind(id)
    .bind(&url)
    .execute(tx.write_conn()?)
    .await?;
    Ok(updated.rows_affected())
}
