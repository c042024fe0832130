//! Messages that travel outside one request/response pair: progress, requests upstreams
//! send to clients (sampling, elicitation, roots), client cancellations, resource
//! subscriptions and log levels. Each is bound to whom it was issued to.
//!
//! - **Progress.** A client's `_meta.progressToken` is replaced upstream by an unguessable
//!   gateway token: two clients sharing one upstream connection may both use token `1`.
//!   The upstream's `notifications/progress` reaches the call only through the connection
//!   its request went out on (`metamcp_upstream::scope`), is mapped back to the client's
//!   token and delivered on the stream of the call that asked for it; each progress also
//!   pushes the call's deadline back (`MCP_RESET_TIMEOUT_ON_PROGRESS`).
//! - **Requests for clients.** A request an upstream sends while serving a call is sent to
//!   that call's client under an unguessable id (`metamcp-req-<hex>`), and only an answer
//!   from the same [`Answerer`] — the session it was sent on, or for a stateless call the
//!   parked call it belongs to — is taken; an answer from anyone else is ignored and
//!   logged. When the upstream withdraws the request, or the asking ends without an answer,
//!   the client gets `notifications/cancelled`.
//! - **Cancellation.** A client's `notifications/cancelled` stops its own call in flight;
//!   the dropped upstream request sends `notifications/cancelled` upstream.
//! - **Subscriptions and log levels** are recorded per session (resource URIs for
//!   `resources/updated`; the level each session asked for with `logging/setLevel`, and
//!   per server the most verbose level any of its current sessions asked for).
//!
//! Invariant: nothing here is on the path of a call without a progress token or a client
//! that can be asked.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use metamcp_core::LogLevel;
use metamcp_core::jsonrpc::{self, Envelope};
use metamcp_upstream::scope::{ProgressSink, ServerRequestHandler};
use parking_lot::Mutex;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::session::Session;
use crate::snapshot::Snapshot;

/// 122 random bits from the OS, as 32 hex digits: ids and tokens handed to clients and
/// upstreams that must not be guessable.
pub(crate) fn unguessable() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Who may answer a request forwarded to a client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Answerer {
    /// The client session it was sent on (session era: Streamable HTTP or legacy SSE).
    Session(String),
    /// A stateless call (2026-07-28), answered with `inputResponses` on its retry, which
    /// is bound to the endpoint, key, method and target of the call (see `modern::mrtr`).
    Call(Arc<str>),
}

/// Where messages about one call go, besides its final answer.
#[derive(Debug, Clone, Default)]
pub struct CallCtx {
    /// The client's session, if the transport has one.
    pub session: Option<Arc<Session>>,
    /// The stream of this call (an SSE response, a legacy SSE session stream, or a
    /// stateless call's channel).
    pub sink: Option<mpsc::Sender<String>>,
    /// A stateless call that can be asked for input: the id its answers are bound to.
    pub call_id: Option<Arc<str>>,
    /// Who is calling, for the audit log (`None`: not recorded).
    pub who: Option<Arc<crate::audit::Who>>,
    /// The face, endpoint and W3C headers of the request, for its span (`None`: tracing off).
    pub trace: Option<Arc<crate::otel::Incoming>>,
    /// The user behind the call (a signed-in user, or an API key's owner): whose upstream
    /// credentials a per-user OAuth server gets.
    pub user: Option<Arc<str>>,
}

impl CallCtx {
    /// Who may answer the requests this call causes; `None` when nobody can be asked.
    pub fn answerer(&self) -> Option<Answerer> {
        match (&self.call_id, &self.session) {
            (Some(id), _) => Some(Answerer::Call(id.clone())),
            (None, Some(s)) => Some(Answerer::Session(s.id.clone())),
            (None, None) => None,
        }
    }
}

/// A request forwarded to a client, waiting for its answer.
#[derive(Debug)]
struct Ask {
    answerer: Answerer,
    /// `(is_error, raw result or error object)`.
    tx: oneshot::Sender<(bool, String)>,
}

/// Log levels the sessions asked for, per server.
#[derive(Debug, Default)]
struct Levels {
    /// Server id → session id → the level that session asked for.
    asked: HashMap<String, HashMap<String, LogLevel>>,
    /// Server id → the level the gateway last set upstream.
    applied: HashMap<String, LogLevel>,
}

impl Levels {
    /// The servers whose upstream level should change now, and the level each should get.
    fn changes(&mut self, servers: impl IntoIterator<Item = String>) -> Vec<(String, LogLevel)> {
        let mut out = Vec::new();
        for server in servers {
            let target = self
                .asked
                .get(&server)
                .and_then(|m| m.values().min().copied());
            let Some(target) = target else {
                self.asked.remove(&server);
                continue;
            };
            if self.applied.get(&server) != Some(&target) {
                self.applied.insert(server.clone(), target);
                out.push((server, target));
            }
        }
        out
    }
}

/// Relay state shared by the whole gateway.
#[derive(Debug, Default)]
pub struct Relay {
    /// Resource URI → sessions subscribed to it.
    subscriptions: Mutex<HashMap<String, HashSet<String>>>,
    /// (session id, client request id as JSON) → the call's cancellation.
    inflight: Mutex<HashMap<(String, String), CancellationToken>>,
    /// Requests forwarded to clients, by the id the client saw.
    asks: Mutex<HashMap<String, Ask>>,
    levels: Mutex<Levels>,
}

/// How long a client gets to answer a request an upstream sent it (a person may be typing
/// an elicitation answer).
pub const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

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

/// A call's progress, rerouted: the params with the gateway's token, the signal that
/// resets the call's deadline, and the route the connection delivers progress through.
pub struct ProgressRoute {
    pub params: String,
    pub activity: Arc<Notify>,
    pub token: Arc<str>,
    pub sink: ProgressSink,
}

impl Relay {
    /// If `params` carry `_meta.progressToken` and the call has a stream, the params with
    /// an unguessable gateway token instead, and where that token's progress goes.
    pub fn route_progress(&self, params: &str, ctx: &CallCtx) -> Option<ProgressRoute> {
        let out = ctx.sink.clone()?;
        if !params.contains("progressToken") {
            return None;
        }
        let mut v: Value = serde_json::from_str(params).ok()?;
        let meta = v.get_mut("_meta")?.as_object_mut()?;
        let client_token = meta.get("progressToken")?.clone();
        if !(client_token.is_string() || client_token.is_i64() || client_token.is_u64()) {
            return None;
        }
        let token: Arc<str> = format!("metamcp-{}", unguessable()).into();
        meta.insert("progressToken".into(), Value::String(token.to_string()));
        let activity = Arc::new(Notify::new());
        let signal = activity.clone();
        let sink = ProgressSink::new(move |message: &str| {
            signal.notify_one();
            let Ok(mut v) = serde_json::from_str::<Value>(message) else {
                return false;
            };
            match v.get_mut("params").and_then(Value::as_object_mut) {
                Some(p) => p.insert("progressToken".into(), client_token.clone()),
                None => return false,
            };
            // Like any stream message that finds no room: dropped, never waited for.
            out.try_send(v.to_string()).is_ok()
        });
        Some(ProgressRoute {
            params: v.to_string(),
            activity,
            token,
            sink,
        })
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

    /// The answerer of server-initiated requests a call causes: they go to the call's
    /// stream (or the session's stream) under an unguessable id, and the answer of the
    /// call's own [`Answerer`] goes back to the upstream under the upstream's id. `None`
    /// when the call has no client that could be asked.
    pub fn origin(self: &Arc<Self>, ctx: &CallCtx) -> Option<ServerRequestHandler> {
        ctx.answerer()?;
        let relay = self.clone();
        let ctx = ctx.clone();
        Some(ServerRequestHandler::new(move |request: String| {
            let relay = relay.clone();
            let ctx = ctx.clone();
            Box::pin(async move { relay.ask_client(&ctx, &request).await })
        }))
    }

    async fn ask_client(&self, ctx: &CallCtx, request: &str) -> String {
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
        let (Some(target), Some(answerer)) = (target, ctx.answerer()) else {
            return jsonrpc::error(
                Some(up_id),
                jsonrpc::METHOD_NOT_FOUND,
                &format!("{method}: the client has no open stream to receive it (metamcp)"),
                None,
            );
        };
        let client_id = format!("metamcp-req-{}", unguessable());
        let (tx, rx) = oneshot::channel();
        self.asks
            .lock()
            .insert(client_id.clone(), Ask { answerer, tx });
        let mut guard = AskGuard {
            relay: self,
            client_id: client_id.clone(),
            target: target.clone(),
            answered: false,
        };
        let msg = jsonrpc::request_str_id(&client_id, &method, env.params.map(RawValue::get));
        let answer = if target.send(msg).await.is_ok() {
            tokio::time::timeout(CLIENT_ANSWER_TIMEOUT, rx)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        guard.answered = answer.is_some();
        drop(guard);
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

    /// A client's answer to a request forwarded to it, from `by`; false when nothing waits
    /// for that id from `by` (an answer from anyone else is ignored and logged).
    pub fn client_answer(
        &self,
        id: &RawValue,
        by: &Answerer,
        result: Option<&RawValue>,
        error: Option<&RawValue>,
    ) -> bool {
        let Ok(id) = serde_json::from_str::<String>(id.get()) else {
            return false;
        };
        let ask = {
            let mut asks = self.asks.lock();
            match asks.get(&id) {
                Some(a) if a.answerer == *by => asks.remove(&id),
                Some(_) => {
                    tracing::warn!(
                        "an answer to a request forwarded to another client was ignored \
                         (it came from a session or call it was not sent to)"
                    );
                    return false;
                }
                None => None,
            }
        };
        let Some(ask) = ask else {
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
        ask.tx.send(answer).is_ok()
    }

    /// Whether `session` may subscribe to one more URI (`uri` itself may be one it holds).
    pub fn may_subscribe(&self, session: &Session, uri: &str, limit: usize) -> bool {
        let subs = self.subscriptions.lock();
        if subs.get(uri).is_some_and(|s| s.contains(&session.id)) {
            return true;
        }
        subs.values().filter(|s| s.contains(&session.id)).count() < limit
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

    /// Records the level `session` asked for on `servers`; returns the servers whose
    /// upstream level must change, with the level each gets (the most verbose any of its
    /// current sessions asked for).
    pub fn set_log_level(
        &self,
        session: &str,
        servers: &[String],
        level: LogLevel,
    ) -> Vec<(String, LogLevel)> {
        let mut levels = self.levels.lock();
        for s in servers {
            levels
                .asked
                .entry(s.clone())
                .or_default()
                .insert(session.to_owned(), level);
        }
        levels.changes(servers.iter().cloned())
    }

    /// Forgets what a session held (it ended): subscriptions and log levels. Returns the
    /// servers whose upstream log level should change now that it is gone.
    pub fn forget_session(&self, session_id: &str) -> Vec<(String, LogLevel)> {
        {
            let mut subs = self.subscriptions.lock();
            subs.retain(|_, set| {
                set.remove(session_id);
                !set.is_empty()
            });
        }
        let mut levels = self.levels.lock();
        let touched: Vec<String> = levels
            .asked
            .iter_mut()
            .filter_map(|(server, m)| m.remove(session_id).map(|_| server.clone()))
            .collect();
        levels.changes(touched)
    }
}

/// Ends an ask: forgets it, and — unless it was answered — tells the client it need not
/// answer any more (the upstream withdrew it, gave up, or the client took too long).
struct AskGuard<'a> {
    relay: &'a Relay,
    client_id: String,
    target: mpsc::Sender<String>,
    answered: bool,
}

impl Drop for AskGuard<'_> {
    fn drop(&mut self) {
        self.relay.asks.lock().remove(&self.client_id);
        if !self.answered {
            let params = serde_json::json!({
                "requestId": self.client_id,
                "reason": "the server no longer needs the answer (metamcp)",
            });
            let note = jsonrpc::notification("notifications/cancelled", Some(&params.to_string()));
            let _ = self.target.try_send(note);
        }
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
    async fn progress_tokens_are_unguessable_and_mapped_back() {
        let relay = Relay::default();
        let (tx, mut rx) = mpsc::channel(4);
        let ctx = CallCtx {
            sink: Some(tx),
            ..CallCtx::default()
        };
        let params = r#"{"name":"slow","arguments":{},"_meta":{"progressToken":7,"x-keep":true}}"#;
        let route = relay.route_progress(params, &ctx).unwrap();
        let v: Value = serde_json::from_str(&route.params).unwrap();
        let token = v["_meta"]["progressToken"].as_str().unwrap().to_owned();
        assert_eq!(token, &*route.token);
        assert!(token.starts_with("metamcp-") && token.len() == "metamcp-".len() + 32);
        assert_eq!(v["_meta"]["x-keep"], true);
        let other = relay.route_progress(params, &ctx).unwrap();
        assert_ne!(other.token, route.token, "tokens repeat");
        let up = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":"{token}","progress":1,"total":3}}}}"#
        );
        assert!(route.sink.deliver(&up));
        let got: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(got["params"]["progressToken"], 7);
        assert_eq!(got["params"]["total"], 3);
        assert!(relay.route_progress(r#"{"name":"x"}"#, &ctx).is_none());
    }

    #[tokio::test]
    async fn an_answer_is_taken_only_from_whom_the_request_was_sent_to() {
        let relay = Arc::new(Relay::default());
        let (tx, mut rx) = mpsc::channel(4);
        let ctx = CallCtx {
            sink: Some(tx),
            call_id: Some("victim".into()),
            ..CallCtx::default()
        };
        let handler = relay.origin(&ctx).unwrap();
        let asking = tokio::spawn(handler.answer(
            r#"{"jsonrpc":"2.0","id":9,"method":"elicitation/create","params":{}}"#.into(),
        ));
        let sent: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
        let id = sent["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("metamcp-req-") && id.len() == "metamcp-req-".len() + 32);
        let raw_id = RawValue::from_string(Value::from(id.as_str()).to_string()).unwrap();
        let injected = RawValue::from_string(r#"{"action":"accept"}"#.into()).unwrap();
        for stranger in [
            Answerer::Session("attacker".into()),
            Answerer::Call("attacker".into()),
        ] {
            assert!(!relay.client_answer(&raw_id, &stranger, Some(&injected), None));
        }
        let own = RawValue::from_string(r#"{"action":"decline"}"#.into()).unwrap();
        assert!(relay.client_answer(&raw_id, &Answerer::Call("victim".into()), Some(&own), None));
        let answer: Value = serde_json::from_str(&asking.await.unwrap()).unwrap();
        assert_eq!(answer["id"], 9);
        assert_eq!(answer["result"]["action"], "decline");
    }

    #[tokio::test]
    async fn a_withdrawn_ask_tells_the_client() {
        let relay = Arc::new(Relay::default());
        let (tx, mut rx) = mpsc::channel(4);
        let ctx = CallCtx {
            sink: Some(tx),
            call_id: Some("c".into()),
            ..CallCtx::default()
        };
        let handler = relay.origin(&ctx).unwrap();
        let asking = tokio::spawn(handler.answer(
            r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}"#.into(),
        ));
        let sent: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
        asking.abort();
        let note: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(note["method"], "notifications/cancelled");
        assert_eq!(note["params"]["requestId"], sent["id"]);
        assert!(relay.asks.lock().is_empty());
    }

    #[test]
    fn upstream_log_level_is_the_most_verbose_any_session_asked_for() {
        let relay = Relay::default();
        let s = |n: &str| vec![n.to_owned()];
        assert_eq!(
            relay.set_log_level("a", &s("srv"), LogLevel::Warning),
            [("srv".to_owned(), LogLevel::Warning)]
        );
        assert_eq!(
            relay.set_log_level("b", &s("srv"), LogLevel::Debug),
            [("srv".to_owned(), LogLevel::Debug)]
        );
        assert!(
            relay
                .set_log_level("a", &s("srv"), LogLevel::Error)
                .is_empty()
        );
        assert_eq!(
            relay.forget_session("b"),
            [("srv".to_owned(), LogLevel::Error)]
        );
        assert!(relay.forget_session("a").is_empty());
        assert_eq!(LogLevel::parse("notice"), Some(LogLevel::Notice));
        assert!(LogLevel::Debug < LogLevel::Emergency);
    }
}
