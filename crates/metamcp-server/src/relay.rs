//! Messages that travel outside one request/response pair: progress, notifications fanned
//! out to client sessions, resource subscriptions, and client cancellations.
//!
//! - **Progress.** A client's `_meta.progressToken` is replaced upstream by a gateway-unique
//!   token (`metamcp-<n>`): two clients sharing one upstream connection may both use token
//!   `1`. The upstream's `notifications/progress` is mapped back to the client's token and
//!   delivered on the stream of the call that asked for it; each progress also pushes the
//!   call's deadline back (`MCP_RESET_TIMEOUT_ON_PROGRESS`).
//! - **Fan-out.** `list_changed` (from an upstream or a configuration change) and logging
//!   messages reach every session of every endpoint whose namespace holds the server;
//!   `notifications/resources/updated` reaches the sessions subscribed to that URI.
//! - **Cancellation.** A client's `notifications/cancelled` stops its call in flight; the
//!   dropped upstream request sends `notifications/cancelled` upstream.
//!
//! Invariant: nothing here is on the path of a call without a progress token.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use metamcp_core::jsonrpc::{self, Envelope};
use metamcp_upstream::origin::ServerRequestHandler;
use parking_lot::Mutex;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::session::Session;
use crate::snapshot::Snapshot;

/// Where messages about one call go, besides its final answer.
#[derive(Debug, Clone, Default)]
pub struct CallCtx {
    /// The client's session, if the transport has one.
    pub session: Option<Arc<Session>>,
    /// The stream of this call (an SSE response, or a legacy SSE session stream).
    pub sink: Option<mpsc::Sender<String>>,
}

#[derive(Debug)]
struct ProgressRoute {
    client_token: Box<RawValue>,
    sink: mpsc::Sender<String>,
    activity: Arc<Notify>,
}

/// A server-initiated request forwarded to a client: the id the client saw, and where.
type ForwardedRequest = (String, mpsc::Sender<String>);

/// Relay state shared by the whole gateway.
#[derive(Debug, Default)]
pub struct Relay {
    next_token: AtomicU64,
    progress: Mutex<HashMap<String, ProgressRoute>>,
    /// Resource URI → sessions subscribed to it.
    subscriptions: Mutex<HashMap<String, HashSet<String>>>,
    /// (session id, client request id as JSON) → the call's cancellation.
    inflight: Mutex<HashMap<(String, String), CancellationToken>>,
    next_request: AtomicU64,
    /// Requests forwarded to clients (sampling, elicitation, roots), by the id the client
    /// saw → where its answer goes: `(is_error, raw result or error object)`.
    client_requests: Mutex<HashMap<String, oneshot::Sender<(bool, String)>>>,
    /// (server, upstream request id as JSON) → (the id the client saw, where it was sent),
    /// so an upstream's `notifications/cancelled` reaches the client.
    server_requests: Mutex<HashMap<(String, String), ForwardedRequest>>,
}

/// How long a client gets to answer a request an upstream sent it (a person may be typing
/// an elicitation answer).
pub const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// Removes a progress route when its call ends.
#[derive(Debug)]
pub struct ProgressGuard<'a> {
    relay: &'a Relay,
    token: String,
}

impl Drop for ProgressGuard<'_> {
    fn drop(&mut self) {
        self.relay.progress.lock().remove(&self.token);
    }
}

/// Unregisters a call from the in-flight table when it ends.
#[derive(Debug)]
pub struct InflightGuard<'a> {
    relay: &'a Relay,
    key: Option<(String, String)>,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.relay.inflight.lock().remove(&k);
        }
    }
}

impl Relay {
    /// If `params` carry `_meta.progressToken` and the call has a stream, returns params with
    /// a gateway token instead, the activity signal to reset the deadline on, and the guard
    /// that ends the route.
    pub fn route_progress(
        &self,
        params: &str,
        ctx: &CallCtx,
    ) -> Option<(String, Arc<Notify>, ProgressGuard<'_>)> {
        let sink = ctx.sink.clone()?;
        if !params.contains("progressToken") {
            return None;
        }
        let mut v: Value = serde_json::from_str(params).ok()?;
        let meta = v.get_mut("_meta")?.as_object_mut()?;
        let client_token = meta.get("progressToken")?;
        if !(client_token.is_string() || client_token.is_i64() || client_token.is_u64()) {
            return None;
        }
        let client_token = RawValue::from_string(client_token.to_string()).ok()?;
        let token = format!(
            "metamcp-{}",
            self.next_token.fetch_add(1, Ordering::Relaxed)
        );
        meta.insert("progressToken".into(), Value::String(token.clone()));
        let activity = Arc::new(Notify::new());
        self.progress.lock().insert(
            token.clone(),
            ProgressRoute {
                client_token,
                sink,
                activity: activity.clone(),
            },
        );
        Some((
            v.to_string(),
            activity,
            ProgressGuard { relay: self, token },
        ))
    }

    /// Delivers an upstream's `notifications/progress` to the call it belongs to; false
    /// when no live call owns its token.
    pub fn deliver_progress(&self, message: &str) -> bool {
        let Ok(mut v) = serde_json::from_str::<Value>(message) else {
            return false;
        };
        let Some(token) = v.pointer("/params/progressToken").and_then(Value::as_str) else {
            return false;
        };
        let (client_token, sink, activity) = {
            let routes = self.progress.lock();
            let Some(r) = routes.get(token) else {
                return false;
            };
            (r.client_token.clone(), r.sink.clone(), r.activity.clone())
        };
        activity.notify_one();
        let Ok(client_token) = serde_json::from_str::<Value>(client_token.get()) else {
            return false;
        };
        if let Some(p) = v.get_mut("params").and_then(Value::as_object_mut) {
            p.insert("progressToken".into(), client_token);
        }
        sink.try_send(v.to_string()).is_ok()
    }

    /// Registers a call as cancellable by its client.
    pub fn track(
        &self,
        session: Option<&Session>,
        id: &RawValue,
    ) -> (CancellationToken, InflightGuard<'_>) {
        let token = CancellationToken::new();
        let key = session.map(|s| (s.id.clone(), id.get().to_owned()));
        if let Some(k) = &key {
            self.inflight.lock().insert(k.clone(), token.clone());
        }
        (token, InflightGuard { relay: self, key })
    }

    /// A client's `notifications/cancelled`: stops that call if it is still running.
    pub fn cancel(&self, session: &Session, params: Option<&RawValue>) -> bool {
        let Some(id) = params.and_then(|p| {
            let v: Value = serde_json::from_str(p.get()).ok()?;
            v.get("requestId").map(Value::to_string)
        }) else {
            return false;
        };
        match self.inflight.lock().get(&(session.id.clone(), id)) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    /// The answerer of server-initiated requests a call causes: they go to the call's stream
    /// (or the session's stream) under a gateway id, and the client's answer goes back to
    /// the upstream under the upstream's id. `None` when the call has no way to reach its
    /// client.
    pub fn origin(self: &Arc<Self>, ctx: &CallCtx, server: &str) -> Option<ServerRequestHandler> {
        if ctx.sink.is_none() && ctx.session.is_none() {
            return None;
        }
        let relay = self.clone();
        let ctx = ctx.clone();
        let server: Arc<str> = server.into();
        Some(ServerRequestHandler::new(move |request: String| {
            let relay = relay.clone();
            let ctx = ctx.clone();
            let server = server.clone();
            Box::pin(async move { relay.ask_client(&ctx, &server, &request).await })
        }))
    }

    /// An upstream cancelled a request it had sent a client: the client is told, and the
    /// upstream gets no answer. False when no such request is pending.
    pub fn upstream_cancelled(&self, server: &str, message: &str) -> bool {
        let Ok(v) = serde_json::from_str::<Value>(message) else {
            return false;
        };
        let Some(up_id) = v.pointer("/params/requestId").map(Value::to_string) else {
            return false;
        };
        let Some((client_id, target)) = self
            .server_requests
            .lock()
            .remove(&(server.to_owned(), up_id))
        else {
            return false;
        };
        // Dropping the waiter makes the pending ask end without an answer.
        self.client_requests.lock().remove(&client_id);
        let mut params = serde_json::Map::new();
        params.insert("requestId".into(), Value::String(client_id));
        if let Some(reason) = v.pointer("/params/reason") {
            params.insert("reason".into(), reason.clone());
        }
        let note = jsonrpc::notification(
            "notifications/cancelled",
            Some(&Value::Object(params).to_string()),
        );
        target.try_send(note).is_ok()
    }

    async fn ask_client(&self, ctx: &CallCtx, server: &str, request: &str) -> String {
        let Ok(env) = Envelope::parse(request.as_bytes()) else {
            return jsonrpc::error(None, jsonrpc::PARSE_ERROR, "unreadable request", None);
        };
        let Some(up_id) = env.id else {
            return jsonrpc::error(None, jsonrpc::INVALID_REQUEST, "request without id", None);
        };
        let method = env.method().to_owned();
        let target = ctx
            .sink
            .clone()
            .filter(|s| !s.is_closed())
            .or_else(|| ctx.session.as_ref().and_then(|s| s.sender()));
        let Some(target) = target else {
            return jsonrpc::error(
                Some(up_id),
                jsonrpc::METHOD_NOT_FOUND,
                &format!("{method}: the client has no open stream to receive it (metamcp)"),
                None,
            );
        };
        let client_id = format!(
            "metamcp-req-{}",
            self.next_request.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        self.client_requests.lock().insert(client_id.clone(), tx);
        let key = (server.to_owned(), up_id.get().to_owned());
        self.server_requests
            .lock()
            .insert(key.clone(), (client_id.clone(), target.clone()));
        let msg = jsonrpc::request_str_id(&client_id, &method, env.params.map(RawValue::get));
        let sent = target.send(msg).await.is_ok();
        let answer = if sent {
            tokio::time::timeout(CLIENT_ANSWER_TIMEOUT, rx)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        self.client_requests.lock().remove(&client_id);
        let cancelled_upstream = self.server_requests.lock().remove(&key).is_none();
        if cancelled_upstream && answer.is_none() {
            // The upstream withdrew the request: it expects no answer.
            return String::new();
        }
        match answer {
            Some((false, result)) => jsonrpc::response(up_id, &result),
            Some((true, error)) => jsonrpc::response_error_raw(Some(up_id), &error),
            None => jsonrpc::error(
                Some(up_id),
                jsonrpc::INTERNAL_ERROR,
                &format!("{method}: the client did not answer (metamcp)"),
                None,
            ),
        }
    }

    /// A client's answer to a request forwarded to it; false when nothing waits for it.
    pub fn client_answer(
        &self,
        id: &RawValue,
        result: Option<&RawValue>,
        error: Option<&RawValue>,
    ) -> bool {
        let Ok(id) = serde_json::from_str::<String>(id.get()) else {
            return false;
        };
        let Some(tx) = self.client_requests.lock().remove(&id) else {
            return false;
        };
        let answer = match (result, error) {
            (Some(r), _) => (false, r.get().to_owned()),
            (None, Some(e)) => (true, e.get().to_owned()),
            (None, None) => (
                true,
                r#"{"code":-32603,"message":"empty answer"}"#.to_owned(),
            ),
        };
        tx.send(answer).is_ok()
    }

    /// Records a successful `resources/subscribe` or `resources/unsubscribe`.
    pub fn subscription(&self, session: &Session, uri: &str, subscribe: bool) {
        let mut subs = self.subscriptions.lock();
        if subscribe {
            subs.entry(uri.to_owned())
                .or_default()
                .insert(session.id.clone());
        } else if let Some(set) = subs.get_mut(uri) {
            set.remove(&session.id);
            if set.is_empty() {
                subs.remove(uri);
            }
        }
    }

    /// Sessions subscribed to `uri`.
    pub fn subscribers(&self, uri: &str) -> Vec<String> {
        self.subscriptions
            .lock()
            .get(uri)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets a session's subscriptions (it ended).
    pub fn forget_session(&self, session_id: &str) {
        let mut subs = self.subscriptions.lock();
        subs.retain(|_, set| {
            set.remove(session_id);
            !set.is_empty()
        });
    }
}

/// The endpoints whose namespace holds server `server_name` (or is one of `namespaces`).
pub fn endpoints_of<'a>(
    snap: &'a Snapshot,
    server_name: Option<&str>,
    namespaces: &[String],
) -> HashSet<&'a str> {
    snap.endpoints
        .values()
        .filter(|ep| {
            namespaces.contains(&ep.namespace_id)
                || server_name.is_some_and(|s| {
                    snap.namespaces
                        .get(&ep.namespace_id)
                        .is_some_and(|ns| ns.active().any(|m| m.server_name == s))
                })
        })
        .map(|ep| ep.id.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn progress_tokens_are_mapped_both_ways() {
        let relay = Relay::default();
        let (tx, mut rx) = mpsc::channel(4);
        let ctx = CallCtx {
            session: None,
            sink: Some(tx),
        };
        let params = r#"{"name":"slow","arguments":{},"_meta":{"progressToken":7,"x-keep":true}}"#;
        let (rewritten, _activity, guard) = relay.route_progress(params, &ctx).unwrap();
        let v: Value = serde_json::from_str(&rewritten).unwrap();
        let token = v["_meta"]["progressToken"].as_str().unwrap().to_owned();
        assert!(token.starts_with("metamcp-"));
        assert_eq!(v["_meta"]["x-keep"], true);
        let up = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":"{token}","progress":1,"total":3}}}}"#
        );
        assert!(relay.deliver_progress(&up));
        let got: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(got["params"]["progressToken"], 7);
        assert_eq!(got["params"]["total"], 3);
        drop(guard);
        assert!(!relay.deliver_progress(&up), "route outlived its call");
        assert!(relay.route_progress(r#"{"name":"x"}"#, &ctx).is_none());
    }
}
