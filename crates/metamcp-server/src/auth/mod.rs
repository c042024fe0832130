//! Who may use an endpoint, and from which Host/Origin.
//!
//! API keys arrive as `X-API-Key`, `Authorization: Bearer`, or — only where the endpoint
//! enables query auth — `?api_key=` / `?apikey=`. Only their SHA-256 is compared, against the
//! active keys of the current snapshot (no database round trip per request).
//!
//! Ownership (MetaMCP's rule, owners carried by the snapshot): a public key opens public
//! endpoints; a user's key opens that user's private endpoints and the public ones; a key of
//! a disabled user opens nothing, and a private endpoint of a disabled user answers 403 to
//! everyone. An endpoint without API-key auth stays open to anyone (unless its owner is
//! disabled). `Host` is
//! checked against loopback, `APP_URL`'s host and configured extras, and `Origin` exactly
//! against [`AllowedOrigins`], as the MCP spec asks of Streamable HTTP servers
//! (DNS-rebinding protection); `endpoint::guard` applies both to every request.
//! The dashboard's inspector calls endpoints with short-lived tokens (`token`), never with
//! its cookie.

pub mod token;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use axum::http::{HeaderMap, StatusCode, header};

use crate::error::HttpError;
use crate::snapshot::{EndpointCfg, KeyInfo, Snapshot};

/// How a request was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The endpoint has API-key auth turned off.
    Anonymous,
    /// An active API key, by id, with its name and its owner (a user id; `None`: public).
    Key {
        id: String,
        name: String,
        owner: Option<String>,
    },
    /// A signed-in user through the dashboard's inspector (an inspector token).
    User {
        id: String,
        email: String,
        /// `user:<id>`: what the user's sessions are bound to (never equal to a key's id).
        binding: String,
    },
}

impl Principal {
    /// The user acting: a signed-in user, or the owner of an API key.
    pub fn user_id(&self) -> Option<std::sync::Arc<str>> {
        match self {
            Principal::Anonymous => None,
            Principal::Key { owner, .. } => owner.as_deref().map(Into::into),
            Principal::User { id, .. } => Some(id.as_str().into()),
        }
    }

    /// A stable identity for binding sessions.
    pub fn binding(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::Key { id, .. } => Some(id),
            Principal::User { binding, .. } => Some(binding),
        }
    }
}

/// Who a client is, for its own rate limit and its share of every per-client bound: its
/// API key, or its IP on an endpoint without key auth.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientId {
    /// An API key, by id.
    Key(String),
    /// A user of the dashboard's inspector, by id.
    User(String),
    /// The client's IP (unspecified when the peer address is unknown).
    Ip(std::net::IpAddr),
}

impl ClientId {
    /// The client behind `principal`, calling from `ip` (unspecified when unknown).
    pub fn of(principal: &Principal, ip: Option<std::net::IpAddr>) -> Self {
        match principal {
            Principal::Key { id, .. } => ClientId::Key(id.clone()),
            Principal::User { id, .. } => ClientId::User(id.clone()),
            Principal::Anonymous => {
                ClientId::Ip(ip.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)))
            }
        }
    }
}

/// Checks the request's key (or inspector token, signed with `tokens`, or OAuth access
/// token, checked by `oauth`) against the endpoint's rules.
pub fn authenticate(
    snap: &Snapshot,
    tokens: &token::TokenKey,
    oauth: &crate::oauth::OAuth,
    ep: &EndpointCfg,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Principal, HttpError> {
    if ep.owner_disabled {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "This endpoint's owner is disabled",
        ));
    }
    // An inspector token counts wherever it is presented in a header, also on an endpoint
    // without key auth: the calls are then the user's, not anonymous ones.
    if let Some(t) = header_credential(headers)
        && t.starts_with(token::PREFIX)
    {
        return inspector_principal(snap, tokens, ep, t);
    }
    if ep.admin_inspector_only {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "A single server is open only to the dashboard's inspector, for administrators",
        ));
    }
    if let Some(t) = header_credential(headers)
        && t.starts_with(crate::oauth::access::PREFIX)
    {
        if !ep.oauth {
            return Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "This endpoint does not take OAuth access tokens",
            ));
        }
        return oauth_principal(snap, oauth, ep, t);
    }
    if !ep.api_key_auth && !ep.oauth {
        return Ok(Principal::Anonymous);
    }
    if !ep.api_key_auth {
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "OAuth access token required: discover how to get one from this answer's \
             WWW-Authenticate header (resource_metadata)",
        ));
    }
    let Some(key) = presented_key(headers, query, ep.query_auth) else {
        let how = if ep.query_auth {
            "send it as Authorization: Bearer sk_mt_…, as X-API-Key, or as ?api_key="
        } else {
            "send it as Authorization: Bearer sk_mt_… or as X-API-Key"
        };
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("API key required: {how}"),
        ));
    };
    let hash = metamcp_store::hash_api_key(&key);
    match snap.keys.get(&hash) {
        Some(k) if k.owner_disabled => Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "This API key's owner is disabled",
        )),
        Some(k) if ep.owner.is_some() && k.owner != ep.owner => Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "This endpoint is private: only its owner's API keys open it",
        )),
        Some(k) if k.expired_at(crate::audit::now_ms()) => Err(expired(k)),
        Some(KeyInfo {
            id, name, owner, ..
        }) => Ok(Principal::Key {
            id: id.clone(),
            name: name.clone(),
            owner: owner.clone(),
        }),
        None => Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid API key",
        )),
    }
}

/// The user an inspector token names, if it was minted for `ep` and the user may still use
/// it (exists, enabled, and `ep` is public or theirs).
fn inspector_principal(
    snap: &Snapshot,
    tokens: &token::TokenKey,
    ep: &EndpointCfg,
    presented: &str,
) -> Result<Principal, HttpError> {
    let unauthorized = |msg: String| HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg);
    let claims = tokens
        .check(presented, crate::audit::now_ms())
        .map_err(|e| unauthorized(e.to_string()))?;
    if claims.endpoint_id != ep.id {
        return Err(unauthorized(
            "this inspector token was issued for another endpoint".into(),
        ));
    }
    if ep.admin_inspector_only && snap.users.get(&claims.user_id).is_some_and(|u| !u.admin) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Only administrators may inspect a single server",
        ));
    }
    user_principal(snap, ep, claims.user_id, "inspector token")
}

/// The user an OAuth access token names, if it was issued for `ep`, its grant was not
/// revoked here, and the user may still use `ep` (exists, enabled, public or theirs).
fn oauth_principal(
    snap: &Snapshot,
    oauth: &crate::oauth::OAuth,
    ep: &EndpointCfg,
    presented: &str,
) -> Result<Principal, HttpError> {
    let unauthorized = |msg: String| HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg);
    let claims = oauth
        .access
        .check(presented, crate::audit::now_ms())
        .map_err(|e| unauthorized(e.to_string()))?;
    if claims.endpoint_id != ep.id {
        return Err(unauthorized(
            "this access token was issued for another endpoint (RFC 8707 resource)".into(),
        ));
    }
    if oauth.revoked.contains(&claims.grant_id) {
        return Err(unauthorized("this access token's grant was revoked".into()));
    }
    user_principal(snap, ep, claims.user_id, "access token")
}

/// The user a token (`what`: inspector token, access token) names, if they may still use
/// `ep`: they exist (else 401), are enabled, and `ep` is public or theirs (else 403).
fn user_principal(
    snap: &Snapshot,
    ep: &EndpointCfg,
    user_id: String,
    what: &str,
) -> Result<Principal, HttpError> {
    let Some(user) = snap.users.get(&user_id) else {
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("the user this {what} was issued to no longer exists"),
        ));
    };
    if user.disabled {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("The user this {what} was issued to is disabled"),
        ));
    }
    if ep.owner.as_ref().is_some_and(|o| *o != user_id) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "This endpoint is private: only its owner can use it",
        ));
    }
    Ok(Principal::User {
        binding: format!("user:{user_id}"),
        email: user.email.clone(),
        id: user_id,
    })
}

/// Checks a request to the admin API: an active key (header only) that is an admin key,
/// returned so the operation knows who acts. No key or an unknown one → 401; a key that is
/// not an admin key → 403.
pub fn authenticate_admin(snap: &Snapshot, headers: &HeaderMap) -> Result<KeyInfo, HttpError> {
    let Some(key) = presented_key(headers, None, false) else {
        return Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Admin API key required: send it as Authorization: Bearer sk_mt_… or as X-API-Key",
        ));
    };
    match snap.keys.get(&metamcp_store::hash_api_key(&key)) {
        Some(k) if k.expired_at(crate::audit::now_ms()) => Err(expired(k)),
        Some(k) if k.admin => Ok(k.clone()),
        Some(_) => Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "This API key is not an admin key (create one with `metamcp key create NAME --admin`)",
        )),
        None => Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid API key",
        )),
    }
}

/// The refusal of an expired key: 401 like a revoked one, saying it expired and when.
fn expired(k: &KeyInfo) -> HttpError {
    let when = k
        .expires_at
        .map(crate::admin::logs::utc_timestamp)
        .unwrap_or_default();
    HttpError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!("This API key expired at {when}"),
    )
}

/// The credential in `X-API-Key` or `Authorization: Bearer` (in that order), borrowed.
fn header_credential(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() {
            return Some(v);
        }
    }
    let v = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?
        .trim();
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn presented_key(headers: &HeaderMap, query: Option<&str>, query_auth: bool) -> Option<String> {
    if let Some(v) = header_credential(headers) {
        return Some(v.to_owned());
    }
    if query_auth && let Some(q) = query {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            if (k == "api_key" || k == "apikey") && !v.is_empty() {
                return Some(v.into_owned());
            }
        }
    }
    None
}

/// The host part of a `Host` header value or URL authority, lower-cased, without port.
fn host_only(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    if a.starts_with('[') {
        // [::1]:port
        return match a.find(']') {
            Some(end) => a[..=end].to_owned(),
            None => a,
        };
    }
    match a.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => {
            h.to_owned()
        }
        _ => a,
    }
}

/// Refuses a request whose `Host` names a host we do not serve (DNS-rebinding protection):
/// the host part (any port) must be loopback, `APP_URL`'s host or a configured extra.
pub fn check_host(allowed: &[String], headers: &HeaderMap) -> Result<(), HttpError> {
    match headers.get(header::HOST) {
        None => Ok(()),
        Some(host) => check_authority(allowed, host.to_str().unwrap_or_default()),
    }
}

/// [`check_host`] of one `host[:port]`.
pub fn check_authority(allowed: &[String], authority: &str) -> Result<(), HttpError> {
    let host = host_only(authority);
    if allowed.contains(&host) {
        return Ok(());
    }
    Err(HttpError::new(
        StatusCode::FORBIDDEN,
        "forbidden_host",
        format!(
            "Host {host:?} is not allowed; set APP_URL (or METAMCP_ALLOWED_HOSTS) to the address clients use"
        ),
    ))
}

/// The web origins a browser page may call the gateway from, compared exactly — scheme,
/// host and port: loopback names on the ports the gateway listens on, `APP_URL`'s origin,
/// and `METAMCP_ALLOWED_ORIGINS`. A page on the same host but another port is another
/// origin (another program) and is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(BTreeSet<String>);

/// A `METAMCP_ALLOWED_ORIGINS` entry that is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a web origin (scheme://host[:port], e.g. https://app.example.com)")]
pub struct BadOrigin(pub String);

impl AllowedOrigins {
    /// `app_url`'s origin, the loopback origins of every address in `listening` (or that
    /// address itself when it is neither loopback nor unspecified), and `extra`.
    pub fn new(app_url: &url::Url, listening: &[SocketAddr], extra: &[String]) -> Self {
        let mut set = BTreeSet::new();
        if let url::Origin::Tuple(..) = app_url.origin() {
            set.insert(app_url.origin().ascii_serialization());
        }
        for addr in listening {
            let port = addr.port();
            if addr.ip().is_loopback() || addr.ip().is_unspecified() {
                for host in ["localhost", "127.0.0.1", "[::1]"] {
                    set.insert(format!("http://{host}:{port}"));
                }
            } else {
                set.insert(format!("http://{addr}"));
            }
        }
        set.extend(extra.iter().cloned());
        Self(set)
    }

    /// Whether the `Origin` header value `origin` is one of them.
    pub fn allows(&self, origin: &str) -> bool {
        parse_origin(origin).is_ok_and(|o| self.0.contains(&o))
    }

    /// `METAMCP_ALLOWED_ORIGINS`: comma-separated origins, each normalised; every malformed
    /// entry is an error.
    pub fn parse_list(list: &str) -> Result<Vec<String>, BadOrigin> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_origin)
            .collect()
    }
}

/// An origin as browsers serialise it (`https://app.example.com`, `http://localhost:6274`;
/// lower-case, the scheme's default port left out), or an error for anything else: a path,
/// query, credentials, `null`, a scheme other than http/https.
pub fn parse_origin(s: &str) -> Result<String, BadOrigin> {
    let bad = || BadOrigin(s.to_owned());
    let u = url::Url::parse(s.trim()).map_err(|_| bad())?;
    let bare = matches!(u.path(), "" | "/")
        && u.query().is_none()
        && u.fragment().is_none()
        && u.username().is_empty()
        && u.password().is_none();
    if !bare || !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(bad());
    }
    Ok(u.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn allowed() -> Vec<String> {
        ["localhost", "127.0.0.1", "[::1]", "::1", "mcp.example.com"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn hosts() {
        let ok = |host: &str| check_host(&allowed(), &h(&[("host", host)])).is_ok();
        assert!(ok("localhost:12008"));
        assert!(ok("127.0.0.1:5"));
        assert!(ok("[::1]:80"));
        assert!(ok("MCP.example.com"));
        assert!(!ok("evil.example.com"));
        assert!(!ok("localhost.evil.example.com"));
        assert!(check_host(&allowed(), &HeaderMap::new()).is_ok());
    }

    #[test]
    fn origins_match_exactly() {
        let app = url::Url::parse("https://mcp.example.com/base").unwrap();
        let listening: Vec<SocketAddr> = vec![
            "127.0.0.1:12008".parse().unwrap(),
            "10.0.0.5:9000".parse().unwrap(),
        ];
        let extra =
            AllowedOrigins::parse_list(" http://localhost:6274 ,HTTPS://App.Example.com:443")
                .unwrap();
        assert_eq!(extra, ["http://localhost:6274", "https://app.example.com"]);
        let o = AllowedOrigins::new(&app, &listening, &extra);
        for yes in [
            "http://localhost:12008",
            "http://127.0.0.1:12008",
            "http://[::1]:12008",
            "https://mcp.example.com",
            "https://mcp.example.com:443",
            "http://10.0.0.5:9000",
            "http://localhost:6274",
            "https://app.example.com",
        ] {
            assert!(o.allows(yes), "{yes}");
        }
        for no in [
            "http://localhost:6666",
            "http://localhost",
            "https://localhost:12008",
            "http://mcp.example.com",
            "https://mcp.example.com:8443",
            "http://10.0.0.5:9001",
            "http://127.0.0.1:9000",
            "null",
            "",
            "http://localhost:12008/path",
        ] {
            assert!(!o.allows(no), "{no}");
        }
        for bad in [
            "localhost:6274",
            "http://a.example/x",
            "ftp://a.example",
            "null",
            "http://u@a.example",
        ] {
            assert!(AllowedOrigins::parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_sources() {
        let hd = h(&[("authorization", "Bearer sk_mt_a")]);
        assert_eq!(presented_key(&hd, None, false).as_deref(), Some("sk_mt_a"));
        let hd = h(&[
            ("x-api-key", "sk_mt_b"),
            ("authorization", "Bearer sk_mt_a"),
        ]);
        assert_eq!(presented_key(&hd, None, false).as_deref(), Some("sk_mt_b"));
        assert_eq!(
            presented_key(&HeaderMap::new(), Some("api_key=sk_mt_c"), false),
            None
        );
        assert_eq!(
            presented_key(&HeaderMap::new(), Some("x=1&apikey=sk_mt_c"), true).as_deref(),
            Some("sk_mt_c")
        );
        assert_eq!(
            presented_key(&h(&[("authorization", "Basic abc")]), None, false),
            None
        );
    }
}
