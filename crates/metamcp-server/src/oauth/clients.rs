//! OAuth clients: who may ask for a code, and where the code may be sent.
//!
//! Two kinds, both public (PKCE, no secret): a client id that is an https URL is a Client ID
//! Metadata Document ([`super::cimd`]); any other id was issued by dynamic registration
//! (RFC 7591, `POST /oauth/register`, switchable with `OAUTH_DYNAMIC_REGISTRATION`) and is a
//! row of the store. Registration is open (MCP clients register themselves), so it is
//! bounded: at most [`MAX_CLIENTS`] registered clients (those never used are purged after a
//! day), names cut to 100 characters, at most [`MAX_REDIRECT_URIS`] redirect URIs, and the
//! gateway never fetches anything a registration names (no logos).
//!
//! Redirect URIs are https, or http on a loopback address (RFC 8252: any port matches, since
//! native clients listen on ephemeral ports), or a private-use scheme of a native app
//! (`cursor://…`); never a fragment, never `javascript:`/`data:`-like schemes. A presented
//! redirect URI must equal a registered one (loopback: up to the port).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::Gateway;

/// Most registered clients kept.
pub const MAX_CLIENTS: usize = 10_000;
/// Most redirect URIs per client.
pub const MAX_REDIRECT_URIS: usize = 10;
/// A registered client never used is purged after this long (ms).
const STALE_UNUSED_MS: i64 = 86_400_000;

/// Where a client's description came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Dynamic client registration (a store row).
    Registered,
    /// A client ID metadata document (fetched, cached).
    MetadataDocument,
}

/// A client as the authorization endpoint sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub source: Source,
}

impl Client {
    /// Whether `presented` may receive this client's codes.
    pub fn allows_redirect(&self, presented: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|r| redirect_matches(r, presented))
    }
}

/// Why a client id is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("unknown client id {0:?}: register it first (POST /oauth/register)")]
    Unknown(String),
    #[error(transparent)]
    Cimd(#[from] super::cimd::CimdError),
    #[error("the store failed: {0}")]
    Store(#[from] metamcp_store::StoreError),
}

/// The client `client_id` names, registered or described by a metadata document.
pub async fn resolve(gw: &Gateway, client_id: &str) -> Result<Client, ClientError> {
    if client_id.starts_with("https://") {
        let settings = gw.config.oauth();
        gw.oauth.cimd.set_allow_private(settings.cimd_allow_private);
        let timeout = std::time::Duration::from_millis(settings.cimd_timeout_ms);
        return Ok(gw.oauth.cimd.client(client_id, timeout).await?);
    }
    if client_id.len() > 200 {
        return Err(ClientError::Unknown(client_id.chars().take(40).collect()));
    }
    let c = gw
        .rt
        .store
        .get_oauth_client(client_id)
        .await?
        .ok_or_else(|| ClientError::Unknown(client_id.to_owned()))?;
    Ok(Client {
        client_id: c.client_id,
        name: c.client_name,
        redirect_uris: c.redirect_uris,
        source: Source::Registered,
    })
}

fn is_loopback_host(h: &str) -> bool {
    h == "127.0.0.1" || h == "localhost" || h == "[::1]"
}

/// Whether `uri` may be registered as a redirect URI (the message says why not).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let u = url::Url::parse(uri).map_err(|e| format!("redirect URI {uri:?}: {e}"))?;
    if u.fragment().is_some() {
        return Err(format!("redirect URI {uri:?} has a fragment"));
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" if u.host_str().is_some_and(is_loopback_host) => Ok(()),
        "http" => Err(format!(
            "redirect URI {uri:?}: http is allowed only on loopback (127.0.0.1, [::1], localhost)"
        )),
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" | "ws" | "wss" | "ftp" => {
            Err(format!("redirect URI {uri:?}: scheme not allowed"))
        }
        _ if u.cannot_be_a_base() && !uri.contains(":/") => Err(format!(
            "redirect URI {uri:?}: a private-use scheme needs a path (scheme:/path)"
        )),
        _ => Ok(()),
    }
}

/// Whether the presented redirect URI matches the registered one: equal, or both http on
/// the same loopback host with the same path and query, whatever the port (RFC 8252 §7.3).
pub fn redirect_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(r), Ok(p)) = (url::Url::parse(registered), url::Url::parse(presented)) else {
        return false;
    };
    r.scheme() == "http"
        && p.scheme() == "http"
        && r.host_str().is_some_and(is_loopback_host)
        && r.host_str() == p.host_str()
        && r.path() == p.path()
        && r.query() == p.query()
        && p.fragment().is_none()
        && p.username().is_empty()
        && p.password().is_none()
}

/// An RFC 7591 registration request (fields the gateway reads; others are ignored).
#[derive(Debug, Deserialize)]
pub struct Registration {
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
}

fn reg_error(code: &str, description: impl Into<String>) -> Response {
    super::json_error(StatusCode::BAD_REQUEST, code, &description.into())
}

/// `POST /oauth/register`.
pub async fn register(
    State(gw): State<Arc<Gateway>>,
    crate::ratelimit::PeerAddr(peer): crate::ratelimit::PeerAddr,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !gw.config.oauth().dynamic_registration {
        return super::json_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "dynamic client registration is switched off (OAUTH_DYNAMIC_REGISTRATION); \
             use a client ID metadata document URL as client_id",
        );
    }
    let reg: Registration = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return reg_error(
                "invalid_client_metadata",
                format!("not a registration: {e}"),
            );
        }
    };
    if reg.redirect_uris.is_empty() || reg.redirect_uris.len() > MAX_REDIRECT_URIS {
        return reg_error(
            "invalid_redirect_uri",
            format!("give between 1 and {MAX_REDIRECT_URIS} redirect_uris"),
        );
    }
    for uri in &reg.redirect_uris {
        if uri.len() > 2000 {
            return reg_error("invalid_redirect_uri", "a redirect URI is too long");
        }
        if let Err(e) = check_redirect_uri(uri) {
            return reg_error("invalid_redirect_uri", e);
        }
    }
    // Public clients only: a client asking for a secret method is told what it gets
    // (RFC 7591 lets the server replace requested values), as most MCP clients accept it.
    let _ = reg.token_endpoint_auth_method;
    if let Some(g) = &reg.grant_types
        && g.iter()
            .any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return reg_error(
            "invalid_client_metadata",
            "only the authorization_code and refresh_token grant types are supported",
        );
    }
    if let Some(r) = &reg.response_types
        && r.iter().any(|r| r != "code")
    {
        return reg_error(
            "invalid_client_metadata",
            "only the code response type is supported",
        );
    }
    let now = crate::audit::now_ms();
    let client_id = format!("mcp_client_{}", super::random_token());
    let name = reg.client_name.map(|n| {
        n.chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect::<String>()
    });
    let ip = gw.limiter.client_ip(peer, &headers);
    let rec = metamcp_store::OAuthClient {
        client_id: client_id.clone(),
        client_name: name.clone(),
        redirect_uris: reg.redirect_uris.clone(),
        created_at: now,
        last_used_at: None,
        created_from: ip.map(|i| i.to_string()),
    };
    match gw
        .rt
        .store
        .insert_oauth_client(&rec, MAX_CLIENTS, now - STALE_UNUSED_MS)
        .await
    {
        Ok(()) => {}
        Err(metamcp_store::StoreError::Invalid(m)) => {
            return super::json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                &m,
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "storing a client registration failed");
            return super::json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the registration could not be stored",
            );
        }
    }
    tracing::info!(client_id, client = ?ip, "OAuth client registered");
    let mut body: Value = json!({
        "client_id": client_id,
        "client_id_issued_at": now / 1000,
        "redirect_uris": reg.redirect_uris,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": super::SCOPE,
    });
    if let Some(n) = name {
        body["client_name"] = json!(n);
    }
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    super::no_store(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_allowed_at_registration() {
        for ok in [
            "https://app.example/cb",
            "http://127.0.0.1/callback",
            "http://localhost:33418/callback",
            "http://[::1]:8080/cb",
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "relative/path",
            "mailto:x@example.com",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_redirects_match_on_any_port_only() {
        assert!(redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/cb"
        ));
        assert!(redirect_matches(
            "http://localhost:1/cb",
            "http://localhost:2/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/other"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://localhost:5555/cb"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://a.example:444/cb"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://a.example/cb?x=1"
        ));
        assert!(redirect_matches(
            "https://a.example/cb",
            "https://a.example/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://u@127.0.0.1:5/cb"
        ));
    }
}
