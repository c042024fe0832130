//! The OpenAPI 3.1 document of an endpoint's REST face: one `POST /{tool}` per tool, the
//! tool's `inputSchema` as the request body under `components.schemas` with its local
//! `$ref`s rewritten to stay valid there.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::index::ToolDef;
use crate::snapshot::{EndpointCfg, NamespaceCfg};

/// `name` reduced to `[A-Za-z0-9_]` (every other character becomes `_`), never empty.
pub(super) fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() { "tool".to_owned() } else { s }
}

/// One unique operation id per tool, in order.
pub(super) fn operation_ids(tools: &[Arc<ToolDef>]) -> Vec<String> {
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
pub(super) fn encode_segment(s: &str) -> String {
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
pub(super) fn document(
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
}
