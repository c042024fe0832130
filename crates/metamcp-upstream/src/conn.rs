//! One live connection to an upstream: requests out, replies routed back by id.
//!
//! The gateway allocates its own numeric ids for every upstream request, so many downstream
//! sessions can share one connection (one stdio process) with calls in parallel. Replies are
//! kept as the upstream's raw text; [`Reply::payload`] is the `result` or `error` JSON exactly
//! as the upstream wrote it. A request whose caller goes away (client vanished, timeout) is
//! removed from the pending map and `notifications/cancelled` is sent upstream.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metamcp_core::jsonrpc::{self, Envelope, Kind};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::error::UpstreamError;
use crate::pool::{Events, UpstreamEvent};
use crate::scope::{Scopes, ServerRequestHandler, Serving};
use crate::transport::{http::HttpConn, sse::SseConn, stdio::StdioConn};

/// The protocol version the gateway asks upstreams for. 2025-06-18 rather than the newest:
/// server-everything is ~1.3 ms slower per call on 2025-11-25 sessions (relay-design.md).
pub const UPSTREAM_PROTOCOL_VERSION: &str = "2025-06-18";

/// An upstream's answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    text: String,
    payload: Range<usize>,
    is_error: bool,
}

impl Reply {
    /// The raw `result` (or `error`) JSON.
    pub fn payload(&self) -> &str {
        &self.text[self.payload.clone()]
    }

    /// Whether the upstream answered with a JSON-RPC error.
    pub fn is_error(&self) -> bool {
        self.is_error
    }

    /// Builds a reply from a response to one of the gateway's numeric ids; gives the text
    /// back when it is anything else.
    pub fn from_message(text: String) -> Result<(u64, Reply), String> {
        let parsed = (|| {
            let env = Envelope::parse(text.as_bytes()).ok()?;
            if env.kind() != Kind::Response {
                return None;
            }
            let id: u64 = env.id?.get().parse().ok()?;
            let (raw, is_error) = match (env.result, env.error) {
                (Some(r), None) => (r, false),
                (None, Some(e)) => (e, true),
                _ => return None,
            };
            Some((id, offset_in(&text, raw.get())?, is_error))
        })();
        match parsed {
            Some((id, payload, is_error)) => Ok((
                id,
                Reply {
                    text,
                    payload,
                    is_error,
                },
            )),
            None => Err(text),
        }
    }
}

/// The byte range of `part` inside `whole` (part must be a sub-slice of whole).
fn offset_in(whole: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start + part.len();
    (end <= whole.len()).then_some(start..end)
}

/// What the upstream said about itself in `initialize`.
#[derive(Debug, Clone, Default)]
pub struct UpstreamInfo {
    pub protocol_version: String,
    pub capabilities: serde_json::Value,
    pub server_info: serde_json::Value,
    pub instructions: Option<String>,
    /// The upstream speaks only the stateless era (2026-07-28): every request carries the
    /// protocol context in `_meta`, and there is no session.
    pub stateless: bool,
}

impl UpstreamInfo {
    /// Whether the upstream declared capability `name` (e.g. "tools").
    pub fn has(&self, name: &str) -> bool {
        self.capabilities.get(name).is_some_and(|v| !v.is_null())
    }
}

type Waiter = oneshot::Sender<Result<Reply, UpstreamError>>;

/// Requests in flight on one connection, by the gateway's id, with the scopes of the calls
/// they serve (see [`crate::scope`]).
#[derive(Debug)]
pub(crate) struct Pending {
    server: Arc<str>,
    next_id: AtomicU64,
    waiters: Mutex<HashMap<u64, Waiter>>,
    /// The answerers and progress routes of the calls that have them.
    scopes: Mutex<Scopes>,
    /// Requests of the upstream being asked of a client.
    serving: Arc<Serving>,
    closed: Mutex<Option<String>>,
}

impl Pending {
    pub(crate) fn new(server: Arc<str>) -> Self {
        Self {
            server,
            next_id: AtomicU64::new(1),
            waiters: Mutex::new(HashMap::new()),
            scopes: Mutex::default(),
            serving: Arc::default(),
            closed: Mutex::new(None),
        }
    }

    pub(crate) fn server(&self) -> &Arc<str> {
        &self.server
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a waiter (and the scope of the call running in this task); fails at once
    /// when the connection is already closed.
    pub(crate) fn register(
        &self,
        id: u64,
    ) -> Result<oneshot::Receiver<Result<Reply, UpstreamError>>, UpstreamError> {
        let (tx, rx) = oneshot::channel();
        let closed = self.closed.lock();
        if let Some(reason) = closed.as_ref() {
            return Err(UpstreamError::Closed {
                server: self.server.to_string(),
                message: reason.clone(),
            });
        }
        self.waiters.lock().insert(id, tx);
        if let Some(scope) = crate::scope::current() {
            self.scopes.lock().insert(id, scope);
        }
        Ok(rx)
    }

    /// The answerer of the call in flight, when it is the only request in flight on this
    /// connection and it has one; `None` otherwise: a request on a shared stream could
    /// then belong to any of them, and must never reach another client.
    pub(crate) fn sole_answerer(&self) -> Option<ServerRequestHandler> {
        let id = {
            let waiters = self.waiters.lock();
            let mut ids = waiters.keys();
            match (ids.next(), ids.next()) {
                (Some(id), None) => *id,
                _ => return None,
            }
        };
        self.scopes.lock().answerer(id)
    }

    /// Delivers an upstream's progress to the call in flight here whose request carries its
    /// token; false when none does.
    pub(crate) fn deliver_progress(&self, message: &str) -> bool {
        let Some(token) = crate::scope::progress_token(message) else {
            return false;
        };
        let sink = self.scopes.lock().progress(&token);
        sink.is_some_and(|s| s.deliver(message))
    }

    /// Delivers a reply; false when nobody waits for that id any more.
    pub(crate) fn complete(&self, id: u64, reply: Reply) -> bool {
        self.scopes.lock().remove(id);
        match self.waiters.lock().remove(&id) {
            Some(tx) => tx.send(Ok(reply)).is_ok(),
            None => false,
        }
    }

    /// Fails one request (its answer could not be read); false when nobody waits for it.
    pub(crate) fn fail(&self, id: u64, error: UpstreamError) -> bool {
        self.scopes.lock().remove(id);
        match self.waiters.lock().remove(&id) {
            Some(tx) => tx.send(Err(error)).is_ok(),
            None => false,
        }
    }

    /// An upstream message longer than the limit arrived: the request it answered (found
    /// from its first bytes) fails; the connection goes on.
    pub(crate) fn oversized(&self, prefix: &[u8], limit: usize) {
        let error = UpstreamError::Protocol {
            server: self.server.to_string(),
            message: format!(
                "its message was larger than {limit} bytes (METAMCP_MAX_UPSTREAM_MESSAGE_BYTES); \
                 dropped"
            ),
        };
        let failed =
            metamcp_core::framing::leading_id(prefix).is_some_and(|id| self.fail(id, error));
        tracing::warn!(
            server = %self.server,
            limit,
            failed_a_request = failed,
            "upstream message over the size limit dropped"
        );
    }

    /// Forgets a waiter; true when it was still waiting (so the request is abandoned).
    pub(crate) fn forget(&self, id: u64) -> bool {
        self.scopes.lock().remove(id);
        self.waiters.lock().remove(&id).is_some()
    }

    /// Marks the connection closed and fails every request in flight.
    pub(crate) fn close(&self, reason: &str) {
        let mut closed = self.closed.lock();
        if closed.is_none() {
            *closed = Some(reason.to_owned());
        }
        drop(closed);
        self.scopes.lock().clear();
        self.serving.clear();
        let waiters: Vec<Waiter> = self.waiters.lock().drain().map(|(_, w)| w).collect();
        for w in waiters {
            let _ = w.send(Err(UpstreamError::Closed {
                server: self.server.to_string(),
                message: reason.to_owned(),
            }));
        }
    }

    pub(crate) fn closed_reason(&self) -> Option<String> {
        self.closed.lock().clone()
    }
}

/// Why a request an upstream sent cannot be put to a client.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unanswerable {
    /// Nothing in flight could have caused it.
    NoCall,
    /// Several requests are in flight on a stream they share: it could belong to any.
    Ambiguous,
    /// The call that caused it has no client to ask (a REST call, a plain stateless call).
    NoClient,
    /// The connection already has as many requests waiting for clients as allowed.
    TooMany,
}

/// Handles a message the upstream sent on its own: notifications go to the pool's event
/// channel; requests are answered here (ping) or refused with the reason no client can be
/// asked. Returns the answer to send back, if any.
pub(crate) fn handle_unsolicited(
    server: &Arc<str>,
    text: &str,
    events: &Events,
    why: Unanswerable,
) -> Option<String> {
    let env = Envelope::parse(text.as_bytes()).ok()?;
    match env.kind() {
        Kind::Notification => {
            if env.method() == "notifications/progress" {
                // why: progress reaches a call only through the connection its request
                // went out on (see `scope`); one that matched no call is dropped.
                tracing::debug!(server = %server, "progress for no call in flight dropped");
                return None;
            }
            let ev = UpstreamEvent {
                server: server.clone(),
                method: env.method().to_owned(),
                message: text.to_owned(),
            };
            events.notify(ev);
            None
        }
        Kind::Request => {
            let id = env.id?;
            if env.method() == "ping" {
                return Some(jsonrpc::response(id, "{}"));
            }
            let reason = match why {
                Unanswerable::NoCall => "no client call in flight on this connection caused it",
                Unanswerable::Ambiguous => {
                    "several calls are in flight on this shared connection, so the client it \
                     belongs to cannot be told (run the server per-session to relay these)"
                }
                Unanswerable::NoClient => {
                    "the call that caused it has no client that can be asked (a REST call or \
                     a plain stateless call)"
                }
                Unanswerable::TooMany => {
                    "this server already has the most requests waiting for clients that \
                     metamcp holds for one connection"
                }
            };
            tracing::info!(
                server = %server,
                method = env.method(),
                reason,
                "server-initiated request refused"
            );
            Some(jsonrpc::error(
                Some(id),
                jsonrpc::METHOD_NOT_FOUND,
                &format!("{}: metamcp cannot relay it: {reason}", env.method()),
                None,
            ))
        }
        Kind::Response | Kind::Invalid => {
            tracing::debug!(server = %server, "unexpected message from upstream ignored");
            None
        }
    }
}

/// Handles a message that is not a reply, on a stream shared by every call (stdio, legacy
/// SSE): progress goes to the call whose request carries its token; a withdrawal stops
/// the asking it names; a request for a client goes to the sole call in flight if that
/// call can ask its client (see `scope`), answered asynchronously through `send`;
/// anything else as [`handle_unsolicited`] says, its answer (if any) also through `send`.
pub(crate) fn dispatch_shared<F, Fut>(pending: &Pending, text: String, events: &Events, send: F)
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Ok(env) = Envelope::parse(text.as_bytes()) else {
        tracing::debug!(server = %pending.server(), "unreadable message from upstream ignored");
        return;
    };
    match (env.kind(), env.method()) {
        (Kind::Notification, "notifications/progress") => {
            if !pending.deliver_progress(&text) {
                tracing::debug!(server = %pending.server(), "progress for no call in flight dropped");
            }
            return;
        }
        (Kind::Notification, "notifications/cancelled") if pending.serving.withdraw(&text) => {
            return;
        }
        (Kind::Request, m) if m != "ping" => {
            let up_id = env.id.map(|i| i.get().to_owned()).unwrap_or_default();
            let why = if pending.waiters.lock().is_empty() {
                Unanswerable::NoCall
            } else {
                match pending.sole_answerer() {
                    Some(handler) => {
                        let ask = handler.answer(text.clone());
                        match pending.serving.spawn(up_id, ask, send) {
                            Ok(()) => return,
                            Err(send) => {
                                let why = Unanswerable::TooMany;
                                if let Some(answer) =
                                    handle_unsolicited(pending.server(), &text, events, why)
                                {
                                    tokio::spawn(send(answer));
                                }
                                return;
                            }
                        }
                    }
                    None if pending.waiters.lock().len() > 1 => Unanswerable::Ambiguous,
                    None => Unanswerable::NoClient,
                }
            };
            if let Some(answer) = handle_unsolicited(pending.server(), &text, events, why) {
                tokio::spawn(send(answer));
            }
            return;
        }
        _ => {}
    }
    if let Some(answer) = handle_unsolicited(pending.server(), &text, events, Unanswerable::NoCall)
    {
        tokio::spawn(send(answer));
    }
}

/// A live connection, whatever its transport.
#[derive(Debug)]
pub enum Conn {
    Stdio(StdioConn),
    Http(Arc<HttpConn>),
    Sse(SseConn),
}

impl Conn {
    /// Sends a request and waits for its reply (at most `timeout`).
    pub async fn request(
        &self,
        method: &str,
        params: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        match self {
            Conn::Stdio(c) => c.request(method, params, timeout).await,
            Conn::Http(c) => c.request(method, params, timeout).await,
            Conn::Sse(c) => c.request(method, params, timeout).await,
        }
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Option<&str>) -> Result<(), UpstreamError> {
        match self {
            Conn::Stdio(c) => c.notify(method, params).await,
            Conn::Http(c) => c.notify(method, params).await,
            Conn::Sse(c) => c.notify(method, params).await,
        }
    }

    /// What the upstream declared at initialize.
    pub fn info(&self) -> &UpstreamInfo {
        match self {
            Conn::Stdio(c) => c.info(),
            Conn::Http(c) => c.info(),
            Conn::Sse(c) => c.info(),
        }
    }

    /// `None` while usable; the reason once closed.
    pub fn closed_reason(&self) -> Option<String> {
        match self {
            Conn::Stdio(c) => c.closed_reason(),
            Conn::Http(c) => c.closed_reason(),
            Conn::Sse(c) => c.closed_reason(),
        }
    }

    /// The child's pid (stdio only).
    pub fn pid(&self) -> Option<u32> {
        match self {
            Conn::Stdio(c) => Some(c.pid()),
            Conn::Http(_) | Conn::Sse(_) => None,
        }
    }

    /// Ends the connection: stdio children are terminated with their whole process group.
    pub async fn shutdown(&self) {
        match self {
            Conn::Stdio(c) => c.shutdown().await,
            Conn::Http(c) => c.shutdown().await,
            Conn::Sse(c) => c.shutdown().await,
        }
    }
}

/// The `initialize` params the gateway sends upstream.
pub fn initialize_params() -> String {
    serde_json::json!({
        "protocolVersion": UPSTREAM_PROTOCOL_VERSION,
        // The gateway can answer these by asking the client whose call caused them.
        "capabilities": { "sampling": {}, "elicitation": {}, "roots": {} },
        "clientInfo": { "name": "metamcp", "version": env!("CARGO_PKG_VERSION") }
    })
    .to_string()
}

/// Reads an `initialize` reply.
pub(crate) fn parse_initialize(server: &str, reply: &Reply) -> Result<UpstreamInfo, UpstreamError> {
    if reply.is_error() && refuses_initialize_era(reply.payload()) {
        return Err(UpstreamError::StatelessOnly {
            server: server.to_owned(),
        });
    }
    if reply.is_error() {
        return Err(UpstreamError::Start {
            server: server.to_owned(),
            message: format!("initialize failed: {}", reply.payload()),
        });
    }
    let v: serde_json::Value =
        serde_json::from_str(reply.payload()).map_err(|e| UpstreamError::Protocol {
            server: server.to_owned(),
            message: format!("initialize result is not JSON: {e}"),
        })?;
    Ok(UpstreamInfo {
        protocol_version: v
            .get("protocolVersion")
            .and_then(|p| p.as_str())
            .unwrap_or(UPSTREAM_PROTOCOL_VERSION)
            .to_owned(),
        capabilities: v.get("capabilities").cloned().unwrap_or_default(),
        server_info: v.get("serverInfo").cloned().unwrap_or_default(),
        instructions: v
            .get("instructions")
            .and_then(|p| p.as_str())
            .map(str::to_owned),
        stateless: false,
    })
}

/// The stateless protocol era the gateway speaks to upstreams that refuse `initialize`.
pub(crate) const STATELESS_VERSION: &str = "2026-07-28";

/// Whether an `initialize` error says the server supports only versions without it
/// (`-32022` unsupported protocol version, with 2026-07-28 among the supported ones).
fn refuses_initialize_era(error: &str) -> bool {
    let Ok(e) = serde_json::from_str::<serde_json::Value>(error) else {
        return false;
    };
    e.get("code").and_then(serde_json::Value::as_i64) == Some(-32022)
        && e.pointer("/data/supported")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|v| v.iter().any(|x| x.as_str() == Some(STATELESS_VERSION)))
}

/// `params` with the per-request protocol context of the stateless era in `_meta`
/// (`io.modelcontextprotocol/protocolVersion`, `clientInfo`, `clientCapabilities`).
pub(crate) fn with_stateless_meta(params: Option<&str>) -> String {
    let mut v: serde_json::Map<String, serde_json::Value> = params
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    let meta = v.entry("_meta").or_insert_with(|| serde_json::json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.insert(
            "io.modelcontextprotocol/protocolVersion".into(),
            STATELESS_VERSION.into(),
        );
        m.insert(
            "io.modelcontextprotocol/clientInfo".into(),
            serde_json::json!({ "name": "metamcp", "version": env!("CARGO_PKG_VERSION") }),
        );
        m.insert(
            "io.modelcontextprotocol/clientCapabilities".into(),
            serde_json::json!({ "sampling": {}, "elicitation": {}, "roots": {} }),
        );
    }
    serde_json::Value::Object(v).to_string()
}

/// Reads a `server/discover` reply (the stateless era's handshake).
pub(crate) fn parse_discover(server: &str, reply: &Reply) -> Result<UpstreamInfo, UpstreamError> {
    let bad = |message: String| UpstreamError::Start {
        server: server.to_owned(),
        message,
    };
    if reply.is_error() {
        return Err(bad(format!("server/discover failed: {}", reply.payload())));
    }
    let v: serde_json::Value = serde_json::from_str(reply.payload())
        .map_err(|e| bad(format!("discover result is not JSON: {e}")))?;
    let speaks = v
        .get("supportedVersions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(STATELESS_VERSION)));
    if !speaks {
        return Err(bad(format!(
            "server/discover lists no version the gateway speaks: {}",
            reply.payload()
        )));
    }
    Ok(UpstreamInfo {
        protocol_version: STATELESS_VERSION.to_owned(),
        capabilities: v.get("capabilities").cloned().unwrap_or_default(),
        server_info: v
            .pointer("/_meta/io.modelcontextprotocol~1serverInfo")
            .cloned()
            .unwrap_or_default(),
        instructions: v
            .get("instructions")
            .and_then(|p| p.as_str())
            .map(str::to_owned),
        stateless: true,
    })
}

/// Drops the waiter and tells the upstream to stop when a caller abandons a request.
pub(crate) struct RequestGuard<'a> {
    pub(crate) pending: &'a Pending,
    pub(crate) id: u64,
    pub(crate) on_abandon: Option<Box<dyn FnOnce(String) + Send + 'a>>,
}

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        if self.pending.forget(self.id)
            && let Some(f) = self.on_abandon.take()
        {
            let params = format!(
                r#"{{"requestId":{},"reason":"request abandoned by the gateway"}}"#,
                self.id
            );
            f(jsonrpc::notification(
                "notifications/cancelled",
                Some(&params),
            ));
        }
    }
}

/// The `id` of a raw request, for tests and logs.
pub fn raw_id(text: &str) -> Option<Box<RawValue>> {
    Envelope::parse(text.as_bytes())
        .ok()?
        .id
        .map(|r| r.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_keeps_payload_verbatim() {
        let (id, r) = Reply::from_message(
            r#"{"jsonrpc":"2.0","id":42,"result":{"a": 1,"x-y":[true]}}"#.into(),
        )
        .unwrap();
        assert_eq!(id, 42);
        assert_eq!(r.payload(), r#"{"a": 1,"x-y":[true]}"#);
        assert!(!r.is_error());
        let (_, r) = Reply::from_message(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"m"}}"#.into(),
        )
        .unwrap();
        assert!(r.is_error());
        assert!(Reply::from_message(r#"{"jsonrpc":"2.0","method":"x"}"#.into()).is_err());
        assert!(Reply::from_message(r#"{"jsonrpc":"2.0","id":"s","result":{}}"#.into()).is_err());
    }

    #[tokio::test]
    async fn close_fails_waiters() {
        let p = Pending::new("s".into());
        let rx = p.register(1).unwrap();
        p.close("gone");
        assert!(matches!(
            rx.await.unwrap(),
            Err(UpstreamError::Closed { .. })
        ));
        assert!(p.register(2).is_err());
    }
}
