//! Key rotation: every sealed secret re-sealed under the current master key
//! (`metamcp secrets rotate`).
//!
//! A rotation on a live deployment: (1) every replica gets the new key as a previous key
//! (`METAMCP_SECRET_KEY_PREVIOUS`), so it opens values sealed with it; (2) the new key becomes
//! the current one (`METAMCP_SECRET_KEY`, the old one moves to the previous keys) and
//! `metamcp secrets rotate` re-seals what is stored; (3) the old key is dropped from every
//! replica once the rotation reported nothing left under it. Replicas read configuration
//! through the store, so at every step each can open every stored value.
//!
//! Invariants: one transaction; if any stored secret opens with none of the configured keys,
//! nothing is written and the error names the server and column; each value is replaced
//! only if it still holds what was read (compare-and-set), so a server changed meanwhile keeps
//! its new value (sealed with the current key anyway); no `config_version` bump (the
//! configuration means the same). Server secrets, upstream OAuth grants and upstream client
//! secrets are re-sealed. Pending single sign-on logins and upstream authorizations (sealed
//! PKCE verifiers, 10 minutes each) are not: keep the previous key for their lifetime.

use serde::Serialize;
use sqlx::Row;

use crate::secrets::Binding;
use crate::{Store, StoreError};

/// Every table with sealed columns: its name, the column naming a row (the binding's row),
/// the column a person knows the row by (for errors), and the sealed columns.
const SEALED: [(&str, &str, &str, &[&str]); 3] = [
    (
        "servers",
        "id",
        "name",
        &["env", "headers", "bearer_token", "url_secret"],
    ),
    (
        "upstream_tokens",
        "id",
        "server_id",
        &["access_token", "refresh_token"],
    ),
    (
        "upstream_oauth_clients",
        "server_id",
        "server_id",
        &["client_secret"],
    ),
];

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rotated {
    /// Values re-sealed under the current key.
    pub resealed: u64,
    /// Values already sealed with it.
    pub current: u64,
    /// The current key's id (16 hex digits, revealing nothing of the key).
    pub key_id: String,
}

impl Store {
    /// The id of the key values are sealed with now.
    pub fn secret_key_id(&self) -> String {
        self.cipher().current_id()
    }

    /// Re-seals every secret not sealed with the current key (see the module docs).
    pub async fn rotate_secrets(&self) -> Result<Rotated, StoreError> {
        let cipher = self.cipher().clone();
        let mut tx = self.begin().await?;
        let mut done = Rotated {
            resealed: 0,
            current: 0,
            key_id: cipher.current_id(),
        };
        for (table, id_col, label, columns) in SEALED {
            // why: every name comes from SEALED, never from input.
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {id_col} AS row_id, {label} AS row_label, {} FROM {table} ORDER BY {label}",
                columns.join(", ")
            )))
            .fetch_all(tx.write_conn()?)
            .await?;
            for row in &rows {
                let id: String = row.try_get("row_id")?;
                for &column in columns {
                    let Some(old) = row.try_get::<Option<String>, _>(column)? else {
                        continue;
                    };
                    if cipher.is_current(&old) {
                        done.current += 1;
                        continue;
                    }
                    let at = Binding {
                        table,
                        column,
                        row: &id,
                    };
                    let plain = cipher.open(at, &old).map_err(|e| {
                        let name: String = row.try_get("row_label").unwrap_or_default();
                        let whose = match table {
                            "servers" => format!("server {name:?}"),
                            _ => format!("{table} of server id {name}"),
                        };
                        StoreError::Decrypt(format!(
                            "cannot rotate {column} of {whose}: {e}; nothing was changed"
                        ))
                    })?;
                    let new = cipher.seal(at, &plain)?;
                    let updated = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE {table} SET {column} = $1 WHERE {id_col} = $2 AND {column} = $3"
                    )))
                    .bind(new)
                    .bind(&id)
                    .bind(&old)
                    .execute(tx.write_conn()?)
                    .await?;
                    done.resealed += updated.rows_affected();
                }
            }
        }
        tx.commit().await?;
        tracing::info!(
            resealed = done.resealed,
            key = %done.key_id,
            "secrets re-sealed under the current key"
        );
        Ok(done)
    }
}
