//! Single sign-on logins in progress (`oidc_logins`): what the gateway must remember between
//! sending a browser to the identity provider and the provider sending it back.
//!
//! A row is keyed by the SHA-256 of the `state` parameter and holds the SHA-256 of the
//! browser-binding cookie, the nonce, the PKCE verifier (sealed, bound to the row) and where
//! to go afterwards. The callback takes a row with one `DELETE … RETURNING`, so a state is
//! used at most once even when two callbacks race. Anyone can begin a login, so the table is
//! bounded: beginning one purges expired rows and, beyond the cap, the oldest pending ones.
//!
//! These rows are the gateway's own bookkeeping, not configuration: they are written with
//! plain transactions that never bump `config_version`.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::secrets::Binding;
use crate::{Store, StoreError};

/// Pending logins kept at most, unless the caller says otherwise.
pub const MAX_PENDING_OIDC_LOGINS: usize = 10_000;

/// One login begun and not yet finished.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcLogin {
    /// Hex SHA-256 of the `state` sent to the provider.
    pub state_hash: String,
    /// Hex SHA-256 of the browser-binding cookie's value.
    pub browser_hash: String,
    pub nonce: String,
    /// The PKCE code verifier, when PKCE is used (stored sealed).
    pub pkce_verifier: Option<String>,
    /// Same-site path to return to after signing in.
    pub return_to: Option<String>,
    /// Epoch milliseconds.
    pub created_at: i64,
    /// Epoch milliseconds; the row is useless from then on.
    pub expires_at: i64,
}

impl std::fmt::Debug for OidcLogin {
    // why: the verifier is a secret until the code is redeemed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcLogin")
            .field("state_hash", &self.state_hash)
            .field("return_to", &self.return_to)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn binding(state_hash: &str) -> Binding<'_> {
    Binding {
        table: "oidc_logins",
        column: "pkce_verifier",
        row: state_hash,
    }
}

/// Before one more row goes into `table` (a table of pending flows keyed by `state_hash`):
/// deletes its rows expired at `now`, then, if `max_pending` remain, the oldest, so at most
/// `max_pending` are pending once the new one is in.
pub(crate) async fn make_room(
    conn: &mut sqlx::AnyConnection,
    table: &'static str,
    now: i64,
    max_pending: usize,
) -> Result<(), StoreError> {
    // why: `table` is one of this crate's constants, never input.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE expires_at <= $1"
    )))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let pending: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM {table}"
    )))
    .fetch_one(&mut *conn)
    .await?
    .try_get("n")?;
    let keep = i64::try_from(max_pending.saturating_sub(1)).unwrap_or(i64::MAX);
    if pending > keep {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE state_hash IN (SELECT state_hash FROM {table} \
             ORDER BY created_at, state_hash LIMIT $1)"
        )))
        .bind(pending - keep)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Stores a pending login. First deletes rows expired at `login.created_at`, then, if
    /// `max_pending` rows remain, the oldest ones, so at most `max_pending` are pending
    /// afterwards. A duplicate state hash is `Duplicate` (states are random; it means a bug).
    pub async fn insert_oidc_login(
        &self,
        login: &OidcLogin,
        max_pending: usize,
    ) -> Result<(), StoreError> {
        let sealed = login
            .pkce_verifier
            .as_deref()
            .map(|v| self.cipher().seal(binding(&login.state_hash), v.as_bytes()))
            .transpose()?;
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        make_room(conn, "oidc_logins", login.created_at, max_pending).await?;
        sqlx::query(
            "INSERT INTO oidc_logins (state_hash, browser_hash, nonce, pkce_verifier, return_to, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&login.state_hash)
        .bind(&login.browser_hash)
        .bind(&login.nonce)
        .bind(sealed)
        .bind(login.return_to.as_deref())
        .bind(login.created_at)
        .bind(login.expires_at)
        .execute(&mut *conn)
        .await
        .map_err(crate::error::on_unique("pending login", &login.state_hash))?;
        // why: not configuration; commit without marking the transaction changed.
        tx.commit().await?;
        Ok(())
    }

    /// Removes and returns the pending login with this state hash, whether expired or not
    /// (the caller tells the user which); `None` if there is none (never begun, or already
    /// taken). Atomic: of two concurrent takers, one gets the row.
    pub async fn take_oidc_login(&self, state_hash: &str) -> Result<Option<OidcLogin>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM oidc_logins WHERE state_hash = $1 RETURNING state_hash, browser_hash, \
             nonce, pkce_verifier, return_to, created_at, expires_at",
        )
        .bind(state_hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| self.oidc_login_from_row(&r)).transpose()
    }

    /// Deletes logins expired at `now_ms`; returns how many.
    pub async fn purge_expired_oidc_logins(&self, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM oidc_logins WHERE expires_at <= $1")
            .bind(now_ms)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// How many logins are pending (expired ones included until purged).
    pub async fn count_oidc_logins(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM oidc_logins")
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn oidc_login_from_row(&self, r: &AnyRow) -> Result<OidcLogin, StoreError> {
        let state_hash: String = r.try_get("state_hash")?;
        let sealed: Option<String> = r.try_get("pkce_verifier")?;
        let pkce_verifier = sealed
            .map(|s| {
                let plain = self.cipher().open(binding(&state_hash), &s).map_err(|e| {
                    StoreError::Decrypt(format!("PKCE verifier of a pending login: {e}"))
                })?;
                String::from_utf8(plain).map_err(|_| {
                    StoreError::Decrypt("PKCE verifier of a pending login is not UTF-8".into())
                })
            })
            .transpose()?;
        Ok(OidcLogin {
            browser_hash: r.try_get("browser_hash")?,
            nonce: r.try_get("nonce")?,
            pkce_verifier,
            return_to: r.try_get("return_to")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
            state_hash,
        })
    }
}
