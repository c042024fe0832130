//! The stateless protocol era (MCP 2026-07-28: SEP-2575 `server/discover` and per-request
//! `_meta`, SEP-2567 no sessions, SEP-2322 multi round-trip requests, SEP-2549 cache hints)
//! on the same URL as the session era, `/metamcp/{endpoint}/mcp`.
//!
//! `streamable.rs` hands a POST here when [`is_modern_post`] recognises it the way rmcp
//! 3.11's Streamable HTTP server does (`is_legacy_request` in
//! `transport/streamable_http_server/tower.rs`): no `Mcp-Session-Id`, not `initialize`, and
//! either `server/discover`, or a request whose `_meta` carries
//! `io.modelcontextprotocol/protocolVersion` and `…/clientCapabilities`, or a protocol
//! version (from `_meta`, else the `MCP-Protocol-Version` header) of 2026-07-28 or later.
//! Such a request is authenticated exactly like a session request
//! (`endpoint::resolve_endpoint`) and answered on its own POST:
//!
//! - `server/discover` by the gateway itself (versions, the capabilities `initialize`
//!   advertises, `serverInfo` in `_meta`, instructions, cache hints);
//! - lists, calls, prompts, reads, completions through [`namespace::handle_ctx`] without a
//!   session, as JSON, or as SSE (progress first) when the request has a progress token and
//!   the client reads `text/event-stream`. Upstreams, which the gateway speaks to in the
//!   2025-06-18 era, never see the `io.modelcontextprotocol/*` `_meta` keys nor the MRTR
//!   fields `inputResponses`/`requestState`;
//! - a sampling/elicitation/roots request an upstream sends during a `tools/call`,
//!   `prompts/get` or `resources/read` (to a client that declared that capability) becomes
//!   an `input_required` result: the upstream call keeps running in its own task, parked
//!   under an unguessable `requestState`, and the client's retry answers the waiting
//!   upstream request and waits for what comes next. The relay's own answerer
//!   (`Relay::origin`, fed by the call's sink) does the asking, bound to the call's id so
//!   that only its retry answers; this module (`mrtr`) only turns what it writes on the sink
//!   into rounds;
//! - `subscriptions/listen` (`listen`) as a long-lived SSE answer: the listener is
//!   registered as a session of kind [`SessionKind`]`::Listener` on the endpoint (it counts
//!   against its client's sessions), so the existing fan-out (`crate::fanout`, resource
//!   subscriptions in `relay`) reaches it unchanged.
//!
//! Not done here: `logging/setLevel` has no session to hold a level, so it is answered and
//! changes nothing upstream; upstream log messages do not reach stateless clients
//! (2026-07-28 has no stream to carry them outside a call). See "Protocol eras" in
//! `namespace/README.md`.
//!
//! Invariants: nothing here keeps state per client except parked MRTR calls (bound to the
//! endpoint, the key, the method and the target, single use, dropped after
//! [`crate::relay::CLIENT_ANSWER_TIMEOUT`], at most `METAMCP_MAX_PARKED_PER_CLIENT` per
//! client and `METAMCP_MAX_PARKED` in all; kept in a process-wide table) and open listeners
//! (removed with their stream). The session path is not touched: a POST with
//! `Mcp-Session-Id` never comes here.

mod detect;
mod listen;
mod mrtr;

use detect::{RequestMeta, header_version, is_modern_version};
pub use detect::{
    is_modern_post, is_stateless_get_or_delete, method_not_allowed, supported_versions,
};
use listen::listen;
use mrtr::{Call, Round, drive, finish_str, settle, unpark};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metamcp_core::jsonrpc::{
    self, Envelope, INVALID_PARAMS, INVALID_REQUEST, Kind, METHOD_NOT_FOUND, PARSE_ERROR,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::auth::{ClientId, Principal};
use crate::error::{HttpError, rpc_error_response};
use crate::namespace;
use crate::relay::{CLIENT_ANSWER_TIMEOUT, CallCtx, unguessable};
use crate::snapshot::{EndpointCfg, NamespaceCfg};
use crate::state::Gateway;

/// The first protocol version without `initialize` and sessions.
pub const MODERN_VERSION: &str = "2026-07-28";
/// The version a request naming none is taken to speak (MCP 2025-06-18, "Protocol Version
/// Header": absent means 2025-03-26); rmcp assumes the same.
const DEFAULT_VERSION: &str = "2025-03-26";
const KEY_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const KEY_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const KEY_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
const KEY_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// `_meta` keys under this prefix are per-request protocol context for the gateway.
const RESERVED_META_PREFIX: &str = "io.modelcontextprotocol/";
/// SEP-2243: the method, repeated in a header for middleboxes.
const METHOD_HEADER: &str = "mcp-method";
/// JSON-RPC code: a header contradicts the body (rmcp `ErrorCode::HEADER_MISMATCH`).
pub const HEADER_MISMATCH: i64 = -32020;
/// JSON-RPC code: the requested protocol version is not served
/// (rmcp `ErrorCode::UNSUPPORTED_PROTOCOL_VERSION`).
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// How long a client may reuse a `server/discover` answer (SEP-2549 `ttlMs`).
const DISCOVER_TTL_MS: u64 = 300_000;
/// Server-to-client requests that may travel in an `input_required` result (SEP-2322).
const INPUT_METHODS: [&str; 3] = ["elicitation/create", "sampling/createMessage", "roots/list"];
/// How long a parked call waits for the client's retry; the relay gives up on the client's
/// answer after the same time.
const PARKED_TIMEOUT: Duration = CLIENT_ANSWER_TIMEOUT;

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

/// A JSON-RPC error with `data`, as JSON with an HTTP status.
fn refuse(
    status: StatusCode,
    id: Option<&RawValue>,
    code: i64,
    message: &str,
    data: Option<&Value>,
) -> Response {
    json_response(status, jsonrpc::error(id, code, message, data))
}

/// A final JSON-RPC message as a JSON answer. Statuses follow rmcp's server
/// (`jsonrpc_http_status`): unknown method 404, protocol-level refusals 400, else 200.
fn json_answer(message: String) -> Response {
    let status = error_code(&message).map_or(StatusCode::OK, |code| match code {
        METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        HEADER_MISMATCH | UNSUPPORTED_PROTOCOL_VERSION | -32021 => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    });
    json_response(status, message)
}

fn error_code(message: &str) -> Option<i64> {
    #[derive(Deserialize)]
    struct Code {
        code: i64,
    }
    let env = Envelope::parse(message.as_bytes()).ok()?;
    serde_json::from_str::<Code>(env.error?.get())
        .ok()
        .map(|c| c.code)
}

/// POST of a stateless-era message (already recognised by [`is_modern_post`]).
pub async fn post(
    gw: Arc<Gateway>,
    endpoint: &str,
    query: Option<&str>,
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let (snap, ep, principal) =
        match super::resolve_endpoint(&gw, "stateless", endpoint, headers, query, peer) {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
    if let Err(refused) = crate::endpoint::require_json(headers) {
        return refused.into_response();
    }
    if let Err(refused) = crate::endpoint::check_depth(&body, gw.opts.limits.json_depth) {
        return refused.into_response();
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
    let meta = if kind == Kind::Request {
        RequestMeta::read(env.params)
    } else {
        RequestMeta::default()
    };
    // rmcp `validate_protocol_version_header`: an unknown header version is refused unless
    // the request names its own version.
    if let Some(h) = header_version(headers)
        && meta.version.is_none()
        && !supported_versions().any(|v| v == h)
    {
        return (
            StatusCode::BAD_REQUEST,
            format!("Bad Request: Unsupported MCP-Protocol-Version: {h}"),
        )
            .into_response();
    }
    match kind {
        Kind::Request => {}
        // why: without a session there is nothing a notification could refer to;
        // a stateless call is cancelled by closing its response stream.
        Kind::Notification => return StatusCode::ACCEPTED.into_response(),
        Kind::Response => {
            return refuse(
                StatusCode::BAD_REQUEST,
                None,
                INVALID_REQUEST,
                "Invalid Request: a stateless (2026-07-28) server accepts no JSON-RPC responses; \
                 answer input requests with inputResponses on the retried request",
                None,
            );
        }
        Kind::Invalid => {
            return refuse(
                StatusCode::BAD_REQUEST,
                env.id,
                INVALID_REQUEST,
                "Invalid Request: not a JSON-RPC 2.0 request, notification or response",
                None,
            );
        }
    }
    let Some(id) = env.id else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(ns) = snap.namespaces.get(&ep.namespace_id).cloned() else {
        return HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "namespace_missing",
            "The endpoint's namespace no longer exists",
        )
        .into_response();
    };
    let version = match validate(headers, &env, &meta) {
        Ok(v) => v,
        Err(refusal) => return *refusal,
    };
    super::count_request(&gw, "stateless", &ep.name, env.method());
    // A refused request gets a JSON-RPC error with its id, as JSON (200), like any answer.
    if let Err(rl) = gw.limiter.check_request(&ep, &principal, peer, headers) {
        super::audit_refused(
            &gw,
            "stateless",
            env.method(),
            env.params,
            &ep,
            &principal,
            peer,
            headers,
            super::rate_limited(),
        )
        .await;
        return json_response(StatusCode::OK, rl.rpc_error(Some(id)));
    }
    let method = env.method();
    tracing::debug!(endpoint = %ep.name, method, protocol = %version, "stateless request");
    let era2026 = is_modern_version(&version);
    let call = Request {
        gw: &gw,
        ep: &ep,
        principal: &principal,
        client: gw.limiter.client_of(&principal, peer, headers),
        ns,
        method,
        id,
        stream: wants_stream(headers, &meta),
        progress_token: meta.progress_token.clone(),
        capabilities: meta.capabilities.clone(),
        era2026,
        who: super::audit_who(&gw, "stateless", method, &ep, &principal, peer, headers),
        trace: super::trace_in(&gw, "stateless", &ep.name, headers),
    };
    match method {
        "server/discover" => json_answer(jsonrpc::response(id, &discover_result(&call.ns.name))),
        "subscriptions/listen" => listen(&call, env.params, &version).await,
        "tools/list"
        | "prompts/list"
        | "resources/list"
        | "resources/templates/list"
        | "completion/complete"
        | "logging/setLevel"
        | "tools/call"
        | "prompts/get"
        | "resources/read" => call.run(env.params).await,
        // why: rmcp answers these "method not found" on the inline lifecycle: `ping` and the
        // resource subscriptions of the session era are replaced by subscriptions/listen.
        "ping" | "resources/subscribe" | "resources/unsubscribe" => refuse(
            StatusCode::NOT_FOUND,
            Some(id),
            METHOD_NOT_FOUND,
            &format!(
                "Method not found: {method} belongs to the session era; protocol 2026-07-28 \
                 uses subscriptions/listen"
            ),
            None,
        ),
        other => refuse(
            StatusCode::NOT_FOUND,
            Some(id),
            METHOD_NOT_FOUND,
            &format!("Method not found: {other}"),
            None,
        ),
    }
}

/// The checks rmcp's server makes before dispatching a stateless request
/// (`validate_request_protocol_version_meta`, `Service::handle_request`, SEP-2243), in its
/// order; returns the request's protocol version.
fn validate(
    headers: &HeaderMap,
    env: &Envelope<'_>,
    meta: &RequestMeta,
) -> Result<String, Box<Response>> {
    let id = env.id;
    match (&meta.version, header_version(headers)) {
        (Some(v), Some(h)) if v != h => {
            return Err(Box::new(refuse(
                StatusCode::BAD_REQUEST,
                id,
                HEADER_MISMATCH,
                &format!(
                    "MCP-Protocol-Version header ({h}) does not match request _meta \
                     protocolVersion ({v})"
                ),
                None,
            )));
        }
        (Some(_), None) => {
            return Err(Box::new(refuse(
                StatusCode::BAD_REQUEST,
                id,
                HEADER_MISMATCH,
                "request _meta protocolVersion requires MCP-Protocol-Version header",
                None,
            )));
        }
        _ => {}
    }
    let missing = meta.missing_keys();
    if !missing.is_empty() {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            id,
            INVALID_PARAMS,
            &format!(
                "Invalid params: request _meta is missing or has malformed required fields: {}",
                missing.join(", ")
            ),
            None,
        )));
    }
    let version = meta.version.clone().unwrap_or_default();
    if !supported_versions().any(|v| v == version) {
        let supported: Vec<&str> = supported_versions().collect();
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            id,
            UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            Some(&json!({ "requested": version, "supported": supported })),
        )));
    }
    // why: lenient where rmcp is strict — an absent Mcp-Method header is accepted, but one
    // that contradicts the body is refused, since middleboxes route on it.
    if let Some(m) = headers.get(METHOD_HEADER)
        && m.to_str().ok() != Some(env.method())
    {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            id,
            HEADER_MISMATCH,
            &format!(
                "Mcp-Method header `{}` does not match body method `{}`",
                String::from_utf8_lossy(m.as_bytes()),
                env.method()
            ),
            None,
        )));
    }
    Ok(version)
}

/// A request asking for progress, from a client that reads SSE, is answered on SSE.
fn wants_stream(headers: &HeaderMap, meta: &RequestMeta) -> bool {
    meta.progress_token.is_some()
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"))
}

/// The `server/discover` result: what `initialize` would advertise, in the 2026-07-28
/// shape (rmcp `DiscoverResult`; `serverInfo` moved into `_meta`).
fn discover_result(ns_name: &str) -> String {
    let (_, init) = super::streamable::initialize_result(None, ns_name);
    let init: Value = serde_json::from_str(&init).unwrap_or_default();
    let versions: Vec<&str> = supported_versions().collect();
    json!({
        "resultType": "complete",
        "supportedVersions": versions,
        "capabilities": init["capabilities"],
        "instructions": init["instructions"],
        "ttlMs": DISCOVER_TTL_MS,
        "cacheScope": "private",
        "_meta": { KEY_SERVER_INFO: init["serverInfo"] },
    })
    .to_string()
}

/// One stateless request being answered.
struct Request<'a> {
    gw: &'a Arc<Gateway>,
    ep: &'a EndpointCfg,
    principal: &'a Principal,
    /// Whom the request counts against (parked calls, listeners).
    client: ClientId,
    ns: Arc<NamespaceCfg>,
    method: &'a str,
    id: &'a RawValue,
    /// Answer on SSE (progress first).
    stream: bool,
    progress_token: Option<Value>,
    /// What the client declared it can answer (`clientCapabilities` keys).
    capabilities: Vec<String>,
    /// 2026-07-28 or later (not an older version on the inline lifecycle): results carry
    /// `resultType` and cache hints, and input requests become `input_required` results.
    era2026: bool,
    /// Who calls, for the audit log.
    who: Option<Arc<crate::audit::Who>>,
    /// The request span's face, endpoint and W3C headers (`None`: tracing off).
    trace: Option<Arc<crate::otel::Incoming>>,
}

impl Request<'_> {
    /// Whether server-to-client requests of this call become `input_required` results:
    /// SEP-2322 allows them on these three methods, from 2026-07-28 on.
    fn mrtr(&self) -> bool {
        self.era2026 && matches!(self.method, "tools/call" | "prompts/get" | "resources/read")
    }

    async fn run(&self, params: Option<&RawValue>) -> Response {
        let split = match Split::of(params) {
            Ok(s) => s,
            Err(msg) => {
                return refuse(StatusCode::OK, Some(self.id), INVALID_PARAMS, &msg, None);
            }
        };
        let round = Round {
            id: self.id.to_owned(),
            method: self.method.to_owned(),
            era2026: self.era2026,
            mrtr: self.mrtr(),
            progress_token: self.stream.then(|| self.progress_token.clone()).flatten(),
            capabilities: self.capabilities.clone(),
        };
        if !round.mrtr && !self.stream {
            // The plain path: no stream, nothing to park. Without a sink, a request an
            // upstream sends is refused by the connection itself.
            let out = namespace::handle_ctx(
                &self.gw.rt,
                &self.ns,
                self.method,
                self.id,
                split.params.as_deref(),
                &CallCtx {
                    who: self.who.clone(),
                    trace: self.trace.clone(),
                    user: self.principal.user_id(),
                    ..CallCtx::default()
                },
            )
            .await;
            // why: a cached list is sent from its bytes (in the 2026 shape, made once per
            // listing), not parsed, reshaped and copied per request — twice for its status.
            if out.is_listed() {
                let out = if round.era2026 {
                    out.reshape(|json| mrtr::complete_result(json, &round.method))
                } else {
                    out
                };
                return json_response(StatusCode::OK, out.into_body());
            }
            return json_answer(finish_str(&out.into_string(), &round));
        }
        let mut call = match &split.request_state {
            Some(state) if round.mrtr => {
                match unpark(
                    state,
                    &self.ep.id,
                    self.principal.binding(),
                    self.method,
                    split.target.as_deref(),
                ) {
                    Some(call) => call,
                    None => {
                        return json_answer(jsonrpc::error(
                            Some(self.id),
                            INVALID_PARAMS,
                            "Invalid params: unknown or expired requestState (metamcp keeps a \
                             waiting call for 10 minutes); send the request again without it",
                            None,
                        ));
                    }
                }
            }
            _ => self.start(&split),
        };
        call.answer(self.gw, split.input_responses);
        if !self.stream {
            let end = drive(self.gw, call, &round, None).await;
            return json_answer(settle(end, &round, &self.gw.opts.limits));
        }
        let (tx, rx) = mpsc::channel::<String>(64);
        let gw = self.gw.clone();
        tokio::spawn(async move {
            let end = tokio::select! {
                end = drive(&gw, call, &round, Some(&tx)) => end,
                // The client went away: dropping the call cancels the upstream request.
                () = tx.closed() => return,
            };
            let _ = tx.send(settle(end, &round, &gw.opts.limits)).await;
        });
        super::sse_response(rx, self.gw.sse_keep_alive())
    }

    /// Starts the call in its own task, so that it can outlive this HTTP request while it
    /// waits for the client's input. Everything it produces arrives on the call's channel:
    /// progress, requests for the client (through `Relay::origin`, whose sink it is), and
    /// finally its answer.
    fn start(&self, split: &Split) -> Call {
        let (tx, rx) = mpsc::channel::<String>(64);
        let gw = self.gw.clone();
        let ns = self.ns.clone();
        let method = self.method.to_owned();
        let id = self.id.to_owned();
        let params = split.params.clone();
        let call_id: Arc<str> = unguessable().into();
        let ctx = CallCtx {
            sink: Some(tx.clone()),
            call_id: Some(call_id.clone()),
            who: self.who.clone(),
            trace: self.trace.clone(),
            user: self.principal.user_id(),
            ..CallCtx::default()
        };
        tokio::spawn(async move {
            let out = tokio::select! {
                out = namespace::handle_ctx(&gw.rt, &ns, &method, &id, params.as_deref(), &ctx) => out.into_string(),
                // Nobody will read the answer (client gone, or the parked call expired):
                // dropping the future sends the upstream notifications/cancelled.
                () = tx.closed() => return,
            };
            let _ = tx.send(out).await;
        });
        Call {
            call_id,
            client: self.client.clone(),
            endpoint_id: self.ep.id.clone(),
            key_id: self.principal.binding().map(str::to_owned),
            method: self.method.to_owned(),
            target: split.target.clone(),
            rx,
            pending: BTreeMap::new(),
        }
    }
}

/// A request's params, split into what the upstream gets and what is for the gateway.
#[derive(Debug, Default)]
struct Split {
    /// The params without `io.modelcontextprotocol/*` `_meta` keys and MRTR fields.
    params: Option<Box<RawValue>>,
    request_state: Option<String>,
    input_responses: Vec<(String, Box<RawValue>)>,
    /// The tool or prompt name, or the resource URI.
    target: Option<String>,
}

impl Split {
    fn of(params: Option<&RawValue>) -> Result<Self, String> {
        let Some(p) = params else {
            return Ok(Self::default());
        };
        let target = jsonrpc::str_field(p, "name")
            .or_else(|| jsonrpc::str_field(p, "uri"))
            .map(|t| t.into_owned());
        let raw = p.get();
        // why: byte-for-byte when there is nothing to take out (not the case for rmcp
        // clients, which always send the protocol context).
        if !(raw.contains(RESERVED_META_PREFIX)
            || raw.contains("\"inputResponses\"")
            || raw.contains("\"requestState\""))
        {
            return Ok(Self {
                params: Some(p.to_owned()),
                target,
                ..Self::default()
            });
        }
        let bad = |what: &str| format!("Invalid params: {what}");
        let mut map: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(raw).map_err(|_| bad("params must be an object"))?;
        let request_state = match map.remove("requestState") {
            Some(v) => Some(
                serde_json::from_str::<String>(v.get())
                    .map_err(|_| bad("requestState must be a string"))?,
            ),
            None => None,
        };
        let input_responses = match map.remove("inputResponses") {
            Some(v) => serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(v.get())
                .map_err(|_| bad("inputResponses must be an object"))?
                .into_iter()
                .collect(),
            None => Vec::new(),
        };
        if let Some(m) = map.remove("_meta") {
            let mut meta: BTreeMap<String, Box<RawValue>> =
                serde_json::from_str(m.get()).map_err(|_| bad("_meta must be an object"))?;
            meta.retain(|k, _| !k.starts_with(RESERVED_META_PREFIX));
            if !meta.is_empty() {
                map.insert("_meta".to_owned(), to_raw(&meta)?);
            }
        }
        Ok(Self {
            params: Some(to_raw(&map)?),
            request_state,
            input_responses,
            target,
        })
    }
}

fn to_raw<T: serde::Serialize>(v: &T) -> Result<Box<RawValue>, String> {
    serde_json::to_string(v)
        .and_then(RawValue::from_string)
        .map_err(|e| format!("Invalid params: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"progressToken":3,"traceparent":"00-ab"}"#;

    #[test]
    fn upstreams_get_no_protocol_context_nor_mrtr_fields() {
        let params = format!(
            r#"{{"name":"alpha__echo","arguments":{{"requestState":1,"n":1.50}},{META},"inputResponses":{{"metamcp-req-1":{{"action":"accept"}}}},"requestState":"s1"}}"#
        );
        let raw = RawValue::from_string(params).unwrap();
        let split = Split::of(Some(&raw)).unwrap();
        let fwd: Value = serde_json::from_str(split.params.as_deref().unwrap().get()).unwrap();
        assert_eq!(
            fwd,
            json!({"name":"alpha__echo","arguments":{"requestState":1,"n":1.50},"_meta":{"progressToken":3,"traceparent":"00-ab"}})
        );
        assert!(
            split.params.unwrap().get().contains("1.50"),
            "values pass byte for byte"
        );
        assert_eq!(split.request_state.as_deref(), Some("s1"));
        assert_eq!(split.input_responses.len(), 1);
        assert_eq!(split.target.as_deref(), Some("alpha__echo"));
        let plain = RawValue::from_string(r#"{"uri":"x://y"}"#.into()).unwrap();
        assert_eq!(
            Split::of(Some(&plain)).unwrap().params.unwrap().get(),
            r#"{"uri":"x://y"}"#
        );
    }
}
