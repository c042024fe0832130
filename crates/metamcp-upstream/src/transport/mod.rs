//! Transports to upstream servers (stdio, Streamable HTTP, legacy HTTP+SSE): each one moves
//! raw JSON-RPC messages and nothing else.

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
