//! The headless admin API: `/api/v1/…`, JSON over HTTP, for everything the CLI does. Every
//! handler parses its request, calls the very same service function as the CLI
//! ([`super::servers`], [`super::namespaces`], …) and answers its typed result as JSON, so
//! no rule is written twice. Each request is one transaction ([`super::run`] or
//! [`super::read`]) acting as who authenticated (an admin key, or a signed-in user); a
//! change bumps the configuration version once, this gateway applies it before answering,
//! and other running gateways within a second.
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
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{
    Actor, AdminError, Cx, ErrorClass, audit, endpoints, keys, logs, namespaces, servers, settings,
    tools, users,
};
use crate::error::HttpError;
use crate::state::Gateway;

type Gw = State<Arc<Gateway>>;
/// Who acts: the admin key that authenticated the request (set by [`require_admin`]).
type Who = Extension<Actor>;
type ApiResult = Result<Response, HttpError>;

/// One route of the admin API: method, path (axum's syntax, as in the OpenAPI document), and
/// its handler. [`ROUTES`] is the whole API: [`routes`] builds the router from it, the
/// OpenAPI document is checked against it, and the authorization matrix test has a row for
/// each, so a route cannot be added without being described and tested.
#[derive(Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// `false`: readable without credentials (only the API's own description).
    pub protected: bool,
    handler: fn() -> MethodRouter<Arc<Gateway>>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

const fn r(
    method: &'static str,
    path: &'static str,
    handler: fn() -> MethodRouter<Arc<Gateway>>,
) -> Route {
    Route {
        method,
        path,
        protected: true,
        handler,
    }
}

/// Every route of the admin API.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/api/v1/openapi.json",
        protected: false,
        handler: || get(openapi),
    },
    r("GET", "/api/v1/servers", || get(list_servers)),
    r("POST", "/api/v1/servers", || post(import_servers)),
    r("GET", "/api/v1/servers/{name}", || get(get_server)),
    r("PATCH", "/api/v1/servers/{name}", || patch(update_server)),
    r("DELETE", "/api/v1/servers/{name}", || delete(remove_server)),
    r("POST", "/api/v1/servers/{name}/reset", || {
        post(reset_server)
    }),
    r("GET", "/api/v1/servers/{name}/logs", || get(server_logs)),
    r("GET", "/api/v1/namespaces", || get(list_namespaces)),
    r("POST", "/api/v1/namespaces", || post(create_namespace)),
    r("GET", "/api/v1/namespaces/{name}", || get(get_namespace)),
    r("PATCH", "/api/v1/namespaces/{name}", || {
        patch(update_namespace)
    }),
    r("DELETE", "/api/v1/namespaces/{name}", || {
        delete(remove_namespace)
    }),
    r("POST", "/api/v1/namespaces/{name}/servers/{server}", || {
        post(add_namespace_server)
    }),
    r(
        "DELETE",
        "/api/v1/namespaces/{name}/servers/{server}",
        || delete(remove_namespace_server),
    ),
    r("GET", "/api/v1/namespaces/{name}/tools", || get(list_tools)),
    r("POST", "/api/v1/namespaces/{name}/tools/enable", || {
        post(enable_tools)
    }),
    r("POST", "/api/v1/namespaces/{name}/tools/disable", || {
        post(disable_tools)
    }),
    r("PATCH", "/api/v1/namespaces/{name}/tools/{tool}", || {
        patch(override_tool)
    }),
    r("DELETE", "/api/v1/namespaces/{name}/tools/{tool}", || {
        delete(reset_tool)
    }),
    r("GET", "/api/v1/endpoints", || get(list_endpoints)),
    r("POST", "/api/v1/endpoints", || post(create_endpoint)),
    r("GET", "/api/v1/endpoints/{name}", || get(get_endpoint)),
    r("PATCH", "/api/v1/endpoints/{name}", || {
        patch(update_endpoint)
    }),
    r("DELETE", "/api/v1/endpoints/{name}", || {
        delete(remove_endpoint)
    }),
    r("GET", "/api/v1/keys", || get(list_keys)),
    r("POST", "/api/v1/keys", || post(create_key)),
    r("DELETE", "/api/v1/keys/{name}", || delete(revoke_key)),
    r("GET", "/api/v1/users", || get(list_users)),
    r("POST", "/api/v1/users", || post(create_user)),
    r("GET", "/api/v1/users/{email}", || get(get_user)),
    r("PATCH", "/api/v1/users/{email}", || patch(update_user)),
    r("DELETE", "/api/v1/users/{email}", || delete(remove_user)),
    r("GET", "/api/v1/settings", || get(list_settings)),
    r("GET", "/api/v1/audit", || get(read_audit)),
    r("GET", "/api/v1/oauth/grants", || get(list_grants)),
    r("DELETE", "/api/v1/oauth/grants/{id}", || {
        delete(revoke_grant)
    }),
    r("GET", "/api/v1/oauth/clients", || get(list_oauth_clients)),
    r("DELETE", "/api/v1/oauth/clients/{id}", || {
        delete(remove_oauth_client)
    }),
    r("PUT", "/api/v1/settings/{key}", || put(set_setting)),
];

/// The admin API's routes (to be merged into the gateway's router, behind its guard), built
/// from [`ROUTES`].
pub fn routes(gw: Arc<Gateway>) -> Router<Arc<Gateway>> {
    let build = |protected: bool| {
        ROUTES
            .iter()
            .filter(|r| r.protected == protected)
            .fold(Router::new(), |router, r| {
                router.route(r.path, (r.handler)())
            })
    };
    build(true)
        .route_layer(middleware::from_fn_with_state(gw, require_admin))
        .merge(build(false))
}

/// Lets admin keys and signed-in users through, and records who acts. A request without a
/// key is looked at for a browser session; one that changes something must then pass the
/// CSRF check. What a signed-in user may do is decided per operation ([`Actor::may`]).
async fn require_admin(State(gw): Gw, req: Request, next: Next) -> Response {
    // why: a change made by this request is recorded under its method and path.
    let op = format!("{} {}", req.method(), req.uri().path());
    gw.rt.metrics.request("", "admin", req.method().as_str());
    audit::with_op("api", op, authorize(gw, req, next)).await
}

async fn authorize(gw: Arc<Gateway>, mut req: Request, next: Next) -> Response {
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
            gw.rt.audit.key_used(&key.id);
            req.extensions_mut().insert(Actor::AdminKey {
                id: key.id,
                name: key.name,
            });
            next.run(req).await
        }
        Err(e) => {
            if gw.rt.audit.enabled() {
                let client = req
                    .extensions()
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0);
                let who = crate::audit::Who::named(
                    "admin",
                    None,
                    None,
                    None,
                    gw.limiter.client_ip(client, req.headers()),
                );
                let class = if e.message.contains("expired") {
                    "key_expired"
                } else {
                    e.kind
                };
                let record = crate::audit::refusal(
                    &who,
                    "auth_failed",
                    Some(format!("{} {}", req.method(), req.uri().path()).into()),
                    crate::audit::Verdict::new(crate::audit::Outcome::Denied, class),
                );
                gw.rt.audit.record_now(record);
            }
            e.into_response()
        }
    }
}

/// Runs operations in one write transaction as `who`.
async fn write<T>(
    gw: &Gateway,
    who: &Actor,
    f: impl AsyncFnOnce(&mut Cx<'_>) -> Result<T, AdminError>,
) -> Result<T, HttpError> {
    let out = super::run(&gw.rt.store, who, f).await.map_err(refusal)?;
    // why: the gateway that answered applies the change before answering, so a client that
    // changes something and then uses it here never races the watcher (other replicas
    // follow within a second).
    if let Err(e) = gw.reload().await {
        tracing::warn!(error = %e, "admin API: reloading after a change failed; the watcher retries");
    }
    Ok(out)
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

/// `owner` (query): the email of the user new servers belong to.
async fn import_servers(
    State(gw): Gw,
    Extension(who): Who,
    RawQuery(q): RawQuery,
    Body(doc): Body<Value>,
) -> ApiResult {
    // Malformed JSON is a 400 (the extractor); a well-formed but refused import, 422.
    let specs = servers::parse_import(&doc.to_string()).map_err(refusal)?;
    let owner = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "owner")
        .map(|(_, v)| v.into_owned());
    let report = write(&gw, &who, async |cx| {
        servers::import_owned(cx, &specs, owner.as_deref()).await
    })
    .await?;
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
    /// `off`, `shared` or `per-user`.
    oauth: Option<String>,
    /// An email, or `null` for public (admins only).
    #[serde(default, deserialize_with = "some")]
    owner: Option<Option<String>>,
}

/// A field that may be `null` (`Some(None)`) as well as absent (`None`).
fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn update_server(
    State(gw): Gw,
    Extension(who): Who,
    Path(name): Path<String>,
    Body(p): Body<ServerPatch>,
) -> ApiResult {
    let connection = p.mode.is_some() || p.warm.is_some() || p.cap.is_some() || p.oauth.is_some();
    if !connection && p.owner.is_none() {
        return Err(invalid(
            "nothing to change: give mode, warm, cap, oauth and/or owner",
        ));
    }
    let patch = servers::ConnectionPatch {
        mode: p.mode,
        warm: p.warm,
        cap: p.cap,
        oauth: p.oauth,
    };
    let v = write(&gw, &who, async |cx| {
        if let Some(owner) = &p.owner {
            servers::set_owner(cx, &name, owner.as_deref()).await?;
        }
        if connection {
            servers::update(cx, &name, patch).await?;
        }
        servers::get(cx, &name).await
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
    /// An email; absent: public for admins, the member themselves for a member.
    owner: Option<String>,
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
        owner: b.owner,
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
    /// An email, or `null` for public (admins only).
    #[serde(default, deserialize_with = "some")]
    owner: Option<Option<String>>,
    /// Record tool-call arguments and results in the audit log.
    audit_payloads: Option<bool>,
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
    let layout = patch.prefix.is_some()
        || patch.new_tools_enabled.is_some()
        || patch.max_name_length.is_some();
    if !layout && b.owner.is_none() && b.audit_payloads.is_none() {
        return Err(invalid(
            "nothing to change: give prefix, new_tools, max_name_length, owner and/or \
             audit_payloads",
        ));
    }
    let v = write(&gw, &who, async |cx| {
        if let Some(owner) = &b.owner {
            namespaces::set_owner(cx, &name, owner.as_deref()).await?;
        }
        if let Some(on) = b.audit_payloads {
            namespaces::set_audit_payloads(cx, &name, on).await?;
        }
        if layout {
            return namespaces::update(cx, &name, patch).await.map(|u| json!(u));
        }
        namespaces::get(cx, &name)
            .await
            .map(|n| json!({ "namespace": n }))
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
    /// OAuth access tokens open it too (default false).
    #[serde(default)]
    oauth: bool,
    rate: Option<String>,
    client_rate: Option<String>,
    /// An email; absent: public for admins, the member themselves for a member.
    owner: Option<String>,
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
        oauth: b.oauth,
        rate: b.rate,
        client_rate: b.client_rate,
        owner: b.owner,
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
    /// Whether callers must present an API key.
    api_key_auth: Option<bool>,
    /// Whether the key may also come as `?api_key=`.
    query_auth: Option<bool>,
    /// Whether OAuth access tokens issued for it open it.
    oauth: Option<bool>,
    /// An email, or `null` for public (admins only).
    #[serde(default, deserialize_with = "some")]
    owner: Option<Option<String>>,
}

async fn update_endpoint(
    State(gw): Gw,
    Extension(who): Who,
    Path(name): Path<String>,
    Body(b): Body<EndpointPatch>,
) -> ApiResult {
    let limits = b.rate.is_some() || b.client_rate.is_some();
    let auth = b.api_key_auth.is_some() || b.query_auth.is_some() || b.oauth.is_some();
    let v = write(&gw, &who, async |cx| {
        if let Some(owner) = &b.owner {
            endpoints::set_owner(cx, &name, owner.as_deref()).await?;
        }
        if auth {
            endpoints::set_auth(cx, &name, b.api_key_auth, b.query_auth, b.oauth).await?;
        }
        if limits || (b.owner.is_none() && !auth) {
            return endpoints::update(cx, &name, b.rate.as_deref(), b.client_rate.as_deref()).await;
        }
        endpoints::get(cx, &name).await
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
    /// An email; absent: public for admins, the member themselves for a member.
    owner: Option<String>,
    /// A duration from now (`90d`, `12h`); absent: never.
    expires: Option<String>,
}

async fn create_key(State(gw): Gw, Extension(who): Who, Body(b): Body<KeyBody>) -> ApiResult {
    let v = write(&gw, &who, async |cx| {
        keys::create_expiring(
            cx,
            &b.name,
            b.admin,
            b.owner.as_deref(),
            b.expires.as_deref(),
        )
        .await
    })
    .await?;
    ok(StatusCode::CREATED, &v)
}

async fn revoke_key(State(gw): Gw, Extension(who): Who, Path(name): Path<String>) -> ApiResult {
    write(&gw, &who, async |cx| keys::revoke(cx, &name).await).await?;
    no_content()
}

// ---- OAuth grants and clients ----

async fn list_grants(State(gw): Gw, Extension(who): Who) -> ApiResult {
    let v = super::oauth::list_grants(&gw.rt.store, &who, crate::audit::now_ms())
        .await
        .map_err(refusal)?;
    ok(StatusCode::OK, &v)
}

async fn revoke_grant(State(gw): Gw, Extension(who): Who, Path(id): Path<String>) -> ApiResult {
    let now = crate::audit::now_ms();
    let v = super::oauth::revoke_grant(&gw.rt.store, &who, &id, now)
        .await
        .map_err(refusal)?;
    crate::oauth::token::remember_revoked(&gw, &id, now);
    ok(StatusCode::OK, &v)
}

async fn list_oauth_clients(State(gw): Gw, Extension(who): Who) -> ApiResult {
    let v = super::oauth::list_clients(&gw.rt.store, &who)
        .await
        .map_err(refusal)?;
    ok(StatusCode::OK, &v)
}

async fn remove_oauth_client(
    State(gw): Gw,
    Extension(who): Who,
    Path(id): Path<String>,
) -> ApiResult {
    super::oauth::remove_client(&gw.rt.store, &who, &id, crate::audit::now_ms())
        .await
        .map_err(refusal)?;
    no_content()
}

// ---- audit ----

async fn read_audit(State(gw): Gw, Extension(who): Who, RawQuery(q): RawQuery) -> ApiResult {
    let mut query = audit::AuditQuery::default();
    for (k, v) in url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        let v = v.into_owned();
        match &*k {
            "endpoint" => query.endpoint = Some(v),
            "server" => query.server = Some(v),
            "tool" => query.tool = Some(v),
            "principal" => query.principal = Some(v),
            "since" => query.since = Some(v),
            "outcome" => query.outcome = Some(v),
            "cursor" => query.cursor = Some(v),
            "limit" => {
                query.limit = Some(
                    v.parse()
                        .map_err(|_| invalid(format!("limit must be a number, not {v:?}")))?,
                );
            }
            other => return Err(invalid(format!("unknown query parameter {other:?}"))),
        }
    }
    let now = audit::now_ms();
    let v = read(&gw, &who, async |cx| audit::query(cx, &query, now).await).await?;
    ok(StatusCode::OK, &v)
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
    let removed = write(&gw, &who, async |cx| users::remove(cx, &email).await).await?;
    ok(StatusCode::OK, &json!({ "removed": removed }))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::ROUTES;

    /// The OpenAPI document describes exactly the routes the router is built from.
    #[test]
    fn the_document_describes_every_route() {
        let doc = super::super::openapi::document();
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                documented.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        assert_eq!(routed.len(), ROUTES.len(), "a route is listed twice");
        assert_eq!(documented, routed);
    }
}
