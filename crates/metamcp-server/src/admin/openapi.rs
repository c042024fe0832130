//! The OpenAPI 3.1 description of the admin API (`GET /api/v1/openapi.json`), built by hand
//! beside the handlers in [`super::api`]; the end-to-end tests check that every route is
//! described and (where the validator is installed) that the document is valid.

use serde_json::{Map, Value, json};

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn array_of(name: &str) -> Value {
    json!({ "type": "array", "items": schema_ref(name) })
}

fn name_param(name: &str, what: &str) -> Value {
    json!({
        "name": name, "in": "path", "required": true,
        "description": what, "schema": { "type": "string" }
    })
}

/// The error answers every protected operation may give, plus `extra` codes.
fn errors(extra: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    for code in ["401", "403"].iter().chain(extra).chain(["500"].iter()) {
        m.insert(
            (*code).to_owned(),
            json!({ "$ref": format!("#/components/responses/E{code}") }),
        );
    }
    m
}

fn op(
    id: &str,
    summary: &str,
    params: &[Value],
    body: Option<Value>,
    status: &str,
    answer: Option<Value>,
    errs: &[&str],
) -> Value {
    let mut responses = errors(errs);
    let ok = match answer {
        Some(schema) => json!({
            "description": "Success",
            "content": { "application/json": { "schema": schema } }
        }),
        None => json!({ "description": "Success (no body)" }),
    };
    responses.insert(status.to_owned(), ok);
    let mut o = json!({
        "operationId": id,
        "summary": summary,
        "responses": responses,
    });
    if !params.is_empty() {
        o["parameters"] = Value::Array(params.to_vec());
    }
    if let Some(b) = body {
        o["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": b } }
        });
    }
    o
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": schema_ref("Error") } }
    })
}

fn nullable(t: &str) -> Value {
    json!({ "type": [t, "null"] })
}

/// The document.
fn audit_params() -> Vec<Value> {
    let q = |name: &str, description: &str, schema: Value| json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema });
    vec![
        q(
            "endpoint",
            "Only calls to this endpoint",
            json!({"type": "string"}),
        ),
        q(
            "server",
            "Only calls answered by this server",
            json!({"type": "string"}),
        ),
        q(
            "tool",
            "Only this exposed tool name (or prompt name, resource URI, admin operation)",
            json!({"type": "string"}),
        ),
        q(
            "principal",
            "Only this key name or user email",
            json!({"type": "string"}),
        ),
        q(
            "since",
            "Only records this recent: 90s, 15m, 1h, 2d, 1w",
            json!({"type": "string"}),
        ),
        q(
            "outcome",
            "error (any but ok) or one outcome",
            json!({"type": "string"}),
        ),
        q(
            "limit",
            "Records per page (default 100, at most 1000)",
            json!({"type": "integer", "minimum": 1}),
        ),
        q(
            "cursor",
            "next_cursor of the previous page, with the same filters",
            json!({"type": "string"}),
        ),
    ]
}

pub fn document() -> Value {
    let server = name_param("name", "Server name");
    let ns = name_param("name", "Namespace name");
    let ep = name_param("name", "Endpoint name");
    let key = name_param("name", "API key name");
    let member = name_param("server", "Server name");
    let tool = name_param("tool", "`server__tool` or the exposed name");
    let setting = name_param("key", "Setting name, e.g. MCP_TIMEOUT");
    let grant = name_param("id", "Grant id");
    let client = name_param("id", "Client id");
    let user = name_param("email", "The user's email");
    let lines = json!({
        "name": "lines", "in": "query", "required": false,
        "description": "How many of the newest lines (default 200)",
        "schema": { "type": "integer", "minimum": 0 }
    });

    let paths = json!({
        "/api/v1/servers": {
            "get": op("listServers", "List servers with the state running gateways report", &[], None, "200", Some(array_of("Server")), &[]),
            "post": op("importServers", "Import servers (Claude-Desktop JSON); idempotent by name", &[json!({"name": "owner", "in": "query", "required": false, "description": "Email of the user new servers belong to (admins); members' servers are their own", "schema": {"type": "string"}})], Some(schema_ref("Import")), "200", Some(schema_ref("ImportReport")), &["400", "403", "422"]),
        },
        "/api/v1/servers/{name}": {
            "get": op("getServer", "One server", std::slice::from_ref(&server), None, "200", Some(schema_ref("Server")), &["404"]),
            "patch": op("updateServer", "Change how client sessions share the server", std::slice::from_ref(&server), Some(schema_ref("ServerPatch")), "200", Some(schema_ref("Connection")), &["400", "404", "422"]),
            "delete": op("removeServer", "Remove a server (it leaves every namespace)", std::slice::from_ref(&server), None, "204", None, &["404"]),
        },
        "/api/v1/servers/{name}/reset": {
            "post": op("resetServer", "Clear the server's failure state on running gateways", std::slice::from_ref(&server), None, "202", Some(json!({"type": "object", "properties": {"server": {"type": "string"}, "reset": {"type": "string"}}})), &["404"]),
        },
        "/api/v1/servers/{name}/logs": {
            "get": op("serverLogs", "The server's captured stderr and lifecycle lines", &[server.clone(), lines], None, "200", Some(array_of("LogLine")), &["404", "422"]),
        },
        "/api/v1/namespaces": {
            "get": op("listNamespaces", "List namespaces", &[], None, "200", Some(array_of("Namespace")), &[]),
            "post": op("createNamespace", "Create a namespace", &[], Some(schema_ref("NewNamespace")), "201", Some(schema_ref("NamespaceCreated")), &["400", "404", "409", "422"]),
        },
        "/api/v1/namespaces/{name}": {
            "get": op("getNamespace", "One namespace", std::slice::from_ref(&ns), None, "200", Some(schema_ref("Namespace")), &["404"]),
            "patch": op("updateNamespace", "Change prefix mode, default for new tools, name-length limit", std::slice::from_ref(&ns), Some(schema_ref("NamespacePatch")), "200", Some(schema_ref("NamespaceUpdated")), &["400", "404", "409", "422"]),
            "delete": op("removeNamespace", "Remove a namespace and its endpoints", std::slice::from_ref(&ns), None, "204", None, &["404"]),
        },
        "/api/v1/namespaces/{name}/servers/{server}": {
            "post": op("addNamespaceServer", "Add a server to the namespace", &[ns.clone(), member.clone()], None, "200", Some(schema_ref("Namespace")), &["404", "409"]),
            "delete": op("removeNamespaceServer", "Take a server out of the namespace", &[ns.clone(), member], None, "200", Some(schema_ref("Namespace")), &["404"]),
        },
        "/api/v1/namespaces/{name}/tools": {
            "get": op("listTools", "The namespace's tools: exposed name, state, overrides", std::slice::from_ref(&ns), None, "200", Some(schema_ref("NamespaceTools")), &["404"]),
        },
        "/api/v1/namespaces/{name}/tools/enable": {
            "post": op("enableTools", "Switch tools on (server__tool, exposed name, glob or re:REGEX)", std::slice::from_ref(&ns), Some(schema_ref("Patterns")), "200", Some(schema_ref("Changed")), &["400", "404", "409", "422"]),
        },
        "/api/v1/namespaces/{name}/tools/disable": {
            "post": op("disableTools", "Switch tools off: they vanish from lists and cannot be called", std::slice::from_ref(&ns), Some(schema_ref("Patterns")), "200", Some(schema_ref("Changed")), &["400", "404", "422"]),
        },
        "/api/v1/namespaces/{name}/tools/{tool}": {
            "patch": op("overrideTool", "Override a tool's exposed name, title, description or annotations", &[ns.clone(), tool.clone()], Some(schema_ref("ToolOverride")), "200", Some(schema_ref("Changed")), &["400", "404", "409", "422"]),
            "delete": op("resetTool", "Drop a tool's overrides and status", &[ns, tool], None, "200", Some(schema_ref("Changed")), &["404", "409"]),
        },
        "/api/v1/endpoints": {
            "get": op("listEndpoints", "List endpoints", &[], None, "200", Some(array_of("Endpoint")), &[]),
            "post": op("createEndpoint", "Create an endpoint serving a namespace at /metamcp/NAME/mcp", &[], Some(schema_ref("NewEndpoint")), "201", Some(schema_ref("Endpoint")), &["400", "404", "409", "422"]),
        },
        "/api/v1/endpoints/{name}": {
            "get": op("getEndpoint", "One endpoint", std::slice::from_ref(&ep), None, "200", Some(schema_ref("Endpoint")), &["404"]),
            "patch": op("updateEndpoint", "Change the endpoint's rate limits", std::slice::from_ref(&ep), Some(schema_ref("EndpointPatch")), "200", Some(schema_ref("Endpoint")), &["400", "404", "422"]),
            "delete": op("removeEndpoint", "Remove an endpoint", std::slice::from_ref(&ep), None, "204", None, &["404"]),
        },
        "/api/v1/keys": {
            "get": op("listKeys", "List API keys (never their values)", &[], None, "200", Some(array_of("Key")), &[]),
            "post": op("createKey", "Create an API key; its value is returned this once", &[], Some(schema_ref("NewKey")), "201", Some(schema_ref("CreatedKey")), &["400", "409", "422"]),
        },
        "/api/v1/keys/{name}": {
            "delete": op("revokeKey", "Revoke an API key", &[key], None, "204", None, &["404"]),
        },
        "/api/v1/users": {
            "get": op("listUsers", "List user accounts (never password hashes)", &[], None, "200", Some(array_of("User")), &[]),
            "post": op("createUser", "Create a user account", &[], Some(schema_ref("NewUser")), "201", Some(schema_ref("User")), &["400", "409", "422"]),
        },
        "/api/v1/users/{email}": {
            "get": op("getUser", "One user account", std::slice::from_ref(&user), None, "200", Some(schema_ref("User")), &["404"]),
            "patch": op("updateUser", "Change a user's name, role, password or disabled state; a new password or disabling ends the user's browser sessions", std::slice::from_ref(&user), Some(schema_ref("UserPatch")), "200", Some(schema_ref("User")), &["400", "404", "422"]),
            "delete": op("removeUser", "Remove a user account and every object they own (reported)", std::slice::from_ref(&user), None, "200", Some(json!({"type": "object", "properties": {"removed": {"type": "object"}}})), &["404", "422"]),
        },
        "/api/v1/settings": {
            "get": op("listSettings", "Every setting with its value or default", &[], None, "200", Some(array_of("Setting")), &[]),
        },
        "/api/v1/settings/{key}": {
            "put": op("setSetting", "Set a setting; running gateways apply it within a second", &[setting], Some(schema_ref("SettingValue")), "200", Some(schema_ref("Setting")), &["400", "404", "422"]),
        },
        "/api/v1/audit": {
            "get": op("readAudit", "Audit records, newest first (members: their own only); page with next_cursor", &audit_params(), None, "200", Some(schema_ref("AuditPage")), &["422"]),
        },
        "/api/v1/oauth/grants": {
            "get": op("listOAuthGrants", "OAuth grants (a user's consent to a client for an endpoint): members see their own, admins everyone's", &[], None, "200", Some(array_of("OAuthGrant")), &[]),
        },
        "/api/v1/oauth/grants/{id}": {
            "delete": op("revokeOAuthGrant", "Revoke a grant: its refresh tokens stop at once, its access tokens within their lifetime (at most 5 minutes)", std::slice::from_ref(&grant), None, "200", Some(schema_ref("OAuthGrant")), &["404"]),
        },
        "/api/v1/oauth/clients": {
            "get": op("listOAuthClients", "Dynamically registered OAuth clients (admins)", &[], None, "200", Some(array_of("OAuthClient")), &[]),
        },
        "/api/v1/oauth/clients/{id}": {
            "delete": op("removeOAuthClient", "Remove a registered client and revoke its grants (admins)", std::slice::from_ref(&client), None, "204", None, &["404"]),
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document (no key needed)",
                "security": [],
                "responses": { "200": { "description": "The OpenAPI document", "content": { "application/json": { "schema": { "type": "object" } } } } }
            }
        }
    });

    let limit = json!({ "type": ["string", "null"], "description": "N/SECONDS, e.g. 100/60" });
    let schemas = json!({
        "Error": {
            "type": "object", "required": ["error", "message"],
            "properties": { "error": { "type": "string" }, "message": { "type": "string" } }
        },
        "OAuthGrant": {
            "type": "object",
            "properties": {
                "id": { "type": "string" }, "client_id": { "type": "string" }, "client_name": nullable("string"),
                "user": { "type": "string" }, "endpoint": { "type": "string" }, "resource": { "type": "string" },
                "scope": { "type": "string" }, "created_at": { "type": "integer" }, "expires_at": { "type": "integer" },
                "last_used_at": nullable("integer"), "revoked_at": nullable("integer"), "revoked_reason": nullable("string"),
                "active": { "type": "boolean" }
            }
        },
        "OAuthClient": {
            "type": "object",
            "properties": {
                "client_id": { "type": "string" }, "client_name": nullable("string"),
                "redirect_uris": { "type": "array", "items": { "type": "string" } },
                "created_at": { "type": "integer" }, "last_used_at": nullable("integer"), "created_from": nullable("string")
            }
        },
        "Import": {
            "type": "object", "required": ["mcpServers"],
            "description": "Claude-Desktop format",
            "properties": { "mcpServers": { "type": "object", "additionalProperties": {
                "type": "object",
                "properties": {
                    "type": { "type": "string", "enum": ["stdio", "streamable_http", "sse", "http", "streamable-http"] },
                    "command": { "type": "string" },
                    "args": { "type": "array", "items": { "type": "string" } },
                    "env": { "type": "object", "additionalProperties": { "type": "string" } },
                    "url": { "type": "string", "description": "Credentials in it (user:password@, secret-looking query parameters) are stored sealed; <redacted> parts keep the stored value" },
                    "headers": { "type": "object", "additionalProperties": { "type": "string" } },
                    "bearerToken": { "type": "string" },
                    "description": { "type": "string" }
                }
            } } }
        },
        "ImportReport": {
            "type": "object",
            "properties": {
                "servers": { "type": "array", "items": { "type": "object", "properties": {
                    "name": { "type": "string" }, "kind": { "type": "string" },
                    "result": { "type": "string", "enum": ["created", "updated", "unchanged"] }
                } } },
                "created": { "type": "integer" }, "updated": { "type": "integer" }, "unchanged": { "type": "integer" }
            }
        },
        "Server": {
            "type": "object",
            "properties": {
                "name": { "type": "string" }, "description": nullable("string"),
                "kind": { "type": "string", "enum": ["stdio", "streamable_http", "sse"] },
                "target": { "type": "string", "description": "Command and arguments, or URL with its credentials shown as <redacted>" },
                "env": { "type": "array", "items": { "type": "string" }, "description": "Env variable names (never values)" },
                "namespaces": { "type": "array", "items": { "type": "string" } },
                "mode": { "type": "string", "enum": ["shared", "per-session"] },
                "warm": { "type": "integer" }, "cap": { "type": "integer" },
                "state": { "oneOf": [ { "type": "null" }, { "type": "object", "properties": {
                    "state": { "type": "string" }, "pid": nullable("integer"),
                    "failures": { "type": "integer" }, "last_error": nullable("string")
                } } ] },
                "recent_logs": { "type": "array", "items": { "type": "string" } }
            }
        },
        "ServerPatch": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "mode": { "type": "string", "enum": ["shared", "per-session"] },
                "warm": { "type": "integer", "minimum": 0 },
                "cap": { "type": "integer", "minimum": 1 }
            }
        },
        "Connection": {
            "type": "object",
            "properties": { "name": { "type": "string" }, "mode": { "type": "string" }, "warm": { "type": "integer" }, "cap": { "type": "integer" } }
        },
        "LogLine": {
            "type": "object",
            "properties": { "ts_ms": { "type": "integer" }, "time": { "type": "string" }, "line": { "type": "string" } }
        },
        "Namespace": {
            "type": "object",
            "properties": {
                "name": { "type": "string" }, "description": nullable("string"),
                "prefix": { "type": "string", "enum": ["always", "conditional", "never"] },
                "servers": { "type": "array", "items": { "type": "object", "properties": {
                    "server": { "type": "string" }, "active": { "type": "boolean" } } } },
                "new_tools_enabled": { "type": "boolean" }, "audit_payloads": { "type": "boolean" },
                "max_name_length": nullable("integer"),
                "collisions": { "type": "array", "items": { "type": "object", "properties": {
                    "tool": { "type": "string" }, "servers": { "type": "array", "items": { "type": "string" } } } } }
            }
        },
        "NewNamespace": {
            "type": "object", "required": ["name", "servers"], "additionalProperties": false,
            "properties": {
                "name": { "type": "string" },
                "servers": { "type": "array", "items": { "type": "string" }, "minItems": 1 },
                "description": { "type": "string" },
                "prefix": { "type": "string", "enum": ["always", "conditional", "never"], "default": "always" },
                "new_tools": { "type": "string", "enum": ["enabled", "disabled"] },
                "max_name_length": { "type": ["integer", "string"], "description": "At least 16, or \"off\"" }
            }
        },
        "NamespacePatch": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "prefix": { "type": "string", "enum": ["always", "conditional", "never"] },
                "new_tools": { "type": "string", "enum": ["enabled", "disabled"] },
                "max_name_length": { "type": ["integer", "string"], "description": "At least 16, or \"off\"" },
                "audit_payloads": { "type": "boolean", "description": "Record tool-call arguments and results in the audit log (redacted, capped)" }
            }
        },
        "NamespaceCreated": {
            "type": "object",
            "properties": { "namespace": schema_ref("Namespace"), "notes": { "type": "array", "items": { "type": "string" } } }
        },
        "NamespaceUpdated": {
            "type": "object",
            "properties": {
                "namespace": schema_ref("Namespace"),
                "prefix_changed": { "type": "boolean" }, "defaults_changed": { "type": "boolean" },
                "known_tools_kept": { "type": "integer" },
                "notes": { "type": "array", "items": { "type": "string" } }
            }
        },
        "NamespaceTools": {
            "type": "object",
            "properties": {
                "namespace": { "type": "string" }, "new_tools_enabled": { "type": "boolean" },
                "max_name_length": nullable("integer"),
                "tools": { "type": "array", "items": { "type": "object", "properties": {
                    "canonical": { "type": "string" }, "server": { "type": "string" }, "tool": { "type": "string" },
                    "exposed": { "type": "string" }, "enabled": { "type": "boolean" }, "explicit": { "type": "boolean" },
                    "discovered": { "type": "boolean" }, "description": nullable("string"),
                    "overrides": { "type": "array", "items": { "type": "string" } }
                } } }
            }
        },
        "Patterns": {
            "type": "object", "required": ["patterns"], "additionalProperties": false,
            "properties": { "patterns": { "type": "array", "items": { "type": "string" }, "minItems": 1 } }
        },
        "ToolOverride": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "name": { "type": "string" }, "title": { "type": "string" }, "description": { "type": "string" },
                "annotations": { "type": "object", "description": "Merged over the upstream's; null removes a key" }
            }
        },
        "Changed": {
            "type": "object",
            "properties": { "tools": { "type": "array", "items": { "type": "string" } } }
        },
        "Endpoint": {
            "type": "object",
            "properties": {
                "name": { "type": "string" }, "namespace": { "type": "string" }, "description": nullable("string"),
                "api_key_auth": { "type": "boolean" }, "query_auth": { "type": "boolean" }, "oauth": { "type": "boolean" },
                "rate": limit.clone(), "client_rate": limit.clone(), "url": { "type": "string" }
            }
        },
        "NewEndpoint": {
            "type": "object", "required": ["name", "namespace"], "additionalProperties": false,
            "properties": {
                "name": { "type": "string" }, "namespace": { "type": "string" }, "description": { "type": "string" },
                "api_key_auth": { "type": "boolean", "default": true }, "query_auth": { "type": "boolean", "default": false },
                "oauth": { "type": "boolean", "default": false, "description": "OAuth access tokens issued by the gateway open it too" },
                "rate": limit.clone(), "client_rate": limit
            }
        },
        "EndpointPatch": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "rate": { "type": "string", "description": "N/SECONDS, or off" },
                "client_rate": { "type": "string", "description": "N/SECONDS, or off" },
                "api_key_auth": { "type": "boolean", "description": "callers must present an API key" },
                "query_auth": { "type": "boolean", "description": "the key may also come as ?api_key= (needs api_key_auth)" },
                "oauth": { "type": "boolean", "description": "OAuth access tokens issued by the gateway open it" }
            }
        },
        "Key": {
            "type": "object",
            "properties": {
                "name": { "type": "string" }, "prefix": { "type": "string" }, "active": { "type": "boolean" },
                "admin": { "type": "boolean" }, "created_at": { "type": "integer" }, "revoked_at": nullable("integer"),
                "last_used_at": nullable("integer"), "expires_at": nullable("integer")
            }
        },
        "NewKey": {
            "type": "object", "required": ["name"], "additionalProperties": false,
            "properties": { "name": { "type": "string" }, "admin": { "type": "boolean", "default": false },
                "expires": { "type": "string", "description": "A duration from now: 12h, 90d, 1w; absent: never" } }
        },
        "CreatedKey": {
            "allOf": [ schema_ref("Key"), { "type": "object", "required": ["key"], "properties": {
                "key": { "type": "string", "description": "sk_mt_…, shown this once" } } } ]
        },
        "User": {
            "type": "object",
            "properties": {
                "id": { "type": "string" }, "email": { "type": "string" }, "name": { "type": "string" },
                "role": { "type": "string", "enum": ["admin", "member"] }, "disabled": { "type": "boolean" },
                "has_password": { "type": "boolean" }, "created_at": { "type": "integer" },
                "last_login_at": nullable("integer")
            }
        },
        "NewUser": {
            "type": "object", "required": ["email"], "additionalProperties": false,
            "properties": {
                "email": { "type": "string", "maxLength": 254 }, "name": { "type": "string", "maxLength": 100 },
                "password": { "type": "string", "minLength": 8, "maxLength": 128, "description": "omit for an account that signs in only through single sign-on" },
                "role": { "type": "string", "enum": ["admin", "member"], "default": "member" }
            }
        },
        "UserPatch": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "name": { "type": "string", "maxLength": 100 },
                "role": { "type": "string", "enum": ["admin", "member"] },
                "disabled": { "type": "boolean" },
                "password": { "type": "string", "minLength": 8, "maxLength": 128 }
            }
        },
        "Setting": {
            "type": "object",
            "properties": {
                "key": { "type": "string" }, "value": { "type": "string" },
                "default": { "type": "boolean" }, "meaning": { "type": "string" }
            }
        },
        "SettingValue": {
            "type": "object", "required": ["value"], "additionalProperties": false,
            "properties": { "value": { "type": ["string", "number", "boolean"] } }
        }
    });

    let mut schemas = schemas;
    // why: a separate json! (one literal this size exceeds the macro recursion limit).
    if let (Some(all), Value::Object(audit)) = (
        schemas.as_object_mut(),
        json!({
        "AuditPage": {
            "type": "object",
            "properties": {
                "records": { "type": "array", "items": schema_ref("AuditRecord") },
                "next_cursor": nullable("string")
            }
        },
        "AuditRecord": {
            "type": "object",
            "properties": {
                "id": { "type": "integer" }, "time": { "type": "string" }, "ts_ms": { "type": "integer" },
                "kind": { "type": "string", "enum": ["tool_call", "resource_read", "prompt_get", "admin", "sign_in", "sign_out", "auth_failed"] },
                "face": nullable("string"), "principal": nullable("string"), "endpoint": nullable("string"),
                "namespace": nullable("string"), "server": nullable("string"), "tool": nullable("string"),
                "duration_ms": nullable("number"),
                "outcome": { "type": "string", "enum": ["ok", "tool_error", "upstream_error", "timeout", "rate_limited", "denied", "cancelled"] },
                "error": nullable("string"), "client": nullable("string"), "detail": nullable("string")
            }
        }    }),
    ) {
        all.extend(audit);
    }
    let owner =
        json!({ "type": ["string", "null"], "description": "The owner's email; null: public" });
    for name in [
        "Server",
        "ServerPatch",
        "Namespace",
        "NewNamespace",
        "NamespacePatch",
        "Endpoint",
        "NewEndpoint",
        "EndpointPatch",
        "Key",
        "NewKey",
    ] {
        if let Some(props) = schemas
            .get_mut(name)
            .and_then(|s| s.get_mut("properties"))
            .and_then(Value::as_object_mut)
        {
            props.insert("owner".into(), owner.clone());
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "metamcp admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Manage servers, namespaces, tool shaping, endpoints, API keys and settings of a metamcp gateway. Every call needs an admin API key (`metamcp key create NAME --admin`) or a signed-in browser session (cookie; changes also need its CSRF token as X-CSRF-Token). Objects are public (`owner` null) or owned by a user: members see public objects and their own, change only their own (others' private objects are 404 to them), create only objects they own, and may not manage users or settings."
        },
        "servers": [ { "url": "/" } ],
        "security": [ { "bearerAuth": [] }, { "apiKeyAuth": [] } ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": { "type": "http", "scheme": "bearer", "description": "An admin API key, sk_mt_…" },
                "apiKeyAuth": { "type": "apiKey", "in": "header", "name": "X-API-Key" }
            },
            "schemas": schemas,
            "responses": {
                "E400": error_response("Malformed JSON"),
                "E401": error_response("No API key, or an unknown one"),
                "E403": error_response("The API key is not an admin key, or the key may not do this"),
                "E404": error_response("No such name"),
                "E409": error_response("The name is taken, or tool names would clash"),
                "E422": error_response("Values refused (including ${NAME} references to the gateway's own secrets)"),
                "E500": error_response("Internal error (details only in the gateway's log)")
            }
        }
    })
}
