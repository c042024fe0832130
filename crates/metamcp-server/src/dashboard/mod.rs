//! The dashboard: server-rendered pages at `/`, `/servers`, `/namespaces`, `/endpoints` and
//! `/keys`, for a signed-in browser, on the gateway's own port.
//!
//! Every page reads and every form writes through the admin service layer as the signed-in
//! user (`Actor::User`), so the CLI, `/api/v1` and the dashboard share one rule set. Forms
//! are plain HTML posts carrying the session's CSRF token, checked with the same-site rule
//! (`account::routes::require_csrf_session`); a success redirects (303) to the page with a
//! fixed notice, a refusal renders the page again with the message and the input kept.
//! Templates are askama (`templates/dash/`), assets are compiled in (`assets`), and pages
//! carry a strict Content-Security-Policy: scripts and styles only from this origin, no
//! inline code.

pub mod assets;
pub mod live;

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::account::SignedIn;
use crate::admin::{self, Actor, AdminError, endpoints, keys, namespaces, servers};
use crate::state::Gateway;

type Gw = State<Arc<Gateway>>;

/// The dashboard's routes (public listener).
pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/", get(home))
        .route("/assets/{name}", get(assets::serve))
        .route("/servers", get(servers_page))
        .route("/servers/import", post(import_servers))
        .route("/servers/{name}/reset", post(reset_server))
        .route("/servers/{name}/delete", post(delete_server))
        .route("/namespaces", get(namespaces_page).post(create_namespace))
        .route("/namespaces/{name}/delete", post(delete_namespace))
        .route("/namespaces/{name}", get(namespace_page))
        .route("/namespaces/{name}/servers", post(namespace_servers))
        .route("/namespaces/{name}/settings", post(namespace_settings))
        .route("/namespaces/{name}/tools", post(namespace_tools))
        .route(
            "/namespaces/{name}/tools/{tool}/override",
            post(override_tool),
        )
        .route("/namespaces/{name}/tools/{tool}/reset", post(reset_tool))
        .route("/endpoints", get(endpoints_page).post(create_endpoint))
        .route("/endpoints/{name}/delete", post(delete_endpoint))
        .route("/endpoints/{name}/limits", post(endpoint_limits))
        .route("/keys", get(keys_page).post(create_key))
        .route("/keys/{name}/revoke", post(revoke_key))
        .route("/servers/{name}/logs", get(server_logs))
        .route("/servers/new", get(new_server))
        .route("/servers/{name}/edit", get(edit_server))
        .route("/servers/save", post(save_server))
        .route("/logs", get(live_page))
        .route("/logs/stream", get(live::stream))
        .route("/settings", get(settings_page))
        .route("/settings/users", post(create_user))
        .route("/settings/users/{email}", post(update_user))
        .route("/settings/users/{email}/delete", post(remove_user))
        .route("/settings/{key}", post(set_setting))
}

/// What every dashboard page shows around its content.
#[derive(Debug)]
pub struct Chrome {
    pub current: &'static str,
    pub user_name: String,
    pub role: &'static str,
    pub is_admin: bool,
    pub csrf: String,
    /// Set when the browser is not on `APP_URL`'s origin: what is wrong and the fix.
    pub origin_banner: Option<String>,
    pub notice: Option<&'static str>,
    pub error: Option<String>,
}

impl Chrome {
    /// Whether `href` is the page shown.
    pub fn is_current(&self, href: &str) -> bool {
        href == self.current
    }

    /// The navigation: (path, label).
    pub fn nav(&self) -> Vec<(&'static str, &'static str)> {
        let mut nav = vec![
            ("/servers", "Servers"),
            ("/namespaces", "Namespaces"),
            ("/endpoints", "Endpoints"),
            ("/keys", "API keys"),
            ("/logs", "Live logs"),
        ];
        if self.is_admin {
            nav.push(("/settings", "Settings"));
        }
        nav
    }
}

/// The page frame for `s` on `current`, with the notice a `?done=` names.
pub(crate) fn chrome(
    gw: &Gateway,
    s: &SignedIn,
    headers: &HeaderMap,
    current: &'static str,
    query: Option<&str>,
) -> Chrome {
    let app = &gw.opts.app_url;
    let origin_banner = (!crate::account::sso::on_app_origin(app, headers)).then(|| {
        format!(
            "You opened metamcp at {}, but its APP_URL is {}. Links, endpoint URLs and single \
             sign-on use APP_URL: open metamcp there, or set APP_URL to the address you use.",
            crate::account::sso::browser_origin(app, headers).unwrap_or_default(),
            app.origin().ascii_serialization()
        )
    });
    Chrome {
        current,
        user_name: s.user.name.clone(),
        role: s.user.role.as_str(),
        is_admin: s.user.role == metamcp_store::Role::Admin,
        csrf: s.csrf.clone(),
        origin_banner,
        notice: query.and_then(notice_of),
        error: None,
    }
}

/// The notice of a finished action (`?done=…`): fixed texts only, never echoed input.
fn notice_of(query: &str) -> Option<&'static str> {
    let done = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.into_owned())?;
    Some(match done.as_str() {
        "imported" => "Servers imported.",
        "reset" => "Reset requested: running gateways retry the server now.",
        "deleted" => "Deleted.",
        "created" => "Created.",
        "revoked" => "Key revoked; clients using it are refused within a second.",
        "saved" => "Saved; running gateways apply it within a second.",
        "tools" => "Tools changed.",
        "saved-server" => "Server saved; running gateways restart it with the new settings.",
        _ => return None,
    })
}

fn actor(s: &SignedIn) -> Actor {
    Actor::User {
        id: s.user.id.clone(),
        email: s.user.email.clone(),
        role: s.user.role,
    }
}

/// The signed-in user, or a redirect to the sign-in page that comes back to `path`.
async fn signed_in(gw: &Gateway, headers: &HeaderMap, path: &str) -> Result<SignedIn, Response> {
    match gw.accounts.signed_in(&gw.rt.store, headers).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => {
            let mut to = url::Url::parse("http://x/login").map_err(|_| internal())?;
            to.query_pairs_mut().append_pair("return_to", path);
            let rel = format!("/login?{}", to.query().unwrap_or(""));
            Err(Redirect::to(&rel).into_response())
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard: reading the session failed");
            Err(internal())
        }
    }
}

/// A form's fields (repeated names kept in order) after the session and CSRF checks.
async fn form(
    gw: &Gateway,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(SignedIn, BTreeMap<String, Vec<String>>), Response> {
    let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        fields
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    let token = fields.get("csrf_token").and_then(|v| v.first()).cloned();
    match crate::account::routes::require_csrf_session(gw, headers, token.as_deref()).await {
        Ok(Some(s)) => Ok((s, fields)),
        Ok(None) => Err(Redirect::to("/login").into_response()),
        Err(e) => Err(e.into_response()),
    }
}

fn first<'a>(fields: &'a BTreeMap<String, Vec<String>>, k: &str) -> &'a str {
    fields
        .get(k)
        .and_then(|v| v.first())
        .map_or("", String::as_str)
}

/// Runs a change as the signed-in user, then applies it to this gateway at once (other
/// replicas follow within a second), so the page the browser is sent to shows it working.
async fn write<T>(
    gw: &Gateway,
    s: &SignedIn,
    f: impl AsyncFnOnce(&mut admin::Cx<'_>) -> Result<T, AdminError>,
) -> Result<T, AdminError> {
    let out = admin::run(&gw.rt.store, &actor(s), f).await?;
    if let Err(e) = gw.reload().await {
        tracing::warn!(error = %e, "dashboard: reloading after a change failed; the watcher retries");
    }
    Ok(out)
}

fn internal() -> Response {
    crate::account::pages::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The gateway could not do this; its log says why.",
        None,
    )
}

/// An admin refusal as words for the page (internal errors only logged).
fn words(e: &AdminError) -> String {
    match e.class() {
        admin::ErrorClass::Internal => {
            tracing::error!(error = %e, "dashboard: operation failed");
            "The gateway could not do this; its log says why.".into()
        }
        _ => e.to_string(),
    }
}

fn status_of(e: &AdminError) -> StatusCode {
    match e.class() {
        admin::ErrorClass::NotFound => StatusCode::NOT_FOUND,
        admin::ErrorClass::Forbidden => StatusCode::FORBIDDEN,
        admin::ErrorClass::Conflict => StatusCode::CONFLICT,
        admin::ErrorClass::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        admin::ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What a page shows after reading its data: the data (empty when the read was refused, the
/// refusal's words then in the frame) and the status; the refusal of the form that led here,
/// if any, wins.
fn settle<T: Default>(
    chrome: &mut Chrome,
    got: Result<T, AdminError>,
    refused: Option<(StatusCode, String)>,
) -> (StatusCode, T) {
    let (mut status, data) = match got {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => {
            chrome.error = Some(words(&e));
            (status_of(&e), T::default())
        }
    };
    if let Some((st, msg)) = refused {
        chrome.error = Some(msg);
        status = st;
    }
    (status, data)
}

fn render(status: StatusCode, t: &impl Template) -> Response {
    crate::account::pages::html(status, t)
}

async fn home(State(gw): Gw, headers: HeaderMap) -> Response {
    match signed_in(&gw, &headers, "/").await {
        Ok(_) => Redirect::to("/servers").into_response(),
        Err(r) => r,
    }
}

// ---- servers ----

#[derive(Template)]
#[template(path = "dash/servers.html")]
struct ServersPage {
    chrome: Chrome,
    servers: Vec<servers::ServerView>,
    import_text: String,
}

async fn servers_view(
    gw: &Gateway,
    s: &SignedIn,
    headers: &HeaderMap,
    query: Option<&str>,
    error: Option<(StatusCode, String)>,
    import_text: String,
) -> Response {
    let list = admin::read(&gw.rt.store, &actor(s), async |cx| servers::list(cx).await).await;
    let mut chrome = chrome(gw, s, headers, "/servers", query);
    let (status, servers) = settle(&mut chrome, list, error);
    render(
        status,
        &ServersPage {
            chrome,
            servers,
            import_text,
        },
    )
}

async fn servers_page(State(gw): Gw, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let s = match signed_in(&gw, &headers, "/servers").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    servers_view(&gw, &s, &headers, q.as_deref(), None, String::new()).await
}

async fn import_servers(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let text = first(&fields, "json").to_owned();
    let result = match servers::parse_import(&text) {
        Ok(specs) => write(&gw, &s, async |cx| servers::import(cx, &specs).await).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Redirect::to("/servers?done=imported").into_response(),
        Err(e) => {
            servers_view(
                &gw,
                &s,
                &headers,
                None,
                Some((status_of(&e), words(&e))),
                text,
            )
            .await
        }
    }
}

async fn server_action(
    gw: &Gateway,
    headers: &HeaderMap,
    body: &[u8],
    name: &str,
    reset: bool,
) -> Response {
    let (s, _) = match form(gw, headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let result = write(gw, &s, async |cx| {
        if reset {
            servers::reset(cx, name).await
        } else {
            servers::remove(cx, name).await
        }
    })
    .await;
    match result {
        Ok(()) if reset => Redirect::to("/servers?done=reset").into_response(),
        Ok(()) => Redirect::to("/servers?done=deleted").into_response(),
        Err(e) => {
            servers_view(
                gw,
                &s,
                headers,
                None,
                Some((status_of(&e), words(&e))),
                String::new(),
            )
            .await
        }
    }
}

async fn reset_server(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    server_action(&gw, &headers, &body, &name, true).await
}

async fn delete_server(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    server_action(&gw, &headers, &body, &name, false).await
}

// ---- namespaces ----

#[derive(Template)]
#[template(path = "dash/namespaces.html")]
struct NamespacesPage {
    chrome: Chrome,
    namespaces: Vec<namespaces::NamespaceView>,
    servers: Vec<String>,
}

async fn namespaces_view(
    gw: &Gateway,
    s: &SignedIn,
    headers: &HeaderMap,
    query: Option<&str>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let got = admin::read(&gw.rt.store, &actor(s), async |cx| {
        Ok((namespaces::list(cx).await?, servers::list(cx).await?))
    })
    .await;
    let mut chrome = chrome(gw, s, headers, "/namespaces", query);
    let got = got.map(|(n, sv)| (n, sv.into_iter().map(|x| x.name).collect()));
    let (status, (namespaces, servers)) = settle(&mut chrome, got, error);
    render(
        status,
        &NamespacesPage {
            chrome,
            namespaces,
            servers,
        },
    )
}

async fn namespaces_page(State(gw): Gw, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let s = match signed_in(&gw, &headers, "/namespaces").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    namespaces_view(&gw, &s, &headers, q.as_deref(), None).await
}

async fn create_namespace(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let new = namespaces::NewNamespace {
        name: first(&fields, "name").trim().to_owned(),
        servers: fields.get("server").cloned().unwrap_or_default(),
        inactive: Vec::new(),
        description: None,
        prefix: metamcp_core::mangle::PrefixMode::default(),
        new_tools_enabled: None,
        max_name_length: None,
        owner: None,
    };
    match write(&gw, &s, async |cx| namespaces::create(cx, new).await).await {
        Ok(_) => Redirect::to("/namespaces?done=created").into_response(),
        Err(e) => namespaces_view(&gw, &s, &headers, None, Some((status_of(&e), words(&e)))).await,
    }
}

async fn delete_namespace(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, _) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match write(&gw, &s, async |cx| namespaces::remove(cx, &name).await).await {
        Ok(()) => Redirect::to("/namespaces?done=deleted").into_response(),
        Err(e) => namespaces_view(&gw, &s, &headers, None, Some((status_of(&e), words(&e)))).await,
    }
}

// ---- one namespace: servers, naming, tools ----

#[derive(Template)]
#[template(path = "dash/namespace.html")]
struct NamespacePage {
    chrome: Chrome,
    ns: namespaces::NamespaceView,
    tools: crate::admin::tools::NamespaceTools,
}

async fn namespace_view(
    gw: &Gateway,
    s: &SignedIn,
    headers: &HeaderMap,
    name: &str,
    query: Option<&str>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let got = admin::read(&gw.rt.store, &actor(s), async |cx| {
        Ok((
            namespaces::get(cx, name).await?,
            crate::admin::tools::list(cx, name).await?,
        ))
    })
    .await;
    let mut chrome = chrome(gw, s, headers, "/namespaces", query);
    let (ns, tools) = match got {
        Ok(x) => x,
        Err(e) => {
            return crate::account::pages::error(
                status_of(&e),
                "Namespace not available",
                &words(&e),
                None,
            );
        }
    };
    let mut status = StatusCode::OK;
    if let Some((st, msg)) = error {
        chrome.error = Some(msg);
        status = st;
    }
    render(status, &NamespacePage { chrome, ns, tools })
}

async fn namespace_page(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let s = match signed_in(&gw, &headers, &format!("/namespaces/{name}")).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    namespace_view(&gw, &s, &headers, &name, q.as_deref(), None).await
}

/// Runs a namespace change from a form and answers with the page again (a redirect on
/// success, the page with the refusal otherwise).
async fn namespace_change(
    gw: &Gateway,
    headers: &HeaderMap,
    body: &[u8],
    name: &str,
    done: &str,
    f: impl AsyncFnOnce(&mut admin::Cx<'_>, &BTreeMap<String, Vec<String>>) -> Result<(), AdminError>,
) -> Response {
    let (s, fields) = match form(gw, headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match write(gw, &s, async |cx| f(cx, &fields).await).await {
        Ok(()) => {
            let mut to = url::form_urlencoded::Serializer::new(String::new());
            to.append_pair("done", done);
            Redirect::to(&format!(
                "/namespaces/{}?{}",
                encode_path(name),
                to.finish()
            ))
            .into_response()
        }
        Err(e) => {
            namespace_view(
                gw,
                &s,
                headers,
                name,
                None,
                Some((status_of(&e), words(&e))),
            )
            .await
        }
    }
}

/// A name as one path segment.
fn encode_path(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn namespace_servers(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    namespace_change(&gw, &headers, &body, &name, "saved", async |cx, fields| {
        let active = fields.get("active").cloned().unwrap_or_default();
        let ns = namespaces::get(cx, &name).await?;
        let all: Vec<String> = ns.servers.iter().map(|m| m.server.clone()).collect();
        let inactive: Vec<String> = all
            .iter()
            .filter(|m| !active.contains(m))
            .cloned()
            .collect();
        namespaces::reshape(cx, &name, &all, &inactive, None).await?;
        Ok(())
    })
    .await
}

async fn namespace_settings(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    namespace_change(&gw, &headers, &body, &name, "saved", async |cx, fields| {
        let prefix = namespaces::parse_prefix(first(fields, "prefix"))?;
        let new_tools = namespaces::parse_new_tools(first(fields, "new_tools"))?;
        let max = first(fields, "max_name_length").trim();
        let max = if max.is_empty() {
            None
        } else {
            namespaces::parse_name_length(max)?
        };
        namespaces::update(
            cx,
            &name,
            namespaces::NamespacePatch {
                prefix: Some(prefix),
                new_tools_enabled: Some(new_tools),
                max_name_length: Some(max),
            },
        )
        .await?;
        Ok(())
    })
    .await
}

async fn namespace_tools(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    namespace_change(&gw, &headers, &body, &name, "tools", async |cx, fields| {
        let enable = match first(fields, "action") {
            "enable" => true,
            "disable" => false,
            other => return Err(AdminError::Invalid(format!("unknown action {other:?}"))),
        };
        let mut patterns = fields.get("tool").cloned().unwrap_or_default();
        let pattern = first(fields, "pattern").trim();
        if !pattern.is_empty() {
            patterns.push(pattern.to_owned());
        }
        if patterns.is_empty() {
            return Err(AdminError::Invalid(
                "select tools in the table or give a pattern".into(),
            ));
        }
        crate::admin::tools::set_enabled(cx, &name, &patterns, enable).await?;
        Ok(())
    })
    .await
}

async fn override_tool(
    State(gw): Gw,
    Path((name, tool)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    namespace_change(&gw, &headers, &body, &name, "tools", async |cx, fields| {
        let field = |k: &str| {
            let v = first(fields, k).trim();
            (!v.is_empty()).then(|| v.to_owned())
        };
        let patch = crate::admin::tools::OverridePatch {
            name: field("name"),
            title: field("title"),
            description: field("description"),
            annotations: field("annotations"),
        };
        if patch.name.is_none()
            && patch.title.is_none()
            && patch.description.is_none()
            && patch.annotations.is_none()
        {
            return Err(AdminError::Invalid(
                "fill in at least one field to override".into(),
            ));
        }
        crate::admin::tools::override_tool(cx, &name, &tool, patch).await?;
        Ok(())
    })
    .await
}

async fn reset_tool(
    State(gw): Gw,
    Path((name, tool)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    namespace_change(&gw, &headers, &body, &name, "tools", async |cx, _| {
        crate::admin::tools::reset_tool(cx, &name, &tool).await?;
        Ok(())
    })
    .await
}

// ---- endpoints ----

/// An endpoint with the URLs clients use.
struct EndpointRow {
    view: endpoints::EndpointView,
    urls: Vec<(&'static str, String)>,
    /// Ready-to-paste client configurations: (client, text).
    snippets: Vec<(&'static str, String)>,
}

/// Client configurations for an endpoint at `url` (a placeholder where the key goes).
fn snippets_of(name: &str, url: &str, key_auth: bool) -> Vec<(&'static str, String)> {
    let id = format!("metamcp-{name}");
    let key = "sk_mt_YOUR_KEY";
    let headers = if key_auth {
        serde_json::json!({ "Authorization": format!("Bearer {key}") })
    } else {
        serde_json::json!({})
    };
    let pretty = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default();
    let mut cursor = serde_json::Map::new();
    cursor.insert(
        id.clone(),
        serde_json::json!({ "url": url, "headers": headers }),
    );
    let mut vscode = serde_json::Map::new();
    vscode.insert(
        id.clone(),
        serde_json::json!({ "type": "http", "url": url, "headers": headers }),
    );
    let claude_code = if key_auth {
        format!(
            "claude mcp add --transport http {id} {url} --header \"Authorization: Bearer {key}\""
        )
    } else {
        format!("claude mcp add --transport http {id} {url}")
    };
    vec![
        (
            "Cursor (~/.cursor/mcp.json)",
            pretty(serde_json::json!({ "mcpServers": cursor })),
        ),
        (
            "VS Code (.vscode/mcp.json)",
            pretty(serde_json::json!({ "servers": vscode })),
        ),
        ("Claude Code", claude_code),
    ]
}

#[derive(Template)]
#[template(path = "dash/endpoints.html")]
struct EndpointsPage {
    chrome: Chrome,
    endpoints: Vec<EndpointRow>,
    namespaces: Vec<String>,
}

fn urls_of(app: &url::Url, name: &str) -> Vec<(&'static str, String)> {
    let base = app.as_str().trim_end_matches('/');
    vec![
        ("Streamable HTTP", format!("{base}/metamcp/{name}/mcp")),
        ("SSE", format!("{base}/metamcp/{name}/sse")),
        ("OpenAPI", format!("{base}/metamcp/{name}/api")),
        (
            "openapi.json",
            format!("{base}/metamcp/{name}/api/openapi.json"),
        ),
    ]
}

async fn endpoints_view(
    gw: &Gateway,
    s: &SignedIn,
    headers: &HeaderMap,
    query: Option<&str>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let got = admin::read(&gw.rt.store, &actor(s), async |cx| {
        Ok((endpoints::list(cx).await?, namespaces::list(cx).await?))
    })
    .await;
    let mut chrome = chrome(gw, s, headers, "/endpoints", query);
    let got = got.map(|(e, n)| {
        let rows: Vec<EndpointRow> = e
            .into_iter()
            .map(|view| {
                let urls = urls_of(&gw.opts.app_url, &view.name);
                EndpointRow {
                    snippets: snippets_of(&view.name, &urls[0].1, view.api_key_auth),
                    urls,
                    view,
                }
            })
            .collect();
        let names: Vec<String> = n.into_iter().map(|x| x.name).collect();
        (rows, names)
    });
    let (status, (endpoints, namespaces)) = settle(&mut chrome, got, error);
    render(
        status,
        &EndpointsPage {
            chrome,
            endpoints,
            namespaces,
        },
    )
}

async fn endpoints_page(State(gw): Gw, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let s = match signed_in(&gw, &headers, "/endpoints").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    endpoints_view(&gw, &s, &headers, q.as_deref(), None).await
}

async fn create_endpoint(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let new = endpoints::NewEndpoint {
        name: first(&fields, "name").trim().to_owned(),
        namespace: first(&fields, "namespace").to_owned(),
        description: None,
        api_key_auth: first(&fields, "no_auth") != "1",
        query_auth: first(&fields, "query_auth") == "1",
        rate: None,
        client_rate: None,
        owner: None,
    };
    match write(&gw, &s, async |cx| endpoints::create(cx, new).await).await {
        Ok(_) => Redirect::to("/endpoints?done=created").into_response(),
        Err(e) => endpoints_view(&gw, &s, &headers, None, Some((status_of(&e), words(&e)))).await,
    }
}

async fn endpoint_limits(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (rate, client) = (
        first(&fields, "rate").trim(),
        first(&fields, "client_rate").trim(),
    );
    let result = write(&gw, &s, async |cx| {
        endpoints::update(cx, &name, Some(rate), Some(client)).await
    })
    .await;
    match result {
        Ok(_) => Redirect::to("/endpoints?done=saved").into_response(),
        Err(e) => endpoints_view(&gw, &s, &headers, None, Some((status_of(&e), words(&e)))).await,
    }
}

async fn delete_endpoint(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, _) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match write(&gw, &s, async |cx| endpoints::remove(cx, &name).await).await {
        Ok(()) => Redirect::to("/endpoints?done=deleted").into_response(),
        Err(e) => endpoints_view(&gw, &s, &headers, None, Some((status_of(&e), words(&e)))).await,
    }
}

// ---- keys ----

#[derive(Template)]
#[template(path = "dash/keys.html")]
struct KeysPage {
    chrome: Chrome,
    keys: Vec<keys::KeyView>,
    /// A key just made: (name, value), shown this once.
    created: Option<(String, String)>,
}

async fn keys_view(
    gw: &Gateway,
    s: &SignedIn,
    headers: &HeaderMap,
    query: Option<&str>,
    error: Option<(StatusCode, String)>,
    created: Option<(String, String)>,
) -> Response {
    let got = admin::read(&gw.rt.store, &actor(s), async |cx| keys::list(cx).await).await;
    let mut chrome = chrome(gw, s, headers, "/keys", query);
    let (status, keys) = settle(&mut chrome, got, error);
    let mut resp = render(
        status,
        &KeysPage {
            chrome,
            keys,
            created,
        },
    );
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}

async fn keys_page(State(gw): Gw, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let s = match signed_in(&gw, &headers, "/keys").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    keys_view(&gw, &s, &headers, q.as_deref(), None, None).await
}

async fn create_key(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = first(&fields, "name").trim().to_owned();
    let make_admin = first(&fields, "admin") == "1";
    match write(&gw, &s, async |cx| {
        keys::create(cx, &name, make_admin).await
    })
    .await
    {
        Ok(k) => keys_view(&gw, &s, &headers, None, None, Some((k.info.name, k.key))).await,
        Err(e) => {
            keys_view(
                &gw,
                &s,
                &headers,
                None,
                Some((status_of(&e), words(&e))),
                None,
            )
            .await
        }
    }
}

async fn revoke_key(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, _) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match write(&gw, &s, async |cx| keys::revoke(cx, &name).await).await {
        Ok(()) => Redirect::to("/keys?done=revoked").into_response(),
        Err(e) => {
            keys_view(
                &gw,
                &s,
                &headers,
                None,
                Some((status_of(&e), words(&e))),
                None,
            )
            .await
        }
    }
}

// ---- adding and editing a server ----

/// The server form's fields, as text (what the browser sent, or the stored server with its
/// secrets shown as `<redacted>`).
#[derive(Debug, Default, Clone)]
struct ServerForm {
    name: String,
    description: String,
    kind: String,
    command: String,
    args: String,
    env: String,
    url: String,
    headers: String,
    has_bearer: bool,
}

#[derive(Template)]
#[template(path = "dash/server_form.html")]
struct ServerFormPage {
    chrome: Chrome,
    editing: bool,
    f: ServerForm,
}

impl ServerForm {
    /// From one `mcpServers` entry of an export without secrets.
    fn from_export(name: &str, e: &serde_json::Value) -> ServerForm {
        let text = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
        let lines = |k: &str, sep: &str| {
            e.get(k)
                .and_then(|v| v.as_object())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}{sep}{}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default()
        };
        let kind = match e.get("type").and_then(|v| v.as_str()) {
            Some(t) if t.eq_ignore_ascii_case("sse") => "sse",
            Some(t) if !t.eq_ignore_ascii_case("stdio") => "streamable_http",
            _ if e.get("url").is_some() => "streamable_http",
            _ => "stdio",
        };
        ServerForm {
            name: name.to_owned(),
            description: text("description"),
            kind: kind.to_owned(),
            command: text("command"),
            args: e
                .get("args")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
            env: lines("env", "="),
            url: text("url"),
            headers: lines("headers", ": "),
            has_bearer: e.get("bearerToken").is_some(),
        }
    }

    /// From the posted fields.
    fn from_fields(fields: &BTreeMap<String, Vec<String>>) -> ServerForm {
        ServerForm {
            name: first(fields, "name").trim().to_owned(),
            description: first(fields, "description").trim().to_owned(),
            kind: first(fields, "kind").to_owned(),
            command: first(fields, "command").trim().to_owned(),
            args: first(fields, "args").to_owned(),
            env: first(fields, "env").to_owned(),
            url: first(fields, "url").trim().to_owned(),
            headers: first(fields, "headers").to_owned(),
            has_bearer: first(fields, "has_bearer") == "1",
        }
    }

    /// The `mcpServers` document this form describes, for the import parser (which checks
    /// everything the CLI's import checks).
    fn to_import(&self, bearer: &str, clear_bearer: bool) -> Result<String, AdminError> {
        fn pairs(
            text: &str,
            sep: char,
            what: &str,
        ) -> Result<serde_json::Map<String, serde_json::Value>, AdminError> {
            let mut m = serde_json::Map::new();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim_end_matches('\r');
                if line.trim().is_empty() {
                    continue;
                }
                let Some((k, v)) = line.split_once(sep) else {
                    return Err(AdminError::Invalid(format!(
                        "{what}, line {}: expected NAME{sep}value",
                        i + 1
                    )));
                };
                let v = if sep == ':' { v.trim_start() } else { v };
                m.insert(k.trim().to_owned(), serde_json::Value::String(v.to_owned()));
            }
            Ok(m)
        }
        let mut e = serde_json::Map::new();
        if !self.description.is_empty() {
            e.insert("description".into(), self.description.clone().into());
        }
        match self.kind.as_str() {
            "stdio" => {
                e.insert("type".into(), "stdio".into());
                e.insert("command".into(), self.command.clone().into());
                let args: Vec<serde_json::Value> = self
                    .args
                    .lines()
                    .map(|l| l.trim_end_matches('\r'))
                    .filter(|l| !l.is_empty())
                    .map(|l| l.to_owned().into())
                    .collect();
                e.insert("args".into(), args.into());
                e.insert("env".into(), pairs(&self.env, '=', "environment")?.into());
            }
            "streamable_http" | "sse" => {
                e.insert("type".into(), self.kind.clone().into());
                e.insert("url".into(), self.url.clone().into());
                e.insert(
                    "headers".into(),
                    pairs(&self.headers, ':', "headers")?.into(),
                );
                if !bearer.is_empty() {
                    e.insert("bearerToken".into(), bearer.to_owned().into());
                } else if self.has_bearer && !clear_bearer {
                    e.insert("bearerToken".into(), metamcp_core::spec::REDACTED.into());
                }
            }
            other => return Err(AdminError::Invalid(format!("unknown kind {other:?}"))),
        }
        let mut servers = serde_json::Map::new();
        servers.insert(self.name.clone(), e.into());
        Ok(serde_json::json!({ "mcpServers": servers }).to_string())
    }
}

async fn new_server(State(gw): Gw, headers: HeaderMap) -> Response {
    let s = match signed_in(&gw, &headers, "/servers/new").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = ServerForm {
        kind: "stdio".into(),
        ..ServerForm::default()
    };
    let chrome = chrome(&gw, &s, &headers, "/servers", None);
    render(
        StatusCode::OK,
        &ServerFormPage {
            chrome,
            editing: false,
            f,
        },
    )
}

async fn edit_server(State(gw): Gw, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let s = match signed_in(&gw, &headers, &format!("/servers/{name}/edit")).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let got = admin::read(&gw.rt.store, &actor(&s), async |cx| {
        servers::get(cx, &name).await?;
        servers::export(cx, false).await
    })
    .await;
    match got {
        Ok(doc) => {
            let entry = doc["mcpServers"][name.as_str()].clone();
            let f = ServerForm::from_export(&name, &entry);
            let chrome = chrome(&gw, &s, &headers, "/servers", None);
            render(
                StatusCode::OK,
                &ServerFormPage {
                    chrome,
                    editing: true,
                    f,
                },
            )
        }
        Err(e) => {
            crate::account::pages::error(status_of(&e), "Server not available", &words(&e), None)
        }
    }
}

async fn save_server(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let f = ServerForm::from_fields(&fields);
    let editing = first(&fields, "editing") == "1";
    let bearer = first(&fields, "bearer").to_owned();
    let clear = first(&fields, "clear_bearer") == "1";
    let result = match f.to_import(&bearer, clear) {
        Ok(doc) => match servers::parse_import(&doc) {
            Ok(specs) => {
                write(&gw, &s, async |cx| {
                    let exists = servers::get(cx, &f.name).await.is_ok();
                    if exists != editing {
                        return Err(if exists {
                            AdminError::Collision(format!(
                                "a server named {:?} exists already",
                                f.name
                            ))
                        } else {
                            AdminError::NotFound(format!("no server named {:?}", f.name))
                        });
                    }
                    servers::import(cx, &specs).await
                })
                .await
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Redirect::to("/servers?done=saved-server").into_response(),
        Err(e) => {
            let mut chrome = chrome(&gw, &s, &headers, "/servers", None);
            chrome.error = Some(words(&e));
            render(status_of(&e), &ServerFormPage { chrome, editing, f })
        }
    }
}

// ---- server logs ----

#[derive(Template)]
#[template(path = "dash/logs.html")]
struct LogsPage {
    chrome: Chrome,
    server: String,
    lines: Vec<crate::admin::logs::LogView>,
}

async fn server_logs(State(gw): Gw, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let s = match signed_in(&gw, &headers, &format!("/servers/{name}/logs")).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let got = admin::read(&gw.rt.store, &actor(&s), async |cx| {
        crate::admin::logs::tail(cx, &name, 500).await
    })
    .await;
    let mut chrome = chrome(&gw, &s, &headers, "/servers", None);
    let (status, lines) = settle(&mut chrome, got, None);
    render(
        status,
        &LogsPage {
            chrome,
            server: name,
            lines,
        },
    )
}

// ---- live logs ----

#[derive(Template)]
#[template(path = "dash/live.html")]
struct LivePage {
    chrome: Chrome,
    /// Servers whose logs the user may read.
    servers: Vec<String>,
}

async fn live_page(State(gw): Gw, headers: HeaderMap) -> Response {
    let s = match signed_in(&gw, &headers, "/logs").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let a = actor(&s);
    let servers = admin::read(&gw.rt.store, &a, async |cx| servers::list(cx).await)
        .await
        .map(|l| {
            l.into_iter()
                .filter(|v| a.is_admin() || v.owner.as_deref() == Some(s.user.email.as_str()))
                .map(|v| v.name)
                .collect()
        })
        .unwrap_or_default();
    let chrome = chrome(&gw, &s, &headers, "/logs", None);
    render(StatusCode::OK, &LivePage { chrome, servers })
}

// ---- settings and users (admin) ----

#[derive(Template)]
#[template(path = "dash/settings.html")]
struct SettingsPage {
    chrome: Chrome,
    settings: Vec<crate::admin::settings::SettingView>,
    users: Vec<metamcp_store::UserRecord>,
}

async fn settings_view(
    gw: &Gateway,
    s: &SignedIn,
    headers: &HeaderMap,
    query: Option<&str>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let got = admin::read(&gw.rt.store, &actor(s), async |cx| {
        Ok((
            crate::admin::settings::list(cx).await?,
            crate::admin::users::list(cx).await?,
        ))
    })
    .await;
    let mut chrome = chrome(gw, s, headers, "/settings", query);
    let (status, (settings, users)) = settle(&mut chrome, got, error);
    render(
        status,
        &SettingsPage {
            chrome,
            settings,
            users,
        },
    )
}

async fn settings_page(State(gw): Gw, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let s = match signed_in(&gw, &headers, "/settings").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    settings_view(&gw, &s, &headers, q.as_deref(), None).await
}

async fn set_setting(
    State(gw): Gw,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let value = first(&fields, "value").to_owned();
    match write(&gw, &s, async |cx| {
        crate::admin::settings::set(cx, &key, &value).await
    })
    .await
    {
        Ok(_) => Redirect::to("/settings?done=saved").into_response(),
        Err(e) => settings_view(&gw, &s, &headers, None, Some((status_of(&e), words(&e)))).await,
    }
}

/// Hashes a new password from a form, when one is given (before any transaction).
async fn hash_from_form(
    gw: &Gateway,
    s: &SignedIn,
    pw: &str,
) -> Result<Option<String>, AdminError> {
    if pw.is_empty() {
        return Ok(None);
    }
    if !actor(s).may(crate::admin::Access::ManageUsers) {
        return Err(AdminError::Forbidden(format!(
            "{} may not manage users",
            actor(s)
        )));
    }
    crate::account::password::check_new(pw).map_err(AdminError::Invalid)?;
    gw.accounts
        .hasher
        .hash(pw)
        .await
        .map(Some)
        .map_err(|e| AdminError::Invalid(e.to_string()))
}

async fn create_user(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let hash = match hash_from_form(&gw, &s, first(&fields, "password")).await {
        Ok(h) => h,
        Err(e) => {
            return settings_view(&gw, &s, &headers, None, Some((status_of(&e), words(&e)))).await;
        }
    };
    let name = first(&fields, "name");
    let role = if first(&fields, "admin") == "1" {
        metamcp_store::Role::Admin
    } else {
        metamcp_store::Role::Member
    };
    let result = write(&gw, &s, async |cx| {
        crate::admin::users::create(
            cx,
            &crate::admin::users::Create {
                email: first(&fields, "email"),
                name: (!name.is_empty()).then_some(name),
                password_hash: hash.as_deref(),
                role,
            },
        )
        .await
    })
    .await;
    match result {
        Ok(_) => Redirect::to("/settings?done=created").into_response(),
        Err(e) => settings_view(&gw, &s, &headers, None, Some((status_of(&e), words(&e)))).await,
    }
}

async fn update_user(
    State(gw): Gw,
    Path(email): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let change = crate::admin::users::Change {
        role: metamcp_store::Role::parse(first(&fields, "role")),
        disabled: crate::settings::parse_bool(first(&fields, "disabled")),
        ..Default::default()
    };
    match write(&gw, &s, async |cx| {
        crate::admin::users::update(cx, &email, &change).await
    })
    .await
    {
        Ok(_) => Redirect::to("/settings?done=saved").into_response(),
        Err(e) => settings_view(&gw, &s, &headers, None, Some((status_of(&e), words(&e)))).await,
    }
}

async fn remove_user(
    State(gw): Gw,
    Path(email): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, _) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match write(&gw, &s, async |cx| {
        crate::admin::users::remove(cx, &email).await
    })
    .await
    {
        Ok(_) => Redirect::to("/settings?done=deleted").into_response(),
        Err(e) => settings_view(&gw, &s, &headers, None, Some((status_of(&e), words(&e)))).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_fixed_texts() {
        assert_eq!(notice_of("done=deleted"), Some("Deleted."));
        assert_eq!(notice_of("done=%3Cscript%3E"), None);
        assert_eq!(notice_of("x=1"), None);
    }

    #[test]
    fn endpoint_urls_follow_app_url() {
        let app =
            url::Url::parse("https://mcp.example.com/base/").unwrap_or_else(|_| unreachable!());
        let urls = urls_of(&app, "main");
        assert_eq!(urls[0].1, "https://mcp.example.com/base/metamcp/main/mcp");
        assert_eq!(
            urls[3].1,
            "https://mcp.example.com/base/metamcp/main/api/openapi.json"
        );
    }
}
