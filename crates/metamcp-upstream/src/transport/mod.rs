//! Transports to upstream servers (stdio, Streamable HTTP, legacy HTTP+SSE): each one moves
//! raw JSON-RPC messages and nothing else.

pub(crate) mod bounded;
pub mod http;
pub mod inline;
pub mod sse;
pub mod stdio;

/// JSON text for a newline-delimited stream: raw newlines can only be whitespace between
/// tokens in valid JSON (inside strings they are escaped), so they become spaces.
pub(crate) fn one_line(mut s: String) -> String {
    if s.contains(['\n', '\r']) {
        s = s.replace(['\n', '\r'], " ");
    }
    s
}

/// A reqwest error with its causes, without the URL (whose query may carry a session id).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut msg = String::from(if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "reading the body failed"
    } else {
        "request failed"
    });
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}
