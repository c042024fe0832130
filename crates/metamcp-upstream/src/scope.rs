//! What a relayed call carries down to the connection it runs on, besides its request:
//! who answers the requests the upstream sends while serving it (sampling, elicitation,
//! roots), and where the progress it asked for goes.
//!
//! The gateway runs each relayed call inside [`scope`]; connections find the call's
//! [`CallScope`] without any change to their request signatures and register it with the
//! request's id, so everything is scoped to the connection the request went out on:
//!
//! - **Progress.** The call's request carries a gateway token (unguessable, see the relay);
//!   a `notifications/progress` is delivered only if it arrives on the same connection as
//!   the request that carries that token, while that request is in flight. Another
//!   upstream — or the same server's connection of another client session — cannot
//!   inject progress into the call. A Streamable HTTP upstream sends it on the call's own
//!   POST stream, read in the caller's task ([`current`]).
//! - **Server-initiated requests.** On a Streamable HTTP upstream they arrive on the call's
//!   own POST stream, so they belong to that call. A stdio or legacy-SSE upstream has one
//!   stream shared by every call: a request there is attributed only when exactly one
//!   request is in flight on the connection and that call can ask its client; otherwise it
//!   cannot be told apart and the upstream gets a JSON-RPC error saying so — it is never
//!   sent to another client.
//! - **Withdrawal.** An upstream that cancels a request it sent (`notifications/cancelled`)
//!   stops the asking ([`Serving`]); the answerer tells its client.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use metamcp_core::jsonrpc::Envelope;
use parking_lot::Mutex;
use tokio::task::AbortHandle;

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

/// Receives the upstream's `notifications/progress` messages for one call, whole, as the
/// upstream wrote them; returns whether it took the message.
#[derive(Clone)]
pub struct ProgressSink(Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl ProgressSink {
    pub fn new(f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub fn deliver(&self, message: &str) -> bool {
        (self.0)(message)
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

/// What one relayed call carries to its connection.
#[derive(Debug, Clone, Default)]
pub struct CallScope {
    /// Who answers the requests the upstream sends while serving the call; `None` when the
    /// call has no client to ask (a REST call, a plain stateless call).
    pub answerer: Option<ServerRequestHandler>,
    /// The progress token the call's request carries upstream, and where its progress
    /// goes.
    pub progress: Option<(Arc<str>, ProgressSink)>,
}

impl CallScope {
    fn is_empty(&self) -> bool {
        self.answerer.is_none() && self.progress.is_none()
    }
}

tokio::task_local! {
    static SCOPE: CallScope;
}

/// Runs `fut` (a relayed call) with `scope`.
pub async fn scope<F: Future>(scope: CallScope, fut: F) -> F::Output {
    SCOPE.scope(scope, fut).await
}

/// The scope of the call running in this task, if it has one.
pub(crate) fn current() -> Option<CallScope> {
    SCOPE.try_with(Clone::clone).ok().filter(|s| !s.is_empty())
}

/// The W3C trace context a traced call carries to an HTTP or SSE upstream as headers (the
/// gateway runs a call under [`traced`] only while OpenTelemetry tracing is on).
#[derive(Debug, Clone)]
pub struct TraceHeaders {
    /// `traceparent`: version, trace id, the upstream-call span's id, flags.
    pub traceparent: http::HeaderValue,
    /// `tracestate`, passed on as the caller sent it.
    pub tracestate: Option<http::HeaderValue>,
}

tokio::task_local! {
    static TRACE: TraceHeaders;
}

/// Runs `fut` (a relayed call) with the trace context its HTTP requests carry as headers.
pub async fn traced<F: Future>(trace: TraceHeaders, fut: F) -> F::Output {
    TRACE.scope(trace, fut).await
}

/// Adds the `traceparent`/`tracestate` headers of the call running in this task, if it is
/// traced; untraced calls (tracing off) cost one task-local look-up.
pub(crate) fn add_trace_headers(headers: &mut http::HeaderMap) {
    let _ = TRACE.try_with(|t| {
        headers.insert("traceparent", t.traceparent.clone());
        if let Some(state) = &t.tracestate {
            headers.insert("tracestate", state.clone());
        }
    });
}

/// The string `params.progressToken` of a progress notification (the gateway issues only
/// string tokens).
pub(crate) fn progress_token(message: &str) -> Option<String> {
    let env = Envelope::parse(message.as_bytes()).ok()?;
    metamcp_core::jsonrpc::str_field(env.params?, "progressToken").map(|t| t.into_owned())
}

/// The scopes of the requests in flight on one connection, by the gateway's request id.
#[derive(Debug, Default)]
pub(crate) struct Scopes {
    calls: HashMap<u64, CallScope>,
    by_token: HashMap<Arc<str>, u64>,
}

impl Scopes {
    pub(crate) fn insert(&mut self, id: u64, scope: CallScope) {
        if let Some((token, _)) = &scope.progress {
            self.by_token.insert(token.clone(), id);
        }
        self.calls.insert(id, scope);
    }

    pub(crate) fn remove(&mut self, id: u64) {
        if let Some(CallScope {
            progress: Some((token, _)),
            ..
        }) = self.calls.remove(&id)
        {
            self.by_token.remove(&token);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.calls.clear();
        self.by_token.clear();
    }

    pub(crate) fn answerer(&self, id: u64) -> Option<ServerRequestHandler> {
        self.calls.get(&id)?.answerer.clone()
    }

    /// Where progress carrying `token` goes, if a request in flight here carries it.
    pub(crate) fn progress(&self, token: &str) -> Option<ProgressSink> {
        let id = self.by_token.get(token)?;
        self.calls
            .get(id)?
            .progress
            .as_ref()
            .map(|(_, s)| s.clone())
    }
}

/// Requests an upstream sent that a client is being asked to answer, by the upstream's
/// request id (as JSON text), so that the upstream can withdraw them.
#[derive(Debug, Default)]
pub(crate) struct Serving(Mutex<HashMap<String, AbortHandle>>);

/// Most requests of one upstream connection being asked of clients at once; beyond it the
/// upstream's request is refused (an upstream cannot make the gateway hold unbounded asks).
pub const MAX_ASKING: usize = 64;

impl Serving {
    /// Runs the asking of upstream request `up_id` in its own task; `send` gets the answer
    /// (unless the upstream withdrew the request first). Gives `send` back (nothing
    /// started) when [`MAX_ASKING`] requests of this connection are being asked already.
    pub(crate) fn spawn<F, Fut>(
        self: &Arc<Self>,
        up_id: String,
        ask: BoxFuture<'static, String>,
        send: F,
    ) -> Result<(), F>
    where
        F: FnOnce(String) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let me = self.clone();
        let key = up_id.clone();
        let mut map = self.0.lock();
        if map.len() >= MAX_ASKING {
            return Err(send);
        }
        let task = tokio::spawn(async move {
            let answer = ask.await;
            me.0.lock().remove(&key);
            // An empty answer: the request ended without one being due.
            if !answer.is_empty() {
                send(answer).await;
            }
        });
        map.insert(up_id, task.abort_handle());
        Ok(())
    }

    /// An upstream's `notifications/cancelled`: stops asking for the request it names.
    /// False when no such request is being asked.
    pub(crate) fn withdraw(&self, message: &str) -> bool {
        let Some(id) = Envelope::parse(message.as_bytes())
            .ok()
            .and_then(|e| e.params)
            .and_then(|p| {
                serde_json::from_str::<HashMap<String, Box<serde_json::value::RawValue>>>(p.get())
                    .ok()
            })
            .and_then(|mut m| m.remove("requestId"))
        else {
            return false;
        };
        match self.0.lock().remove(id.get()) {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    /// Stops every asking (the connection closed: nobody could take the answers).
    pub(crate) fn clear(&self) {
        for (_, task) in self.0.lock().drain() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_found_by_token_only_while_its_request_is_in_flight() {
        let mut s = Scopes::default();
        let sink = ProgressSink::new(|_| true);
        s.insert(
            7,
            CallScope {
                answerer: None,
                progress: Some((Arc::from("tok"), sink)),
            },
        );
        assert!(s.progress("tok").is_some());
        assert!(s.progress("other").is_none());
        assert!(s.answerer(7).is_none());
        s.remove(7);
        assert!(s.progress("tok").is_none());
    }

    #[test]
    fn tokens_are_read_from_progress_notifications() {
        let m = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"metamcp-ab","progress":1}}"#;
        assert_eq!(progress_token(m).as_deref(), Some("metamcp-ab"));
        let numeric =
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":3}}"#;
        assert_eq!(progress_token(numeric), None);
    }

    #[tokio::test]
    async fn an_upstream_has_a_bounded_number_of_requests_asked_at_once() {
        let serving = Arc::new(Serving::default());
        let ask = || -> BoxFuture<'static, String> { Box::pin(std::future::pending()) };
        for i in 0..MAX_ASKING {
            assert!(serving.spawn(i.to_string(), ask(), |_| async {}).is_ok());
        }
        assert!(
            serving
                .spawn("one more".into(), ask(), |_| async {})
                .is_err()
        );
        serving.clear();
        assert!(serving.spawn("after".into(), ask(), |_| async {}).is_ok());
    }

    #[tokio::test]
    async fn a_withdrawn_request_is_no_longer_asked() {
        let serving = Arc::new(Serving::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let never: BoxFuture<'static, String> = Box::pin(std::future::pending());
        let started = serving.spawn("5".into(), never, move |a| async move {
            let _ = tx.send(a);
        });
        assert!(started.is_ok());
        assert!(!serving.withdraw(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":6}}"#
        ));
        assert!(serving.withdraw(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5}}"#
        ));
        assert!(
            rx.await.is_err(),
            "the answer of a withdrawn request was sent"
        );
    }
}
