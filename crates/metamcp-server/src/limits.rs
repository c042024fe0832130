//! Bounds on everything a client (or an upstream) can make the gateway hold: sessions,
//! streams, parked calls, subscriptions, message sizes and nesting. One struct, one place
//! for the defaults; the binary fills it from `METAMCP_*` variables ([`Limits::from_env`]),
//! and README's "Limits" table lists them.
//!
//! How a bound is enforced: a *per-client* bound (the client is the API key, or the client
//! IP on a `--no-auth` endpoint — behind `METAMCP_TRUSTED_PROXIES`, the forwarded IP) refuses
//! only that client's new work; a *global* bound refuses new work only, never what runs.
//! Every refusal is a clear error: a JSON-RPC error carrying the request's id where the
//! protocol expects one, else an HTTP status with a JSON body.

use axum::http::StatusCode;
use serde_json::value::RawValue;

use crate::error::HttpError;

/// JSON-RPC code of a request refused because a bound was hit (the implementation-defined
/// server-error range, as for rate limits; `data.limit` names the variable that sets it).
pub const LIMIT_EXCEEDED: i64 = -32000;

/// A bound was hit: which one (its variable), its value, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at most {max}; {variable})")]
pub struct Exceeded {
    pub variable: &'static str,
    pub max: usize,
    pub message: String,
}

impl Exceeded {
    pub fn new(variable: &'static str, max: usize, message: impl Into<String>) -> Self {
        Self {
            variable,
            max,
            message: message.into(),
        }
    }

    /// The JSON-RPC error answering request `id`.
    pub fn rpc_error(&self, id: Option<&RawValue>) -> String {
        metamcp_core::jsonrpc::error(
            id,
            LIMIT_EXCEEDED,
            &self.to_string(),
            Some(&serde_json::json!({ "limit": self.variable, "max": self.max })),
        )
    }

    /// The HTTP refusal (429) where there is no JSON-RPC request to answer.
    pub fn http_error(&self) -> HttpError {
        HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "limit_exceeded",
            self.to_string(),
        )
    }
}

/// Every bound, with its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open client sessions per client (`METAMCP_MAX_SESSIONS_PER_CLIENT`); a
    /// `subscriptions/listen` stream counts as one.
    pub sessions_per_client: usize,
    /// Open client sessions per endpoint (`METAMCP_MAX_SESSIONS_PER_ENDPOINT`).
    pub sessions_per_endpoint: usize,
    /// Server-to-client SSE streams one session may hold at once: its GET stream and the
    /// POST answers streamed because they asked for progress
    /// (`METAMCP_MAX_STREAMS_PER_SESSION`).
    pub streams_per_session: usize,
    /// Stateless calls parked while their upstream waits for the client's input, per
    /// client (`METAMCP_MAX_PARKED_PER_CLIENT`) and in all (`METAMCP_MAX_PARKED`).
    pub parked_per_client: usize,
    pub parked_total: usize,
    /// Resource URIs one session (or one `subscriptions/listen` stream) may subscribe to
    /// (`METAMCP_MAX_SUBSCRIPTIONS_PER_SESSION`).
    pub subscriptions_per_session: usize,
    /// Deepest JSON nesting of a client message the gateway accepts and forwards
    /// (`METAMCP_MAX_JSON_DEPTH`).
    pub json_depth: usize,
    /// Longest message an upstream may send: one stdout line of a stdio server, one JSON
    /// body or SSE event of an HTTP server (`METAMCP_MAX_UPSTREAM_MESSAGE_BYTES`). A longer
    /// one fails only the request it answers.
    pub upstream_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sessions_per_client: 2_000,
            sessions_per_endpoint: 10_000,
            streams_per_session: 32,
            parked_per_client: 64,
            parked_total: 10_000,
            subscriptions_per_session: 1_000,
            json_depth: 128,
            upstream_message_bytes: 16 * 1024 * 1024,
        }
    }
}

/// A bound variable that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value:?} is not {expected}")]
pub struct BadLimit {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl Limits {
    /// The defaults, overridden by the variables `lookup` finds; every malformed variable
    /// is reported, not only the first.
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, Vec<BadLimit>> {
        let mut l = Self::default();
        let mut bad = Vec::new();
        let mut count = |name: &'static str, slot: &mut usize| {
            let Some(value) = lookup(name).filter(|v| !v.trim().is_empty()) else {
                return;
            };
            match value.trim().replace('_', "").parse::<usize>() {
                Ok(n) if n > 0 => *slot = n,
                _ => bad.push(BadLimit {
                    name,
                    value,
                    expected: "a positive whole number",
                }),
            }
        };
        count(
            "METAMCP_MAX_SESSIONS_PER_CLIENT",
            &mut l.sessions_per_client,
        );
        count(
            "METAMCP_MAX_SESSIONS_PER_ENDPOINT",
            &mut l.sessions_per_endpoint,
        );
        count(
            "METAMCP_MAX_STREAMS_PER_SESSION",
            &mut l.streams_per_session,
        );
        count("METAMCP_MAX_PARKED_PER_CLIENT", &mut l.parked_per_client);
        count("METAMCP_MAX_PARKED", &mut l.parked_total);
        count(
            "METAMCP_MAX_SUBSCRIPTIONS_PER_SESSION",
            &mut l.subscriptions_per_session,
        );
        count("METAMCP_MAX_JSON_DEPTH", &mut l.json_depth);
        count(
            "METAMCP_MAX_UPSTREAM_MESSAGE_BYTES",
            &mut l.upstream_message_bytes,
        );
        if bad.is_empty() { Ok(l) } else { Err(bad) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_overridden_and_every_error_reported() {
        let env = |name: &str| match name {
            "METAMCP_MAX_SESSIONS_PER_CLIENT" => Some("5".to_owned()),
            "METAMCP_MAX_JSON_DEPTH" => Some("deep".to_owned()),
            "METAMCP_MAX_PARKED" => Some("0".to_owned()),
            "METAMCP_MAX_UPSTREAM_MESSAGE_BYTES" => Some("33_554_432".to_owned()),
            _ => None,
        };
        let errors = Limits::from_env(&env).unwrap_err();
        let names: Vec<&str> = errors.iter().map(|e| e.name).collect();
        assert_eq!(names, ["METAMCP_MAX_PARKED", "METAMCP_MAX_JSON_DEPTH"]);
        let ok = |name: &str| match name {
            "METAMCP_MAX_SESSIONS_PER_CLIENT" => Some("5".to_owned()),
            "METAMCP_MAX_UPSTREAM_MESSAGE_BYTES" => Some("33_554_432".to_owned()),
            _ => None,
        };
        let l = Limits::from_env(&ok).unwrap();
        assert_eq!(l.sessions_per_client, 5);
        assert_eq!(l.upstream_message_bytes, 32 * 1024 * 1024);
        assert_eq!(l.json_depth, Limits::default().json_depth);
    }
}
