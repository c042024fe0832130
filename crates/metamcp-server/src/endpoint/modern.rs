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
//!   (`Relay::origin`, fed by the call's sink) does the asking; this module only turns what
//!   it writes on the sink into rounds;
//! - `subscriptions/listen` as a long-lived SSE answer: the listener is registered as a
//!   session of kind [`SessionKind::Listener`] on the endpoint, so the existing fan-out
//!   (`namespace::fan_out`, resource subscriptions in `relay`) reaches it unchanged.
//!
//! Not done here: `logging/setLevel` still changes the level of every upstream (there is no
//! per-request log level upstream), and upstream log messages do not reach stateless
//! clients (2026-07-28 has no stream to carry them outside a call). See "Protocol eras" in
//! `namespace/README.md`.
//!
//! Invariants: nothing here keeps state per client except parked MRTR calls (bound to the
//! endpoint, the key, the method and the target, single use, dropped after
//! [`crate::relay::CLIENT_ANSWER_TIMEOUT`]; kept in a process-wide table so that the
//! gateway's state needs no new field) and open listeners (removed with their stream).
//! The session path is not touched: a POST with `Mcp-Session-Id` never comes here.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use metamcp_core::jsonrpc::{
    self, Envelope, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, Kind, METHOD_NOT_FOUND,
    PARSE_ERROR, RESOURCE_NOT_FOUND,
};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::session::SessionKind;
use super::streamable::{KEEP_ALIVE, PROTOCOL_HEADER, SESSION_HEADER, SUPPORTED_VERSIONS};
use crate::auth::Principal;
use crate::error::{HttpError, rpc_error_response};
use crate::namespace;
use crate::relay::{CLIENT_ANSWER_TIMEOUT, CallCtx};
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

/// Every version this URL speaks, newest first: the stateless era, then the session era.
pub fn supported_versions() -> impl Iterator<Item = &'static str> + Clone {
    std::iter::once(MODERN_VERSION).chain(SUPPORTED_VERSIONS.iter().copied())
}

/// ISO dates compare like versions; rmcp compares them the same way.
fn is_modern_version(version: &str) -> bool {
    version >= MODERN_VERSION
}

fn header_version(headers: &HeaderMap) -> Option<&str> {
    headers.get(PROTOCOL_HEADER).and_then(|v| v.to_str().ok())
}

/// Whether a POST to `/mcp` is a stateless-era message (see the module comment).
pub fn is_modern_post(headers: &HeaderMap, body: &[u8]) -> bool {
    if headers.contains_key(SESSION_HEADER) {
        return false;
    }
    // why: the stateless era has no batches; a batch stays on the session path.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return false;
    }
    let Ok(env) = Envelope::parse(body) else {
        return false;
    };
    let header = header_version(headers);
    if env.kind() != Kind::Request {
        return header.is_some_and(is_modern_version);
    }
    match env.method() {
        // why: rmcp routes `initialize` to the session era whatever version it names.
        "initialize" => false,
        "server/discover" => true,
        _ => {
            let meta = RequestMeta::read(env.params);
            (meta.version.is_some() && meta.has_capabilities)
                || is_modern_version(
                    meta.version
                        .as_deref()
                        .or(header)
                        .unwrap_or(DEFAULT_VERSION),
                )
        }
    }
}

/// Whether a GET or DELETE without a session names a stateless-era version: that era has
/// neither a standalone stream nor sessions to end.
pub fn is_stateless_get_or_delete(headers: &HeaderMap) -> bool {
    !headers.contains_key(SESSION_HEADER) && header_version(headers).is_some_and(is_modern_version)
}

/// 405 for GET/DELETE in the stateless era (rmcp answers the same).
pub fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, HeaderValue::from_static("POST"))],
        "Method Not Allowed: protocol 2026-07-28 has no sessions; send requests with POST",
    )
        .into_response()
}

/// The protocol context a request carries in `_meta` (SEP-2575).
#[derive(Debug, Default)]
struct RequestMeta {
    version: Option<String>,
    has_capabilities: bool,
    /// The `clientCapabilities` keys (`elicitation`, `sampling`, `roots`, …).
    capabilities: Vec<String>,
    progress_token: Option<Value>,
}

impl RequestMeta {
    fn read(params: Option<&RawValue>) -> Self {
        #[derive(Deserialize)]
        struct WithMeta<'a> {
            #[serde(rename = "_meta", borrow, default)]
            meta: Option<&'a RawValue>,
        }
        let Some(meta) = params
            .and_then(|p| serde_json::from_str::<WithMeta<'_>>(p.get()).ok())
            .and_then(|p| p.meta)
            .and_then(|m| serde_json::from_str::<serde_json::Map<String, Value>>(m.get()).ok())
        else {
            return Self::default();
        };
        Self {
            version: meta
                .get(KEY_PROTOCOL_VERSION)
                .and_then(Value::as_str)
                .map(str::to_owned),
            has_capabilities: meta
                .get(KEY_CLIENT_CAPABILITIES)
                .is_some_and(Value::is_object),
            capabilities: meta
                .get(KEY_CLIENT_CAPABILITIES)
                .and_then(Value::as_object)
                .map(|c| c.keys().cloned().collect())
                .unwrap_or_default(),
            progress_token: meta
                .get("progressToken")
                .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
                .cloned(),
        }
    }

    /// The `_meta` keys 2026-07-28 requires on every request that are absent or malformed
    /// (rmcp `RequestMetaObject::missing_required_keys`).
    fn missing_keys(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.version.is_none() {
            missing.push(KEY_PROTOCOL_VERSION);
        }
        if !self.has_capabilities {
            missing.push(KEY_CLIENT_CAPABILITIES);
        }
        missing
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
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
    let (snap, ep, principal) = match super::resolve_endpoint(&gw, endpoint, headers, query) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return rpc_error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            INVALID_REQUEST,
            "Unsupported Media Type: POST bodies must be application/json",
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
    // A refused request gets a JSON-RPC error with its id, as JSON (200), like any answer.
    if let Err(rl) = crate::ratelimit::check_request(&gw, &ep, &principal, peer, headers) {
        return json_response(StatusCode::OK, rl.rpc_error(Some(id)));
    }
    let method = env.method();
    tracing::debug!(endpoint = %ep.name, method, protocol = %version, "stateless request");
    let era2026 = is_modern_version(&version);
    let call = Request {
        gw: &gw,
        ep: &ep,
        principal: &principal,
        ns,
        method,
        id,
        stream: wants_stream(headers, &meta),
        progress_token: meta.progress_token.clone(),
        capabilities: meta.capabilities.clone(),
        era2026,
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
                self.gw,
                &self.ns,
                self.method,
                self.id,
                split.params.as_deref(),
                &CallCtx::default(),
            )
            .await;
            return json_answer(finish_str(&out, &round));
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
            return json_answer(settle(end, &round));
        }
        let (tx, rx) = mpsc::channel::<String>(64);
        let gw = self.gw.clone();
        tokio::spawn(async move {
            let end = tokio::select! {
                end = drive(&gw, call, &round, Some(&tx)) => end,
                // The client went away: dropping the call cancels the upstream request.
                () = tx.closed() => return,
            };
            let _ = tx.send(settle(end, &round)).await;
        });
        super::sse_response(rx)
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
        tokio::spawn(async move {
            let ctx = CallCtx {
                sink: Some(tx.clone()),
                ..CallCtx::default()
            };
            let out = tokio::select! {
                out = namespace::handle_ctx(&gw, &ns, &method, &id, params.as_deref(), &ctx) => out,
                // Nobody will read the answer (client gone, or the parked call expired):
                // dropping the future sends the upstream notifications/cancelled.
                () = tx.closed() => return,
            };
            let _ = tx.send(out).await;
        });
        Call {
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

/// A stateless call whose upstream may ask the client for input while it runs.
#[derive(Debug)]
struct Call {
    endpoint_id: String,
    key_id: Option<String>,
    method: String,
    target: Option<String>,
    /// Everything the call's task produces (see [`Request::start`]).
    rx: mpsc::Receiver<String>,
    /// Requests waiting for the client, by the relay's id (the `inputRequests` key) → the
    /// `{method, params}` object sent to the client.
    pending: BTreeMap<String, String>,
}

impl Call {
    /// Hands the client's `inputResponses` to the upstream requests waiting for them; keys
    /// this call is not waiting for are ignored.
    fn answer(&mut self, gw: &Gateway, responses: Vec<(String, Box<RawValue>)>) {
        for (key, value) in responses {
            if self.pending.remove(&key).is_none() {
                tracing::debug!(key, "input response for no waiting request ignored");
                continue;
            }
            let Ok(id) = RawValue::from_string(Value::from(key.as_str()).to_string()) else {
                continue;
            };
            let taken = gw.relay.client_answer(&id, Some(&value), None);
            tracing::debug!(key, taken, "input response relayed upstream");
        }
    }
}

/// Calls waiting for their client's retry, by `requestState`.
static PARKED: LazyLock<Mutex<HashMap<String, Call>>> = LazyLock::new(Mutex::default);

/// Parks a call until the client retries; returns its `requestState` (244 random bits).
fn park(call: Call) -> String {
    let state = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    PARKED.lock().insert(state.clone(), call);
    let key = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(PARKED_TIMEOUT).await;
        // Dropping the call closes its channel: its task cancels the upstream request.
        if PARKED.lock().remove(&key).is_some() {
            tracing::debug!("a call waiting for client input expired");
        }
    });
    state
}

/// The parked call `state`, if it was parked for this endpoint, key, method and target.
/// A mismatch leaves it parked (a stranger cannot end someone else's call).
fn unpark(
    state: &str,
    endpoint_id: &str,
    key_id: Option<&str>,
    method: &str,
    target: Option<&str>,
) -> Option<Call> {
    let mut parked = PARKED.lock();
    let call = parked.get(state)?;
    let same_target = match (call.target.as_deref(), target) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    if call.endpoint_id != endpoint_id
        || call.key_id.as_deref() != key_id
        || call.method != method
        || !same_target
    {
        return None;
    }
    parked.remove(state)
}

/// The HTTP request a call is being answered on.
#[derive(Debug)]
struct Round {
    id: Box<RawValue>,
    method: String,
    era2026: bool,
    mrtr: bool,
    /// The token progress is delivered under on this request's SSE stream.
    progress_token: Option<Value>,
    /// The client's declared capabilities (`clientCapabilities` keys) on this request.
    capabilities: Vec<String>,
}

/// How one round of a call ends.
#[derive(Debug)]
enum RoundEnd {
    /// The final JSON-RPC message for the client.
    Final(String),
    /// The upstream waits for the client's input.
    Input(Call),
}

/// Reads the call's messages until its answer arrives or it needs the client's input.
async fn drive(
    gw: &Gateway,
    mut call: Call,
    round: &Round,
    out: Option<&mpsc::Sender<String>>,
) -> RoundEnd {
    // Requests the retry did not answer are asked again at once.
    if !call.pending.is_empty() {
        return RoundEnd::Input(call);
    }
    loop {
        let Some(msg) = call.rx.recv().await else {
            return RoundEnd::Final(jsonrpc::error(
                Some(&round.id),
                INTERNAL_ERROR,
                "The call ended without an answer (metamcp)",
                None,
            ));
        };
        if let Some(answer) = absorb(gw, &mut call, round, out, &msg) {
            return RoundEnd::Final(answer);
        }
        if !call.pending.is_empty() {
            // Requests sent together travel in one input_required result.
            while let Ok(msg) = call.rx.try_recv() {
                if let Some(answer) = absorb(gw, &mut call, round, out, &msg) {
                    return RoundEnd::Final(answer);
                }
            }
            if !call.pending.is_empty() {
                return RoundEnd::Input(call);
            }
        }
    }
}

/// Takes one message of the call's channel; returns the final message when it is the
/// call's answer.
fn absorb(
    gw: &Gateway,
    call: &mut Call,
    round: &Round,
    out: Option<&mpsc::Sender<String>>,
    msg: &str,
) -> Option<String> {
    let env = Envelope::parse(msg.as_bytes()).ok()?;
    match env.kind() {
        Kind::Response => Some(finish(&env, round)),
        Kind::Request => {
            on_server_request(gw, call, round, &env);
            None
        }
        Kind::Notification => {
            match env.method() {
                "notifications/progress" => {
                    if let (Some(tx), Some(token)) = (out, &round.progress_token)
                        && let Some(m) = with_progress_token(msg, token)
                    {
                        // Like the session era: progress that finds no room is dropped.
                        let _ = tx.try_send(m);
                    }
                }
                // The upstream withdrew a request it sent: the client is not asked again.
                "notifications/cancelled" => {
                    let withdrawn = env.params.and_then(|p| jsonrpc::str_field(p, "requestId"));
                    if let Some(id) = withdrawn {
                        call.pending.remove(id.as_ref());
                    }
                }
                _ => {}
            }
            None
        }
        Kind::Invalid => None,
    }
}

/// A sampling/elicitation/roots request an upstream sent during the call: kept for the
/// client's `input_required` result, or — where MRTR does not apply — refused, so the
/// upstream does not wait for an answer that cannot come.
fn on_server_request(gw: &Gateway, call: &mut Call, round: &Round, env: &Envelope<'_>) {
    let Some(id) = env.id else { return };
    let method = env.method();
    // why: upstreams see the gateway's capabilities, not this client's; a request the
    // client did not declare it can answer is refused here, as a direct server would not
    // have sent it.
    let declared = match method {
        "elicitation/create" => "elicitation",
        "sampling/createMessage" => "sampling",
        _ => "roots",
    };
    if round.mrtr
        && INPUT_METHODS.contains(&method)
        && round.capabilities.iter().any(|c| c == declared)
        && let Ok(key) = serde_json::from_str::<String>(id.get())
    {
        // SEP-2322 InputRequest: the request without jsonrpc and id.
        let mut request = json!({ "method": method }).to_string();
        if let Some(p) = env.params {
            request.pop();
            request.push_str(",\"params\":");
            request.push_str(p.get());
            request.push('}');
        }
        call.pending.insert(key, request);
        return;
    }
    let error = json!({
        "code": METHOD_NOT_FOUND,
        "message": format!(
            "{method}: the client cannot receive it during {} (stateless protocol; input \
             requests need 2026-07-28, one of tools/call, prompts/get, resources/read, and the \
             client's {declared} capability) (metamcp)",
            round.method
        ),
    })
    .to_string();
    if let Ok(error) = RawValue::from_string(error) {
        gw.relay.client_answer(id, None, Some(&error));
    }
}

/// `message` (a progress notification) with `params.progressToken` set to `token`.
fn with_progress_token(message: &str, token: &Value) -> Option<String> {
    let mut v: Value = serde_json::from_str(message).ok()?;
    v.get_mut("params")?
        .as_object_mut()?
        .insert("progressToken".into(), token.clone());
    Some(v.to_string())
}

/// The final message of a round: parks the call when it needs input.
fn settle(end: RoundEnd, round: &Round) -> String {
    match end {
        RoundEnd::Final(msg) => msg,
        RoundEnd::Input(call) => {
            let mut requests = String::from("{");
            for (i, (key, request)) in call.pending.iter().enumerate() {
                if i > 0 {
                    requests.push(',');
                }
                requests.push_str(&Value::from(key.as_str()).to_string());
                requests.push(':');
                requests.push_str(request);
            }
            requests.push('}');
            let n = call.pending.len();
            let state = park(call);
            tracing::debug!(requests = n, "call waits for client input (input_required)");
            let result = format!(
                r#"{{"resultType":"input_required","inputRequests":{requests},"requestState":{}}}"#,
                Value::from(state)
            );
            jsonrpc::response(&round.id, &result)
        }
    }
}

fn finish_str(out: &str, round: &Round) -> String {
    match Envelope::parse(out.as_bytes()) {
        Ok(env) => finish(&env, round),
        Err(_) => jsonrpc::error(
            Some(&round.id),
            INTERNAL_ERROR,
            "unreadable answer (metamcp)",
            None,
        ),
    }
}

/// The call's answer under this round's id, in the shape of the round's protocol version.
fn finish(env: &Envelope<'_>, round: &Round) -> String {
    if let Some(result) = env.result {
        if round.era2026 {
            return jsonrpc::response(&round.id, &complete_result(result.get(), &round.method));
        }
        return jsonrpc::response(&round.id, result.get());
    }
    if let Some(error) = env.error {
        if round.era2026 {
            return jsonrpc::response_error_raw(Some(&round.id), &modern_error(error.get()));
        }
        return jsonrpc::response_error_raw(Some(&round.id), error.get());
    }
    jsonrpc::error(
        Some(&round.id),
        INTERNAL_ERROR,
        "empty answer (metamcp)",
        None,
    )
}

/// A 2026-07-28 result: `resultType: "complete"` (SEP-2322: servers MUST include it), and
/// on cacheable results the most conservative cache hints when the upstream gave none
/// (rmcp `ServerResult::fill_missing_cache_hints`: `ttlMs: 0`, `cacheScope: "private"`).
/// Only added fields; the rest passes byte for byte.
fn complete_result(result: &str, method: &str) -> String {
    let Ok(fields) = serde_json::from_str::<HashMap<String, &RawValue>>(result) else {
        return result.to_owned();
    };
    let mut add = Vec::new();
    match fields.get("resultType").map(|v| v.get()) {
        None => add.push(r#""resultType":"complete""#),
        Some(r#""complete""#) => {}
        // Not a complete result: not cacheable either.
        Some(_) => return result.to_owned(),
    }
    let cacheable = matches!(
        method,
        "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    );
    if cacheable {
        if !fields.contains_key("ttlMs") {
            add.push(r#""ttlMs":0"#);
        }
        if !fields.contains_key("cacheScope") {
            add.push(r#""cacheScope":"private""#);
        }
    }
    if add.is_empty() {
        return result.to_owned();
    }
    let Some(rest) = result.trim_start().strip_prefix('{') else {
        return result.to_owned();
    };
    let sep = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    format!("{{{}{sep}{rest}", add.join(","))
}

/// A 2026-07-28 error: resource-not-found is reported as invalid params, as rmcp's server
/// does for peers on that version.
fn modern_error(error: &str) -> String {
    match serde_json::from_str::<Value>(error) {
        Ok(mut v) if v["code"] == RESOURCE_NOT_FOUND => {
            v["code"] = INVALID_PARAMS.into();
            v.to_string()
        }
        _ => error.to_owned(),
    }
}

/// The notifications a listener asked for and the gateway accepted (rmcp
/// `SubscriptionFilter`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    tools_list_changed: Option<bool>,
    #[serde(default)]
    prompts_list_changed: Option<bool>,
    #[serde(default)]
    resources_list_changed: Option<bool>,
    #[serde(default)]
    resource_subscriptions: Option<Vec<String>>,
}

impl Filter {
    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("toolsListChanged", self.tools_list_changed),
            ("promptsListChanged", self.prompts_list_changed),
            ("resourcesListChanged", self.resources_list_changed),
        ] {
            if v == Some(true) {
                m.insert(k.into(), true.into());
            }
        }
        if let Some(uris) = self
            .resource_subscriptions
            .as_ref()
            .filter(|u| !u.is_empty())
        {
            m.insert("resourceSubscriptions".into(), json!(uris));
        }
        Value::Object(m)
    }

    /// Whether a fanned-out notification falls inside this filter.
    fn accepts(&self, method: &str, params: Option<&RawValue>) -> bool {
        match method {
            "notifications/tools/list_changed" => self.tools_list_changed == Some(true),
            "notifications/prompts/list_changed" => self.prompts_list_changed == Some(true),
            "notifications/resources/list_changed" => self.resources_list_changed == Some(true),
            "notifications/resources/updated" => {
                let uri = params.and_then(|p| jsonrpc::str_field(p, "uri"));
                match (uri, &self.resource_subscriptions) {
                    (Some(uri), Some(uris)) => uris.iter().any(|u| *u == *uri),
                    _ => false,
                }
            }
            _ => false,
        }
    }
}

/// Ends a listener's registration when its stream is dropped (client gone, or the end).
#[derive(Debug)]
struct ListenerGuard {
    gw: Arc<Gateway>,
    session_id: String,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.gw.sessions.remove(&self.session_id);
        self.gw.relay.forget_session(&self.session_id);
        tracing::info!("subscriptions/listen stream closed");
    }
}

/// `subscriptions/listen`: acknowledges the accepted filter, then relays the endpoint's
/// fanned-out notifications inside it, each with `_meta.subscriptionId` = the request's
/// id, until the client closes the stream; when the gateway ends it (shutdown), the final
/// `SubscriptionsListenResult` is sent.
async fn listen(call: &Request<'_>, params: Option<&RawValue>, version: &str) -> Response {
    #[derive(Deserialize)]
    struct Params {
        notifications: Filter,
    }
    let Some(Ok(Params {
        notifications: requested,
    })) = params.map(|p| serde_json::from_str::<Params>(p.get()))
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            Some(call.id),
            INVALID_PARAMS,
            "Invalid params: subscriptions/listen needs params.notifications (a subscription filter)",
            None,
        );
    };
    let gw = call.gw;
    // The gateway advertises listChanged on all three lists and resource subscriptions, so
    // what was requested is accepted — except URIs no upstream would subscribe to.
    let mut accepted = Filter {
        tools_list_changed: requested.tools_list_changed.filter(|b| *b),
        prompts_list_changed: requested.prompts_list_changed.filter(|b| *b),
        resources_list_changed: requested.resources_list_changed.filter(|b| *b),
        resource_subscriptions: None,
    };
    let mut uris: Vec<String> = Vec::new();
    for uri in requested.resource_subscriptions.unwrap_or_default() {
        if uris.contains(&uri) {
            continue;
        }
        let Ok(p) = RawValue::from_string(json!({ "uri": uri }).to_string()) else {
            continue;
        };
        let answer = namespace::handle_ctx(
            gw,
            &call.ns,
            "resources/subscribe",
            call.id,
            Some(&p),
            &CallCtx::default(),
        )
        .await;
        if Envelope::parse(answer.as_bytes()).is_ok_and(|e| e.result.is_some()) {
            uris.push(uri);
        } else {
            tracing::debug!(
                uri,
                "resource subscription refused upstream; not acknowledged"
            );
        }
    }
    if !uris.is_empty() {
        accepted.resource_subscriptions = Some(uris);
    }
    let session = gw.sessions.create_kind(
        SessionKind::Listener,
        &call.ep.id,
        call.principal.binding(),
        version,
    );
    for uri in accepted.resource_subscriptions.iter().flatten() {
        gw.relay.subscription(&session, uri, true);
    }
    let Some(rx) = session.open_stream() else {
        gw.sessions.remove(&session.id);
        return HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "listener stream could not be opened",
        )
        .into_response();
    };
    let guard = ListenerGuard {
        gw: gw.clone(),
        session_id: session.id.clone(),
    };
    // why: the stream must not keep the session alive: its end (shutdown) closes our rx.
    drop(session);
    tracing::info!(endpoint = %call.ep.name, filter = %accepted.to_json(), "subscriptions/listen stream opened");
    let sub_id = call.id.to_owned();
    let ack = jsonrpc::notification(
        "notifications/subscriptions/acknowledged",
        Some(
            &json!({
                "_meta": { KEY_SUBSCRIPTION_ID: &sub_id },
                "notifications": accepted.to_json(),
            })
            .to_string(),
        ),
    );
    let (_, init) = super::streamable::initialize_result(None, &call.ns.name);
    let server_info = serde_json::from_str::<Value>(&init).unwrap_or_default()["serverInfo"].take();
    let last = jsonrpc::response(
        call.id,
        &json!({
            "resultType": "complete",
            "_meta": { KEY_SUBSCRIPTION_ID: &sub_id, KEY_SERVER_INFO: server_info },
        })
        .to_string(),
    );
    let state = ListenState {
        first: Some(ack),
        rx,
        last: Some(last),
        filter: accepted,
        sub_id,
        _guard: guard,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        if let Some(m) = st.first.take() {
            return Some((event(m), st));
        }
        loop {
            match st.rx.recv().await {
                Some(msg) => {
                    if let Some(out) = for_listener(&msg, &st.filter, &st.sub_id) {
                        return Some((event(out), st));
                    }
                }
                None => return st.last.take().map(|m| (event(m), st)),
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

#[derive(Debug)]
struct ListenState {
    first: Option<String>,
    rx: mpsc::Receiver<String>,
    last: Option<String>,
    filter: Filter,
    sub_id: Box<RawValue>,
    _guard: ListenerGuard,
}

fn event(msg: String) -> Result<Event, Infallible> {
    Ok(Event::default().event("message").data(msg))
}

/// A fanned-out message as this listener's client gets it, or `None` when it is outside
/// the filter (log messages, other kinds).
fn for_listener(message: &str, filter: &Filter, sub_id: &RawValue) -> Option<String> {
    let env = Envelope::parse(message.as_bytes()).ok()?;
    if env.kind() != Kind::Notification || !filter.accepts(env.method(), env.params) {
        return None;
    }
    let mut params: BTreeMap<String, Box<RawValue>> = match env.params {
        Some(p) => serde_json::from_str(p.get()).ok()?,
        None => BTreeMap::new(),
    };
    let mut meta: BTreeMap<String, Box<RawValue>> = params
        .remove("_meta")
        .and_then(|m| serde_json::from_str(m.get()).ok())
        .unwrap_or_default();
    meta.insert(KEY_SUBSCRIPTION_ID.to_owned(), sub_id.to_owned());
    params.insert("_meta".to_owned(), to_raw(&meta).ok()?);
    Some(jsonrpc::notification(
        env.method(),
        Some(&serde_json::to_string(&params).ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"progressToken":3,"traceparent":"00-ab"}"#;

    #[test]
    fn eras_are_told_apart_as_rmcp_does() {
        let none = headers(&[]);
        let modern_header = headers(&[(PROTOCOL_HEADER, "2026-07-28")]);
        let with_session = headers(&[(SESSION_HEADER, "abc"), (PROTOCOL_HEADER, "2026-07-28")]);
        let call =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{META}}}}}"#);
        assert!(is_modern_post(&none, call.as_bytes()));
        assert!(!is_modern_post(&with_session, call.as_bytes()));
        let discover = br#"{"jsonrpc":"2.0","id":1,"method":"server/discover"}"#;
        assert!(is_modern_post(&none, discover));
        let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2026-07-28"}}"#;
        assert!(!is_modern_post(&modern_header, init));
        let bare = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert!(!is_modern_post(&none, bare));
        assert!(is_modern_post(&modern_header, bare));
        let old = headers(&[(PROTOCOL_HEADER, "2025-06-18")]);
        assert!(!is_modern_post(&old, bare));
        let note = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert!(!is_modern_post(&none, note));
        assert!(is_modern_post(&modern_header, note));
        assert!(!is_modern_post(&modern_header, b"[]"));
    }

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

    #[test]
    fn modern_results_say_they_are_complete_and_how_long_to_cache() {
        assert_eq!(
            complete_result(r#"{"tools":[]}"#, "tools/list"),
            r#"{"resultType":"complete","ttlMs":0,"cacheScope":"private","tools":[]}"#
        );
        assert_eq!(
            complete_result("{}", "tools/call"),
            r#"{"resultType":"complete"}"#
        );
        assert_eq!(
            complete_result(
                r#"{"resultType":"complete","ttlMs":5,"cacheScope":"public"}"#,
                "resources/read"
            ),
            r#"{"resultType":"complete","ttlMs":5,"cacheScope":"public"}"#
        );
        let err = modern_error(r#"{"code":-32002,"message":"nope"}"#);
        assert!(err.contains("-32602"), "{err}");
    }

    #[test]
    fn listeners_get_their_subscription_id() {
        let filter = Filter {
            tools_list_changed: Some(true),
            resource_subscriptions: Some(vec!["test://a".into()]),
            ..Filter::default()
        };
        let id = RawValue::from_string("7".into()).unwrap();
        let out = for_listener(
            r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
            &filter,
            &id,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["params"]["_meta"][KEY_SUBSCRIPTION_ID], 7);
        assert!(
            for_listener(
                r#"{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}"#,
                &filter,
                &id
            )
            .is_none()
        );
        assert!(
            for_listener(
                r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":1}}"#,
                &filter,
                &id
            )
            .is_none()
        );
        let up = for_listener(
            r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"test://a"}}"#,
            &filter,
            &id,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&up).unwrap();
        assert_eq!(v["params"]["uri"], "test://a");
        assert_eq!(v["params"]["_meta"][KEY_SUBSCRIPTION_ID], 7);
    }
}
