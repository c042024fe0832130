//! Bounds on everything a client (or an upstream) can make the gateway hold: connections
//! and how long they may stay silent, request bodies, sessions, streams, parked calls,
//! subscriptions, message sizes and nesting. One struct, one place for the defaults; the
//! binary fills it from `METAMCP_*` variables ([`Limits::from_env`]), and README's "Limits"
//! table lists them.
//!
//! How a bound is enforced: a *per-client* bound (the client is the API key, or the client
//! IP on a `--no-auth` endpoint — behind `METAMCP_TRUSTED_PROXIES`, the forwarded IP) refuses
//! only that client's new work; a *global* bound refuses new work only, never what runs.
//! Every refusal is a clear error: a JSON-RPC error carrying the request's id where the
//! protocol expects one, else an HTTP status with a JSON body.

use std::time::Duration;

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

    // The HTTP edge (`crate::listener`, `crate::endpoint::guard`): what one TCP connection
    // and one request may hold.
    /// Open client connections per listener (`METAMCP_MAX_CONNECTIONS`); beyond it a new
    /// connection is closed at once.
    pub max_connections: usize,
    /// Open client connections per client IP and listener (`METAMCP_MAX_CONNECTIONS_PER_IP`;
    /// IPv6 clients count per /64). Peers in `METAMCP_TRUSTED_PROXIES` are bounded only by
    /// `max_connections`: every client behind them shares their address.
    pub max_connections_per_ip: usize,
    /// Longest wait for a complete request head, from the connection's start or the first
    /// byte of a later request (`METAMCP_HEADER_READ_TIMEOUT_MS`, at most 30 s).
    pub header_read_timeout: Duration,
    /// Longest a request body may take to arrive in full (`METAMCP_BODY_READ_TIMEOUT_MS`);
    /// then 408 and the connection closes.
    pub body_read_timeout: Duration,
    /// Longest a keep-alive connection may sit between requests (`METAMCP_IDLE_TIMEOUT_MS`).
    /// A connection with a request in flight (a slow call, an open SSE stream) is never idle.
    pub idle_timeout: Duration,
    /// Largest request body (`METAMCP_MAX_BODY_BYTES`); a larger one is answered 413. Never
    /// more than `upstream_message_bytes`: what the gateway accepts it must be able to relay.
    pub max_body_bytes: usize,
    /// Interval of the keep-alive comment on every SSE stream the gateway holds open
    /// (`METAMCP_SSE_KEEPALIVE_MS`), so proxies that drop silent connections keep them.
    pub sse_keep_alive: Duration,
}

/// Largest accepted `METAMCP_HEADER_READ_TIMEOUT_MS`.
pub const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
            max_connections: 10_000,
            max_connections_per_ip: 256,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_body_bytes: 4 * 1024 * 1024,
            sse_keep_alive: Duration::from_secs(15),
        }
    }
}

/// A bound variable that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value:?} is not {expected}")]
pub struct BadLimit {
    pub name: &'static str,
    pub value: String,
    pub expected: String,
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
                    expected: "a positive whole number".to_owned(),
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
        count("METAMCP_MAX_CONNECTIONS", &mut l.max_connections);
        count(
            "METAMCP_MAX_CONNECTIONS_PER_IP",
            &mut l.max_connections_per_ip,
        );
        count("METAMCP_MAX_BODY_BYTES", &mut l.max_body_bytes);
        let mut millis = |name: &'static str, slot: &mut Duration, max: Option<Duration>| {
            let Some(value) = lookup(name).filter(|v| !v.trim().is_empty()) else {
                return;
            };
            let ms = value.trim().replace('_', "").parse::<u64>().ok();
            match ms.map(Duration::from_millis) {
                Some(d) if !d.is_zero() && max.is_none_or(|m| d <= m) => *slot = d,
                _ => bad.push(BadLimit {
                    name,
                    value,
                    expected: match max {
                        Some(m) => {
                            format!("a whole number of milliseconds from 1 to {}", m.as_millis())
                        }
                        None => "a positive whole number of milliseconds".to_owned(),
                    },
                }),
            }
        };
        millis(
            "METAMCP_HEADER_READ_TIMEOUT_MS",
            &mut l.header_read_timeout,
            Some(MAX_HEADER_READ_TIMEOUT),
        );
        millis(
            "METAMCP_BODY_READ_TIMEOUT_MS",
            &mut l.body_read_timeout,
            None,
        );
        millis("METAMCP_IDLE_TIMEOUT_MS", &mut l.idle_timeout, None);
        millis("METAMCP_SSE_KEEPALIVE_MS", &mut l.sse_keep_alive, None);
        // why: a body the gateway accepts is relayed to an upstream as one message, and the
        // answer path reads upstream messages up to `upstream_message_bytes`.
        if l.upstream_message_bytes < l.max_body_bytes {
            let set = |name| lookup(name).filter(|v| !v.trim().is_empty());
            bad.push(match set("METAMCP_MAX_BODY_BYTES") {
                Some(value) => BadLimit {
                    name: "METAMCP_MAX_BODY_BYTES",
                    value,
                    expected: format!(
                        "at most METAMCP_MAX_UPSTREAM_MESSAGE_BYTES ({}): a request body the gateway accepts must fit in a message it relays; raise both",
                        l.upstream_message_bytes
                    ),
                },
                None => BadLimit {
                    name: "METAMCP_MAX_UPSTREAM_MESSAGE_BYTES",
                    value: set("METAMCP_MAX_UPSTREAM_MESSAGE_BYTES").unwrap_or_default(),
                    expected: format!(
                        "at least METAMCP_MAX_BODY_BYTES ({}): a request body the gateway accepts must fit in a message it relays",
                        l.max_body_bytes
                    ),
                },
            });
        }
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

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn edge_bounds_read_as_counts_and_milliseconds() {
        let l = Limits::from_env(&env_of(&[
            ("METAMCP_MAX_CONNECTIONS", "100"),
            ("METAMCP_MAX_CONNECTIONS_PER_IP", "3"),
            ("METAMCP_HEADER_READ_TIMEOUT_MS", "30000"),
            ("METAMCP_BODY_READ_TIMEOUT_MS", "1_500"),
            ("METAMCP_IDLE_TIMEOUT_MS", "250"),
            ("METAMCP_MAX_BODY_BYTES", "1024"),
            ("METAMCP_SSE_KEEPALIVE_MS", "100"),
        ]))
        .unwrap();
        assert_eq!(l.max_connections, 100);
        assert_eq!(l.max_connections_per_ip, 3);
        assert_eq!(l.header_read_timeout, Duration::from_secs(30));
        assert_eq!(l.body_read_timeout, Duration::from_millis(1500));
        assert_eq!(l.idle_timeout, Duration::from_millis(250));
        assert_eq!(l.max_body_bytes, 1024);
        assert_eq!(l.sse_keep_alive, Duration::from_millis(100));

        let errors = Limits::from_env(&env_of(&[
            ("METAMCP_HEADER_READ_TIMEOUT_MS", "30001"),
            ("METAMCP_IDLE_TIMEOUT_MS", "0"),
            ("METAMCP_SSE_KEEPALIVE_MS", "1s"),
        ]))
        .unwrap_err();
        let names: Vec<&str> = errors.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "METAMCP_HEADER_READ_TIMEOUT_MS",
                "METAMCP_IDLE_TIMEOUT_MS",
                "METAMCP_SSE_KEEPALIVE_MS"
            ]
        );
        assert!(
            errors[0].to_string().contains("from 1 to 30000"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn the_body_limit_never_exceeds_what_upstream_messages_may_carry() {
        assert!(Limits::default().max_body_bytes <= Limits::default().upstream_message_bytes);
        let errors =
            Limits::from_env(&env_of(&[("METAMCP_MAX_BODY_BYTES", "33554432")])).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].name, "METAMCP_MAX_BODY_BYTES");
        let msg = errors[0].to_string();
        assert!(
            msg.contains("METAMCP_MAX_UPSTREAM_MESSAGE_BYTES (16777216)"),
            "{msg}"
        );
        let errors = Limits::from_env(&env_of(&[("METAMCP_MAX_UPSTREAM_MESSAGE_BYTES", "1000")]))
            .unwrap_err();
        assert_eq!(errors[0].name, "METAMCP_MAX_UPSTREAM_MESSAGE_BYTES");
        assert!(
            errors[0]
                .to_string()
                .contains("METAMCP_MAX_BODY_BYTES (4194304)"),
            "{}",
            errors[0]
        );
        // Raising both is fine.
        let l = Limits::from_env(&env_of(&[
            ("METAMCP_MAX_BODY_BYTES", "33554432"),
            ("METAMCP_MAX_UPSTREAM_MESSAGE_BYTES", "33554432"),
        ]))
        .unwrap();
        assert_eq!(l.max_body_bytes, 32 * 1024 * 1024);
    }
}
