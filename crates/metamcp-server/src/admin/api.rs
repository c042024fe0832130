//! The headless admin API: `/api/v1/…`, JSON over HTTP, for everything the CLI does. Every
//! handler parses its request, calls the very same service function as the CLI
//! ([`super::servers`], [`super::namespaces`], …) and answers its typed result as JSON, so
//! no rule is written twice. Each request is one transaction ([`super::run`] or
//! [`super::read`]) acting as [`Actor::AdminKey`] — the key that authenticated; a change
//! bumps the configuration version once and running gateways (this one included) apply it
//! within a second.
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
use axum::extract::{Extension, FromRequest, Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{
    Actor, AdminError, Cx, ErrorClass, endpoints, keys, logs, namespaces, servers, settings, tools,
    users,
};
use crate::error::HttpError;
use crate::state::Gateway;

type Gw = State<Arc<Gateway>>;
/// Who acts: the admin key that authenticated the request (set by [`require_admin`]).
type Who = Extension<Actor>;
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
        .route("/api/v1/users", get(list_users).post(create_user))
        .route(
            "/api/v1/users/{email}",
            get(get_user).patch(update_user).delete(remove_user),
        )
        .route("/api/v1/settings", get(list_settings))
        .route("/api/v1/settings/{key}", put(set_setting))
        .route_layer(middleware::from_fn_with_state(gw, require_admin));
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .merge(protected)
}

/// Lets admin keys and signed-in users through, and records who acts. A request without a
/// key is looked at for a browser session; one that changes something must then pass the
/// CSRF check. What a signed-in user may do is decided per operation ([`Actor::may`]).
async fn require_admin(State(gw): Gw, mut req: Request, next: Next) -> Response {
    let snap = gw.snapshot();
    let has_key = req.headers().contains_key("x-api-key")
        || req
            .headers()
            .contains_key(axum::http::header::AUTHORIZATION);
    if !has_key {
        let safe = matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        let session = if safe {
            gw.accounts
                .signed_in(&gw.rt.store, req.headers())
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "reading a browser session failed");
                    HttpError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal_error",
                        "internal error; see the gateway's log",
                    )
                })
        } else {
            crate::account::routes::require_csrf_session(&gw, req.headers(), None).await
        };
        match session {
            Ok(Some(s)) => {
                req.extensions_mut().insert(Actor::User {
                    id: s.user.id,
                    email: s.user.email,
                    role: s.user.role,
                });
                return next.run(req).await;
            }
            Ok(None) => {}
            Err(e) => return e.into_response(),
        }
    }
    match crate::auth::authenticate_admin(&snap, req.headers()) {
        Ok(key) => {
            req.extensions_mut().insert(Actor::AdminKey {
                id: key.id,
                name: key.name,
            });
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Runs operations in one write transaction as `who`.
async fn write<T>(
    gw: &Gateway,
    who: &Actor,
    f: impl AsyncFnOnce(&mut Cx<'_>) -> Result<T, AdminError>,
) -> Result<T, HttpError> {
    super::run(&gw.rt.store, who, f).await.map_err(refusal)
}

/// Runs operations in one read-only transaction as `who`.
async fn read<T>(
    gw: &Gateway,
    who: &Actor,
    f: impl AsyncFnOnce(&mut Cx<'_>) -> Result<T, AdminError>,
) -> Result<T, HttpError> {
    super::read(&gw.rt.store, who, f).await.map_err(refusal)
}

/// What a refused operation looks like to an API client.
fn refusal(e: AdminError) -> HttpError {
    match e.class() {
        ErrorClass::NotFound => HttpError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        ErrorClass::Forbidden => HttpError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
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

async fn list_servers(State(gw): Gw, Extension(who): Who) -> ApiResult {
    let v = read(&gw, &who, async |cx| servers::list(cx).await).await?;
    ok(StatusCode::OK, &v)
}

async fn import_servers(State(gw): Gw, Extension(who): Who, Body(doc): Body<Value>) -> ApiResult {
    // Malformed JSON is a 400 (the extractor); a well-formed but refused import, 422.
    let specs = servers::parse_import(&doc.to_string()).map_err(refusal)?;
    let report = write(&gw, &who, async |cx| servers::import(cx, &specs).await).await?;
    ok(StatusCode::OK, &report)
}

async fn get_server(State(gw): Gw, Extension(who): Who, Path(name): Path<String>) -> ApiResult {
    let v = read(&gw, &who, async |cx| servers::get(cx, &name).await).await?;
    ok(StatusCode::OK, &v)
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
    Extension(who): Who,
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
    let v = write(&gw, &who, async |cx| {
        servers::update(cx, &name, patch).await
    })
    .await?;
    ok(StatusCode::OK, &v)
}

async fn remove_server(State(gw): Gw, Extension(who): Who, Path(name): Path<String>) -> ApiResult {
    write(&gw, &who, async |cx| servers::remove(cx, &name).await).await?;
    no_content()
}

async fn reset_server(State(gw): Gw, Extension(who): Who, Path(name): Path<String>) -> ApiResult {
    write(&gw, &who, async |cx| servers::reset(cx, &name).await).await?;
    ok(
        StatusCode::ACCEPTED,
        &json!({ "server": name, "reset": "requested" }),
    )
}

async fn server_logs(
    State(gw): Gw,
    Extension(who): Who,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let mut lines = 200usize;
    for (k, v) in url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        if k == "lines" {
            lines = v
                .parse()
                .map_err(|_| invalid(format!("lines must be a number, not {v:?}")))?;
        }
    }
    let v = read(&gw, &who, async |cx| logs::tail(cx, &name, lines).await).await?;
    ok(StatusCode::OK, &v)
}

// ---- namespaces ----

async fn list_namespaces(State(gw): Gw, Extension(who): Who) -> ApiResult {
    let v = read(&gw, &who, async |cx| namespaces::list(cx).await).await?;
    ok(StatusCode::OK, &v)
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

async fn create_namespace(
    State(gw): Gw,
    Extension(who): Who,
    Body(b): Body<NamespaceBody>,
) -> ApiResult {
    let new = namespaces::NewNamespace {
        name: b.name,
        servers: b.servers,
        inactive: Vec::new(),
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
    let v = write(&gw, &who, async move |cx| namespaces::create(cx, new).await).await?;
    ok(StatusCode::CREATED, &v)
}

/// `max_name_length`: a number, or `"off"`.
fn name_length(v: Option<Value>) -> Result<Option<Option<u32>>, HttpError> {
    scalar_text("max_name_length", v)?
        .map(|s| namespaces::parse_name_length(&s))
        .transpose()
        .map_err(refusal)
}

async fn get_namespace(State(gw): Gw, Extension(who): Who, Path(name): Path<String>) -> ApiResult {
    let v = read(&gw, &who, async |cx| namespaces::get(cx, &name).await).await?;
    ok(StatusCode::OK, &v)
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
    Extension(who): Who,
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
    let v = write(&gw, &who, async |cx| {
        namespaces::update(cx, &name, patch).await
    })
    .await?;
    ok(StatusCode::OK, &v)
}

async fn remove_namespace(
    State(gw): Gw,
    Extension(who): Who,
    Path(name): Path<String>,
) -> ApiResult {
    write(&gw, &who, async |cx| namespaces::remove(cx, &name).await).await?;
    no_content()
}

async fn add_namespace_server(
    State(gw): Gw,
    Extension(who): Who,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult {
    let v = write(&gw, &who, async |cx| {
        namespaces::add_servers(cx, &name, &[server]).await?;
        namespaces::get(cx, &name).await
    })
    .await?;
    ok(StatusCode::OK, &v)
}

async fn remove_namespace_server(
    State(gw): Gw,
    Extension(who): Who,
    Path((name, server)): Path<(String, String)>,
) -> ApiResult {
    let v = write(&gw, &who, async |cx| {
        namespaces::remove_servers(cx, &name, &[server]).await?;
        namespaces::get(cx, &name).await
    })
    .await?;
    ok(StatusCode::OK, &v)
}

// ---- tool shaping ----

async fn list_tools(State(gw): Gw, Extension(who): Who, Path(name): Path<String>) -> ApiResult {
    let v = read(&gw, &who, async |cx| tools::list(cx, &name).await).await?;
    ok(StatusCode::OK, &v)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patterns {
    patterns: Vec<String>,
}

async fn set_enabled(
    gw: &Gateway,
    who: &Actor,
    name: &str,
    p: Patterns,
    enabled: bool,
) -> ApiResult {
    if p.patterns.is_empty() {
        return Err(invalid("patterns: give at least one pattern"));
    }
    let v = write(gw, who, async |cx| {
        tools::set_enabled(cx, name, &p.patterns, enabled).await
    })
    .await?;
    ok(StatusCode::OK, &v)
}

async fn enable_tools(
    State(gw): Gw,
    Extension(who): Who,
    Path(name): Path<String>,
    Body(p): Body<Patterns>,
) -> ApiResult {
    set_enabled(&gw, &who, &name, p, true).await
}

async fn disable_tools(
    State(gw): Gw,
    Extension(who): Who,
    Path(name): Path<String>,
    Body(p): Body<Patterns>,
) -> ApiResult {
    set_enabled(&gw, &who, &name, p, false).await
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
    Extension(who): Who,
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
    let v = write(&gw, &who, async |cx| {
        tools::override_tool(cx, &name, &tool, patch).await
    })
    .await?;
    ok(StatusCode::OK, &v)
}

async fn reset_tool(
    State(gw): Gw,
    Extension(who): Who,
    Path((name, tool)): Path<(String, String)>,
) -> ApiResult {
    let v = write(&gw, &who, async |cx| {
        tools::reset_tool(cx, &name, &tool).await
    })
    .await?;
    ok(StatusCode::OK, &v)
}

// ---- endpoints ----

async fn list_endpoints(State(gw): Gw, Extension(who): Who) -> ApiResult {
    let v = read(&gw, &who, async |cx| endpoints::list(cx).await).await?;
    ok(StatusCode::OK, &v)
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

async fn create_endpoint(
    State(gw): Gw,
    Extension(who): Who,
    Body(b): Body<EndpointBody>,
) -> ApiResult {
    let new = endpoints::NewEndpoint {
        name: b.name,
        namespace: b.namespace,
        description: b.description,
        api_key_auth: b.api_key_auth.unwrap_or(true),
        query_auth: b.query_auth,
        rate: b.rate,
        client_rate: b.client_rate,
    };
    let v = write(&gw, &who, async move |cx| endpoints::create(cx, new).await).await?;
    ok(StatusCode::CREATED, &v)
}

async fn get_endpoint(State(gw): Gw, Extension(who): Who, Path(name): Path<String>) -> ApiResult {
    let v = read(&gw, &who, async |cx| endpoints::get(cx, &name).await).await?;
    ok(StatusCode::OK, &v)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointPatch {
    rate: Option<String>,
    client_rate: Option<String>,
}

async fn update_endpoint(
    State(gw): Gw,
    Extension(who): Who,
    Path(name): Path<String>,
    Body(b): Body<EndpointPatch>,
) -> ApiResult {
    let v = write(&gw, &who, async |cx| {
        endpoints::update(cx, &name, b.rate.as_deref(), b.client_rate.as_deref()).await
    })
    .await?;
    ok(StatusCode::OK, &v)
}

async fn remove_endpoint(
    State(gw): Gw,
    Extension(who): Who,
    Path(name): Path<String>,
) -> ApiResult {
    write(&gw, &who, async |cx| endpoints::remove(cx, &name).await).await?;
    no_content()
}

// ---- keys ----

async fn list_keys(State(gw): Gw, Extension(who): Who) -> ApiResult {
    let v = read(&gw, &who, async |cx| keys::list(cx).await).await?;
    ok(StatusCode::OK, &v)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    name: String,
    #[serde(default)]
    admin: bool,
}

async fn create_key(State(gw): Gw, Extension(who): Who, Body(b): Body<KeyBody>) -> ApiResult {
    let v = write(&gw, &who, async |cx| {
        keys::create(cx, &b.name, b.admin).await
    })
    .await?;
    ok(StatusCode::CREATED, &v)
}

async fn revoke_key(State(gw): Gw, Extension(who): Who, Path(name): Path<String>) -> ApiResult {
    write(&gw, &who, async |cx| keys::revoke(cx, &name).await).await?;
    no_content()
}

// ---- users ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    email: String,
    name: Option<String>,
    password: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    name: Option<String>,
    role: Option<String>,
    disabled: Option<bool>,
    password: Option<String>,
}

fn parse_role(role: Option<&str>) -> Result<Option<metamcp_store::Role>, HttpError> {
    role.map(|r| {
        metamcp_store::Role::parse(r).ok_or_else(|| {
            HttpError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("role must be \"admin\" or \"member\", not {r:?}"),
            )
        })
    })
    .transpose()
}

/// Hashes a new password (checked first) on the blocking pool, before any transaction.
async fn hash_new_password(
    gw: &Gateway,
    who: &Actor,
    pw: Option<&str>,
) -> Result<Option<String>, HttpError> {
    let Some(pw) = pw else { return Ok(None) };
    // why: only those who may manage users get to spend hashing time.
    if !who.may(super::Access::ManageUsers) {
        return Err(refusal(AdminError::Forbidden(format!(
            "{who} may not manage users"
        ))));
    }
    crate::account::password::check_new(pw)
        .map_err(|m| HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", m))?;
    gw.accounts.hasher.hash(pw).await.map(Some).map_err(|e| {
        HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()).with_retry_after(1)
    })
}

async fn list_users(State(gw): Gw, Extension(who): Who) -> ApiResult {
    let v = read(&gw, &who, async |cx| users::list(cx).await).await?;
    ok(StatusCode::OK, &v)
}

async fn get_user(State(gw): Gw, Extension(who): Who, Path(email): Path<String>) -> ApiResult {
    let v = read(&gw, &who, async |cx| users::get(cx, &email).await).await?;
    ok(StatusCode::OK, &v)
}

async fn create_user(State(gw): Gw, Extension(who): Who, Body(b): Body<NewUserBody>) -> ApiResult {
    let role = parse_role(b.role.as_deref())?.unwrap_or(metamcp_store::Role::Member);
    let hash = hash_new_password(&gw, &who, b.password.as_deref()).await?;
    let v = write(&gw, &who, async |cx| {
        users::create(
            cx,
            &users::Create {
                email: &b.email,
                name: b.name.as_deref(),
                password_hash: hash.as_deref(),
                role,
            },
        )
        .await
    })
    .await?;
    ok(StatusCode::CREATED, &v)
}

async fn update_user(
    State(gw): Gw,
    Extension(who): Who,
    Path(email): Path<String>,
    Body(b): Body<UserPatch>,
) -> ApiResult {
    let role = parse_role(b.role.as_deref())?;
    let hash = hash_new_password(&gw, &who, b.password.as_deref()).await?;
    let v = write(&gw, &who, async |cx| {
        users::update(
            cx,
            &email,
            &users::Change {
                name: b.name.as_deref(),
                role,
                disabled: b.disabled,
                password_hash: hash.as_deref(),
            },
        )
        .await
    })
    .await?;
    ok(StatusCode::OK, &v)
}

async fn remove_user(State(gw): Gw, Extension(who): Who, Path(email): Path<String>) -> ApiResult {
    write(&gw, &who, async |cx| users::remove(cx, &email).await).await?;
    no_content()
}

// ---- settings ----

async fn list_settings(State(gw): Gw, Extension(who): Who) -> ApiResult {
    let v = read(&gw, &who, async |cx| settings::list(cx).await).await?;
    ok(StatusCode::OK, &v)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingBody {
    value: Value,
}

async fn set_setting(
    State(gw): Gw,
    Extension(who): Who,
    Path(key): Path<String>,
    Body(b): Body<SettingBody>,
) -> ApiResult {
    let value = scalar_text("value", Some(b.value))?
        .ok_or_else(|| invalid("value must be a string or a number"))?;
    let v = write(&gw, &who, async |cx| settings::set(cx, &key, &value).await).await?;
    ok(StatusCode::OK, &v)
}
