//! `/metamcp/{endpoint}/sse` and `/metamcp/{endpoint}/message`: the legacy HTTP+SSE
//! transport (MCP 2024-11-05 "Transports §HTTP with SSE"), for clients that predate
//! Streamable HTTP.
//!
//! `GET …/sse` creates a session ([`SessionKind::LegacySse`]) bound to the endpoint and the
//! key, and opens its SSE stream; the stream's first event is `endpoint`, whose data is the
//! URL to POST to: `/metamcp/{endpoint}/message?sessionId=<id>`. Each POST there carries one
//! JSON-RPC message and is answered 202 Accepted at once; the answer to a request travels as
//! a `message` event on the stream, never in the POST's response.
//!
//! Invariants:
//! - the key is checked on the GET and on every POST, by the same rules as `/mcp`
//!   (`?api_key=` only where the endpoint enables query auth); the `sessionId` query parameter
//!   never reaches the key lookup, and a session id is unknown (404) on another endpoint,
//!   with another key, or on the Streamable HTTP face;
//! - the session lives exactly as long as its stream: the stream's end (client gone) removes
//!   the session, and removing the session (shutdown) ends the stream once the answers still
//!   being computed are delivered;
//! - a request whose stream has closed is abandoned, which cancels its upstream call;
//! - each request reserves its answer's place on the stream before it runs, so a session has
//!   at most the stream's capacity (256) of answers pending; beyond that a POST gets 429;
//! - keep-alive comments every 15 s, like the Streamable HTTP GET stream.
//!
//! Not done here: JSON-RPC batches (2024-11-05 has none) and acting on the client's
//! `notifications/cancelled` (logged, as on `/mcp`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Weak};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use metamcp_core::jsonrpc::{self, Envelope, INVALID_REQUEST, Kind, PARSE_ERROR};
use tokio::sync::mpsc;

use super::streamable::initialize_result;
use crate::auth::Principal;
use crate::error::{HttpError, RpcRefusal, rpc_error_response};
use crate::namespace;
use crate::ratelimit::PeerAddr;
use crate::relay::{Answerer, CallCtx};
use crate::session::{NewSession, SessionKind};
use crate::snapshot::{EndpointCfg, NamespaceCfg};
use crate::state::Gateway;

/// The protocol version of this transport, recorded on its sessions (which exist before
/// their `initialize`).
pub const LEGACY_PROTOCOL_VERSION: &str = "2024-11-05";
/// The query parameter carrying the session id on POSTs.
const SESSION_PARAM: &str = "sessionId";

/// The endpoint, its namespace and the caller.
struct Ctx {
    ep: Arc<EndpointCfg>,
    namespace: Option<Arc<NamespaceCfg>>,
    principal: Principal,
}

fn resolve(
    gw: &Gateway,
    endpoint: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    peer: Option<std::net::SocketAddr>,
) -> Result<Ctx, HttpError> {
    let (snap, ep, principal) = super::resolve_endpoint(gw, "sse", endpoint, headers, query, peer)?;
    let namespace = snap.namespaces.get(&ep.namespace_id).cloned();
    Ok(Ctx {
        ep,
        namespace,
        principal,
    })
}

/// Splits the query into the session id and the rest (what authentication may read).
fn split_query(query: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(q) = query else {
        return (None, None);
    };
    let mut session = None;
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        if k == SESSION_PARAM {
            if session.is_none() {
                session = Some(v.into_owned());
            }
        } else {
            rest.append_pair(&k, &v);
        }
    }
    let rest = rest.finish();
    (session, (!rest.is_empty()).then_some(rest))
}

/// Removes its session when the stream that owns it is dropped (client gone, or the stream
/// ended because the session was removed).
struct EndSession {
    gw: Weak<Gateway>,
    id: String,
    endpoint: String,
}

impl Drop for EndSession {
    fn drop(&mut self) {
        if let Some(gw) = self.gw.upgrade()
            && gw.sessions.remove(&self.id)
        {
            tracing::info!(endpoint = %self.endpoint, "legacy SSE client session ended (stream closed)");
        }
    }
}

/// GET `/sse`: a new session and its stream.
pub async fn get(
    State(gw): State<Arc<Gateway>>,
    Path(endpoint): Path<String>,
    RawQuery(query): RawQuery,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
) -> Response {
    let (_, query) = split_query(query.as_deref());
    let ctx = match resolve(&gw, &endpoint, &headers, query.as_deref(), peer) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !accept.is_empty() && !accept.contains("text/event-stream") && !accept.contains("*/*") {
        return rpc_error_response(
            StatusCode::NOT_ACCEPTABLE,
            None,
            INVALID_REQUEST,
            "Not Acceptable: the SSE stream needs Accept: text/event-stream",
        );
    }
    // Opening a session counts as a request; there is no JSON-RPC id to answer yet, so the
    // refusal is HTTP 429 with Retry-After (the client's connect fails, nothing waits).
    if let Err(rl) = gw
        .limiter
        .check_request(&ctx.ep, &ctx.principal, peer, &headers)
    {
        return rl.http_error().into_response();
    }
    let session = match gw.sessions.create(NewSession {
        kind: SessionKind::LegacySse,
        endpoint_id: &ctx.ep.id,
        key_id: ctx.principal.binding(),
        client: gw.limiter.client_of(&ctx.principal, peer, &headers),
        protocol_version: LEGACY_PROTOCOL_VERSION,
    }) {
        Ok(s) => s,
        Err(refused) => return refused.http_error().into_response(),
    };
    let Some(rx) = session.open_stream() else {
        gw.sessions.remove(&session.id);
        return HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "A new session already had a stream",
        )
        .into_response();
    };
    tracing::info!(endpoint = %ctx.ep.name, "legacy SSE client session started");
    let message_url = format!(
        "/metamcp/{}/message?{SESSION_PARAM}={}",
        ctx.ep.name, session.id
    );
    // why: the stream must not hold the session itself — the session owns the stream's
    // sender, and dropping the session is what ends the stream.
    let end = EndSession {
        gw: Arc::downgrade(&gw),
        id: session.id.clone(),
        endpoint: ctx.ep.name.clone(),
    };
    drop(session);
    let first = futures::stream::once(async move {
        Ok::<_, Infallible>(Event::default().event("endpoint").data(message_url))
    });
    let messages = futures::stream::unfold((rx, end), |(mut rx, end)| async move {
        let msg = rx.recv().await?;
        Some((
            Ok::<_, Infallible>(Event::default().event("message").data(msg)),
            (rx, end),
        ))
    });
    Sse::new(first.chain(messages))
        .keep_alive(KeepAlive::new().interval(gw.sse_keep_alive()))
        .into_response()
}

/// POST `/message?sessionId=…`: one client message; answers go on the session's stream.
pub async fn post(
    State(gw): State<Arc<Gateway>>,
    Path(endpoint): Path<String>,
    RawQuery(query): RawQuery,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session_id, query) = split_query(query.as_deref());
    let ctx = match resolve(&gw, &endpoint, &headers, query.as_deref(), peer) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(session_id) = session_id else {
        return RpcRefusal::new(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "Bad Request: the sessionId query parameter is required",
        )
        .into_response();
    };
    let unknown = || {
        RpcRefusal::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            "Session not found: its stream closed, or it belongs to another endpoint or key; open a new one with GET /sse",
        )
        .into_response()
    };
    let Some(session) = gw.sessions.get_bound_kind(
        SessionKind::LegacySse,
        &session_id,
        &ctx.ep.id,
        ctx.principal.binding(),
    ) else {
        return unknown();
    };
    session.touch();
    // why: a session whose stream just closed is about to be removed; nothing could be
    // delivered to it.
    let Some(tx) = session.sender() else {
        return unknown();
    };
    if let Err(refused) = super::require_json(&headers) {
        return refused.into_response();
    }
    if let Err(refused) = super::check_depth(&body, gw.opts.limits.json_depth) {
        return refused.into_response();
    }
    let Some(ns) = ctx.namespace else {
        return HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "namespace_missing",
            "The endpoint's namespace no longer exists",
        )
        .into_response();
    };
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return rpc_error_response(
            StatusCode::BAD_REQUEST,
            None,
            INVALID_REQUEST,
            "Invalid Request: the HTTP+SSE transport takes one message per POST, not a batch",
        );
    }
    let env = match Envelope::parse(&body) {
        Ok(e) => e,
        Err(e) => {
            return rpc_error_response(
                StatusCode::BAD_REQUEST,
                None,
                PARSE_ERROR,
                &format!("Parse error: {e}"),
            );
        }
    };
    match env.kind() {
        Kind::Invalid => rpc_error_response(
            StatusCode::BAD_REQUEST,
            env.id,
            INVALID_REQUEST,
            "Invalid Request: not a JSON-RPC 2.0 request, notification or response",
        ),
        Kind::Request => {
            let Some(id) = env.id else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            super::count_request(&gw, "sse", &ctx.ep.name, env.method());
            // why: the answer's place on the stream is reserved before the work starts, so a
            // session has at most a stream's capacity of requests in flight, and a finished
            // answer never waits for room.
            let permit = match tx.clone().try_reserve_owned() {
                Ok(p) => p,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return rpc_error_response(
                        StatusCode::TOO_MANY_REQUESTS,
                        Some(id),
                        INVALID_REQUEST,
                        "Too many requests in flight on this session; read the stream",
                    );
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return unknown(),
            };
            // A refused request is answered where its answer would go: on the stream.
            if let Err(rl) = gw
                .limiter
                .check_request(&ctx.ep, &ctx.principal, peer, &headers)
            {
                super::audit_refused(
                    &gw,
                    "sse",
                    env.method(),
                    env.params,
                    &ctx.ep,
                    &ctx.principal,
                    peer,
                    &headers,
                    super::rate_limited(),
                )
                .await;
                permit.send(rl.rpc_error(Some(id)));
                return StatusCode::ACCEPTED.into_response();
            }
            if env.method() == "initialize" {
                let (version, result) = initialize_result(env.params, &ns.name);
                tracing::info!(endpoint = %ctx.ep.name, protocol = %version, "legacy SSE client initialized");
                permit.send(jsonrpc::response(id, &result));
            } else {
                let call = CallCtx {
                    session: Some(session.clone()),
                    sink: Some(tx.clone()),
                    call_id: None,
                    who: super::audit_who(
                        &gw,
                        "sse",
                        env.method(),
                        &ctx.ep,
                        &ctx.principal,
                        peer,
                        &headers,
                    ),
                    trace: super::trace_in(&gw, "sse", &ctx.ep.name, &headers),
                    user: ctx.principal.user_id(),
                };
                deliver(tx, permit, answer(gw.clone(), ns, body.clone(), call));
            }
            StatusCode::ACCEPTED.into_response()
        }
        Kind::Response => {
            // The answer to a sampling/elicitation/roots request an upstream sent through us.
            let taken = env.id.is_some_and(|id| {
                let by = Answerer::Session(session.id.clone());
                gw.rt.relay.client_answer(id, &by, env.result, env.error)
            });
            tracing::debug!(endpoint = %ctx.ep.name, taken, "legacy SSE client answered a forwarded request");
            StatusCode::ACCEPTED.into_response()
        }
        Kind::Notification => {
            match env.method() {
                "notifications/cancelled" => {
                    let stopped = gw.rt.relay.cancel(&session, env.params);
                    tracing::debug!(endpoint = %ctx.ep.name, stopped, "legacy SSE client cancelled a request");
                }
                "notifications/initialized" => {
                    tracing::debug!(endpoint = %ctx.ep.name, "legacy SSE client initialized (notification)")
                }
                m => {
                    tracing::debug!(endpoint = %ctx.ep.name, method = m, "legacy SSE client message ignored")
                }
            }
            StatusCode::ACCEPTED.into_response()
        }
    }
}

/// The JSON-RPC response to the request in `body` (already checked to be one).
async fn answer(gw: Arc<Gateway>, ns: Arc<NamespaceCfg>, body: Bytes, call: CallCtx) -> String {
    let env = match Envelope::parse(&body) {
        Ok(env) => env,
        Err(e) => return jsonrpc::error(None, PARSE_ERROR, &format!("Parse error: {e}"), None),
    };
    let Some(id) = env.id else {
        return jsonrpc::error(None, INVALID_REQUEST, "Invalid Request", None);
    };
    namespace::handle_ctx(&gw.rt, &ns, env.method(), id, env.params, &call)
        .await
        .into_string()
}

/// Computes an answer in its own task and puts it in its reserved place on the session's
/// stream; gives up (and so cancels the upstream call) as soon as the stream is gone.
fn deliver<F>(tx: mpsc::Sender<String>, place: mpsc::OwnedPermit<String>, answer: F)
where
    F: Future<Output = String> + Send + 'static,
{
    tokio::spawn(async move {
        tokio::select! {
            _ = tx.closed() => tracing::debug!("legacy SSE stream closed before its answer"),
            out = answer => {
                place.send(out);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_is_kept_out_of_the_rest_of_the_query() {
        assert_eq!(split_query(None), (None, None));
        assert_eq!(
            split_query(Some("sessionId=abc")),
            (Some("abc".into()), None)
        );
        assert_eq!(
            split_query(Some("sessionId=abc&api_key=sk_mt_x&sessionId=def")),
            (Some("abc".into()), Some("api_key=sk_mt_x".into()))
        );
        assert_eq!(
            split_query(Some("apikey=k%20y")),
            (None, Some("apikey=k+y".into()))
        );
    }
}
