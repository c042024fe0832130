//! `/metamcp/{endpoint}/mcp`: the Streamable HTTP transport (MCP 2025-03-26 … 2025-11-25,
//! "Transports §Streamable HTTP"), written at message level.
//!
//! POST carries one JSON-RPC message (or, for 2025-03-26 clients, a batch). `initialize`
//! creates a session bound to the endpoint and key; every other message must carry its
//! `Mcp-Session-Id`. Requests are answered with `application/json`; notifications and
//! responses with 202. GET opens the session's server-to-client SSE stream (keep-alive every
//! 15 s, `METAMCP_SSE_KEEPALIVE_MS`); DELETE ends the session.
//!
//! Messages of the stateless 2026-07-28 era (no session, `server/discover` or per-request
//! `_meta` protocol context) are recognised first and answered by `modern.rs`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt as _;
use metamcp_core::jsonrpc::{self, Envelope, INVALID_REQUEST, Kind, PARSE_ERROR};
use serde_json::value::RawValue;

use crate::auth::ClientId;
use crate::auth::Principal;
use crate::error::{HttpError, RpcRefusal, rpc_error_response};
use crate::limits::Exceeded;
use crate::namespace;
use crate::ratelimit::PeerAddr;
use crate::relay::{Answerer, CallCtx};
use crate::session::{NewSession, Session, SessionKind, StreamPermit};
use crate::snapshot::{EndpointCfg, NamespaceCfg, Snapshot};
use crate::state::Gateway;

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const PROTOCOL_HEADER: &str = "mcp-protocol-version";
/// Protocol versions this face speaks, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The endpoint, its namespace and the caller, or the HTTP refusal.
struct Ctx {
    snap: Arc<Snapshot>,
    ep: Arc<EndpointCfg>,
    principal: Principal,
}

impl Ctx {
    fn namespace(&self) -> Option<&NamespaceCfg> {
        self.snap
            .namespaces
            .get(&self.ep.namespace_id)
            .map(AsRef::as_ref)
    }
}

fn resolve(
    gw: &Gateway,
    endpoint: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    peer: Option<std::net::SocketAddr>,
) -> Result<Ctx, HttpError> {
    let (snap, ep, principal) = super::resolve_endpoint(gw, "mcp", endpoint, headers, query, peer)?;
    Ok(Ctx {
        snap,
        ep,
        principal,
    })
}

/// Checks `MCP-Protocol-Version` when the client sends one.
fn check_protocol_header(headers: &HeaderMap) -> Result<(), RpcRefusal> {
    match headers
        .get(PROTOCOL_HEADER)
        .map(|v| v.to_str().unwrap_or(""))
    {
        Some(v) if !SUPPORTED_VERSIONS.contains(&v) => Err(RpcRefusal::new(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            format!(
                "Bad Request: unsupported MCP-Protocol-Version {v:?} (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

fn session_of(gw: &Gateway, ctx: &Ctx, headers: &HeaderMap) -> Result<Arc<Session>, RpcRefusal> {
    let Some(sid) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(RpcRefusal::new(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required",
        ));
    };
    match gw
        .sessions
        .get_bound(sid, &ctx.ep.id, ctx.principal.binding())
    {
        Some(s) => {
            s.touch();
            Ok(s)
        }
        None => Err(RpcRefusal::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            "Session not found: it expired, was deleted, or belongs to another endpoint or key; initialize a new one",
        )),
    }
}

fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.into(),
    )
        .into_response()
}

/// POST: one message or a batch.
pub async fn post(
    State(gw): State<Arc<Gateway>>,
    Path(endpoint): Path<String>,
    RawQuery(query): RawQuery,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The stateless 2026-07-28 era shares this URL (see `modern.rs`).
    if super::modern::is_modern_post(&headers, &body) {
        return super::modern::post(gw, &endpoint, query.as_deref(), peer, &headers, body).await;
    }
    let ctx = match resolve(&gw, &endpoint, &headers, query.as_deref(), peer) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if let Err(r) = check_protocol_header(&headers) {
        return r.into_response();
    }
    if let Err(refused) = super::require_json(&headers) {
        return refused.into_response();
    }
    if let Err(refused) = super::check_depth(&body, gw.opts.limits.json_depth) {
        return refused.into_response();
    }
    let Some(ns) = ctx.namespace() else {
        return HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "namespace_missing",
            "The endpoint's namespace no longer exists",
        )
        .into_response();
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first == Some(b'[') {
        return post_batch(&gw, &ctx, ns, peer, &headers, &body).await;
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
    let kind = env.kind();
    if kind == Kind::Invalid {
        return rpc_error_response(
            StatusCode::BAD_REQUEST,
            env.id,
            INVALID_REQUEST,
            "Invalid Request: not a JSON-RPC 2.0 request, notification or response",
        );
    }
    if kind == Kind::Request {
        super::count_request(&gw, "mcp", &ctx.ep.name, env.method());
    }
    if kind == Kind::Request && env.method() == "initialize" {
        // why: a refusal is a JSON-RPC error with the request's id, answered like the
        // request would be (200, JSON): a bare 429 leaves SDK clients waiting.
        if let Err(rl) = gw
            .limiter
            .check_request(&ctx.ep, &ctx.principal, peer, &headers)
        {
            return json_response(StatusCode::OK, rl.rpc_error(env.id));
        }
        let client = gw.limiter.client_of(&ctx.principal, peer, &headers);
        return initialize(&gw, &ctx, &env, client);
    }
    let session = match session_of(&gw, &ctx, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    match kind {
        Kind::Request => {
            let Some(id) = env.id else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            if let Err(rl) = gw
                .limiter
                .check_request(&ctx.ep, &ctx.principal, peer, &headers)
            {
                super::audit_refused(
                    &gw,
                    "mcp",
                    env.method(),
                    env.params,
                    &ctx.ep,
                    &ctx.principal,
                    peer,
                    &headers,
                    super::rate_limited(),
                )
                .await;
                return json_response(StatusCode::OK, rl.rpc_error(Some(id)));
            }
            let who = super::audit_who(
                &gw,
                "mcp",
                env.method(),
                &ctx.ep,
                &ctx.principal,
                peer,
                &headers,
            );
            if wants_progress_stream(&headers, env.params) {
                let limit = gw.opts.limits.streams_per_session;
                let Some(permit) = session.stream_permit(limit) else {
                    let refused = Exceeded::new(
                        "METAMCP_MAX_STREAMS_PER_SESSION",
                        limit,
                        "Too many streams open on this session; wait for a streamed answer to end",
                    );
                    return json_response(StatusCode::OK, refused.rpc_error(Some(id)));
                };
                let call = CallCtx {
                    session: Some(session),
                    who,
                    trace: super::trace_in(&gw, "mcp", &ctx.ep.name, &headers),
                    user: ctx.principal.user_id(),
                    ..CallCtx::default()
                };
                return answer_as_stream(&gw, ctx.ep.namespace_id.clone(), body, permit, call);
            }
            let call = CallCtx {
                session: Some(session),
                who,
                trace: super::trace_in(&gw, "mcp", &ctx.ep.name, &headers),
                user: ctx.principal.user_id(),
                ..CallCtx::default()
            };
            let out = namespace::handle_ctx(&gw.rt, ns, env.method(), id, env.params, &call).await;
            json_response(StatusCode::OK, out.into_body())
        }
        _ => {
            on_client_message(&gw, &session, &env);
            StatusCode::ACCEPTED.into_response()
        }
    }
}

/// A request asking for progress, from a client that reads SSE, is answered on an SSE
/// stream: its progress notifications first, then its response (MCP "Streamable HTTP":
/// the server may answer a POST with a stream).
fn wants_progress_stream(headers: &HeaderMap, params: Option<&RawValue>) -> bool {
    let accepts_sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    accepts_sse && params.is_some_and(|p| p.get().contains("progressToken"))
}

/// Runs the request in its own task and streams what it produces (the stream becomes
/// `call`'s sink). The task stops (and the upstream request is cancelled) when the client
/// goes away.
fn answer_as_stream(
    gw: &Arc<Gateway>,
    namespace_id: String,
    body: Bytes,
    permit: StreamPermit,
    mut call: CallCtx,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    let keep_alive = gw.sse_keep_alive();
    let gw = gw.clone();
    tokio::spawn(async move {
        // The stream's slot is held for as long as the call runs.
        let _permit = permit;
        let Ok(env) = Envelope::parse(&body) else {
            return;
        };
        let (Some(id), Some(ns)) = (env.id, gw.snapshot().namespaces.get(&namespace_id).cloned())
        else {
            return;
        };
        call.sink = Some(tx.clone());
        let out = tokio::select! {
            out = namespace::handle_ctx(&gw.rt, &ns, env.method(), id, env.params, &call) => out.into_string(),
            () = tx.closed() => return,
        };
        let _ = tx.send(out).await;
    });
    super::sse_response(rx, keep_alive)
}

/// A JSON-RPC batch (2025-03-26): requests answered in one array; no `initialize` inside.
async fn post_batch(
    gw: &Arc<Gateway>,
    ctx: &Ctx,
    ns: &NamespaceCfg,
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let items = match jsonrpc::parse_batch(body) {
        Ok(v) => v,
        Err(e) => {
            return rpc_error_response(
                StatusCode::BAD_REQUEST,
                None,
                PARSE_ERROR,
                &format!("Parse error: {e}"),
            );
        }
    };
    if items.is_empty() {
        return rpc_error_response(
            StatusCode::BAD_REQUEST,
            None,
            INVALID_REQUEST,
            "Invalid Request: empty batch",
        );
    }
    let session = match session_of(gw, ctx, headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let mut answers = Vec::new();
    let mut pending = Vec::new();
    for raw in &items {
        let Ok(env) = Envelope::parse(raw.get().as_bytes()) else {
            answers.push(jsonrpc::error(
                None,
                INVALID_REQUEST,
                "Invalid Request",
                None,
            ));
            continue;
        };
        if env.kind() == Kind::Request {
            super::count_request(gw, "mcp", &ctx.ep.name, env.method());
        }
        match env.kind() {
            Kind::Request if env.method() == "initialize" => answers.push(jsonrpc::error(
                env.id,
                INVALID_REQUEST,
                "initialize must not be part of a batch",
                None,
            )),
            // Each request of a batch counts; a refused one is answered in place.
            Kind::Request => match gw
                .limiter
                .check_request(&ctx.ep, &ctx.principal, peer, headers)
            {
                Ok(()) => pending.push(env),
                Err(rl) => {
                    super::audit_refused(
                        gw,
                        "mcp",
                        env.method(),
                        env.params,
                        &ctx.ep,
                        &ctx.principal,
                        peer,
                        headers,
                        super::rate_limited(),
                    )
                    .await;
                    answers.push(rl.rpc_error(env.id));
                }
            },
            Kind::Invalid => answers.push(jsonrpc::error(
                env.id,
                INVALID_REQUEST,
                "Invalid Request",
                None,
            )),
            _ => on_client_message(gw, &session, &env),
        }
    }
    let calls: Vec<CallCtx> = pending
        .iter()
        .map(|env| CallCtx {
            who: super::audit_who(
                gw,
                "mcp",
                env.method(),
                &ctx.ep,
                &ctx.principal,
                peer,
                headers,
            ),
            trace: super::trace_in(gw, "mcp", &ctx.ep.name, headers),
            user: ctx.principal.user_id(),
            ..CallCtx::default()
        })
        .collect();
    let outs = futures::future::join_all(pending.iter().zip(&calls).filter_map(|(env, call)| {
        let id = env.id?;
        Some(
            namespace::handle_ctx(&gw.rt, ns, env.method(), id, env.params, call)
                .map(namespace::Answer::into_string),
        )
    }))
    .await;
    answers.extend(outs);
    if answers.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    json_response(StatusCode::OK, format!("[{}]", answers.join(",")))
}

/// Notifications and responses from the client.
fn on_client_message(gw: &Gateway, session: &Session, env: &Envelope<'_>) {
    if env.kind() == Kind::Response {
        // The answer to a sampling/elicitation/roots request an upstream sent through us.
        let by = Answerer::Session(session.id.clone());
        let taken = env
            .id
            .is_some_and(|id| gw.rt.relay.client_answer(id, &by, env.result, env.error));
        tracing::debug!(session = %session.id, taken, "client answered a forwarded request");
        return;
    }
    match env.method() {
        "notifications/initialized" => tracing::debug!(session = %session.id, "client initialized"),
        "notifications/cancelled" => {
            let stopped = gw.rt.relay.cancel(session, env.params);
            tracing::debug!(session = %session.id, stopped, "client cancelled a request");
        }
        m => tracing::debug!(session = %session.id, method = m, "client message ignored"),
    }
}

/// The `initialize` answer of every face (Streamable HTTP and legacy SSE): the protocol
/// version agreed (the client's when this face speaks it, else the newest) and the result.
pub(crate) fn initialize_result(params: Option<&RawValue>, ns_name: &str) -> (String, String) {
    let requested = params.and_then(|p| jsonrpc::str_field(p, "protocolVersion"));
    let version = match requested.as_deref() {
        Some(v) if SUPPORTED_VERSIONS.contains(&v) => v.to_owned(),
        _ => SUPPORTED_VERSIONS[0].to_owned(),
    };
    let result = serde_json::json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": { "listChanged": true },
            "prompts": { "listChanged": true },
            "resources": { "subscribe": true, "listChanged": true },
            "logging": {},
            "completions": {}
        },
        "serverInfo": { "name": "metamcp", "title": format!("metamcp: {ns_name}"), "version": env!("CARGO_PKG_VERSION") },
        "instructions": format!("Tools and prompts of namespace {ns_name:?}, named <server>__<name>.")
    });
    (version, result.to_string())
}

fn initialize(gw: &Gateway, ctx: &Ctx, env: &Envelope<'_>, client: ClientId) -> Response {
    let Some(id) = env.id else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let ns_name = ctx.namespace().map_or("", |n| n.name.as_str());
    let (version, result) = initialize_result(env.params, ns_name);
    let session = match gw.sessions.create(NewSession {
        kind: SessionKind::Streamable,
        endpoint_id: &ctx.ep.id,
        key_id: ctx.principal.binding(),
        client,
        protocol_version: &version,
    }) {
        Ok(s) => s,
        // why: like a rate-limit refusal, a JSON-RPC error with the request's id, so SDK
        // clients report it instead of waiting.
        Err(refused) => return json_response(StatusCode::OK, refused.rpc_error(Some(id))),
    };
    tracing::info!(endpoint = %ctx.ep.name, protocol = %version, "client session started");
    let mut resp = json_response(StatusCode::OK, jsonrpc::response(id, &result));
    if let Ok(v) = HeaderValue::from_str(&session.id) {
        resp.headers_mut().insert(SESSION_HEADER, v);
    }
    resp
}

/// GET: the session's server-to-client stream.
pub async fn get(
    State(gw): State<Arc<Gateway>>,
    Path(endpoint): Path<String>,
    RawQuery(query): RawQuery,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
) -> Response {
    let ctx = match resolve(&gw, &endpoint, &headers, query.as_deref(), peer) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if super::modern::is_stateless_get_or_delete(&headers) {
        return super::modern::method_not_allowed();
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !accept.contains("text/event-stream") && !accept.contains("*/*") {
        return rpc_error_response(
            StatusCode::NOT_ACCEPTABLE,
            None,
            INVALID_REQUEST,
            "Not Acceptable: GET needs Accept: text/event-stream",
        );
    }
    let session = match session_of(&gw, &ctx, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let limit = gw.opts.limits.streams_per_session;
    let Some(permit) = session.stream_permit(limit) else {
        let refused = Exceeded::new(
            "METAMCP_MAX_STREAMS_PER_SESSION",
            limit,
            "Too many streams open on this session",
        );
        return refused.http_error().into_response();
    };
    let Some(rx) = session.open_stream() else {
        return rpc_error_response(
            StatusCode::CONFLICT,
            None,
            INVALID_REQUEST,
            "Conflict: this session already has a GET stream",
        );
    };
    super::sse_response_held(rx, gw.sse_keep_alive(), permit)
}

/// DELETE: ends the session.
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    Path(endpoint): Path<String>,
    RawQuery(query): RawQuery,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
) -> Response {
    let ctx = match resolve(&gw, &endpoint, &headers, query.as_deref(), peer) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if super::modern::is_stateless_get_or_delete(&headers) {
        return super::modern::method_not_allowed();
    }
    let session = match session_of(&gw, &ctx, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    // Ending the session releases what it held (the end hook: connections, subscriptions,
    // log levels).
    gw.sessions.remove(&session.id);
    tracing::info!(endpoint = %ctx.ep.name, "client session ended by DELETE");
    StatusCode::NO_CONTENT.into_response()
}
