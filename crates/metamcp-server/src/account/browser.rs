//! Browser sessions on the wire: the session cookie, the CSRF token, and reading a request's
//! signed-in user.
//!
//! The cookie carries 256 random bits (base64url); the store keeps only their SHA-256. It is
//! `HttpOnly`, `SameSite=Lax`, `Path=/`, and — whenever `APP_URL` is https — `Secure` with
//! the `__Host-` prefix (no subdomain can set or shadow it). A request carrying two session
//! cookies is treated as signed out rather than guessing which one is meant.
//!
//! CSRF: a state-changing request authenticated by the cookie must (1) not come from another
//! site — its `Origin`, when sent, is one of the gateway's allowed origins (APP_URL's, the
//! listeners' loopback ones, `METAMCP_ALLOWED_ORIGINS`) and `Sec-Fetch-Site`, when sent, is
//! not `cross-site` — and (2) carry the session's CSRF token in `X-CSRF-Token` (or a form's
//! `csrf_token` field). The token is an HMAC-SHA256 of the session's id hash under a key
//! derived from the master key, so it is the same on every replica, differs per session, and
//! is compared in constant time. SameSite alone is never relied on.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::auth::AllowedOrigins;
use crate::error::HttpError;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Where and how the session cookie is set.
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    pub name: &'static str,
    pub secure: bool,
}

impl CookiePolicy {
    /// `__Host-metamcp_session` + `Secure` when APP_URL is https, else `metamcp_session`.
    pub fn for_app_url(app_url: &url::Url) -> Self {
        if app_url.scheme() == "https" {
            CookiePolicy {
                name: "__Host-metamcp_session",
                secure: true,
            }
        } else {
            CookiePolicy {
                name: "metamcp_session",
                secure: false,
            }
        }
    }

    /// `Set-Cookie` for a new session token living `max_age_secs`.
    pub fn set(&self, token: &str, max_age_secs: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}",
            self.name
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// `Set-Cookie` that removes the session cookie.
    pub fn clear(&self) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
            self.name
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The session token the request carries: `None` without one, or with several.
    pub fn token(&self, headers: &HeaderMap) -> Option<String> {
        cookie_value(headers, self.name)
    }
}

/// The value of the one cookie named `name` (`None` if absent, empty or sent twice).
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found: Option<&str> = None;
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            let Some((k, val)) = pair.trim().split_once('=') else {
                continue;
            };
            if k.trim() == name {
                if found.is_some() {
                    return None;
                }
                found = Some(val.trim());
            }
        }
    }
    found.filter(|v| !v.is_empty()).map(str::to_owned)
}

/// A fresh session token: 256 random bits, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The CSRF token of the session whose id hash is `id_hash`.
pub fn csrf_token(key: &[u8; 32], id_hash: &str) -> String {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"metamcp csrf v1\0");
    mac.update(id_hash.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Whether `presented` is the CSRF token of that session (constant time).
pub fn csrf_matches(key: &[u8; 32], id_hash: &str, presented: &str) -> bool {
    let expected = csrf_token(key, id_hash);
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// Refuses a request another site made the browser send: an `Origin` not among the
/// gateway's, or `Sec-Fetch-Site: cross-site`.
pub fn check_same_site(headers: &HeaderMap, allowed: &AllowedOrigins) -> Result<(), HttpError> {
    let refuse = |why: String| {
        Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            why,
        ))
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin.to_str().ok().is_some_and(|o| allowed.allows(o));
        if !ok {
            return refuse(format!(
                "request from origin {:?}, which is not this gateway's (APP_URL or \
                 METAMCP_ALLOWED_ORIGINS)",
                origin.to_str().unwrap_or("?")
            ));
        }
    }
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return refuse("cross-site request refused".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cookie_parsing_refuses_ambiguity() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; metamcp_session=tok; b=2"),
        );
        assert_eq!(cookie_value(&h, "metamcp_session").as_deref(), Some("tok"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("metamcp_session=other"),
        );
        assert_eq!(cookie_value(&h, "metamcp_session"), None);
        assert_eq!(cookie_value(&HeaderMap::new(), "metamcp_session"), None);
    }

    #[test]
    fn csrf_tokens_are_per_session_and_key() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        let t = csrf_token(&k1, "s1");
        assert!(csrf_matches(&k1, "s1", &t));
        assert!(!csrf_matches(&k1, "s2", &t), "another session's token");
        assert!(!csrf_matches(&k2, "s1", &t), "another key");
        assert!(!csrf_matches(&k1, "s1", ""));
        assert!(!csrf_matches(&k1, "s1", &t[1..]));
    }

    #[test]
    fn cookies_follow_the_scheme() {
        let https = CookiePolicy::for_app_url(&url::Url::parse("https://mcp.example.com").unwrap());
        let v = https.set("abc", 60);
        let v = v.to_str().unwrap();
        assert!(v.starts_with("__Host-metamcp_session=abc; Path=/; HttpOnly; SameSite=Lax"));
        assert!(v.ends_with("; Secure"));
        let http = CookiePolicy::for_app_url(&url::Url::parse("http://localhost:12008").unwrap());
        assert!(!http.set("abc", 60).to_str().unwrap().contains("Secure"));
        assert!(http.clear().to_str().unwrap().contains("Max-Age=0"));
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 43);
    }
}
