//! Who answers a request an upstream sends while serving a call (sampling, elicitation,
//! roots): the client whose call caused it.
//!
//! The gateway runs each relayed call inside [`scope`] with a handler that forwards such a
//! request to that client and returns the client's answer. Connections find the handler
//! without any change to their request signatures: a Streamable HTTP upstream sends the
//! request on the call's own POST stream, read in the caller's task ([`current`]); a stdio
//! or SSE upstream has one shared stream, so the request is attributed only when exactly
//! one call with a handler is in flight on that connection — otherwise it cannot be told
//! apart, and the upstream gets a JSON-RPC error saying so.

use std::sync::Arc;

use futures::future::BoxFuture;

/// Takes the upstream's request message, returns the whole response message (carrying the
/// upstream's own id).
#[derive(Clone)]
pub struct ServerRequestHandler(Arc<dyn Fn(String) -> BoxFuture<'static, String> + Send + Sync>);

impl ServerRequestHandler {
    pub fn new(f: impl Fn(String) -> BoxFuture<'static, String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Answers one upstream request.
    pub fn answer(&self, request: String) -> BoxFuture<'static, String> {
        (self.0)(request)
    }
}

impl std::fmt::Debug for ServerRequestHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerRequestHandler")
    }
}

tokio::task_local! {
    static ORIGIN: ServerRequestHandler;
}

/// Runs `fut` with `handler` as the answerer of server-initiated requests it causes.
pub async fn scope<F: std::future::Future>(handler: ServerRequestHandler, fut: F) -> F::Output {
    ORIGIN.scope(handler, fut).await
}

/// The handler of the call running in this task, if any.
pub(crate) fn current() -> Option<ServerRequestHandler> {
    ORIGIN.try_with(Clone::clone).ok()
}

/// Whether `text` is a request from the server that a client must answer (not a ping).
pub(crate) fn is_client_bound_request(text: &str) -> bool {
    use metamcp_core::jsonrpc::{Envelope, Kind};
    Envelope::parse(text.as_bytes())
        .is_ok_and(|e| e.kind() == Kind::Request && e.method() != "ping")
}
