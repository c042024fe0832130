//! The OAuth authorization server's rows (migration 0013): dynamically registered clients,
//! authorization codes, grants and their refresh tokens.
//!
//! Codes and refresh tokens arrive here already hashed (SHA-256, hex): the plain values exist
//! only in the answer to the client. A code is taken with one `DELETE … RETURNING`, so of two
//! concurrent redemptions exactly one gets it. A refresh token is rotated with a
//! compare-and-set on `superseded_at`: of two concurrent uses one rotates and the other is
//! reuse, which revokes the whole grant (RFC 9700 §4.14.2). Anyone can register a client or
//! begin an authorization, so both tables are bounded (expired rows purged first, then the
//! caller's cap refuses or evicts).
//!
//! None of this is configuration: these writes never bump `config_version` (access tokens
//! are signed and short-lived, so the data path never reads these tables).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError};

/// A dynamically registered client (RFC 7591).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    /// Epoch milliseconds.
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// The address that registered it (for operators chasing abuse).
    pub created_from: Option<String>,
}

/// An authorization code's content (the code itself only as its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthCode {
    pub code_hash: String,
    pub client_id: String,
    pub client_name: Option<String>,
    pub user_id: String,
    pub endpoint_id: String,
    /// The RFC 8707 resource the token will be for (an endpoint URL).
    pub resource: String,
    pub redirect_uri: String,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// One user's consent to one client for one endpoint: the family of refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthGrant {
    pub id: String,
    pub client_id: String,
    pub client_name: Option<String>,
    pub user_id: String,
    pub endpoint_id: String,
    pub resource: String,
    pub scope: String,
    pub created_at: i64,
    /// Absolute end: no refresh after it.
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Why it was revoked (`revoked by user`, `refresh token reused`, …).
    pub revoked_reason: Option<String>,
}

impl OAuthGrant {
    /// Neither revoked nor past its absolute end at `now_ms`.
    pub fn active_at(&self, now_ms: i64) -> bool {
        self.revoked_at.is_none() && now_ms < self.expires_at
    }
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// It was current: it is now superseded by the new hash, and this is its grant.
    Rotated(OAuthGrant),
    /// It had already been used: the grant is now revoked (and this is it).
    Reused(OAuthGrant),
    /// Its grant is revoked or past its end.
    Inactive(OAuthGrant),
    /// No such token (never issued, or pruned).
    Unknown,
}

const GRANT_COLUMNS: &str = "g.id, g.client_id, g.client_name, g.user_id, g.endpoint_id, \
     g.resource, g.scope, g.created_at, g.expires_at, g.last_used_at, g.revoked_at, \
     g.revoked_reason";

fn grant(r: &AnyRow) -> Result<OAuthGrant, StoreError> {
    Ok(OAuthGrant {
        id: r.try_get("id")?,
        client_id: r.try_get("client_id")?,
        client_name: r.try_get("client_name")?,
        user_id: r.try_get("user_id")?,
        endpoint_id: r.try_get("endpoint_id")?,
        resource: r.try_get("resource")?,
        scope: r.try_get("scope")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
        revoked_reason: r.try_get("revoked_reason")?,
    })
}

fn client(r: &AnyRow) -> Result<OAuthClient, StoreError> {
    let uris: String = r.try_get("redirect_uris")?;
    Ok(OAuthClient {
        client_id: r.try_get("client_id")?,
        client_name: r.try_get("client_name")?,
        redirect_uris: serde_json::from_str(&uris)
            .map_err(|e| StoreError::Invalid(format!("stored redirect URIs: {e}")))?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        created_from: r.try_get("created_from")?,
    })
}

fn code(r: &AnyRow) -> Result<OAuthCode, StoreError> {
    Ok(OAuthCode {
        code_hash: r.try_get("code_hash")?,
        client_id: r.try_get("client_id")?,
        client_name: r.try_get("client_name")?,
        user_id: r.try_get("user_id")?,
        endpoint_id: r.try_get("endpoint_id")?,
        resource: r.try_get("resource")?,
        redirect_uri: r.try_get("redirect_uri")?,
        code_challenge: r.try_get("code_challenge")?,
        scope: r.try_get("scope")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

fn count(r: AnyRow) -> Result<i64, StoreError> {
    Ok(r.try_get("n")?)
}

impl Store {
    /// Registers a client. Clients never used and older than `stale_before` (epoch ms) are
    /// purged first; if `max_clients` remain, the registration is refused (`Invalid`, the
    /// caller answers 503/400) rather than evicting clients people use.
    pub async fn insert_oauth_client(
        &self,
        c: &OAuthClient,
        max_clients: usize,
        stale_before: i64,
    ) -> Result<(), StoreError> {
        let uris = serde_json::to_string(&c.redirect_uris)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        sqlx::query("DELETE FROM oauth_clients WHERE last_used_at IS NULL AND created_at < $1")
            .bind(stale_before)
            .execute(&mut *conn)
            .await?;
        let n = count(
            sqlx::query("SELECT COUNT(*) AS n FROM oauth_clients")
                .fetch_one(&mut *conn)
                .await?,
        )?;
        if usize::try_from(n).unwrap_or(usize::MAX) >= max_clients {
            return Err(StoreError::Invalid(format!(
                "the gateway holds its maximum of {max_clients} registered clients"
            )));
        }
        sqlx::query(
            "INSERT INTO oauth_clients (client_id, client_name, redirect_uris, created_at, \
             last_used_at, created_from) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.client_id)
        .bind(c.client_name.as_deref())
        .bind(uris)
        .bind(c.created_at)
        .bind(c.last_used_at)
        .bind(c.created_from.as_deref())
        .execute(&mut *conn)
        .await
        .map_err(crate::error::on_unique("client", &c.client_id))?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_oauth_client(
        &self,
        client_id: &str,
    ) -> Result<Option<OAuthClient>, StoreError> {
        let row = sqlx::query("SELECT * FROM oauth_clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(client).transpose()
    }

    /// Every registered client, newest first.
    pub async fn list_oauth_clients(&self) -> Result<Vec<OAuthClient>, StoreError> {
        let rows = sqlx::query("SELECT * FROM oauth_clients ORDER BY created_at DESC, client_id")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(client).collect()
    }

    /// Removes a registered client and revokes every grant it holds; `NotFound` if none.
    pub async fn remove_oauth_client(
        &self,
        client_id: &str,
        now_ms: i64,
        record: Option<&crate::AuditRecord>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        let done = sqlx::query("DELETE FROM oauth_clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("client", client_id));
        }
        sqlx::query(
            "UPDATE oauth_grants SET revoked_at = $1, revoked_reason = 'client removed' \
             WHERE client_id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms)
        .bind(client_id)
        .execute(&mut *conn)
        .await?;
        if let Some(record) = record {
            tx.record_audit(record).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stamps a registered client's last use (an authorization or a token answer).
    pub async fn touch_oauth_client(&self, client_id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE oauth_clients SET last_used_at = $1 WHERE client_id = $2")
            .bind(now_ms)
            .bind(client_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Stores a code. Expired codes are purged first; beyond `max_codes` the oldest pending
    /// ones go (a flood of abandoned authorizations cannot grow the table).
    pub async fn insert_oauth_code(
        &self,
        c: &OAuthCode,
        max_codes: usize,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        sqlx::query("DELETE FROM oauth_codes WHERE expires_at <= $1")
            .bind(c.created_at)
            .execute(&mut *conn)
            .await?;
        let n = count(
            sqlx::query("SELECT COUNT(*) AS n FROM oauth_codes")
                .fetch_one(&mut *conn)
                .await?,
        )?;
        let keep = i64::try_from(max_codes.saturating_sub(1)).unwrap_or(i64::MAX);
        if n > keep {
            sqlx::query(
                "DELETE FROM oauth_codes WHERE code_hash IN (SELECT code_hash FROM oauth_codes \
                 ORDER BY created_at, code_hash LIMIT $1)",
            )
            .bind(n - keep)
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, client_id, client_name, user_id, endpoint_id, \
             resource, redirect_uri, code_challenge, scope, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&c.code_hash)
        .bind(&c.client_id)
        .bind(c.client_name.as_deref())
        .bind(&c.user_id)
        .bind(&c.endpoint_id)
        .bind(&c.resource)
        .bind(&c.redirect_uri)
        .bind(&c.code_challenge)
        .bind(&c.scope)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(&mut *conn)
        .await
        .map_err(crate::error::on_unique("code", &c.code_hash))?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes and returns the code with this hash, expired or not (the caller checks);
    /// `None` if there is none (never issued, or already redeemed). Atomic.
    pub async fn take_oauth_code(&self, code_hash: &str) -> Result<Option<OAuthCode>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM oauth_codes WHERE code_hash = $1 RETURNING code_hash, client_id, \
             client_name, user_id, endpoint_id, resource, redirect_uri, code_challenge, scope, \
             created_at, expires_at",
        )
        .bind(code_hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(code).transpose()
    }

    /// Creates a grant with its first refresh token.
    pub async fn create_oauth_grant(
        &self,
        g: &OAuthGrant,
        refresh_hash: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        sqlx::query(
            "INSERT INTO oauth_grants (id, client_id, client_name, user_id, endpoint_id, \
             resource, scope, created_at, expires_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&g.id)
        .bind(&g.client_id)
        .bind(g.client_name.as_deref())
        .bind(&g.user_id)
        .bind(&g.endpoint_id)
        .bind(&g.resource)
        .bind(&g.scope)
        .bind(g.created_at)
        .bind(g.expires_at)
        .bind(g.last_used_at)
        .execute(&mut *conn)
        .await
        .map_err(crate::error::on_unique("grant", &g.id))?;
        sqlx::query(
            "INSERT INTO oauth_refresh_tokens (token_hash, grant_id, created_at) \
             VALUES ($1, $2, $3)",
        )
        .bind(refresh_hash)
        .bind(&g.id)
        .bind(g.created_at)
        .execute(&mut *conn)
        .await
        .map_err(crate::error::on_unique("refresh token", refresh_hash))?;
        tx.commit().await?;
        Ok(())
    }

    /// The grant a refresh token belongs to, whatever its state.
    pub async fn oauth_grant_of_refresh(
        &self,
        token_hash: &str,
    ) -> Result<Option<OAuthGrant>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_refresh_tokens t \
             JOIN oauth_grants g ON g.id = t.grant_id WHERE t.token_hash = $1"
        )))
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(grant).transpose()
    }

    /// Presents the refresh token `old_hash` at `now_ms`: a current token of an active grant
    /// is superseded by `new_hash` (compare-and-set, so two concurrent uses cannot both
    /// rotate); a superseded one revokes its grant.
    pub async fn rotate_oauth_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        now_ms: i64,
    ) -> Result<Refreshed, StoreError> {
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS}, t.superseded_at AS superseded_at \
             FROM oauth_refresh_tokens t JOIN oauth_grants g ON g.id = t.grant_id \
             WHERE t.token_hash = $1"
        )))
        .bind(old_hash)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(Refreshed::Unknown);
        };
        let mut g = grant(&row)?;
        let superseded: Option<i64> = row.try_get("superseded_at")?;
        if !g.active_at(now_ms) {
            return Ok(Refreshed::Inactive(g));
        }
        let rotated = if superseded.is_none() {
            sqlx::query(
                "UPDATE oauth_refresh_tokens SET superseded_at = $1 \
                 WHERE token_hash = $2 AND superseded_at IS NULL",
            )
            .bind(now_ms)
            .bind(old_hash)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1
        } else {
            false
        };
        if !rotated {
            sqlx::query(
                "UPDATE oauth_grants SET revoked_at = $1, \
                 revoked_reason = 'refresh token reused' WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(now_ms)
            .bind(&g.id)
            .execute(&mut *conn)
            .await?;
            tx.commit().await?;
            g.revoked_at = Some(now_ms);
            g.revoked_reason = Some("refresh token reused".into());
            return Ok(Refreshed::Reused(g));
        }
        sqlx::query(
            "INSERT INTO oauth_refresh_tokens (token_hash, grant_id, created_at) \
             VALUES ($1, $2, $3)",
        )
        .bind(new_hash)
        .bind(&g.id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await
        .map_err(crate::error::on_unique("refresh token", new_hash))?;
        sqlx::query("UPDATE oauth_grants SET last_used_at = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(&g.id)
            .execute(&mut *conn)
            .await?;
        tx.commit().await?;
        g.last_used_at = Some(now_ms);
        Ok(Refreshed::Rotated(g))
    }

    /// One grant by id.
    pub async fn get_oauth_grant(&self, id: &str) -> Result<Option<OAuthGrant>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants g WHERE g.id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(grant).transpose()
    }

    /// Grants, newest first: one user's, or everyone's (`None`).
    pub async fn list_oauth_grants(
        &self,
        user_id: Option<&str>,
    ) -> Result<Vec<OAuthGrant>, StoreError> {
        let rows =
            match user_id {
                Some(u) => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {GRANT_COLUMNS} FROM oauth_grants g WHERE g.user_id = $1 \
                     ORDER BY g.created_at DESC, g.id"
                    )))
                    .bind(u)
                    .fetch_all(self.pool())
                    .await?
                }
                None => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {GRANT_COLUMNS} FROM oauth_grants g ORDER BY g.created_at DESC, g.id"
                )))
                .fetch_all(self.pool())
                .await?,
            };
        rows.iter().map(grant).collect()
    }

    /// Revokes a grant (every refresh token of it stops working); `false` if there is no
    /// such grant or it was already revoked.
    pub async fn revoke_oauth_grant(
        &self,
        id: &str,
        reason: &str,
        now_ms: i64,
        record: Option<&crate::AuditRecord>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE oauth_grants SET revoked_at = $1, revoked_reason = $2 \
             WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms)
        .bind(reason)
        .bind(id)
        .execute(tx.write_conn()?)
        .await?;
        let revoked = done.rows_affected() == 1;
        if let Some(record) = record.filter(|_| revoked) {
            tx.record_audit(record).await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    /// Deletes grants that ended (revoked or expired) before `ended_before`, with their
    /// refresh tokens, and superseded tokens older than `superseded_before` (their reuse is
    /// then answered as unknown instead of revoking the grant). Returns grants deleted.
    pub async fn prune_oauth(
        &self,
        ended_before: i64,
        superseded_before: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        sqlx::query(
            "DELETE FROM oauth_refresh_tokens WHERE grant_id IN (SELECT id FROM oauth_grants \
             WHERE expires_at < $1 OR revoked_at < $1)",
        )
        .bind(ended_before)
        .execute(&mut *conn)
        .await?;
        let done = sqlx::query("DELETE FROM oauth_grants WHERE expires_at < $1 OR revoked_at < $1")
            .bind(ended_before)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM oauth_refresh_tokens WHERE superseded_at < $1")
            .bind(superseded_before)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1")
            .bind(ended_before)
            .execute(&mut *conn)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
