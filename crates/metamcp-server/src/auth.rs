//! Who may use an endpoint, and from which Host/Origin.
//!
//! API keys arrive as `X-API-Key`, `Authorization: Bearer`, or — only where the endpoint
//! enables query auth — `?api_key=` / `?apikey=`. Only their SHA-256 is compared, against the
//! active keys of the current snapshot (no database round trip per request). Host and Origin
//! are checked against loopback, `APP_URL`'s host and configured extras, as the MCP spec asks
//! of Streamable HTTP servers (DNS-rebinding protection).

use axum::http::{HeaderMap, StatusCode, header};

use crate::error::HttpError;
use crate::snapshot::{EndpointCfg, KeyInfo, Snapshot};

/// How a request was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The endpoint has API-key auth turned off.
    Anonymous,
    /// An active API key, by id.
    Key { id: String, name: String },
}

impl Principal {
    /// A stable identity for binding sessions.
    pub fn binding(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::Key { id, .. } => Some(id),
        }
    }
}

/// Who a client is, for its own rate limit and its share of every per-client bound: its
/// API key, or its IP on an endpoint without key auth.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientId {
    /// An API key, by id.
    Key(String),
    /// The client's IP (unspecified when the peer address is unknown).
    Ip(std::net::IpAddr),
}

impl ClientId {
    /// The client behind `principal`, calling from `ip` (unspecified when unknown).
    pub fn of(principal: &Principal, ip: Option<std::net::IpAddr>) -> Self {
        match principal {
            Principal::Key { id, .. } => ClientId::Key(id.clone()),
            Principal::Anonymous => {
                ClientId::Ip(ip.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)))
            }
        }
    }
}

/// Checks the request's key against the endpoint's rules.
pub fn authenticate(
    snap: &Snapshot,
    ep: &EndpointCfg,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Principal, HttpError> {
    if !ep.api_key_auth {
        return Ok(Principal::Anonymous);
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
        Some(KeyInfo { id, name, .. }) => Ok(Principal::Key {
            id: id.clone(),
            name: name.clone(),
        }),
        None => Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid API key",
        )),
    }
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

fn presented_key(headers: &HeaderMap, query: Option<&str>, query_auth: bool) -> Option<String> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() {
            return Some(v.to_owned());
        }
    }
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some((scheme, token)) = v.split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
            && !token.trim().is_empty()
        {
            return Some(token.trim().to_owned());
        }
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

/// Refuses requests whose Host or Origin names a host we do not serve.
pub fn check_host_origin(
    allowed: &[String],
    headers: &HeaderMap,
) -> Result<Option<String>, HttpError> {
    if let Some(host) = headers.get(header::HOST) {
        let host = host.to_str().map(host_only).unwrap_or_default();
        if !allowed.contains(&host) {
            return Err(HttpError::new(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                format!(
                    "Host {host:?} is not allowed; set APP_URL (or METAMCP_ALLOWED_HOSTS) to the address clients use"
                ),
            ));
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(None);
    };
    let origin = origin.to_str().unwrap_or_default().to_owned();
    let host = url::Url::parse(&origin)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.to_ascii_lowercase()));
    match host {
        Some(h)
            if allowed
                .iter()
                .any(|a| *a == h || a.trim_matches(['[', ']']) == h.trim_matches(['[', ']'])) =>
        {
            Ok(Some(origin))
        }
        _ => Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            format!("Origin {origin:?} is not allowed"),
        )),
    }
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
        assert!(check_host_origin(&allowed(), &h(&[("host", "localhost:12008")])).is_ok());
        assert!(check_host_origin(&allowed(), &h(&[("host", "127.0.0.1:5")])).is_ok());
        assert!(check_host_origin(&allowed(), &h(&[("host", "[::1]:80")])).is_ok());
        assert!(check_host_origin(&allowed(), &h(&[("host", "MCP.example.com")])).is_ok());
        assert!(check_host_origin(&allowed(), &h(&[("host", "evil.example.com")])).is_err());
        assert!(
            check_host_origin(
                &allowed(),
                &h(&[("host", "localhost"), ("origin", "http://evil.com")])
            )
            .is_err()
        );
        assert!(
            check_host_origin(
                &allowed(),
                &h(&[("host", "localhost"), ("origin", "http://localhost:6274")])
            )
            .is_ok()
        );
        assert!(
            check_host_origin(&allowed(), &h(&[("host", "localhost"), ("origin", "null")]))
                .is_err()
        );
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
