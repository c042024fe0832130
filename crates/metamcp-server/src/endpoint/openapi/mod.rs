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

mod document;
mod index;
mod page;

pub use index::RestCache;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::error::HttpError;
use crate::namespace::catalog::ListKind;
use crate::ratelimit::PeerAddr;
use crate::snapshot::{EndpointCfg, NamespaceCfg};
use crate::state::Gateway;
use index::ToolIndex;

struct Face {
    ep: Arc<EndpointCfg>,
    principal: crate::auth::Principal,
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
    tool: Option<&str>,
) -> Result<Face, HttpError> {
    let (snap, ep, principal) =
        super::resolve_endpoint(gw, "rest", endpoint, headers, query, peer)?;
    // The endpoint's rate limits count REST requests like MCP ones (429 + Retry-After here).
    if let Err(rl) = gw.limiter.check_request(&ep, &principal, peer, headers) {
        gw.rt.metrics.rate_limited(&ep.name);
        if let Some(tool) = tool
            && let Some(who) =
                super::audit_who(gw, "rest", "tools/call", &ep, &principal, peer, headers)
        {
            let record =
                crate::audit::refusal(&who, "tool_call", Some(tool.into()), super::rate_limited());
            gw.rt.audit.record(record).await;
        }
        return Err(rl.http_error());
    }
    let Some(ns) = snap.namespaces.get(&ep.namespace_id).cloned() else {
        return Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "namespace_missing",
            "The endpoint's namespace no longer exists",
        ));
    };
    let listing = gw.rt.catalogs.get(&gw.rt, &ns, ListKind::Tools).await;
    let complete = listing.complete;
    let index = gw.rest.index(&ns.id, &listing);
    Ok(Face {
        ep,
        principal,
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
    match tools_of(&gw, &endpoint, &headers, query.as_deref(), peer, None).await {
        Ok(f) => {
            let doc = document::document(&gw.opts.app_url, &f.ep, &f.ns, &f.index.tools);
            json_response(StatusCode::OK, &doc)
        }
        Err(e) => e.into_response(),
    }
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
        ep,
        principal,
        ns,
        index,
        complete,
    } = tools_of(gw, endpoint, headers, query, peer, Some(tool_name)).await?;
    let who = super::audit_who(gw, "rest", "tools/call", &ep, &principal, peer, headers);
    let denied = async |class: &str| {
        if let Some(who) = &who {
            let verdict = crate::audit::Verdict::new(crate::audit::Outcome::Denied, class);
            let mut record =
                crate::audit::refusal(who, "tool_call", Some(tool_name.into()), verdict);
            record.namespace = Some(ns.name.as_str().into());
            gw.rt.audit.record(record).await;
        }
    };
    let args = match arguments(body) {
        Ok(a) => a,
        Err(e) => {
            denied("invalid_params").await;
            return Err(e);
        }
    };
    let Some(tool) = index.by_name.get(tool_name) else {
        denied("unknown_tool").await;
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
                denied("validation_error").await;
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
    let call = crate::relay::CallCtx {
        who,
        trace: super::trace_in(gw, "rest", &ep.name, headers),
        user: principal.user_id(),
        ..Default::default()
    };
    let out =
        crate::namespace::route::handle_ctx(&gw.rt, &ns, "tools/call", &id, Some(&params), &call)
            .await
            .into_string();
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
    match tools_of(&gw, &endpoint, &headers, query.as_deref(), peer, None).await {
        Ok(f) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            page::html_page(&f.ep, &f.ns, &f.index.tools),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

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
}
