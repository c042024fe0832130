//! Signed-in browsers (`browser_sessions` table).
//!
//! The cookie holds a random token; only its SHA-256 is stored, so a database leak does not
//! hand out sessions. Every request made with a cookie reads its row (no cache), which is what
//! makes a sign-out, a password change or a disabled user take effect on every replica at
//! once. Sessions are not configuration: these are [`Store`] methods that never bump the
//! version. Expired rows are purged as sessions are created.

use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::{flag, now_ms};
use crate::users::Role;
use crate::{Store, StoreError, UserRecord};

/// SHA-256 (hex) of a session token, the only form stored.
pub fn session_token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A session to create.
#[derive(Debug, Clone)]
pub struct NewBrowserSession<'a> {
    /// [`session_token_hash`] of the cookie's token.
    pub id_hash: &'a str,
    pub user_id: &'a str,
    /// Absolute end, epoch milliseconds.
    pub expires_at: i64,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// A live session and its (enabled) user.
#[derive(Debug, Clone)]
pub struct BrowserSession {
    pub id_hash: String,
    pub user: UserRecord,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

impl Store {
    /// Stores a new session; purges expired ones and, beyond `max_per_user`, the user's
    /// oldest.
    pub async fn create_browser_session(
        &self,
        s: &NewBrowserSession<'_>,
        max_per_user: usize,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        sqlx::query("DELETE FROM browser_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO browser_sessions (id_hash, user_id, created_at, last_seen_at, \
             expires_at, ip, user_agent) VALUES ($1, $2, $3, $3, $4, $5, $6)",
        )
        .bind(s.id_hash)
        .bind(s.user_id)
        .bind(now)
        .bind(s.expires_at)
        .bind(s.ip)
        .bind(s.user_agent)
        .execute(&mut *conn)
        .await?;
        // The newest `max_per_user` stay; older ones go.
        sqlx::query(
            "DELETE FROM browser_sessions WHERE user_id = $1 AND id_hash NOT IN (SELECT id_hash \
             FROM browser_sessions WHERE user_id = $1 ORDER BY created_at DESC, id_hash \
             LIMIT $2)",
        )
        .bind(s.user_id)
        .bind(i64::try_from(max_per_user).unwrap_or(i64::MAX))
        .execute(&mut *conn)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The session with this token hash if it is live: not past `expires_at`, seen within
    /// `idle_ms`, and its user enabled.
    pub async fn browser_session(
        &self,
        id_hash: &str,
        idle_ms: i64,
    ) -> Result<Option<BrowserSession>, StoreError> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT s.id_hash, s.created_at AS s_created, s.last_seen_at, s.expires_at, u.id, \
             u.email, u.name, u.password_hash, u.role, u.disabled, u.created_at, \
             u.last_login_at FROM browser_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3 \
             AND u.disabled = 0",
        )
        .bind(id_hash)
        .bind(now)
        .bind(now.saturating_sub(idle_ms))
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let role: String = r.try_get("role")?;
        let password_hash: Option<String> = r.try_get("password_hash")?;
        Ok(Some(BrowserSession {
            id_hash: r.try_get("id_hash")?,
            created_at: r.try_get("s_created")?,
            last_seen_at: r.try_get("last_seen_at")?,
            expires_at: r.try_get("expires_at")?,
            user: UserRecord {
                id: r.try_get("id")?,
                email: r.try_get("email")?,
                name: r.try_get("name")?,
                role: Role::parse(&role).ok_or_else(|| {
                    StoreError::Invalid(format!("stored role {role:?} is unknown"))
                })?,
                disabled: flag(r.try_get("disabled")?),
                has_password: password_hash.is_some(),
                created_at: r.try_get("created_at")?,
                last_login_at: r.try_get("last_login_at")?,
            },
        }))
    }

    /// Records activity on a session (callers do it at most about once a minute).
    pub async fn touch_browser_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE browser_sessions SET last_seen_at = $2 WHERE id_hash = $1")
            .bind(id_hash)
            .bind(now_ms())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Ends one session (sign-out).
    pub async fn end_browser_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM browser_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Ends every session of a user but `keep` (a password change keeps the changer's).
    pub async fn end_other_browser_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM browser_sessions WHERE user_id = $1 AND id_hash <> $2")
            .bind(user_id)
            .bind(keep.unwrap_or(""))
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
