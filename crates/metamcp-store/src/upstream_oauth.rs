//! OAuth towards upstream servers (migration 0014): the gateway's client registration at a
//! server's authorization server, the grants it holds (the server's own, or one user's), and
//! authorizations in progress.
//!
//! Tokens and client secrets are sealed, bound to their row. Refreshing a grant takes a lease
//! on its row first (`take_upstream_refresh_lease`, a compare-and-set on `lease_until`), so of
//! several replicas one refreshes and the others read what it wrote: authorization servers
//! rotate refresh tokens, and two replicas redeeming the same one would end the grant.
//! Flows are taken with one `DELETE … RETURNING` (single use) and bounded like SSO logins.
//! None of this is configuration: nothing here bumps `config_version`.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::secrets::Binding;
use crate::{Store, StoreError};

/// Authorizations in progress kept at most (anyone signed in can begin one).
pub const MAX_PENDING_UPSTREAM_FLOWS: usize = 10_000;

/// The gateway's client at one server's authorization server.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamClient {
    pub server_id: String,
    pub client_id: String,
    /// Stored sealed.
    pub client_secret: Option<String>,
    /// Scopes to ask for (space separated); `None`: what the server advertises.
    pub scope: Option<String>,
    /// `configured` (by an admin) or `registered` (dynamically, RFC 7591).
    pub source: String,
    /// The authorization server a registered client belongs to.
    pub issuer: Option<String>,
    pub created_at: i64,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("server_id", &self.server_id)
            .field("client_id", &self.client_id)
            .field("has_secret", &self.client_secret.is_some())
            .field("source", &self.source)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// A grant the gateway holds for a server.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamToken {
    pub id: String,
    pub server_id: String,
    /// `None`: the server's own grant; else the user it belongs to.
    pub user_id: Option<String>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Epoch ms; `None`: the server did not say.
    pub expires_at: Option<i64>,
    /// Where and how to refresh it (JSON: token endpoint, client id, resource, scope…).
    pub context: String,
    pub authorized_by: Option<String>,
    pub created_at: i64,
    pub refreshed_at: Option<i64>,
    pub refreshes: i64,
}

impl std::fmt::Debug for UpstreamToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamToken")
            .field("id", &self.id)
            .field("server_id", &self.server_id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("refreshes", &self.refreshes)
            .finish_non_exhaustive()
    }
}

/// New tokens from an authorization server (a code redeemed, or a refresh).
#[derive(Clone)]
pub struct TokenSet {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_at: Option<i64>,
}

/// An authorization in progress.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamFlow {
    /// Hex SHA-256 of the `state` parameter.
    pub state_hash: String,
    pub server_id: String,
    /// `None`: for the server's own grant.
    pub user_id: Option<String>,
    /// The signed-in user whose browser began it (only they may finish it).
    pub started_by: String,
    /// The PKCE verifier (stored sealed).
    pub verifier: String,
    /// Where to redeem the code (JSON, no secrets).
    pub context: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for UpstreamFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamFlow")
            .field("state_hash", &self.state_hash)
            .field("server_id", &self.server_id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn bind<'a>(table: &'static str, column: &'static str, row: &'a str) -> Binding<'a> {
    Binding { table, column, row }
}

fn user_key(user: Option<&str>) -> &str {
    user.unwrap_or("")
}

fn user_of(key: String) -> Option<String> {
    (!key.is_empty()).then_some(key)
}

macro_rules! token_columns {
    () => {
        "id, server_id, user_key, access_token, refresh_token, expires_at, context, \
         authorized_by, created_at, refreshed_at, refreshes"
    };
}

impl Store {
    fn open_text(&self, at: Binding<'_>, sealed: &str, what: &str) -> Result<String, StoreError> {
        let plain = self
            .cipher()
            .open(at, sealed)
            .map_err(|e| StoreError::Decrypt(format!("{what}: {e}")))?;
        String::from_utf8(plain).map_err(|_| StoreError::Decrypt(format!("{what} is not UTF-8")))
    }

    /// The client registered or configured for a server, if any.
    pub async fn upstream_client(
        &self,
        server_id: &str,
    ) -> Result<Option<UpstreamClient>, StoreError> {
        let row = sqlx::query(
            "SELECT server_id, client_id, client_secret, scope, source, issuer, created_at \
             FROM upstream_oauth_clients WHERE server_id = $1",
        )
        .bind(server_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let sealed: Option<String> = r.try_get("client_secret")?;
        let client_secret = sealed
            .map(|s| {
                self.open_text(
                    bind("upstream_oauth_clients", "client_secret", server_id),
                    &s,
                    "an upstream client secret",
                )
            })
            .transpose()?;
        Ok(Some(UpstreamClient {
            server_id: r.try_get("server_id")?,
            client_id: r.try_get("client_id")?,
            client_secret,
            scope: r.try_get("scope")?,
            source: r.try_get("source")?,
            issuer: r.try_get("issuer")?,
            created_at: r.try_get("created_at")?,
        }))
    }

    /// Sets (replaces) a server's client. Unknown server: `NotFound`.
    pub async fn put_upstream_client(&self, c: &UpstreamClient) -> Result<(), StoreError> {
        let sealed = c
            .client_secret
            .as_deref()
            .map(|s| {
                self.cipher().seal(
                    bind("upstream_oauth_clients", "client_secret", &c.server_id),
                    s.as_bytes(),
                )
            })
            .transpose()?;
        sqlx::query(
            "INSERT INTO upstream_oauth_clients (server_id, client_id, client_secret, scope, \
             source, issuer, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (server_id) DO UPDATE SET client_id = excluded.client_id, \
             client_secret = excluded.client_secret, scope = excluded.scope, \
             source = excluded.source, issuer = excluded.issuer, created_at = excluded.created_at",
        )
        .bind(&c.server_id)
        .bind(&c.client_id)
        .bind(sealed)
        .bind(c.scope.as_deref())
        .bind(&c.source)
        .bind(c.issuer.as_deref())
        .bind(c.created_at)
        .execute(self.pool())
        .await
        .map_err(crate::error::on_foreign_key("server", &c.server_id))?;
        Ok(())
    }

    /// Forgets a server's client (the next authorization registers or uses the configured
    /// one again). True when there was one.
    pub async fn remove_upstream_client(&self, server_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM upstream_oauth_clients WHERE server_id = $1")
            .bind(server_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The grant for `server_id` and `user` (`None`: the server's own).
    pub async fn upstream_token(
        &self,
        server_id: &str,
        user: Option<&str>,
    ) -> Result<Option<UpstreamToken>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM upstream_tokens WHERE server_id = $1 AND user_key = $2"
        ))
        .bind(server_id)
        .bind(user_key(user))
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| self.token_from_row(&r)).transpose()
    }

    /// Every grant, of one server or all (tokens not opened: `access_token` and
    /// `refresh_token` are empty).
    pub async fn list_upstream_tokens(
        &self,
        server_id: Option<&str>,
    ) -> Result<Vec<UpstreamToken>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM upstream_tokens WHERE ($1 = '' OR server_id = $1) ORDER BY server_id, user_key"
        ))
        .bind(server_id.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UpstreamToken {
                    id: r.try_get("id")?,
                    server_id: r.try_get("server_id")?,
                    user_id: user_of(r.try_get("user_key")?),
                    access_token: String::new(),
                    refresh_token: None,
                    expires_at: r.try_get("expires_at")?,
                    context: r.try_get("context")?,
                    authorized_by: r.try_get("authorized_by")?,
                    created_at: r.try_get("created_at")?,
                    refreshed_at: r.try_get("refreshed_at")?,
                    refreshes: r.try_get("refreshes")?,
                })
            })
            .collect()
    }

    /// Stores a new grant for `server_id` and `user`, replacing any earlier one. Returns
    /// its id.
    pub async fn put_upstream_token(
        &self,
        server_id: &str,
        user: Option<&str>,
        tokens: &TokenSet,
        context: &str,
        authorized_by: Option<&str>,
        now: i64,
    ) -> Result<String, StoreError> {
        let id = crate::db::new_id();
        let (access, refresh) = self.seal_tokens(&id, tokens)?;
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        sqlx::query("DELETE FROM upstream_tokens WHERE server_id = $1 AND user_key = $2")
            .bind(server_id)
            .bind(user_key(user))
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO upstream_tokens (id, server_id, user_key, access_token, refresh_token, \
             expires_at, context, authorized_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(server_id)
        .bind(user_key(user))
        .bind(access)
        .bind(refresh)
        .bind(tokens.expires_at)
        .bind(context)
        .bind(authorized_by)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(crate::error::on_foreign_key("server", server_id))?;
        // why: not configuration; commit without marking the transaction changed.
        tx.commit().await?;
        Ok(id)
    }

    fn seal_tokens(&self, id: &str, t: &TokenSet) -> Result<(String, Option<String>), StoreError> {
        let access = self.cipher().seal(
            bind("upstream_tokens", "access_token", id),
            t.access_token.as_bytes(),
        )?;
        let refresh = t
            .refresh_token
            .as_deref()
            .map(|r| {
                self.cipher()
                    .seal(bind("upstream_tokens", "refresh_token", id), r.as_bytes())
            })
            .transpose()?;
        Ok((access, refresh))
    }

    /// Takes the right to refresh grant `id` until `until` (epoch ms), unless another holder
    /// has it now or the grant was refreshed since the caller read it (`seen_refreshes`, its
    /// `refreshes` then: the refresh token the caller holds may be spent). True when taken.
    pub async fn take_upstream_refresh_lease(
        &self,
        id: &str,
        seen_refreshes: i64,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE upstream_tokens SET lease_until = $1, lease_holder = $2 \
             WHERE id = $3 AND lease_until <= $4 AND refreshes = $5",
        )
        .bind(until)
        .bind(holder)
        .bind(id)
        .bind(now)
        .bind(seen_refreshes)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores refreshed tokens of grant `id` and ends `holder`'s lease. A refresh token the
    /// server did not replace is kept. False when the grant is gone or the lease was lost.
    pub async fn finish_upstream_refresh(
        &self,
        id: &str,
        holder: &str,
        tokens: &TokenSet,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (access, refresh) = self.seal_tokens(id, tokens)?;
        let done = sqlx::query(
            "UPDATE upstream_tokens SET access_token = $1, \
             refresh_token = COALESCE($2, refresh_token), expires_at = $3, refreshed_at = $4, \
             refreshes = refreshes + 1, lease_until = 0, lease_holder = NULL \
             WHERE id = $5 AND lease_holder = $6",
        )
        .bind(access)
        .bind(refresh)
        .bind(tokens.expires_at)
        .bind(now)
        .bind(id)
        .bind(holder)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives up `holder`'s lease on grant `id` (the refresh failed for a passing reason).
    pub async fn release_upstream_refresh_lease(
        &self,
        id: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE upstream_tokens SET lease_until = 0, lease_holder = NULL \
             WHERE id = $1 AND lease_holder = $2",
        )
        .bind(id)
        .bind(holder)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deletes grant `id` (refused by its server, or revoked). True when it existed.
    pub async fn remove_upstream_token(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM upstream_tokens WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    fn token_from_row(&self, r: &AnyRow) -> Result<UpstreamToken, StoreError> {
        let id: String = r.try_get("id")?;
        let access: String = r.try_get("access_token")?;
        let refresh: Option<String> = r.try_get("refresh_token")?;
        let access_token = self.open_text(
            bind("upstream_tokens", "access_token", &id),
            &access,
            "an upstream access token",
        )?;
        let refresh_token = refresh
            .map(|s| {
                self.open_text(
                    bind("upstream_tokens", "refresh_token", &id),
                    &s,
                    "an upstream refresh token",
                )
            })
            .transpose()?;
        Ok(UpstreamToken {
            server_id: r.try_get("server_id")?,
            user_id: user_of(r.try_get("user_key")?),
            access_token,
            refresh_token,
            expires_at: r.try_get("expires_at")?,
            context: r.try_get("context")?,
            authorized_by: r.try_get("authorized_by")?,
            created_at: r.try_get("created_at")?,
            refreshed_at: r.try_get("refreshed_at")?,
            refreshes: r.try_get("refreshes")?,
            id,
        })
    }

    /// Stores an authorization in progress: first deletes expired ones, then beyond
    /// `max_pending` the oldest.
    pub async fn insert_upstream_flow(
        &self,
        f: &UpstreamFlow,
        max_pending: usize,
    ) -> Result<(), StoreError> {
        let sealed = self.cipher().seal(
            bind("upstream_oauth_flows", "verifier", &f.state_hash),
            f.verifier.as_bytes(),
        )?;
        let mut tx = self.begin().await?;
        let conn = tx.write_conn()?;
        crate::oidc_logins::make_room(conn, "upstream_oauth_flows", f.created_at, max_pending)
            .await?;
        sqlx::query(
            "INSERT INTO upstream_oauth_flows (state_hash, server_id, user_key, started_by, \
             verifier, context, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&f.state_hash)
        .bind(&f.server_id)
        .bind(user_key(f.user_id.as_deref()))
        .bind(&f.started_by)
        .bind(sealed)
        .bind(&f.context)
        .bind(f.created_at)
        .bind(f.expires_at)
        .execute(&mut *conn)
        .await
        .map_err(crate::error::on_foreign_key("server", &f.server_id))?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes and returns the flow with this state hash (expired or not: the caller says
    /// which); `None` when there is none. Of two concurrent takers, one gets it.
    pub async fn take_upstream_flow(
        &self,
        state_hash: &str,
    ) -> Result<Option<UpstreamFlow>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM upstream_oauth_flows WHERE state_hash = $1 RETURNING state_hash, \
             server_id, user_key, started_by, verifier, context, created_at, expires_at",
        )
        .bind(state_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let verifier: String = r.try_get("verifier")?;
        Ok(Some(UpstreamFlow {
            verifier: self.open_text(
                bind("upstream_oauth_flows", "verifier", state_hash),
                &verifier,
                "a PKCE verifier",
            )?,
            state_hash: r.try_get("state_hash")?,
            server_id: r.try_get("server_id")?,
            user_id: user_of(r.try_get("user_key")?),
            started_by: r.try_get("started_by")?,
            context: r.try_get("context")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
        }))
    }
}
