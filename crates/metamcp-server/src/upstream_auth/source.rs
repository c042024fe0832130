//! The gateway's [`TokenSource`]: upstream access tokens from the store, kept in memory,
//! refreshed by one replica at a time.
//!
//! A connection asks only when it has no token, when its token is about to expire, or when
//! the upstream refused it. The answer comes from memory while it is fresh, else from the
//! store (another replica may have refreshed it), else by refreshing: the replica that takes
//! the grant's lease redeems the refresh token and stores the result; the others wait for it
//! (up to [`WAIT_FOR_PEER`]). A refresh the authorization server refuses (`invalid_grant`)
//! deletes the grant: the server then shows "needs authorization" with the link.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use metamcp_store::{Store, TokenSet, UpstreamToken};
use metamcp_upstream::token::REFRESH_MARGIN;
use metamcp_upstream::{AccessToken, Grantee, NeedsAuthorization, TokenSource};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// How long a replica may hold a grant's refresh lease.
const LEASE: Duration = Duration::from_secs(30);
/// How long a replica waits for another one's refresh.
const WAIT_FOR_PEER: Duration = Duration::from_secs(10);

/// Where and how a grant is refreshed (the token row's `context`; no secrets).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantContext {
    pub token_endpoint: String,
    pub client_id: String,
    pub resource: String,
    pub issuer: String,
    #[serde(default)]
    pub scope: Option<String>,
}

/// A token endpoint's answer (RFC 6749 §5.1).
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: Option<i64>,
    pub refresh_token: Option<String>,
}

/// Why a token request failed.
#[derive(Debug)]
pub enum TokenError {
    /// The grant is gone (`invalid_grant`, `invalid_client`…): authorize again.
    Refused(String),
    /// Try again later.
    Passing(String),
}

/// Posts a token request; the client secret, if any, as `client_secret_post`.
pub async fn token_request(
    http: &reqwest::Client,
    endpoint: &str,
    form: &[(&str, &str)],
    secret: Option<&str>,
    now_ms: i64,
) -> Result<TokenSet, TokenError> {
    let mut form: Vec<(&str, &str)> = form.to_vec();
    if let Some(s) = secret {
        form.push(("client_secret", s));
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let resp = http
        .post(endpoint)
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| TokenError::Passing(format!("reaching the token endpoint: {e}")))?;
    let status = resp.status();
    let body = super::discover::read_limited(resp, 64 * 1024)
        .await
        .map_err(TokenError::Passing)?;
    if !status.is_success() {
        #[derive(Deserialize)]
        struct Err {
            error: String,
            error_description: Option<String>,
        }
        return Err(match serde_json::from_slice::<Err>(&body) {
            Ok(e) if status.is_client_error() => TokenError::Refused(format!(
                "the authorization server refused: {}{}",
                e.error,
                e.error_description
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )),
            _ => TokenError::Passing(format!("the token endpoint answered {status}")),
        });
    }
    let t: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| TokenError::Passing(format!("the token endpoint's answer: {e}")))?;
    if !t.token_type.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Refused(format!(
            "the authorization server issued a {} token, not a bearer token",
            t.token_type
        )));
    }
    Ok(TokenSet {
        access_token: t.access_token,
        refresh_token: t.refresh_token,
        expires_at: t
            .expires_in
            .map(|s| now_ms.saturating_add(s.saturating_mul(1000))),
    })
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn fresh(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_none_or(|at| at > now + REFRESH_MARGIN.as_millis() as i64)
}

fn access(t: &UpstreamToken) -> AccessToken {
    AccessToken {
        token: t.access_token.clone(),
        expires_at: t
            .expires_at
            .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms.max(0) as u64))),
    }
}

/// What to do when a grant ends.
pub type OnGone = Box<dyn Fn(&Grantee) + Send + Sync>;

/// Upstream tokens from the store.
pub struct StoreTokens {
    store: Store,
    http: reqwest::Client,
    /// This replica's name in refresh leases.
    holder: String,
    app_url: String,
    /// What was last read or refreshed, by (server id, user).
    cache: Mutex<HashMap<(String, Option<String>), UpstreamToken>>,
    /// Called when a grant is gone (the pool drops that user's connection).
    on_gone: std::sync::OnceLock<OnGone>,
}

impl std::fmt::Debug for StoreTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreTokens")
            .field("holder", &self.holder)
            .field("cached", &self.cache.lock().len())
            .finish_non_exhaustive()
    }
}

impl StoreTokens {
    pub fn new(store: Store, http: reqwest::Client, app_url: &str) -> Arc<Self> {
        Arc::new(StoreTokens {
            store,
            http,
            holder: crate::oauth::random_token(),
            app_url: app_url.trim_end_matches('/').to_owned(),
            cache: Mutex::default(),
            on_gone: std::sync::OnceLock::new(),
        })
    }

    /// What to do when a grant ends (set once, when the gateway is built).
    pub fn set_on_gone(&self, f: OnGone) {
        let _ = self.on_gone.set(f);
    }

    fn needs(&self, who: &Grantee, why: &str) -> NeedsAuthorization {
        let link = format!(
            "{}/oauth/upstream/{}/authorize",
            self.app_url, who.server_name
        );
        NeedsAuthorization(match &who.user {
            None => format!("{why}; an admin must authorize it at {link}?for=server"),
            Some(_) => format!("{why}; authorize it for yourself at {link}"),
        })
    }

    async fn get(
        &self,
        who: &Grantee,
        refused: Option<&str>,
    ) -> Result<AccessToken, NeedsAuthorization> {
        let key = (who.server_id.clone(), who.user.clone());
        let usable = |t: &UpstreamToken, now: i64| {
            fresh(t.expires_at, now) && refused != Some(t.access_token.as_str())
        };
        if let Some(t) = self.cache.lock().get(&key)
            && usable(t, now_ms())
        {
            return Ok(access(t));
        }
        let started = tokio::time::Instant::now();
        loop {
            let row = self
                .store
                .upstream_token(&who.server_id, who.user.as_deref())
                .await
                .map_err(|e| NeedsAuthorization(format!("reading its grant failed: {e}")))?;
            let Some(t) = row else {
                self.cache.lock().remove(&key);
                return Err(self.needs(who, "it has no grant"));
            };
            let now = now_ms();
            if usable(&t, now) {
                self.cache.lock().insert(key, t.clone());
                return Ok(access(&t));
            }
            let Some(refresh) = t.refresh_token.clone() else {
                let why = match refused {
                    Some(_) => "the upstream refused its access token and it has no refresh token",
                    None => "its access token expired and it has no refresh token",
                };
                return Err(self.needs(who, why));
            };
            let leased = self
                .store
                .take_upstream_refresh_lease(
                    &t.id,
                    t.refreshes,
                    &self.holder,
                    now,
                    now + LEASE.as_millis() as i64,
                )
                .await
                .map_err(|e| NeedsAuthorization(format!("taking the refresh lease failed: {e}")))?;
            if leased {
                return self.refresh(who, key, &t, &refresh, refused).await;
            }
            // Another replica is refreshing it (or just did): read what it stores.
            if started.elapsed() >= WAIT_FOR_PEER {
                return Err(NeedsAuthorization(
                    "another replica holds its refresh lease and has not finished".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn refresh(
        &self,
        who: &Grantee,
        key: (String, Option<String>),
        t: &UpstreamToken,
        refresh: &str,
        refused: Option<&str>,
    ) -> Result<AccessToken, NeedsAuthorization> {
        let release = || async {
            if let Err(e) = self
                .store
                .release_upstream_refresh_lease(&t.id, &self.holder)
                .await
            {
                tracing::warn!(error = %e, "releasing a refresh lease failed");
            }
        };
        let ctx: GrantContext = match serde_json::from_str(&t.context) {
            Ok(c) => c,
            Err(e) => {
                release().await;
                return Err(NeedsAuthorization(format!("its grant is unreadable: {e}")));
            }
        };
        let secret = match self.store.upstream_client(&who.server_id).await {
            Ok(c) => c
                .filter(|c| c.client_id == ctx.client_id)
                .and_then(|c| c.client_secret),
            Err(e) => {
                release().await;
                return Err(NeedsAuthorization(format!(
                    "reading its client failed: {e}"
                )));
            }
        };
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", ctx.client_id.as_str()),
            ("resource", ctx.resource.as_str()),
        ];
        if let Some(s) = &ctx.scope {
            form.push(("scope", s));
        }
        let now = now_ms();
        match token_request(
            &self.http,
            &ctx.token_endpoint,
            &form,
            secret.as_deref(),
            now,
        )
        .await
        {
            Ok(set) => {
                let stored = self
                    .store
                    .finish_upstream_refresh(&t.id, &self.holder, &set, now)
                    .await
                    .unwrap_or(false);
                if !stored {
                    tracing::warn!(server = %who.server_name, "a refreshed grant could not be stored (removed or lease lost)");
                }
                tracing::info!(server = %who.server_name, per_user = who.user.is_some(), "upstream access token refreshed");
                let mut fresh = t.clone();
                fresh.access_token = set.access_token;
                if let Some(r) = set.refresh_token {
                    fresh.refresh_token = Some(r);
                }
                fresh.expires_at = set.expires_at;
                let out = access(&fresh);
                self.cache.lock().insert(key, fresh);
                Ok(out)
            }
            Err(TokenError::Refused(why)) => {
                tracing::warn!(server = %who.server_name, why = %why, "upstream grant refused at refresh; removed");
                if let Err(e) = self.store.remove_upstream_token(&t.id).await {
                    tracing::warn!(error = %e, "removing a refused grant failed");
                }
                self.cache.lock().remove(&key);
                if let Some(f) = self.on_gone.get() {
                    f(who);
                }
                Err(self.needs(who, &format!("its grant ended ({why})")))
            }
            Err(TokenError::Passing(why)) => {
                release().await;
                // why: an access token not yet expired and not refused still works.
                let still = t.expires_at.is_none_or(|at| at > now)
                    && refused != Some(t.access_token.as_str());
                if still {
                    return Ok(access(t));
                }
                Err(NeedsAuthorization(format!(
                    "refreshing its token failed: {why}"
                )))
            }
        }
    }
}

impl TokenSource for StoreTokens {
    fn token<'a>(
        &'a self,
        who: &'a Grantee,
        refused: Option<&'a str>,
    ) -> BoxFuture<'a, Result<AccessToken, NeedsAuthorization>> {
        Box::pin(self.get(who, refused))
    }

    /// Forgets what is cached for `server_id` (a new grant was stored, or one removed).
    fn forget(&self, server_id: &str) {
        self.cache.lock().retain(|(s, _), _| s != server_id);
    }
}
