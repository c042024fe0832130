//! API keys (`api_keys` table): creation, listing, revocation, and the active set the
//! gateway checks requests against.
//!
//! A key is `sk_mt_` + 64 characters of `[0-9A-Za-z]` (≈381 bits) from a CSPRNG, shown to
//! the user once. Only its SHA-256 (hex) and a 10-character display prefix are stored: a key
//! this long needs no slow hash, and a database leak does not reveal usable keys.

use metamcp_core::validate_object_name;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::{bit, flag, new_id, now_ms};
use crate::error::on_unique;
use crate::{Owner, Store, StoreError, Tx};

/// Every key starts with this.
pub const API_KEY_PREFIX: &str = "sk_mt_";
const SECRET_LEN: usize = 64;
const DISPLAY_PREFIX_LEN: usize = 10;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// One API key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    /// The key's first 10 characters (`sk_mt_AbCd`), to recognise it.
    pub prefix: String,
    pub active: bool,
    /// May use the admin API (`/api/v1/…`) too.
    pub admin: bool,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// When a request last used it (epoch ms; stamped at most once a minute per key).
    pub last_used_at: Option<i64>,
    /// When it stops working (epoch ms); `None`: never.
    pub expires_at: Option<i64>,
    /// `None`: a public key.
    pub owner: Option<Owner>,
}

/// A key the gateway should accept: compare [`hash_api_key`] of the presented key to `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveKey {
    pub id: String,
    pub name: String,
    pub hash: [u8; 32],
    /// May use the admin API.
    pub admin: bool,
    /// When it stops working (epoch ms); `None`: never. An expired key stays in this set so
    /// the gateway can say it expired.
    pub expires_at: Option<i64>,
    /// `None`: a public key.
    pub owner: Option<Owner>,
}

/// A fresh key: [`API_KEY_PREFIX`] + 64 characters drawn uniformly from `[0-9A-Za-z]`.
pub fn generate_api_key() -> String {
    let mut key = String::with_capacity(API_KEY_PREFIX.len() + SECRET_LEN);
    key.push_str(API_KEY_PREFIX);
    let mut remaining = SECRET_LEN;
    let mut buf = [0u8; 96];
    while remaining > 0 {
        rand::fill(&mut buf[..]);
        // why: the low 6 bits of a random byte are uniform over 0..64; keeping only values
        // below 62 (rejection sampling) makes every character equally likely, where `% 62`
        // would favour the first two.
        for b in buf
            .iter()
            .map(|b| usize::from(b & 0x3f))
            .filter(|&i| i < ALPHABET.len())
        {
            key.push(char::from(ALPHABET[b]));
            remaining -= 1;
            if remaining == 0 {
                break;
            }
        }
    }
    key
}

/// SHA-256 of the key, the only form stored.
pub fn hash_api_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Tx {
    /// Creates a key named `name` (`admin`: it may use the admin API too); returns its
    /// record and the key itself, which is not stored and cannot be shown again.
    pub async fn create_api_key(
        &mut self,
        name: &str,
        admin: bool,
    ) -> Result<(ApiKeyRecord, String), StoreError> {
        validate_object_name("api key", name)?;
        let key = generate_api_key();
        let record = ApiKeyRecord {
            id: new_id(),
            name: name.to_owned(),
            prefix: key[..DISPLAY_PREFIX_LEN].to_owned(),
            active: true,
            admin,
            created_at: now_ms(),
            revoked_at: None,
            last_used_at: None,
            expires_at: None,
            owner: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, key_prefix, active, admin, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&record.id)
        .bind(name)
        .bind(to_hex(&hash_api_key(&key)))
        .bind(&record.prefix)
        .bind(bit(true))
        .bind(bit(admin))
        .bind(record.created_at)
        .execute(self.write_conn()?)
        .await
        .map_err(on_unique("api key", name))?;
        self.mark_changed();
        Ok((record, key))
    }

    /// All keys, active and revoked, ordered by name.
    pub async fn list_api_keys(&mut self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, name, key_prefix, active, admin, created_at, revoked_at, \
             last_used_at, expires_at, {} FROM api_keys",
            crate::owners::columns("api_keys")
        )))
        .fetch_all(self.conn())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(ApiKeyRecord {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                prefix: row.try_get("key_prefix")?,
                active: flag(row.try_get("active")?),
                admin: flag(row.try_get("admin")?),
                created_at: row.try_get("created_at")?,
                revoked_at: row.try_get("revoked_at")?,
                last_used_at: row.try_get("last_used_at")?,
                expires_at: row.try_get("expires_at")?,
                owner: crate::owners::from_row(row)?,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deactivates the key (kept for the record). Revoking twice keeps the first time.
    pub async fn revoke_api_key(&mut self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET active = 0, revoked_at = COALESCE(revoked_at, $1) \
             WHERE name = $2",
        )
        .bind(now_ms())
        .bind(name)
        .execute(self.write_conn()?)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("api key", name));
        }
        self.mark_changed();
        Ok(())
    }

    /// The keys requests may use, for the gateway's in-memory check.
    pub async fn active_api_keys(&mut self) -> Result<Vec<ActiveKey>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, name, key_hash, admin, expires_at, {} FROM api_keys WHERE active <> 0",
            crate::owners::columns("api_keys")
        )))
        .fetch_all(self.conn())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let name: String = row.try_get("name")?;
            let hex: String = row.try_get("key_hash")?;
            let hash = from_hex(&hex).ok_or_else(|| {
                StoreError::Invalid(format!("stored hash of api key {name:?} is malformed"))
            })?;
            out.push(ActiveKey {
                id: row.try_get("id")?,
                name,
                hash,
                admin: flag(row.try_get("admin")?),
                expires_at: row.try_get("expires_at")?,
                owner: crate::owners::from_row(row)?,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Sets when the key named `name` stops working (`None`: never).
    pub async fn set_api_key_expiry(
        &mut self,
        name: &str,
        expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE name = $2")
            .bind(expires_at)
            .bind(name)
            .execute(self.write_conn()?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("api key", name));
        }
        self.mark_changed();
        Ok(())
    }
}

impl Store {
    /// Stamps `last_used_at` of keys by id (`(id, epoch ms)`), never moving it back. An
    /// observation, not a configuration change: no version bump.
    pub async fn touch_api_keys(&self, used: &[(String, i64)]) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        for (id, at) in used {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1 \
                 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(*at)
            .bind(id.as_str())
            .execute(&mut *conn)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn from_hex(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_format() {
        let a = generate_api_key();
        assert_eq!(a.len(), 70);
        assert!(a.starts_with("sk_mt_"));
        assert!(a[6..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, generate_api_key());
    }

    #[test]
    fn alphabet_is_used_evenly() {
        // 62 symbols, 64 * 2000 draws: every symbol appears, none wildly over-represented.
        let mut counts = [0usize; 128];
        for _ in 0..2000 {
            for b in generate_api_key()[6..].bytes() {
                counts[usize::from(b)] += 1;
            }
        }
        let used: Vec<usize> = ALPHABET.iter().map(|&c| counts[usize::from(c)]).collect();
        let mean = 64.0 * 2000.0 / 62.0;
        for (c, n) in ALPHABET.iter().zip(&used) {
            let n = *n as f64;
            assert!(
                (n - mean).abs() < mean * 0.15,
                "{} appeared {n} times",
                char::from(*c)
            );
        }
    }

    #[test]
    fn hex_round_trip() {
        let h = hash_api_key("sk_mt_x");
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"g".repeat(64)), None);
        // SHA-256("abc")
        assert_eq!(
            to_hex(&hash_api_key("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
