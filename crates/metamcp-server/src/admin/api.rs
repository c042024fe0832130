//! The headless admin API: `/api/v1/…`, JSON over HTTP, for everything the CLI does. Every
//! handler parses its request, calls the very same service function as the CLI
//! ([`super::servers`], [`super::namespaces`], …) and answers its typed result as JSON, so
//! no rule is written twice. Writes are store writes: they bump the configuration version
//! and running gateways (this one included) apply them within a second.
//!
//! Auth: an API key as `Authorization: Bearer` or `X-API-Key`, hashed and looked up in the
//! snapshot (no database query per request). No key or an unknown one → 401; a valid key
//! that is not an admin key → 403. `GET /api/v1/openapi.json` is readable without a key
//! (it describes the API, it reveals no configuration).
//!
//! Errors are `{"error": code, "message": …}`: 400 malformed JSON, 422 values refused,
//! 404 unknown name, 409 name taken or a tool-name collision, 500 (details only in the log).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{AdminError, ErrorClass, endpoints, keys, logs, namespaces, servers, settings, tools};
use crate::error::HttpError;
use crate::state::Gateway;

type Gw = State<Arc<Gateway>>;
type ApiResult = Result<Response, HttpError>;

/// The admin API's routes (to be merged into the gateway's router, behind its guard).
pub fn routes(gw: Arc<Gateway>) -> Router<Arc<Gateway>> {
    let protected = Router::new()
        .route("/api/v1/servers", get(list_servers).post(import_servers))
        .route(
            "/api/v1/servers/{name}",
            get(get_server).patch(update_server).delete(remove_server),
        )
        .route("/api/v1/servers/{name}/reset", post(reset_server))
        .route("/api/v1/servers/{name}/logs", get(server_logs))
        .route(
            "/api/v1/namespaces",
            get(list_namespaces).post(create_namespace),
        )
        .route(
            "/api/v1/namespaces/{name}",
            get(get_namespace)
                .patch(update_namespace)
                .delete(remove_namespace),
        )
        .route(
            "/api/v1/namespaces/{name}/servers/{server}",
            post(add_namespace_server).delete(remove_namespace_server),
        )
        .route("/api/v1/namespaces/{name}/tools", get(list_tools))
        .route("/api/v1/namespaces/{name}/tools/enable", post(enable_tools))
        .route(
            "/api/v1/namespaces/{name}/tools/disable",
            post(disable_tools),
        )
        .route(
            "/api/v1/namespaces/{name}/tools/{tool}",
            axum::routing::patch(override_tool).delete(reset_tool),
        )
        .route(
            "/api/v1/endpoints",
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            "/api/v1/endpoints/{name}",
            get(get_endpoint)
                .patch(update_endpoint)
                .delete(remove_endpoint),
        )
        .route("/api/v1/keys", get(list_keys).post(create_key))
        .route("/api/v1/keys/{name}", axum::routing::delete(revoke_key))
        .route("/api/v1/settings", get(list_settings))
        .route("/api/v1/settings/{key}", put(set_setting))
        .route_layer(middleware::from_fn_with_state(gw, require_admin));
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .merge(protected)
}

/// Lets only admin keys through.
async fn require_admin(State(gw): Gw, req: Request, next: Next) -> Response {
    let snap = gw.snapshot();
    match crate::auth::authenticate_admin(&snap, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// What a refused operation looks like to an API client.
fn refusal(e: AdminError) -> HttpError {
    match e.class() {
        ErrorClass::NotFound => HttpError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        ErrorClass::Conflict => HttpError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        ErrorClass::Invalid => HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            e.to_string(),
        ),
        ErrorClass::Internal => {
            tracing::error!(error = %e, "admin API: store operation failed");
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal error; see the gateway's log",
            )
        }
    }
}

fn invalid(message: impl Into<String>) -> HttpError {
    HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
}

fn ok<T: serde::Serialize>(status: StatusCode, v: &T) -> ApiResult {
    match serde_json::to_value(v) {
        Ok(v) => Ok((status, axum::Json(v)).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "admin API: cannot serialize an answer");
            Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal error; see the gateway's log",
            ))
        }
    }
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A JSON body: malformed JSON → 400, the wrong shape (missing or unknown fields, wrong
/// types) → 422, both with a JSON error body.
struct Body<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "bad_request"
            };
            HttpError::new(status, code, e.body_text())
        })?;
        parse_json(&bytes).map(Body)
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => invalid(format!("invalid request body: {e}")),
        _ => HttpError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the request body is not valid JSON: {e}"),
        ),
    })
}

/// A JSON value given as a string, number or boolean, as text (`null` → `None`).
fn scalar_text(field: &str, v: Option<Value>) -> Result<Option<String>, HttpError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(_) => Err(invalid(format!("{field} must be a string or a number"))),
    }
}

async fn openapi() -> Response {
    axum::Json(super::openapi::document()).into_response()
}

// ---- servers ----

async fn list_servers(State(gw): Gw) -> ApiResult {
    ok(
        StatusCode::OK,
        &servers::list(&gw.rt.store).await.map_err(refusal)?,
    )
}

async fn import_servers(State(gw): Gw, Body(doc): Body<Value>) -> ApiResult {
    // Malformed JSON is a 400 (the extractor); a well-formed but refused import, 422.
    let specs = servers::parse_import(&doc.to_string()).map_err(refusal)?;
    let report = servers::import(&gw.rt.store, &specs)
        .await
        .map_err(refusal)?;
    ok(StatusCode::OK, &report)
}

async fn get_server(State(gw): Gw, Path(name): Path<String>) -> ApiResult {
    ok(
        StatusCode::OK,
        &servers::get(&gw.rt.store, &name).await.map_err(refusal)?,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerPatch {
    mode: Option<String>,
    warm: Option<u32>,
    cap: Option<u32>,
}

async fn update_server(
    State(gw): Gw,
    Path(name): Path<String>,
    Body(p): Body<ServerPatch>,
) -> ApiResult {
    if p.mode.is_none() && p.warm.is_none() && p.cap.is_none() {
        return Err(invalid("nothing to change: give mode, warm and/or cap"));
    }
    let patch = servers::ConnectionPatch {
        mode: p.mode,
        warm: p.warm,
        cap: p.cap,
    };
    ok(
        StatusCode::OK,
        &servers::update(&gw.rt.store, &name, patch)
            .await
            .map_err(refusal)?,
    )
}

async fn remove_server(State(gw): Gw, Path(name): Path<String>) -> ApiResult {
    servers::remove(&gw.rt.store, &name)
        .await
        .map_err(refusal)?;
    no_content()
}

async fn reset_server(State(gw): Gw, Path(name): Path<String>) -> ApiResult {
    servers::reset(&gw.rt.store, &name).await.map_err(refusal)?;
    ok(
        StatusCode::ACCEPTED,
        &json!({ "server": name, "reset": "requested" }),
    )
}

async fn server_logs(State(gw): Gw, Path(name): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let mut lines = 200usize;
    for (k, v) in url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        if k == "lines" {
            lines = v
                .parse()
                .map_err(|_| invalid(format!("lines must be a number, not {v:?}")))?;
        }
    }
    ok(
        StatusCode::OK,
        &logs::tail(&gw.rt.store, &name, lines)
            .await
            .map_err(refusal)?,
    )
}

// ---- namespaces ----

async fn list_namespaces(State(gw): Gw) -> ApiResult {
    ok(
        StatusCode::OK,
        &namespaces::list(&gw.rt.store).await.map_err(refusal)?,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceBody {
    name: String,
    servers: Vec<String>,
    description: Option<String>,
    prefix: Option<String>,
    new_tools: Option<String>,
    max_name_length: Option<Value>,
}

async fn create_namespace(State(gw): Gw, Body(b): Body<NamespaceBody>) -> ApiResult {
    if b.servers.is_empty() {
        return Err(invalid("servers: give at least one server"));
    }
    let new = namespaces::NewNamespace {
        name: b.name,
        servers: b.servers,
        description: b.description,
        prefix: namespaces::parse_prefix(b.prefix.as_deref().unwrap_or("always"))
            .map_err(refusal)?,
        new_tools_enabled: b
            .new_tools
            .as_deref()
            .map(namespaces::parse_new_tools)
            .transpose()
            .map_err(refusal)?,
        max_name_length: name_length(b.max_name_length)?,
    };
    ok(
        StatusCode::CREATED,
        &namespaces::create(&gw.rt.store, new)
            .await
            .map_err(refusal)?,
    )
}

/// `max_name_length`: a number, or `"off"`.
fn name_length(v: Option<Value>) -> Result<Option<Option<u32>>, HttpError> {
    scalar_text("max_name_length", v)?
        .map(|s| namespaces::parse_name_length(&s))
        .transpose()
        .map_err(refusal)
}

async fn get_namespace(State(gw): Gw, Path(name): Path<String>) -> ApiResult {
    ok(
        StatusCode::OK,
        &namespaces::get(&gw.rt.store, &name)
            .await
            .map_err(refusal)?,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespacePatchBody {
    prefix: Option<String>,
    new_tools: Option<String>,
    max_name_length: Option<Value>,
}

async fn update_namespace(
    State(gw): Gw,
    Path(name): Path<String>,
    Body(b): Body<NamespacePatchBody>,
) -> ApiResult {
    let patch = namespaces::NamespacePatch {
        prefix: b
            .prefix
            .as_deref()
            .map(namespaces::parse_prefix)
            .transpose()
            .map_err(refusal)?,
        new_tools_enabled: b
            .new_tools
            .as_deref()
            .map(namespaces::parse_new_tools)
            .transpose()
            .map_err(refusal)?,
        max_name_length: name_length(b.max_name_length)?,
    };
    if patch.prefix.is_none()
        && patch.new_tools_enabled.is_none()
        && patch.max_name_length.is_none()
    {
        return Err(invalid(
            "nothing to change: give prefix, new_tools and/or max_name_length",
        ));
    }
    ok(
        StatusCode::OK,
        &namespaces::update(&gw.rt.store, &name, patch)
            .await
            .map_err(refusal)?,
    )
}

async fn remove_namespace(State(gw): Gw, Path(name): Path<String>) -> ApiResult {
    namespaces::remove(&gw.rt.store, &name)
        .await
        .map_err(refusal)?;
    no_content()
}

async fn add_namespace_server(
    State(gw): Gw,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult {
    namespaces::add_servers(&gw.rt.store, &name, &[server])
        .await
        .map_err(refusal)?;
    get_namespace(State(gw), Path(name)).await
}

async fn remove_namespace_server(
    State(gw): Gw,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult {
    namespaces::remove_servers(&gw.rt.store, &name, &[server])
        .await
        .map_err(refusal)?;
    get_namespace(State(gw), Path(name)).await
}

// ---- tool shaping ----

async fn list_tools(State(gw): Gw, Path(name): Path<String>) -> ApiResult {
    ok(
        StatusCode::OK,
        &tools::list(&gw.rt.store, &name).await.map_err(refusal)?,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patterns {
    patterns: Vec<String>,
}

async fn set_enabled(gw: &Gateway, name: &str, p: Patterns, enabled: bool) -> ApiResult {
    if p.patterns.is_empty() {
        return Err(invalid("patterns: give at least one pattern"));
    }
    ok(
        StatusCode::OK,
        &tools::set_enabled(&gw.rt.store, name, &p.patterns, enabled)
            .await
            .map_err(refusal)?,
    )
}

async fn enable_tools(
    State(gw): Gw,
    Path(name): Path<String>,
    Body(p): Body<Patterns>,
) -> ApiResult {
    set_enabled(&gw, &name, p, true).await
}

async fn disable_tools(
    State(gw): Gw,
    Path(name): Path<String>,
    Body(p): Body<Patterns>,
) -> ApiResult {
    set_enabled(&gw, &name, p, false).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    name: Option<String>,
    title: Option<String>,
    description: Option<String>,
    annotations: Option<Value>,
}

async fn override_tool(
    State(gw): Gw,
    Path((name, tool)): Path<(String, String)>,
    Body(b): Body<OverrideBody>,
) -> ApiResult {
    let annotations = match b.annotations {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.to_string()),
        Some(_) => return Err(invalid("annotations must be a JSON object")),
    };
    let patch = tools::OverridePatch {
        name: b.name,
        title: b.title,
        description: b.description,
        annotations,
    };
    if patch.name.is_none()
        && patch.title.is_none()
        && patch.description.is_none()
        && patch.annotations.is_none()
    {
        return Err(invalid(
            "nothing to change: give name, title, description and/or annotations",
        ));
    }
    ok(
        StatusCode::OK,
        &tools::override_tool(&gw.rt.store, &name, &tool, patch)
            .await
            .map_err(refusal)?,
    )
}

async fn reset_tool(State(gw): Gw, Path((name, tool)): Path<(String, String)>) -> ApiResult {
    ok(
        StatusCode::OK,
        &tools::reset_tool(&gw.rt.store, &name, &tool)
            .await
            .map_err(refusal)?,
    )
}

// ---- endpoints ----

async fn list_endpoints(State(gw): Gw) -> ApiResult {
    ok(
        StatusCode::OK,
        &endpoints::list(&gw.rt.store).await.map_err(refusal)?,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointBody {
    name: String,
    namespace: String,
    description: Option<String>,
    /// Default true.
    api_key_auth: Option<bool>,
    #[serde(default)]
    query_auth: bool,
    rate: Option<String>,
    client_rate: Option<String>,
}

async fn create_endpoint(State(gw): Gw, Body(b): Body<EndpointBody>) -> ApiResult {
    let new = endpoints::NewEndpoint {
        name: b.name,
        namespace: b.namespace,
        description: b.description,
        api_key_auth: b.api_key_auth.unwrap_or(true),
        query_auth: b.query_auth,
        rate: b.rate,
        client_rate: b.client_rate,
    };
    ok(
        StatusCode::CREATED,
        &endpoints::create(&gw.rt.store, new)
            .await
            .map_err(refusal)?,
    )
}

async fn get_endpoint(State(gw): Gw, Path(name): Path<String>) -> ApiResult {
    ok(
        StatusCode::OK,
        &endpoints::get(&gw.rt.store, &name).await.map_err(refusal)?,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointPatch {
    rate: Option<String>,
    client_rate: Option<String>,
}

async fn update_endpoint(
    State(gw): Gw,
    Path(name): Path<String>,
    Body(b): Body<EndpointPatch>,
) -> ApiResult {
    ok(
        StatusCode::OK,
        &endpoints::update(
            &gw.rt.store,
            &name,
            b.rate.as_deref(),
            b.client_rate.as_deref(),
        )
        .await
        .map_err(refusal)?,
    )
}

async fn remove_endpoint(State(gw): Gw, Path(name): Path<String>) -> ApiResult {
    endpoints::remove(&gw.rt.store, &name)
        .await
        .map_err(refusal)?;
    no_content()
}

// ---- keys ----

async fn list_keys(State(gw): Gw) -> ApiResult {
    ok(
        StatusCode::OK,
        &keys::list(&gw.rt.store).await.map_err(refusal)?,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    name: String,
    #[serde(default)]
    admin: bool,
}

async fn create_key(State(gw): Gw, Body(b): Body<KeyBody>) -> ApiResult {
    ok(
        StatusCode::CREATED,
        &keys::create(&gw.rt.store, &b.name, b.admin)
            .await
            .map_err(refusal)?,
    )
}

async fn revoke_key(State(gw): Gw, Path(name): Path<String>) -> ApiResult {
    keys::revoke(&gw.rt.store, &name).await.map_err(refusal)?;
    no_content()
}

// ---- settings ----

async fn list_settings(State(gw): Gw) -> ApiResult {
    ok(
        StatusCode::OK,
        &settings::list(&gw.rt.store).await.map_err(refusal)?,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingBody {
    value: Value,
}

async fn set_setting(
    State(gw): Gw,
    Path(key): Path<String>,
    Body(b): Body<SettingBody>,
) -> ApiResult {
    let value = scalar_text("value", Some(b.value))?
        .ok_or_else(|| invalid("value must be a string or a number"))?;
    ok(
        StatusCode::OK,
        &settings::set(&gw.rt.store, &key, &value)
            .await
            .map_err(refusal)?,
    )
}
