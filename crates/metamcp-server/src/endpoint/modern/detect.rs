//! Which era a request to `/mcp` speaks: the stateless 2026-07-28 era (no session, per-request
//! `_meta` protocol context) or the session era, told apart the way rmcp 3.11's server does.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metamcp_core::jsonrpc::{Envelope, Kind};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{DEFAULT_VERSION, KEY_CLIENT_CAPABILITIES, KEY_PROTOCOL_VERSION, MODERN_VERSION};
use crate::endpoint::streamable::{PROTOCOL_HEADER, SESSION_HEADER, SUPPORTED_VERSIONS};

/// Every version this URL speaks, newest first: the stateless era, then the session era.
pub fn supported_versions() -> impl Iterator<Item = &'static str> + Clone {
    std::iter::once(MODERN_VERSION).chain(SUPPORTED_VERSIONS.iter().copied())
}

/// ISO dates compare like versions; rmcp compares them the same way.
pub(super) fn is_modern_version(version: &str) -> bool {
    version >= MODERN_VERSION
}

pub(super) fn header_version(headers: &HeaderMap) -> Option<&str> {
    headers.get(PROTOCOL_HEADER).and_then(|v| v.to_str().ok())
}

/// Whether a POST to `/mcp` is a stateless-era message (see the module comment).
pub fn is_modern_post(headers: &HeaderMap, body: &[u8]) -> bool {
    if headers.contains_key(SESSION_HEADER) {
        return false;
    }
    // why: the stateless era has no batches; a batch stays on the session path.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return false;
    }
    let Ok(env) = Envelope::parse(body) else {
        return false;
    };
    let header = header_version(headers);
    if env.kind() != Kind::Request {
        return header.is_some_and(is_modern_version);
    }
    match env.method() {
        // why: rmcp routes `initialize` to the session era whatever version it names.
        "initialize" => false,
        "server/discover" => true,
        _ => {
            let meta = RequestMeta::read(env.params);
            (meta.version.is_some() && meta.has_capabilities)
                || is_modern_version(
                    meta.version
                        .as_deref()
                        .or(header)
                        .unwrap_or(DEFAULT_VERSION),
                )
        }
    }
}

/// Whether a GET or DELETE without a session names a stateless-era version: that era has
/// neither a standalone stream nor sessions to end.
pub fn is_stateless_get_or_delete(headers: &HeaderMap) -> bool {
    !headers.contains_key(SESSION_HEADER) && header_version(headers).is_some_and(is_modern_version)
}

/// 405 for GET/DELETE in the stateless era (rmcp answers the same).
pub fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, HeaderValue::from_static("POST"))],
        "Method Not Allowed: protocol 2026-07-28 has no sessions; send requests with POST",
    )
        .into_response()
}

/// The protocol context a request carries in `_meta` (SEP-2575).
#[derive(Debug, Default)]
pub(super) struct RequestMeta {
    pub(super) version: Option<String>,
    pub(super) has_capabilities: bool,
    /// The `clientCapabilities` keys (`elicitation`, `sampling`, `roots`, …).
    pub(super) capabilities: Vec<String>,
    pub(super) progress_token: Option<Value>,
}

impl RequestMeta {
    pub(super) fn read(params: Option<&RawValue>) -> Self {
        #[derive(Deserialize)]
        struct WithMeta<'a> {
            #[serde(rename = "_meta", borrow, default)]
            meta: Option<&'a RawValue>,
        }
        let Some(meta) = params
            .and_then(|p| serde_json::from_str::<WithMeta<'_>>(p.get()).ok())
            .and_then(|p| p.meta)
            .and_then(|m| serde_json::from_str::<serde_json::Map<String, Value>>(m.get()).ok())
        else {
            return Self::default();
        };
        Self {
            version: meta
                .get(KEY_PROTOCOL_VERSION)
                .and_then(Value::as_str)
                .map(str::to_owned),
            has_capabilities: meta
                .get(KEY_CLIENT_CAPABILITIES)
                .is_some_and(Value::is_object),
            capabilities: meta
                .get(KEY_CLIENT_CAPABILITIES)
                .and_then(Value::as_object)
                .map(|c| c.keys().cloned().collect())
                .unwrap_or_default(),
            progress_token: meta
                .get("progressToken")
                .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
                .cloned(),
        }
    }

    /// The `_meta` keys 2026-07-28 requires on every request that are absent or malformed
    /// (rmcp `RequestMetaObject::missing_required_keys`).
    pub(super) fn missing_keys(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.version.is_none() {
            missing.push(KEY_PROTOCOL_VERSION);
        }
        if !self.has_capabilities {
            missing.push(KEY_CLIENT_CAPABILITIES);
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"progressToken":3,"traceparent":"00-ab"}"#;

    #[test]
    fn eras_are_told_apart_as_rmcp_does() {
        let none = headers(&[]);
        let modern_header = headers(&[(PROTOCOL_HEADER, "2026-07-28")]);
        let with_session = headers(&[(SESSION_HEADER, "abc"), (PROTOCOL_HEADER, "2026-07-28")]);
        let call =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{META}}}}}"#);
        assert!(is_modern_post(&none, call.as_bytes()));
        assert!(!is_modern_post(&with_session, call.as_bytes()));
        let discover = br#"{"jsonrpc":"2.0","id":1,"method":"server/discover"}"#;
        assert!(is_modern_post(&none, discover));
        let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2026-07-28"}}"#;
        assert!(!is_modern_post(&modern_header, init));
        let bare = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert!(!is_modern_post(&none, bare));
        assert!(is_modern_post(&modern_header, bare));
        let old = headers(&[(PROTOCOL_HEADER, "2025-06-18")]);
        assert!(!is_modern_post(&old, bare));
        let note = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert!(!is_modern_post(&none, note));
        assert!(is_modern_post(&modern_header, note));
        assert!(!is_modern_post(&modern_header, b"[]"));
    }
}
