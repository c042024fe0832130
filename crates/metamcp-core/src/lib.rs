//! Vocabulary of the gateway and the pure transforms on it.
//!
//! Names (`name`), declarative server specs and the Claude-Desktop import format (`spec`),
//! secret values and `${NAME}` references (`secrets`), the configuration-as-code file format
//! (`declare`),
//! borrowed JSON-RPC envelopes (`jsonrpc`), the `server__name` prefixing scheme (`mangle`),
//! tool shaping (`shaping`: per-namespace enable/disable, overrides, name-length limits),
//! `N/SECONDS` rate limits (`rate`), MCP log levels (`logging`), RFC 6570 URI template
//! matching (`uri_template`), and the bounded framing of upstream messages (`framing`).
//!
//! Invariant: no IO, no clock, no async runtime. Everything here is a function of its inputs,
//! so the data path, the store and the CLI can share it without pulling each other in.

pub mod declare;
pub mod framing;
pub mod jsonrpc;
pub mod logging;
pub mod mangle;
pub mod name;
pub mod rate;
pub mod secrets;
pub mod shaping;
pub mod spec;
pub mod uri_template;

pub use logging::LogLevel;
pub use name::{NameError, validate_object_name, validate_server_name};
pub use rate::{RateLimit, RateLimitError};
pub use spec::{
    ConnectionMode, ConnectionSettings, ImportError, ServerKind, ServerSpec, Transport,
    UpstreamAuth,
};
