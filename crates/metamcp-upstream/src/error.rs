//! Errors of upstream connections. Every variant names the server so the client-facing
//! JSON-RPC error can say which upstream failed.

/// Why a request to an upstream did not produce a reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream server {server:?} could not be started: {message}")]
    Start { server: String, message: String },
    #[error(
        "upstream server {server:?} is unavailable ({message}); next attempt in {retry_in_ms} ms"
    )]
    BackingOff {
        server: String,
        message: String,
        retry_in_ms: u64,
    },
    #[error("upstream server {server:?} closed the connection: {message}")]
    Closed { server: String, message: String },
    #[error("upstream server {server:?} did not answer within {ms} ms")]
    Timeout { server: String, ms: u64 },
    #[error("upstream server {server:?} sent an invalid reply: {message}")]
    Protocol { server: String, message: String },
    #[error("upstream server {server:?}: HTTP error: {message}")]
    Http { server: String, message: String },
    #[error("upstream server {server:?} has been removed")]
    Removed { server: String },
    #[error("upstream server {server:?} speaks only the stateless protocol era (2026-07-28)")]
    StatelessOnly { server: String },
    #[error(
        "upstream server {server:?} already has {cap} per-session connections (its cap); \
         raise it with `metamcp server update {server} --cap N`"
    )]
    Cap { server: String, cap: u32 },
    #[error("upstream server {server:?} needs authorization: {message}")]
    Unauthorized { server: String, message: String },
}

impl UpstreamError {
    /// The server the error is about.
    pub fn server(&self) -> &str {
        match self {
            UpstreamError::Start { server, .. }
            | UpstreamError::BackingOff { server, .. }
            | UpstreamError::Closed { server, .. }
            | UpstreamError::Timeout { server, .. }
            | UpstreamError::Protocol { server, .. }
            | UpstreamError::Http { server, .. }
            | UpstreamError::Removed { server }
            | UpstreamError::Cap { server, .. }
            | UpstreamError::Unauthorized { server, .. }
            | UpstreamError::StatelessOnly { server } => server,
        }
    }
}
