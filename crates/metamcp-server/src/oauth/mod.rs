//! The gateway as an OAuth 2.1 authorization server for its endpoints (the MCP
//! authorization spec): an endpoint with `oauth` on is a protected resource, and a client
//! that knows only its URL discovers everything from the 401.
//!
//! - `metadata` — RFC 9728 protected-resource metadata per endpoint face and RFC 8414 (and
//!   OpenID discovery) metadata of the authorization server, whose issuer is `APP_URL`.
//! - `clients` — dynamic registration (RFC 7591) and redirect-URI rules; `cimd` — client ids
//!   that are https URLs of metadata documents, fetched behind an SSRF fence.
//! - `authorize` — the authorization endpoint and consent page (a signed-in user, through
//!   the account's password or single sign-on), codes bound to client, redirect URI, PKCE
//!   S256 challenge, user and endpoint (RFC 8707 `resource`), `iss` on every redirect
//!   (RFC 9207).
//! - `token` — code and refresh grants (refresh tokens rotate; a reused one revokes its
//!   grant), revocation (RFC 7009).
//! - `access` — access tokens: signed, short-lived, checked on the data path from memory.
//!
//! Routes that clients call from any web origin (metadata, token, registration,
//! revocation) are in [`any_origin_routes`]; the consent page uses the browser session and
//! its CSRF token, on the exact-origin routes ([`browser_routes`]).

pub mod access;
pub mod authorize;
pub mod cimd;
pub mod clients;
pub mod metadata;
pub mod token;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::state::Gateway;

/// The one scope: use the endpoint's tools, resources and prompts. (Tool-level scopes are
/// not implemented: a token opens the whole endpoint, as an API key does.)
pub const SCOPE: &str = "mcp";

/// The endpoint faces a token is valid on, as they appear in resource URLs.
pub const FACES: &[&str] = &["mcp", "sse", "api"];

/// The authorization server's state: the access-token key, the metadata-document fetcher and
/// the grants revoked through this replica.
#[derive(Debug)]
pub struct OAuth {
    pub access: access::AccessKey,
    pub cimd: cimd::Cimd,
    pub revoked: access::Revoked,
    /// When this replica last pruned ended grants (epoch ms).
    last_prune: std::sync::atomic::AtomicI64,
}

/// How often a replica prunes ended grants, old superseded refresh tokens and stale codes.
const PRUNE_EVERY_MS: i64 = 3_600_000;
/// Grants that ended (revoked or expired) longer ago than this are deleted.
const KEEP_ENDED_MS: i64 = 86_400_000;
/// Superseded refresh tokens are kept this long for reuse detection.
const KEEP_SUPERSEDED_MS: i64 = 7 * 86_400_000;

impl OAuth {
    pub fn new(access_key: [u8; 32], extra_ca_pem: Option<&[u8]>) -> Self {
        OAuth {
            access: access::AccessKey::new(access_key),
            cimd: cimd::Cimd::new(extra_ca_pem),
            revoked: access::Revoked::default(),
            last_prune: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// At most once an hour (per replica), deletes in the background what ended: grants
    /// revoked or expired a day ago with their tokens, refresh tokens superseded a week
    /// ago, expired codes. Called from the token endpoint, so an idle gateway does nothing.
    pub fn maybe_prune(&self, store: &metamcp_store::Store, now: i64) {
        use std::sync::atomic::Ordering;
        let last = self.last_prune.load(Ordering::Relaxed);
        if now.saturating_sub(last) < PRUNE_EVERY_MS
            || self
                .last_prune
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let store = store.clone();
        tokio::spawn(async move {
            match store
                .prune_oauth(now - KEEP_ENDED_MS, now - KEEP_SUPERSEDED_MS)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "ended OAuth grants pruned"),
                Err(e) => tracing::warn!(error = %e, "pruning OAuth grants failed"),
            }
        });
    }
}

/// The issuer: `APP_URL` without a trailing slash.
pub fn issuer(gw: &Gateway) -> String {
    gw.opts.app_url.as_str().trim_end_matches('/').to_owned()
}

/// The resource URL of an endpoint's face (`mcp`, `sse`, `api`).
pub fn resource_url(gw: &Gateway, endpoint: &str, face: &str) -> String {
    format!("{}/metamcp/{endpoint}/{face}", issuer(gw))
}

/// Where the protected-resource metadata of that face is (RFC 9728, path form).
pub fn resource_metadata_url(gw: &Gateway, endpoint: &str, face: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource/metamcp/{endpoint}/{face}",
        issuer(gw)
    )
}

/// The endpoint name a resource URL of this gateway names (any face), if it does.
pub fn endpoint_of_resource<'a>(gw: &Gateway, resource: &'a str) -> Option<&'a str> {
    let issuer = issuer(gw);
    let rest = resource
        .strip_prefix(issuer.as_str())?
        .strip_prefix("/metamcp/")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (name, face) = rest.split_once('/')?;
    (FACES.contains(&face) && !name.is_empty()).then_some(name)
}

/// The `WWW-Authenticate` value a 401 of an OAuth endpoint carries.
pub fn www_authenticate(gw: &Gateway, endpoint: &str, face: &str, invalid: bool) -> String {
    let face = match face {
        "sse" => "sse",
        "rest" => "api",
        _ => "mcp",
    };
    let meta = resource_metadata_url(gw, endpoint, face);
    if invalid {
        format!("Bearer error=\"invalid_token\", resource_metadata=\"{meta}\", scope=\"{SCOPE}\"")
    } else {
        format!("Bearer resource_metadata=\"{meta}\", scope=\"{SCOPE}\"")
    }
}

/// One OAuth event in the audit log (face `oauth`): a consent given or refused
/// (`oauth_consent`), a refresh token reused (`oauth_refresh_reused`), a grant revoked
/// (`oauth_revoke`). `client_id` goes where a call's tool name goes; `refused`: the error
/// class of a denied event.
pub(crate) struct Event<'a> {
    pub kind: &'static str,
    pub email: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub endpoint: Option<&'a str>,
    pub client_id: &'a str,
    pub refused: Option<&'static str>,
    pub client: Option<std::net::IpAddr>,
}

pub(crate) async fn audit(gw: &Gateway, e: Event<'_>) {
    if !gw.rt.audit.enabled() {
        return;
    }
    let verdict = match e.refused {
        None => crate::audit::Verdict::OK,
        Some(class) => crate::audit::Verdict::new(crate::audit::Outcome::Denied, class),
    };
    let who = crate::audit::Who::named("oauth", e.endpoint, e.email, e.user_id, e.client);
    let record = crate::audit::refusal(&who, e.kind, Some(e.client_id.into()), verdict);
    gw.rt.audit.record(record).await;
}

/// 256 random bits, base64url: codes, refresh tokens, client ids, grant ids.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::fill(&mut b[..]);
    URL_SAFE_NO_PAD.encode(b)
}

/// Hex SHA-256: how codes and refresh tokens are stored.
pub fn hash(token: &str) -> String {
    use std::fmt::Write as _;
    Sha256::digest(token.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// An OAuth error answer (`{"error", "error_description"}`), never cached.
pub fn json_error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut resp = (
        status,
        axum::Json(serde_json::json!({ "error": code, "error_description": description })),
    )
        .into_response();
    no_store(&mut resp);
    resp
}

/// `Cache-Control: no-store` (token answers, RFC 6749 §5.1).
pub fn no_store(resp: &mut Response) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Metadata, token, registration and revocation: any web origin may call them.
pub fn any_origin_routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::authorization_server),
        )
        .route(
            "/.well-known/oauth-authorization-server/{*rest}",
            get(metadata::authorization_server),
        )
        .route(
            "/.well-known/openid-configuration",
            get(metadata::authorization_server),
        )
        .route(
            "/.well-known/oauth-protected-resource/metamcp/{endpoint}/{face}",
            get(metadata::protected_resource),
        )
        .route(
            "/metamcp/{endpoint}/mcp/.well-known/oauth-protected-resource",
            get(metadata::appended_mcp),
        )
        .route(
            "/metamcp/{endpoint}/sse/.well-known/oauth-protected-resource",
            get(metadata::appended_sse),
        )
        .route(
            "/metamcp/{endpoint}/api/.well-known/oauth-protected-resource",
            get(metadata::appended_api),
        )
        .route("/oauth/register", post(clients::register))
        .route("/oauth/token", post(token::token))
        .route("/oauth/revoke", post(token::revoke))
}

/// The consent page: the browser's session and CSRF token, same-origin only.
pub fn browser_routes() -> Router<Arc<Gateway>> {
    Router::new().route(
        "/oauth/authorize",
        get(authorize::authorize_page).post(authorize::decide),
    )
}
