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
pub mod i18n;
pub mod live;
mod pages;

use pages::{
    endpoints as ep_pages, namespaces as ns_pages, servers as srv_pages, settings as set_pages,
};

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;

use axum::extract::State;
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
        .route("/servers", get(srv_pages::servers_page))
        .route("/servers/import", post(srv_pages::import_servers))
        .route("/servers/export", get(srv_pages::export_servers))
        .route("/servers/{name}/reset", post(srv_pages::reset_server))
        .route("/servers/{name}/delete", post(srv_pages::delete_server))
        .route(
            "/namespaces",
            get(ns_pages::namespaces_page).post(ns_pages::create_namespace),
        )
        .route(
            "/namespaces/{name}/delete",
            post(ns_pages::delete_namespace),
        )
        .route("/namespaces/{name}", get(ns_pages::namespace_page))
        .route(
            "/namespaces/{name}/servers",
            post(ns_pages::namespace_servers),
        )
        .route(
            "/namespaces/{name}/settings",
            post(ns_pages::namespace_settings),
        )
        .route("/namespaces/{name}/tools", post(ns_pages::namespace_tools))
        .route(
            "/namespaces/{name}/tools/{tool}/override",
            post(ns_pages::override_tool),
        )
        .route(
            "/namespaces/{name}/tools/{tool}/reset",
            post(ns_pages::reset_tool),
        )
        .route(
            "/endpoints",
            get(ep_pages::endpoints_page).post(ep_pages::create_endpoint),
        )
        .route("/endpoints/{name}/delete", post(ep_pages::delete_endpoint))
        .route("/endpoints/{name}/limits", post(ep_pages::endpoint_limits))
        .route("/endpoints/{name}/auth", post(ep_pages::endpoint_auth))
        .route("/keys", get(ep_pages::keys_page).post(ep_pages::create_key))
        .route("/apps", get(pages::apps::apps_page))
        .route("/apps/grants/{id}/revoke", post(pages::apps::revoke_grant))
        .route(
            "/apps/clients/{id}/remove",
            post(pages::apps::remove_client),
        )
        .route("/keys/{name}/revoke", post(ep_pages::revoke_key))
        .route("/servers/{name}/logs", get(srv_pages::server_logs))
        .route("/servers/new", get(srv_pages::new_server))
        .route("/servers/{name}/edit", get(srv_pages::edit_server))
        .route("/servers/save", post(srv_pages::save_server))
        .route("/inspector", get(pages::inspector::inspector_page))
        .route("/inspector/token", post(pages::inspector::mint_token))
        .route("/logs", get(live::live_page))
        .route("/logs/stream", get(live::stream))
        .route("/settings", get(set_pages::settings_page))
        .route("/settings/users", post(set_pages::create_user))
        .route("/settings/users/{email}", post(set_pages::update_user))
        .route(
            "/settings/users/{email}/delete",
            post(set_pages::remove_user),
        )
        .route("/settings/{key}", post(set_pages::set_setting))
}

/// What every dashboard page shows around its content.
#[derive(Debug)]
pub struct Chrome {
    pub current: &'static str,
    /// The language the page is shown in.
    pub lang: i18n::Lang,
    pub user_name: String,
    pub role: &'static str,
    pub is_admin: bool,
    pub csrf: String,
    /// Set when the browser is not on `APP_URL`'s origin: what is wrong and the fix.
    pub origin_banner: Option<String>,
    pub notice: Option<&'static str>,
    pub error: Option<String>,
    /// A refused form's field and why (shown next to that field).
    pub field_error: Option<(&'static str, String)>,
    /// A refused form's input, shown again.
    pub input: BTreeMap<String, Vec<String>>,
}

impl Chrome {
    /// Whether `href` is the page shown.
    pub fn is_current(&self, href: &str) -> bool {
        href == self.current
    }

    /// The navigation: (path, label).
    pub fn nav(&self) -> Vec<(&'static str, &'static str)> {
        let mut nav = vec![
            ("/servers", self.t("Servers")),
            ("/namespaces", self.t("Namespaces")),
            ("/endpoints", self.t("Endpoints")),
            ("/keys", self.t("API keys")),
            ("/apps", self.t("Connected apps")),
            ("/inspector", self.t("Inspector")),
            ("/logs", self.t("Live logs")),
        ];
        if self.is_admin {
            nav.push(("/settings", self.t("Settings")));
        }
        nav
    }

    /// `en` in the page's language.
    pub fn t<'a>(&self, en: &'a str) -> &'a str {
        self.lang.t(en)
    }

    /// `en` (with one `{}`) in the page's language, filled with `arg`.
    pub fn tf(&self, en: &str, arg: &str) -> String {
        self.lang.tf(en, arg)
    }

    /// The refused form's value of `field` (empty when none).
    pub fn input(&self, field: &str) -> &str {
        first(&self.input, field)
    }

    /// Whether the refused form had `value` among its `field`s (checkboxes).
    pub fn had(&self, field: &str, value: &str) -> bool {
        self.input
            .get(field)
            .is_some_and(|v| v.iter().any(|x| x == value))
    }

    /// Why the refused form's `field` was refused, if it was.
    pub fn field_error(&self, field: &str) -> Option<&str> {
        self.field_error
            .as_ref()
            .filter(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }

    /// The languages to switch to: (code, name).
    pub fn languages(&self) -> &'static [(&'static str, &'static str)] {
        i18n::LANGUAGES
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
        lang: i18n::Lang::current(),
        user_name: s.user.name.clone(),
        role: s.user.role.as_str(),
        is_admin: s.user.role == metamcp_store::Role::Admin,
        csrf: s.csrf.clone(),
        origin_banner,
        notice: query.and_then(notice_of),
        error: None,
        field_error: None,
        input: BTreeMap::new(),
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
        "revoked-grant" => {
            "Access revoked: its refresh tokens stop now, its access tokens within five minutes."
        }
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

/// The owner a create form asks for: `Some(own email)` when an admin chose "only me";
/// otherwise `None` (public for an admin; a member's objects are always their own).
pub(crate) fn owner_choice(s: &SignedIn, fields: &BTreeMap<String, Vec<String>>) -> Option<String> {
    (first(fields, "visibility") == "private").then(|| s.user.email.clone())
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

/// A refused form: the status and words of the refusal, the field it is about (if one is),
/// and the input to show again.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<&'static str>,
    pub input: BTreeMap<String, Vec<String>>,
}

impl Refusal {
    /// `e`, about the form as a whole.
    pub fn of(e: &AdminError) -> Self {
        Refusal {
            status: status_of(e),
            message: words(e),
            field: None,
            input: BTreeMap::new(),
        }
    }

    /// `e` about the form `fields`, placed next to the first of `candidates` it concerns: a
    /// collision concerns the first (the object's key: its name or email); otherwise the
    /// first candidate the refusal names.
    pub fn at(
        e: &AdminError,
        fields: &BTreeMap<String, Vec<String>>,
        candidates: &[&'static str],
    ) -> Self {
        let message = words(e);
        let lower = message.to_ascii_lowercase();
        let field = match e {
            AdminError::Collision(_) => candidates.first().copied(),
            _ => candidates
                .iter()
                .copied()
                .find(|c| lower.contains(&c.replace('_', " "))),
        };
        Refusal {
            status: status_of(e),
            message,
            field,
            input: fields.clone(),
        }
    }
}

/// What a page shows after reading its data: the data (empty when the read was refused, the
/// refusal's words then in the frame) and the status; the refusal of the form that led here,
/// if any, wins — next to its field when it concerns one, with the input kept.
fn settle<T: Default>(
    chrome: &mut Chrome,
    got: Result<T, AdminError>,
    refused: Option<Refusal>,
) -> (StatusCode, T) {
    let (mut status, data) = match got {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => {
            chrome.error = Some(words(&e));
            (status_of(&e), T::default())
        }
    };
    if let Some(r) = refused {
        status = r.status;
        chrome.input = r.input;
        match r.field {
            Some(f) => {
                chrome.error = Some(chrome.t("Not saved: see the marked field.").to_owned());
                chrome.field_error = Some((f, r.message));
            }
            None => chrome.error = Some(r.message),
        }
    }
    (status, data)
}

/// `s` for a URL path segment.
pub(crate) fn encode_path(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use pages::endpoints::urls_of;

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
