//! People: accounts, sign-in and browser sessions (the dashboard's and the admin API's
//! second way in, beside admin keys).
//!
//! - `password` — Argon2id hashing on the blocking pool behind a bound.
//! - `throttle` — failed sign-ins slow down per account and per client, never lock.
//! - `browser` — the session cookie, CSRF tokens and the same-site check.
//! - `routes` — `/api/auth/…` (MetaMCP's paths) and the server-rendered sign-in pages.
//! - `pages` — the askama templates of those pages and of error pages.
//! - `oidc` — the single sign-on relying party (MetaMCP's `OIDC_*` settings); `sso` its
//!   routes and how an identity finds or makes its account.
//!
//! [`Accounts`] holds what these share; [`Accounts::signed_in`] turns a request's cookie into
//! a [`SignedIn`] user by reading the store (no cache: a sign-out, a password change or a
//! disabled user takes effect on every replica at the next request).

pub mod browser;
pub mod oidc;
pub mod pages;
pub mod password;
pub mod routes;
pub mod sso;
pub mod throttle;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::HeaderMap;
use metamcp_store::{NewBrowserSession, Store, StoreError, UserRecord, session_token_hash};

use crate::settings::{SignupOverrides, SignupPolicy};
use browser::CookiePolicy;
use password::{Hasher, PasswordError};
use throttle::Throttle;

/// Longest email accepted (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest display name accepted (characters).
pub const MAX_NAME_LEN: usize = 100;

/// How accounts behave; the defaults are the documented ones.
#[derive(Debug, Clone)]
pub struct AccountOptions {
    /// A browser session ends after this long without a request.
    pub session_idle: Duration,
    /// …and this long after sign-in, whatever its activity.
    pub session_absolute: Duration,
    /// Sessions one user may hold; signing in beyond it ends their oldest.
    pub max_sessions_per_user: usize,
    /// Password hashes running at once, and waiting beyond those.
    pub hash_concurrency: usize,
    pub hash_queue: usize,
    /// `DISABLE_SIGNUP`, `DISABLE_SSO_SIGNUP`, `DISABLE_BASIC_AUTH` from the environment.
    pub signup_env: SignupOverrides,
    /// Single sign-on (`OIDC_*`), when configured.
    pub oidc: Option<oidc::OidcSettings>,
}

impl Default for AccountOptions {
    fn default() -> Self {
        Self {
            session_idle: Duration::from_secs(7 * 24 * 3600),
            session_absolute: Duration::from_secs(30 * 24 * 3600),
            max_sessions_per_user: 20,
            hash_concurrency: 2,
            hash_queue: 32,
            signup_env: SignupOverrides::default(),
            oidc: None,
        }
    }
}

/// What the account routes share.
#[derive(Debug)]
pub struct Accounts {
    pub(crate) hasher: Hasher,
    pub(crate) throttle: Throttle,
    pub(crate) cookie: CookiePolicy,
    csrf_key: [u8; 32],
    /// The single sign-on relying party, when configured.
    pub(crate) oidc: Option<oidc::Oidc>,
    pub(crate) opts: AccountOptions,
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: UserRecord,
    /// The session's id hash (the store's key).
    pub id_hash: String,
    /// The token state-changing requests must carry.
    pub csrf: String,
    pub expires_at: i64,
}

/// Why the account layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Password(#[from] PasswordError),
}

impl Accounts {
    pub fn new(
        store: &Store,
        app_url: &url::Url,
        opts: AccountOptions,
    ) -> Result<Self, AccountError> {
        Ok(Accounts {
            hasher: Hasher::new(opts.hash_concurrency, opts.hash_queue)?,
            throttle: Throttle::default(),
            cookie: CookiePolicy::for_app_url(app_url),
            csrf_key: store.derive_key("csrf"),
            oidc: opts.oidc.clone().map(oidc::Oidc::new),
            opts,
        })
    }

    /// The sign-up switches in force: the environment's over the stored settings.
    pub fn policy(&self, stored: SignupPolicy) -> SignupPolicy {
        stored.overridden_by(&self.opts.signup_env)
    }

    /// The request's signed-in user, if its cookie names a live session.
    pub async fn signed_in(
        &self,
        store: &Store,
        headers: &HeaderMap,
    ) -> Result<Option<SignedIn>, StoreError> {
        let Some(token) = self.cookie.token(headers) else {
            return Ok(None);
        };
        // why: a token of another shape was never issued here; no database query for it.
        if token.len() != 43 {
            return Ok(None);
        }
        let id_hash = session_token_hash(&token);
        let idle_ms = i64::try_from(self.opts.session_idle.as_millis()).unwrap_or(i64::MAX);
        let Some(s) = store.browser_session(&id_hash, idle_ms).await? else {
            return Ok(None);
        };
        // Activity is recorded at most once a minute per session.
        if metamcp_now_ms().saturating_sub(s.last_seen_at) > 60_000 {
            let store = store.clone();
            let h = s.id_hash.clone();
            tokio::spawn(async move {
                if let Err(e) = store.touch_browser_session(&h).await {
                    tracing::debug!(error = %e, "could not record browser session activity");
                }
            });
        }
        Ok(Some(SignedIn {
            csrf: browser::csrf_token(&self.csrf_key, &s.id_hash),
            user: s.user,
            id_hash: s.id_hash,
            expires_at: s.expires_at,
        }))
    }

    /// Whether `presented` is `session`'s CSRF token.
    pub fn csrf_ok(&self, session: &SignedIn, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| browser::csrf_matches(&self.csrf_key, &session.id_hash, p))
    }

    /// Starts a session for `user` (a new random token every time: sign-in rotates it);
    /// returns the cookie's token and the session.
    pub async fn start_session(
        &self,
        store: &Store,
        user: &UserRecord,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
    ) -> Result<(String, SignedIn), StoreError> {
        let token = browser::new_token();
        let id_hash = session_token_hash(&token);
        let absolute_ms = i64::try_from(self.opts.session_absolute.as_millis()).unwrap_or(i64::MAX);
        let expires_at = metamcp_now_ms().saturating_add(absolute_ms);
        let ip = ip.map(|i| i.to_string());
        let user_agent = user_agent.map(|u| u.chars().take(256).collect::<String>());
        store
            .create_browser_session(
                &NewBrowserSession {
                    id_hash: &id_hash,
                    user_id: &user.id,
                    expires_at,
                    ip: ip.as_deref(),
                    user_agent: user_agent.as_deref(),
                },
                self.opts.max_sessions_per_user,
            )
            .await?;
        store.touch_last_login(&user.id).await?;
        Ok((
            token,
            SignedIn {
                csrf: browser::csrf_token(&self.csrf_key, &id_hash),
                user: user.clone(),
                id_hash,
                expires_at,
            },
        ))
    }
}

fn metamcp_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether the request comes from the gateway's own machine: a loopback peer and no proxy
/// header naming anyone else (a reverse proxy on the same host would otherwise make every
/// client look local).
pub fn is_local_request(peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h));
    !forwarded && peer.is_some_and(|p| crate::ratelimit::canonical(p.ip()).is_loopback())
}

/// A normalised email (trimmed, lower-cased), or why it is refused.
pub fn normalize_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err("email is required".into());
    }
    if email.len() > MAX_EMAIL_LEN {
        return Err(format!("email must be at most {MAX_EMAIL_LEN} characters"));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err("email must look like name@example.com".into());
    };
    let bad = |c: char| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"@".contains(c);
    if local.is_empty()
        || local.len() > 64
        || domain.is_empty()
        || local.chars().any(bad)
        || domain.chars().any(bad)
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err("email must look like name@example.com".into());
    }
    Ok(email)
}

/// A display name (trimmed), or why it is refused; `fallback` when none is given.
pub fn normalize_name(raw: Option<&str>, fallback: &str) -> Result<String, String> {
    let name = raw
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(fallback);
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!("name must be at most {MAX_NAME_LEN} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".into());
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").as_deref(),
            Ok("ada@example.com")
        );
        for bad in [
            "",
            "ada",
            "@x.com",
            "ada@",
            "a b@x.com",
            "a@b@c",
            "a@x..com",
            "a@.x",
            "a<b>@x",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_email(&format!("{}@x.com", "a".repeat(65))).is_err());
        assert!(normalize_email(&format!("a@{}.com", "x".repeat(260))).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(normalize_name(Some("  Ada "), "x").as_deref(), Ok("Ada"));
        assert_eq!(normalize_name(None, "Admin").as_deref(), Ok("Admin"));
        assert!(normalize_name(Some("a\u{7}b"), "x").is_err());
        assert!(normalize_name(Some(&"n".repeat(101)), "x").is_err());
    }

    #[test]
    fn local_requests() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap_or_else(|_| unreachable!());
        let remote: SocketAddr = "192.0.2.7:5000".parse().unwrap_or_else(|_| unreachable!());
        let mut h = HeaderMap::new();
        assert!(is_local_request(Some(local), &h));
        assert!(!is_local_request(Some(remote), &h));
        assert!(!is_local_request(None, &h));
        h.insert(
            "x-forwarded-for",
            axum::http::HeaderValue::from_static("203.0.113.9"),
        );
        assert!(
            !is_local_request(Some(local), &h),
            "a local proxy forwarding someone"
        );
    }
}
