//! `/metamcp/{endpoint}/api`: the REST face of an endpoint, for OpenAPI tool clients (Open
//! WebUI, mcpo-style integrations) that cannot speak MCP.
//!
//! - `GET …/api/openapi.json`: an OpenAPI 3.1 document with one `POST /{tool}` per tool;
//! - `POST …/api/{tool}`: runs the tool with the JSON body as its `arguments`;
//! - `GET …/api`: a readable HTML page of the same operations (no scripts, no CDN).
//!
//! Why built on the MCP face rather than beside it: the tool list comes only from the
//! namespace's catalog and every call goes through [`crate::namespace::route::handle`], so
//! whatever shapes tools there (prefixes, renames, disabled tools) shapes this face too, and
//! no name logic lives here. Arguments are checked against the tool's `inputSchema` before
//! the call (422 with every failing path); validators are compiled once per
//! (namespace, tool, schema) and cached in [`RestCache`].
//!
//! Answers: 200 with the tool's `structuredContent` when it has one, else
//! `{"result": <text blocks joined by "\n">, "content": [...]}`; 500 `tool_error` when the
//! tool answered `isError: true`; 502 `upstream_error` for a JSON-RPC error; 404
//! `tool_not_found`; 400 for a body that is not a JSON object; 401/404 from the endpoint's
//! auth rules, exactly as on the MCP faces.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::error::HttpError;
use crate::namespace::catalog::{ListKind, Listing};
use crate::ratelimit::PeerAddr;
use crate::snapshot::{EndpointCfg, NamespaceCfg};
use crate::state::Gateway;

/// Above this many cached validators the cache is emptied (namespaces and tools come and go).
const MAX_VALIDATORS: usize = 10_000;

/// One tool of a namespace's catalog, as this face needs it.
#[derive(Debug)]
struct ToolDef {
    name: String,
    title: Option<String>,
    description: Option<String>,
    input_schema: Value,
    output_schema: Option<Value>,
    /// `input_schema` serialized: the validator cache's key.
    schema_text: String,
}

/// The tools of one catalog listing, in catalog order.
#[derive(Debug)]
struct ToolIndex {
    tools: Vec<Arc<ToolDef>>,
    by_name: HashMap<String, Arc<ToolDef>>,
}

/// A compiled input validator, or why the schema could not be compiled.
type Compiled = Result<Arc<jsonschema::Validator>, Arc<str>>;

/// A catalog listing and the index parsed from it.
type Indexed = (Arc<Listing>, Arc<ToolIndex>);

/// Parsed tool lists and compiled validators, shared by every REST request.
#[derive(Default)]
pub struct RestCache {
    /// Namespace id → the listing last parsed and its index (reused while the catalog hands
    /// out the same listing).
    indexes: Mutex<HashMap<String, Indexed>>,
    /// (namespace id, tool name) → (schema text, validator).
    validators: Mutex<HashMap<(String, String), (String, Compiled)>>,
}

impl std::fmt::Debug for RestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestCache")
            .field("indexes", &self.indexes.lock().len())
            .field("validators", &self.validators.lock().len())
            .finish()
    }
}

impl RestCache {
    fn index(&self, ns_id: &str, listing: &Arc<Listing>) -> Arc<ToolIndex> {
        if let Some((l, idx)) = self.indexes.lock().get(ns_id)
            && Arc::ptr_eq(l, listing)
        {
            return idx.clone();
        }
        let idx = Arc::new(parse_listing(&listing.json));
        self.indexes
            .lock()
            .insert(ns_id.to_owned(), (listing.clone(), idx.clone()));
        idx
    }

    fn validator(&self, ns_id: &str, tool: &ToolDef) -> Compiled {
        let key = (ns_id.to_owned(), tool.name.clone());
        if let Some((text, compiled)) = self.validators.lock().get(&key)
            && *text == tool.schema_text
        {
            return compiled.clone();
        }
        // Compiled outside the lock: a large schema must not stall other calls.
        let compiled: Compiled = jsonschema::validator_for(&tool.input_schema)
            .map(Arc::new)
            .map_err(|e| Arc::from(e.to_string()));
        let mut map = self.validators.lock();
        if map.len() >= MAX_VALIDATORS {
            map.clear();
        }
        map.insert(key, (tool.schema_text.clone(), compiled.clone()));
        compiled
    }
}

fn parse_listing(json: &str) -> ToolIndex {
    let parsed: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    let mut tools = Vec::new();
    let mut by_name = HashMap::new();
    for t in parsed["tools"].as_array().into_iter().flatten() {
        let Some(name) = t["name"].as_str() else {
            continue;
        };
        if by_name.contains_key(name) {
            continue;
        }
        let input_schema = match &t["inputSchema"] {
            v @ Value::Object(_) => v.clone(),
            _ => json!({ "type": "object" }),
        };
        let def = Arc::new(ToolDef {
            name: name.to_owned(),
            title: t["title"]
                .as_str()
                .or_else(|| t["annotations"]["title"].as_str())
                .map(str::to_owned),
            description: t["description"].as_str().map(str::to_owned),
            schema_text: input_schema.to_string(),
            input_schema,
            output_schema: t["outputSchema"]
                .as_object()
                .map(|o| Value::Object(o.clone())),
        });
        by_name.insert(name.to_owned(), def.clone());
        tools.push(def);
    }
    ToolIndex { tools, by_name }
}

/// What a REST request works on.
struct Face {
    ep: Arc<EndpointCfg>,
    ns: Arc<NamespaceCfg>,
    index: Arc<ToolIndex>,
    /// Every server of the namespace answered the tool listing.
    complete: bool,
}

/// The endpoint, its namespace and its tools, or the HTTP refusal.
async fn tools_of(
    gw: &Gateway,
    endpoint: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    peer: Option<std::net::SocketAddr>,
) -> Result<Face, HttpError> {
    let (snap, ep, principal) = super::resolve_endpoint(gw, endpoint, headers, query)?;
    // The endpoint's rate limits count REST requests like MCP ones (429 + Retry-After here).
    crate::ratelimit::check_request(gw, &ep, &principal, peer, headers)
        .map_err(|rl| rl.http_error())?;
    let Some(ns) = snap.namespaces.get(&ep.namespace_id).cloned() else {
        return Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "namespace_missing",
            "The endpoint's namespace no longer exists",
        ));
    };
    let listing = gw.catalogs.get(gw, &ns, ListKind::Tools).await;
    let complete = listing.complete;
    let index = gw.rest.index(&ns.id, &listing);
    Ok(Face {
        ep,
        ns,
        index,
        complete,
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// GET …/api/openapi.json
// ---------------------------------------------------------------------------

/// `GET /metamcp/{endpoint}/api/openapi.json`.
pub async fn spec(
    State(gw): State<Arc<Gateway>>,
    Path(endpoint): Path<String>,
    RawQuery(query): RawQuery,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
) -> Response {
    match tools_of(&gw, &endpoint, &headers, query.as_deref(), peer).await {
        Ok(f) => {
            let doc = document(&gw.opts.app_url, &f.ep, &f.ns, &f.index.tools);
            json_response(StatusCode::OK, &doc)
        }
        Err(e) => e.into_response(),
    }
}

/// `name` reduced to `[A-Za-z0-9_]` (every other character becomes `_`), never empty.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() { "tool".to_owned() } else { s }
}

/// One unique operation id per tool, in order.
fn operation_ids(tools: &[Arc<ToolDef>]) -> Vec<String> {
    let mut seen = HashSet::new();
    tools
        .iter()
        .map(|t| {
            let base = sanitize(&t.name);
            let mut id = base.clone();
            let mut n = 2;
            while !seen.insert(id.clone()) {
                id = format!("{base}_{n}");
                n += 1;
            }
            id
        })
        .collect()
}

/// `s` percent-encoded except RFC 3986 unreserved characters (one path segment).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Keywords whose values are data, not subschemas: a `$ref` inside them is left alone.
const DATA_KEYWORDS: &[&str] = &["const", "enum", "default", "examples", "example"];

/// Rewrites every local `$ref` of `schema` (`#`, `#/…`) so it points into `base`, the
/// schema's new home (`#/components/schemas/X`): `#` → `base`, `#/$defs/Y` → `base/$defs/Y`.
/// Anchors (`#name`) and non-local refs are unchanged.
pub(crate) fn rewrite_refs(schema: &mut Value, base: &str) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref")
                && (r == "#" || r.starts_with("#/"))
            {
                *r = format!("{base}{}", &r[1..]);
            }
            for (k, v) in map.iter_mut() {
                if k != "$ref" && !DATA_KEYWORDS.contains(&k.as_str()) {
                    rewrite_refs(v, base);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                rewrite_refs(v, base);
            }
        }
        _ => {}
    }
}

/// The OpenAPI 3.1 document of an endpoint.
fn document(
    app_url: &url::Url,
    ep: &EndpointCfg,
    ns: &NamespaceCfg,
    tools: &[Arc<ToolDef>],
) -> Value {
    let server_url = format!(
        "{}/metamcp/{}/api",
        app_url.as_str().trim_end_matches('/'),
        encode_segment(&ep.name)
    );
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": { "type": "string", "description": "Machine-readable kind of failure" },
                "message": { "type": "string", "description": "What went wrong, for humans" }
            }
        }),
    );
    schemas.insert(
        "ValidationError".into(),
        json!({
            "type": "object",
            "required": ["error", "message", "errors"],
            "properties": {
                "error": { "type": "string", "const": "validation_error" },
                "message": { "type": "string" },
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["path", "message"],
                        "properties": {
                            "path": {
                                "type": "string",
                                "description": "JSON Pointer to the failing part of the body (\"\" is the whole body)"
                            },
                            "message": { "type": "string" }
                        }
                    }
                }
            }
        }),
    );
    schemas.insert(
        "ToolError".into(),
        json!({
            "type": "object",
            "required": ["error", "message", "result"],
            "properties": {
                "error": { "type": "string", "const": "tool_error" },
                "message": { "type": "string", "description": "The tool's text content, joined" },
                "result": { "type": "object", "description": "The tool's whole MCP CallToolResult" }
            }
        }),
    );
    schemas.insert(
        "UpstreamError".into(),
        json!({
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": { "type": "string", "const": "upstream_error" },
                "message": { "type": "string" },
                "code": { "type": "integer", "description": "The JSON-RPC error code" },
                "data": { "description": "The JSON-RPC error's data, if any" }
            }
        }),
    );
    schemas.insert(
        "TextResult".into(),
        json!({
            "type": "object",
            "required": ["result", "content"],
            "description": "The answer of a tool without structured content",
            "properties": {
                "result": { "type": "string", "description": "The text content blocks, joined by newlines" },
                "content": {
                    "type": "array",
                    "description": "The tool's MCP content blocks, unchanged",
                    "items": { "type": "object" }
                }
            }
        }),
    );
    let error_response = |description: &str, schema: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
        })
    };
    let mut responses = Map::new();
    responses.insert(
        "BadRequest".into(),
        error_response("The body is not a JSON object", "Error"),
    );
    if ep.api_key_auth {
        responses.insert(
            "Unauthorized".into(),
            error_response("API key missing or invalid", "Error"),
        );
    }
    responses.insert(
        "NotFound".into(),
        error_response(
            "No such tool in this endpoint's namespace (`tool_not_found`)",
            "Error",
        ),
    );
    responses.insert(
        "ValidationFailed".into(),
        error_response(
            "The body does not match the tool's input schema; every failing path is listed",
            "ValidationError",
        ),
    );
    responses.insert(
        "ToolFailed".into(),
        error_response(
            "The tool ran and reported an error (`isError: true`)",
            "ToolError",
        ),
    );
    responses.insert(
        "UpstreamFailed".into(),
        error_response(
            "The server behind the tool failed to answer (down, timed out, protocol error)",
            "UpstreamError",
        ),
    );

    let mut paths = Map::new();
    for (tool, op_id) in tools.iter().zip(operation_ids(tools)) {
        let input = format!("{op_id}_input");
        let mut input_schema = tool.input_schema.clone();
        rewrite_refs(&mut input_schema, &format!("#/components/schemas/{input}"));
        schemas.insert(input.clone(), input_schema);
        let ok_schema = if let Some(out) = &tool.output_schema {
            let output = format!("{op_id}_output");
            let mut out = out.clone();
            rewrite_refs(&mut out, &format!("#/components/schemas/{output}"));
            schemas.insert(output.clone(), out);
            json!({ "$ref": format!("#/components/schemas/{output}") })
        } else {
            json!({
                "anyOf": [
                    { "$ref": "#/components/schemas/TextResult" },
                    { "type": "object", "description": "The tool's structuredContent" }
                ]
            })
        };
        let summary = tool
            .title
            .clone()
            .or_else(|| {
                tool.description
                    .as_deref()
                    .and_then(|d| d.lines().next())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| tool.name.clone());
        let mut op = json!({
            "operationId": op_id,
            "summary": summary,
            "requestBody": {
                "required": false,
                "description": "The tool's arguments; an empty body means {}",
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{input}") } } }
            },
            "responses": {
                "200": {
                    "description": "The tool's structuredContent when it returns one, else {\"result\": text, \"content\": [...]}",
                    "content": { "application/json": { "schema": ok_schema } }
                },
                "400": { "$ref": "#/components/responses/BadRequest" },
                "404": { "$ref": "#/components/responses/NotFound" },
                "422": { "$ref": "#/components/responses/ValidationFailed" },
                "500": { "$ref": "#/components/responses/ToolFailed" },
                "502": { "$ref": "#/components/responses/UpstreamFailed" }
            }
        });
        if let Some(d) = &tool.description {
            op["description"] = Value::String(d.clone());
        }
        if ep.api_key_auth {
            op["responses"]["401"] = json!({ "$ref": "#/components/responses/Unauthorized" });
        }
        paths.insert(
            format!("/{}", encode_segment(&tool.name)),
            json!({ "post": op }),
        );
    }

    let mut components = json!({ "schemas": schemas, "responses": responses });
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("metamcp endpoint {}", ep.name),
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "The tools of namespace {:?}, one POST operation each: the JSON body is the \
                 tool's arguments. Generated from the live tool list.",
                ns.name
            )
        },
        "servers": [{ "url": server_url }],
        "paths": paths,
    });
    if ep.api_key_auth {
        let mut schemes = json!({
            "bearerAuth": { "type": "http", "scheme": "bearer", "description": "An API key (sk_mt_…) as a bearer token" },
            "apiKeyAuth": { "type": "apiKey", "in": "header", "name": "X-API-Key" }
        });
        let mut security = vec![json!({ "bearerAuth": [] }), json!({ "apiKeyAuth": [] })];
        if ep.query_auth {
            schemes["apiKeyQuery"] = json!({ "type": "apiKey", "in": "query", "name": "api_key" });
            security.push(json!({ "apiKeyQuery": [] }));
        }
        components["securitySchemes"] = schemes;
        doc["security"] = Value::Array(security);
    }
    doc["components"] = components;
    doc
}

// ---------------------------------------------------------------------------
// POST …/api/{tool}
// ---------------------------------------------------------------------------

/// `POST /metamcp/{endpoint}/api/{tool}`.
pub async fn call(
    State(gw): State<Arc<Gateway>>,
    Path((endpoint, tool)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match run(
        &gw,
        &endpoint,
        &tool,
        query.as_deref(),
        peer,
        &headers,
        &body,
    )
    .await
    {
        Ok((status, v)) => json_response(status, &v),
        Err(e) => e.into_response(),
    }
}

/// Reads the arguments: an empty body is `{}`; anything but a JSON object is refused.
fn arguments(body: &[u8]) -> Result<Value, HttpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "The body must be a JSON object: the tool's arguments",
        )),
        Err(e) => Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("The body is not valid JSON: {e}"),
        )),
    }
}

async fn run(
    gw: &Gateway,
    endpoint: &str,
    tool_name: &str,
    query: Option<&str>,
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, Value), HttpError> {
    let Face {
        ns,
        index,
        complete,
        ..
    } = tools_of(gw, endpoint, headers, query, peer).await?;
    let args = arguments(body)?;
    let Some(tool) = index.by_name.get(tool_name) else {
        let why = if complete {
            ""
        } else {
            " (some servers of the namespace did not answer the tool listing)"
        };
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            "tool_not_found",
            format!("No tool named {tool_name:?} on this endpoint{why}"),
        ));
    };
    match gw.rest.validator(&ns.id, tool) {
        Ok(v) => {
            let errors: Vec<Value> = v
                .iter_errors(&args)
                .map(|e| json!({ "path": e.instance_path().to_string(), "message": e.to_string() }))
                .collect();
            if !errors.is_empty() {
                return Ok((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({
                        "error": "validation_error",
                        "message": format!(
                            "The arguments do not match the input schema of {tool_name:?} ({} error{})",
                            errors.len(),
                            if errors.len() == 1 { "" } else { "s" }
                        ),
                        "errors": errors,
                    }),
                ));
            }
        }
        // why: an odd schema must not make the tool unusable; the upstream still checks.
        Err(e) => tracing::debug!(
            tool = tool_name,
            "input schema not compiled, not checked: {e}"
        ),
    }

    let params = json!({ "name": tool_name, "arguments": args }).to_string();
    let (Ok(params), Ok(id)) = (
        RawValue::from_string(params),
        RawValue::from_string("\"rest\"".to_owned()),
    ) else {
        return Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Could not build the tools/call request",
        ));
    };
    let out = crate::namespace::route::handle(gw, &ns, "tools/call", &id, Some(&params)).await;
    Ok(map_answer(&out))
}

/// The HTTP status and body for a JSON-RPC response to `tools/call`.
fn map_answer(out: &str) -> (StatusCode, Value) {
    let mut resp: Value = match serde_json::from_str(out) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                json!({ "error": "upstream_error", "message": format!("Unreadable answer: {e}") }),
            );
        }
    };
    if let Some(err) = resp.get("error") {
        let mut body = json!({
            "error": "upstream_error",
            "message": err["message"].as_str().unwrap_or("The upstream server failed"),
        });
        if let Some(code) = err.get("code") {
            body["code"] = code.clone();
        }
        if let Some(data) = err.get("data") {
            body["data"] = data.clone();
        }
        return (StatusCode::BAD_GATEWAY, body);
    }
    let result = resp
        .get_mut("result")
        .map(Value::take)
        .unwrap_or(Value::Null);
    if !result.is_object() {
        return (
            StatusCode::BAD_GATEWAY,
            json!({ "error": "upstream_error", "message": "The answer has no result object" }),
        );
    }
    let text = joined_text(&result);
    if result["isError"].as_bool() == Some(true) {
        let message = if text.is_empty() {
            "The tool reported an error".to_owned()
        } else {
            text
        };
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": "tool_error", "message": message, "result": result }),
        );
    }
    if let Some(structured) = result.get("structuredContent")
        && !structured.is_null()
    {
        return (StatusCode::OK, structured.clone());
    }
    let content = match result.get("content") {
        Some(c @ Value::Array(_)) => c.clone(),
        _ => Value::Array(Vec::new()),
    };
    (
        StatusCode::OK,
        json!({ "result": text, "content": content }),
    )
}

/// The text of every `text` content block, joined by newlines.
fn joined_text(result: &Value) -> String {
    result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// GET …/api
// ---------------------------------------------------------------------------

/// `GET /metamcp/{endpoint}/api`: the operations as a plain HTML page.
pub async fn page(
    State(gw): State<Arc<Gateway>>,
    Path(endpoint): Path<String>,
    RawQuery(query): RawQuery,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
) -> Response {
    match tools_of(&gw, &endpoint, &headers, query.as_deref(), peer).await {
        Ok(f) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            html_page(&f.ep, &f.ns, &f.index.tools),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `s` with the five HTML-significant characters escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const PAGE_STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;\
padding:0 1rem;color:#222}h1{font-size:1.5rem}section{border-top:1px solid #ddd;padding:.5rem 0}\
h2{font-size:1.1rem;font-family:monospace}.m{background:#2a7;color:#fff;padding:.1rem .4rem;\
border-radius:3px;margin-right:.5rem}pre{background:#f5f5f5;padding:.75rem;overflow:auto}\
.d{white-space:pre-wrap}";

fn html_page(ep: &EndpointCfg, ns: &NamespaceCfg, tools: &[Arc<ToolDef>]) -> String {
    let mut h = String::new();
    let spec_url = format!("/metamcp/{}/api/openapi.json", encode_segment(&ep.name));
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>metamcp endpoint {name}</title><style>{PAGE_STYLE}</style></head><body>\
         <h1>metamcp endpoint {name}</h1><p>Namespace {ns}: {count} tool{s}. \
         Each is an HTTP <code>POST</code> whose JSON body is the tool's arguments. \
         OpenAPI 3.1 document: <a href=\"{spec}\">openapi.json</a>.</p>",
        name = esc(&ep.name),
        ns = esc(&ns.name),
        count = tools.len(),
        s = if tools.len() == 1 { "" } else { "s" },
        spec = esc(&spec_url),
    );
    if ep.api_key_auth {
        h.push_str(
            "<p>Send an API key as <code>Authorization: Bearer sk_mt_…</code> or \
             <code>X-API-Key</code>.</p>",
        );
    }
    for (t, op_id) in tools.iter().zip(operation_ids(tools)) {
        let path = format!("/{}", encode_segment(&t.name));
        let _ = write!(
            h,
            "<section id=\"{id}\"><h2><span class=\"m\">POST</span>{path}</h2>",
            id = esc(&op_id),
            path = esc(&path),
        );
        if let Some(title) = &t.title {
            let _ = write!(h, "<p><strong>{}</strong></p>", esc(title));
        }
        if let Some(d) = &t.description {
            let _ = write!(h, "<p class=\"d\">{}</p>", esc(d));
        }
        let schema =
            serde_json::to_string_pretty(&t.input_schema).unwrap_or_else(|_| t.schema_text.clone());
        let _ = write!(
            h,
            "<p>Input schema:</p><pre>{}</pre></section>",
            esc(&schema)
        );
    }
    h.push_str("</body></html>");
    h
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn local_refs_point_into_the_component() {
        let mut s = json!({
            "type": "object",
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {
                        "children": { "type": "array", "items": { "$ref": "#/$defs/node" } },
                        "root": { "$ref": "#" }
                    }
                }
            },
            "definitions": { "old": { "type": "string" } },
            "properties": {
                "tree": { "$ref": "#/$defs/node" },
                "legacy": { "$ref": "#/definitions/old" },
                "anchor": { "$ref": "#named" },
                "remote": { "$ref": "https://example.com/s.json#/x" },
                "literal": { "const": { "$ref": "#/$defs/node" }, "default": { "$ref": "#" } },
                "$ref": { "type": "string" }
            }
        });
        rewrite_refs(&mut s, "#/components/schemas/t_input");
        let base = "#/components/schemas/t_input";
        assert_eq!(
            s["$defs"]["node"]["properties"]["children"]["items"]["$ref"],
            format!("{base}/$defs/node")
        );
        assert_eq!(s["$defs"]["node"]["properties"]["root"]["$ref"], base);
        assert_eq!(
            s["properties"]["tree"]["$ref"],
            format!("{base}/$defs/node")
        );
        assert_eq!(
            s["properties"]["legacy"]["$ref"],
            format!("{base}/definitions/old")
        );
        assert_eq!(s["properties"]["anchor"]["$ref"], "#named");
        assert_eq!(
            s["properties"]["remote"]["$ref"],
            "https://example.com/s.json#/x"
        );
        // Data is not a schema: left alone.
        assert_eq!(s["properties"]["literal"]["const"]["$ref"], "#/$defs/node");
        assert_eq!(s["properties"]["literal"]["default"]["$ref"], "#");
        assert_eq!(s["properties"]["$ref"], json!({ "type": "string" }));
    }

    #[test]
    fn operation_ids_are_sanitized_and_unique() {
        let tool = |name: &str| {
            Arc::new(ToolDef {
                name: name.to_owned(),
                title: None,
                description: None,
                input_schema: json!({}),
                output_schema: None,
                schema_text: "{}".to_owned(),
            })
        };
        let tools = [
            tool("a.b"),
            tool("a_b"),
            tool("a-b"),
            tool(""),
            tool("ok__x"),
        ];
        assert_eq!(
            operation_ids(&tools),
            ["a_b", "a_b_2", "a_b_3", "tool", "ok__x"]
        );
        assert_eq!(encode_segment("a b/c.d~_-"), "a%20b%2Fc.d~_-");
    }

    #[test]
    fn answers_map_to_statuses() {
        let ok = r#"{"jsonrpc":"2.0","id":"rest","result":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}"#;
        let (s, b) = map_answer(ok);
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b["result"], "a\nb");
        assert_eq!(b["content"].as_array().unwrap().len(), 2);

        let structured = r#"{"jsonrpc":"2.0","id":"rest","result":{"content":[],"structuredContent":{"sum":3}}}"#;
        assert_eq!(map_answer(structured), (StatusCode::OK, json!({"sum": 3})));

        let failed = r#"{"jsonrpc":"2.0","id":"rest","result":{"content":[{"type":"text","text":"boom"}],"isError":true}}"#;
        let (s, b) = map_answer(failed);
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(b["error"], "tool_error");
        assert_eq!(b["message"], "boom");
        assert_eq!(b["result"]["isError"], true);

        let rpc = r#"{"jsonrpc":"2.0","id":"rest","error":{"code":-32603,"message":"alpha is down","data":{"server":"alpha"}}}"#;
        let (s, b) = map_answer(rpc);
        assert_eq!(s, StatusCode::BAD_GATEWAY);
        assert_eq!(b["error"], "upstream_error");
        assert_eq!(b["message"], "alpha is down");
        assert_eq!(b["data"]["server"], "alpha");
    }

    #[test]
    fn bodies_are_objects_or_empty() {
        assert_eq!(arguments(b"").unwrap(), json!({}));
        assert_eq!(arguments(b" \n").unwrap(), json!({}));
        assert_eq!(arguments(br#"{"a":1}"#).unwrap(), json!({"a": 1}));
        assert_eq!(
            arguments(b"[1]").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(arguments(b"{").unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn validators_are_compiled_once_per_schema_and_follow_refs() {
        let schema = json!({
            "type": "object",
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {
                        "value": { "type": "integer" },
                        "children": { "type": "array", "items": { "$ref": "#/$defs/node" } }
                    }
                }
            },
            "properties": { "tree": { "$ref": "#/$defs/node" }, "again": { "$ref": "#" } }
        });
        let def = |schema: Value| ToolDef {
            name: "t".to_owned(),
            title: None,
            description: None,
            schema_text: schema.to_string(),
            input_schema: schema,
            output_schema: None,
        };
        let cache = RestCache::default();
        let tool = def(schema);
        let v1 = cache.validator("ns", &tool).unwrap();
        let v2 = cache.validator("ns", &tool).unwrap();
        assert!(Arc::ptr_eq(&v1, &v2), "recompiled an unchanged schema");
        let args = json!({
            "tree": { "value": 1, "children": [{ "value": "x" }] },
            "again": { "tree": { "value": 1.5 } }
        });
        let mut paths: Vec<String> = v1
            .iter_errors(&args)
            .map(|e| e.instance_path().to_string())
            .collect();
        paths.sort();
        assert_eq!(paths, ["/again/tree/value", "/tree/children/0/value"]);
        // Another schema under the same name: compiled anew.
        let v3 = cache
            .validator("ns", &def(json!({ "type": "object" })))
            .unwrap();
        assert!(!Arc::ptr_eq(&v1, &v3));
        assert!(v3.is_valid(&args));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
