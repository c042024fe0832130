//! `/api/auth/…` (MetaMCP's paths) and the sign-in pages.
//!
//! - `POST /api/auth/sign-up/email` `{email, password, name?, setupToken?}` — creates the
//!   account and signs it in. The first account of a fresh instance becomes admin when made
//!   from the gateway's own machine or with the setup token `serve` printed; anywhere else it
//!   is refused (so nobody on the network can race the operator to it). Later accounts are
//!   members. `DISABLE_SIGNUP` / `DISABLE_BASIC_AUTH` refuse it.
//! - `POST /api/auth/sign-in/email` `{email, password}` — throttled per account and client;
//!   the refusal never says whether the email exists. `DISABLE_BASIC_AUTH` refuses it.
//! - `POST /api/auth/sign-out`, `POST /api/auth/change-password`
//!   `{currentPassword, newPassword}` — cookie + CSRF token; a password change ends every
//!   session of the user and signs this browser in again.
//! - `GET /api/auth/get-session` — `{user, session, csrfToken}`, or `null`.
//! - `GET /login`, `/register`, `/account` — server-rendered pages whose forms post here.
//!
//! Bodies are JSON (answered with JSON) or a form (answered with a redirect or the page
//! again with the error). Every POST is refused when another site sent it
//! ([`browser::check_same_site`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use metamcp_store::{NewUser, Role, StoreError, UserRecord, WebSetup};
use serde_json::{Value, json};

use super::throttle::Subject;
use super::{SignedIn, browser, normalize_email, normalize_name, pages, password};
use crate::error::HttpError;
use crate::ratelimit::PeerAddr;
use crate::state::Gateway;

type Gw = State<Arc<Gateway>>;

/// The account routes (public listener).
pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/api/auth/sign-up/email", post(sign_up))
        .route("/api/auth/sign-in/email", post(sign_in))
        .route("/api/auth/sign-out", post(sign_out))
        .route("/api/auth/change-password", post(change_password))
        .route("/api/auth/get-session", get(get_session))
        .route("/api/auth/sign-in/oauth2", post(super::sso::start))
        .route(
            "/api/auth/oauth2/callback/{provider}",
            get(super::sso::callback),
        )
        .route("/login", get(login_page))
        .route("/register", get(register_page))
        .route("/account", get(account_page))
}

/// A request body's fields, and whether it came from a form.
pub(super) struct Fields {
    map: BTreeMap<String, String>,
    pub(super) form: bool,
}

impl Fields {
    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }

    pub(super) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Fields, HttpError> {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime_type::Essence>().ok());
        match ct {
            Some(mime_type::Essence::Form) => Ok(Fields {
                map: url::form_urlencoded::parse(body).into_owned().collect(),
                form: true,
            }),
            Some(mime_type::Essence::Json) => {
                let v: Value = serde_json::from_slice(body).map_err(|e| {
                    HttpError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_json",
                        format!("invalid JSON: {e}"),
                    )
                })?;
                let Value::Object(obj) = v else {
                    return Err(HttpError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "the body must be a JSON object",
                    ));
                };
                let mut map = BTreeMap::new();
                for (k, v) in obj {
                    match v {
                        Value::String(s) => {
                            map.insert(k, s);
                        }
                        Value::Null => {}
                        Value::Bool(b) => {
                            map.insert(k, b.to_string());
                        }
                        _ => {
                            return Err(HttpError::new(
                                StatusCode::BAD_REQUEST,
                                "invalid_request",
                                format!("{k:?} must be a string"),
                            ));
                        }
                    }
                }
                Ok(Fields { map, form: false })
            }
            None => Err(HttpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json or application/x-www-form-urlencoded",
            )),
        }
    }
}

/// The two body types accepted.
mod mime_type {
    pub enum Essence {
        Json,
        Form,
    }
    impl std::str::FromStr for Essence {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let essence = s
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match essence.as_str() {
                "application/json" => Ok(Essence::Json),
                "application/x-www-form-urlencoded" => Ok(Essence::Form),
                _ => Err(()),
            }
        }
    }
}

fn internal(e: &dyn std::fmt::Display) -> HttpError {
    tracing::error!(error = %e, "account operation failed");
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error; see the gateway's log",
    )
}

fn store_err(e: StoreError) -> HttpError {
    internal(&e)
}

fn hash_err(e: password::PasswordError) -> HttpError {
    match e {
        password::PasswordError::Busy => {
            HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
                .with_retry_after(1)
        }
        password::PasswordError::Internal(_) => internal(&e),
    }
}

fn invalid(msg: impl Into<String>) -> HttpError {
    HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", msg)
}

fn user_json(u: &UserRecord) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "role": u.role,
        "createdAt": u.created_at,
        "lastLoginAt": u.last_login_at,
    })
}

fn session_json(s: &SignedIn) -> Value {
    json!({
        "user": user_json(&s.user),
        "session": { "expiresAt": s.expires_at },
        "csrfToken": s.csrf,
    })
}

/// A same-site relative path to go to after a form sign-in, else `/account`.
fn safe_return(to: Option<&str>) -> String {
    match to {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => "/account".to_owned(),
    }
}

/// The answer to a successful sign-in or sign-up: the cookie, and JSON or a redirect.
fn signed_in_response(gw: &Gateway, fields: &Fields, token: &str, s: &SignedIn) -> Response {
    let max_age = gw.accounts.opts.session_absolute.as_secs();
    let cookie = gw.accounts.cookie.set(token, max_age);
    let mut resp = if fields.form {
        Redirect::to(&safe_return(fields.get("return_to"))).into_response()
    } else {
        axum::Json(session_json(s)).into_response()
    };
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A refusal: JSON, or for a form the page it came from with the message.
fn refuse(gw: &Gateway, fields: Option<&Fields>, page: Page, e: HttpError) -> Response {
    if fields.is_some_and(|f| f.form) {
        let msg = e.message.clone();
        let mut resp = match page {
            Page::Login => render_login(gw, Some(&msg), "/account"),
            Page::Register => pages::html(
                e.status,
                &pages::Register {
                    lang: crate::dashboard::i18n::Lang::current(),
                    error: Some(&msg),
                    first_admin: false,
                    needs_setup_token: false,
                },
            ),
            Page::Error => pages::error(e.status, "Request refused", &msg, None),
        };
        *resp.status_mut() = e.status;
        if let Some(s) = e.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    } else {
        e.into_response()
    }
}

#[derive(Clone, Copy)]
enum Page {
    Login,
    Register,
    Error,
}

async fn sign_up(
    State(gw): Gw,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match Fields::parse(&headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    match sign_up_inner(&gw, peer, &headers, &fields).await {
        Ok((token, s)) => signed_in_response(&gw, &fields, &token, &s),
        Err(e) => refuse(&gw, Some(&fields), Page::Register, e),
    }
}

async fn sign_up_inner(
    gw: &Gateway,
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
    fields: &Fields,
) -> Result<(String, SignedIn), HttpError> {
    browser::check_same_site(headers, &gw.allowed_origins)?;
    let policy = gw.accounts.policy(gw.config.signup());
    if policy.disable_basic_auth {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "password_auth_disabled",
            "password sign-up is turned off (DISABLE_BASIC_AUTH); use single sign-on",
        ));
    }
    if policy.disable_signup {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "signup_disabled",
            "sign-up is turned off (DISABLE_SIGNUP); an admin can create your account \
             (`metamcp user create`)",
        ));
    }
    let ip = gw.limiter.client_ip(peer, headers);
    let client = ip.map(Subject::Client);
    if let Some(c) = &client {
        if let Err(wait) = gw.accounts.throttle.check(std::slice::from_ref(c)) {
            return Err(too_many(wait));
        }
        // why: every sign-up counts against its client, so one address cannot mass-create
        // accounts (each one is a configuration change every replica reloads).
        gw.accounts.throttle.failed(std::slice::from_ref(c));
    }
    let email = normalize_email(fields.get("email").unwrap_or("")).map_err(invalid)?;
    let name = normalize_name(
        fields.get("name"),
        email.split('@').next().unwrap_or("user"),
    )
    .map_err(invalid)?;
    let pw = fields.get("password").unwrap_or("");
    password::check_new(pw).map_err(invalid)?;
    let hash = gw.accounts.hasher.hash(pw).await.map_err(hash_err)?;
    let local = super::is_local_request(peer, headers);
    let setup_token = fields.get("setupToken").filter(|t| !t.is_empty());
    let user = crate::admin::run(&gw.rt.store, &crate::admin::Actor::SignUp, async |cx| {
        let tx = &mut *cx.tx;
        let first_admin =
            tx.web_setup().await? == WebSetup::Open && tx.count_active_admins().await? == 0;
        let role = if first_admin {
            let token_ok = match setup_token {
                Some(t) => tx.setup_token_matches(t).await?,
                None => false,
            };
            if !local && !token_ok {
                return Err(crate::admin::AdminError::Forbidden(
                    "the first account of a new metamcp becomes its admin: create it from the \
                     gateway's own machine (http://localhost…), give the setup token that \
                     `metamcp serve` printed, or run `metamcp user create EMAIL --admin`"
                        .into(),
                ));
            }
            Role::Admin
        } else {
            Role::Member
        };
        Ok(tx
            .create_user(&NewUser {
                email: &email,
                name: &name,
                password_hash: Some(&hash),
                role,
            })
            .await?)
    })
    .await
    .map_err(|e| match e {
        crate::admin::AdminError::Store(StoreError::Duplicate { .. }) => HttpError::new(
            StatusCode::CONFLICT,
            "conflict",
            "an account with this email cannot be created; sign in instead",
        ),
        crate::admin::AdminError::Forbidden(m) => {
            HttpError::new(StatusCode::FORBIDDEN, "forbidden", m)
        }
        other => internal(&other),
    })?;
    tracing::info!(email = %user.email, role = %user.role, "account created");
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    gw.accounts
        .start_session(&gw.rt.store, &user, ip, ua)
        .await
        .map_err(store_err)
}

fn too_many(wait: std::time::Duration) -> HttpError {
    let secs = wait.as_secs().max(1);
    HttpError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many attempts; try again in {secs} s"),
    )
    .with_retry_after(secs)
}

async fn sign_in(
    State(gw): Gw,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match Fields::parse(&headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let result = sign_in_inner(&gw, peer, &headers, &fields).await;
    let client = gw.limiter.client_ip(peer, &headers);
    match result {
        Ok((token, s)) => {
            record_account(
                &gw,
                "sign_in",
                &s.user.email,
                Some(&s.user.id),
                client,
                None,
            )
            .await;
            signed_in_response(&gw, &fields, &token, &s)
        }
        Err(e) => {
            let email = fields.get("email").unwrap_or("").trim().to_lowercase();
            // why: only an address of sane length is recorded (it is the client's input).
            let email = if email.len() <= super::MAX_EMAIL_LEN {
                email
            } else {
                String::new()
            };
            record_account(&gw, "auth_failed", &email, None, client, Some(e.kind)).await;
            refuse(&gw, Some(&fields), Page::Login, e)
        }
    }
}

/// Records a sign-in, sign-out or failed sign-in in the audit log (`refused`: its class).
pub(crate) async fn record_account(
    gw: &Gateway,
    kind: &'static str,
    email: &str,
    user_id: Option<&str>,
    client: Option<std::net::IpAddr>,
    refused: Option<&str>,
) {
    let verdict = match refused {
        None => crate::audit::Verdict::OK,
        Some(class) => crate::audit::Verdict::new(crate::audit::Outcome::Denied, class),
    };
    let who = crate::audit::Who::named(
        "web",
        None,
        (!email.is_empty()).then_some(email),
        user_id,
        client,
    );
    let record = crate::audit::refusal(&who, kind, None, verdict);
    gw.rt.audit.record(record).await;
}

async fn sign_in_inner(
    gw: &Gateway,
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
    fields: &Fields,
) -> Result<(String, SignedIn), HttpError> {
    browser::check_same_site(headers, &gw.allowed_origins)?;
    if gw.accounts.policy(gw.config.signup()).disable_basic_auth {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "password_auth_disabled",
            "password sign-in is turned off (DISABLE_BASIC_AUTH); use single sign-on, or ask \
             an admin (`metamcp user set-password` still works for recovery)",
        ));
    }
    let wrong = || {
        HttpError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "invalid email or password",
        )
    };
    let raw_email = fields.get("email").unwrap_or("");
    let pw = fields.get("password").unwrap_or("");
    if raw_email.len() > super::MAX_EMAIL_LEN || pw.chars().count() > password::MAX_LEN {
        return Err(wrong());
    }
    let email = normalize_email(raw_email).unwrap_or_else(|_| raw_email.to_lowercase());
    let ip = gw.limiter.client_ip(peer, headers);
    let mut subjects = vec![Subject::Account(email.clone())];
    subjects.extend(ip.map(Subject::Client));
    gw.accounts.throttle.check(&subjects).map_err(too_many)?;
    let creds = gw
        .rt
        .store
        .user_credentials(&email)
        .await
        .map_err(store_err)?;
    let stored = creds.as_ref().and_then(|c| c.password_hash.as_deref());
    let ok = gw
        .accounts
        .hasher
        .verify(pw, stored)
        .await
        .map_err(hash_err)?;
    let Some(creds) = creds.filter(|_| ok) else {
        gw.accounts.throttle.failed(&subjects);
        return Err(wrong());
    };
    if creds.user.disabled {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "account_disabled",
            "this account is disabled; ask an admin",
        ));
    }
    gw.accounts.throttle.succeeded(&subjects[0]);
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    gw.accounts
        .start_session(&gw.rt.store, &creds.user, ip, ua)
        .await
        .map_err(store_err)
}

/// The signed-in session of a state-changing request, with its CSRF token checked.
pub(crate) async fn require_csrf_session(
    gw: &Gateway,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<Option<SignedIn>, HttpError> {
    let Some(s) = gw
        .accounts
        .signed_in(&gw.rt.store, headers)
        .await
        .map_err(store_err)?
    else {
        return Ok(None);
    };
    browser::check_same_site(headers, &gw.allowed_origins)?;
    let presented = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .or(form_token);
    if !gw.accounts.csrf_ok(&s, presented) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "csrf_token_invalid",
            "missing or wrong CSRF token: send this session's token (from \
             /api/auth/get-session) as X-CSRF-Token",
        ));
    }
    Ok(Some(s))
}

async fn sign_out(
    State(gw): Gw,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = Fields::parse(&headers, &body).unwrap_or(Fields {
        map: BTreeMap::new(),
        form: false,
    });
    let session = match require_csrf_session(&gw, &headers, fields.get("csrf_token")).await {
        Ok(s) => s,
        Err(e) => return refuse(&gw, Some(&fields), Page::Error, e),
    };
    if let Some(s) = &session {
        if let Err(e) = gw.rt.store.end_browser_session(&s.id_hash).await {
            return store_err(e).into_response();
        }
        let client = gw.limiter.client_ip(peer, &headers);
        record_account(
            &gw,
            "sign_out",
            &s.user.email,
            Some(&s.user.id),
            client,
            None,
        )
        .await;
    }
    let mut resp = if fields.form {
        Redirect::to("/login").into_response()
    } else {
        axum::Json(json!({ "success": true })).into_response()
    };
    resp.headers_mut()
        .append(header::SET_COOKIE, gw.accounts.cookie.clear());
    resp
}

async fn change_password(
    State(gw): Gw,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match Fields::parse(&headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let result = async {
        let Some(s) = require_csrf_session(&gw, &headers, fields.get("csrf_token")).await? else {
            return Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "sign in first",
            ));
        };
        let current = fields.get("currentPassword").unwrap_or("");
        let new = fields.get("newPassword").unwrap_or("");
        password::check_new(new).map_err(invalid)?;
        let account = Subject::Account(s.user.email.clone());
        gw.accounts
            .throttle
            .check(std::slice::from_ref(&account))
            .map_err(too_many)?;
        let creds = gw
            .rt
            .store
            .user_credentials(&s.user.email)
            .await
            .map_err(store_err)?;
        let stored = creds.as_ref().and_then(|c| c.password_hash.as_deref());
        if stored.is_some()
            && !gw
                .accounts
                .hasher
                .verify(current, stored)
                .await
                .map_err(hash_err)?
        {
            gw.accounts.throttle.failed(std::slice::from_ref(&account));
            return Err(HttpError::new(
                StatusCode::FORBIDDEN,
                "invalid_credentials",
                "the current password is wrong",
            ));
        }
        let hash = gw.accounts.hasher.hash(new).await.map_err(hash_err)?;
        let user_id = s.user.id.clone();
        gw.rt
            .store
            .write(async |tx| tx.set_user_password(&user_id, &hash).await)
            .await
            .map_err(store_err)?;
        let ip = gw.limiter.client_ip(peer, &headers);
        let ua = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        gw.accounts
            .start_session(&gw.rt.store, &s.user, ip, ua)
            .await
            .map_err(store_err)
    }
    .await;
    match result {
        Ok((token, s)) => signed_in_response(&gw, &fields, &token, &s),
        Err(e) => refuse(&gw, Some(&fields), Page::Error, e),
    }
}

async fn get_session(State(gw): Gw, headers: HeaderMap) -> Response {
    match gw.accounts.signed_in(&gw.rt.store, &headers).await {
        Ok(Some(s)) => {
            let mut resp = axum::Json(session_json(&s)).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Ok(None) => axum::Json(Value::Null).into_response(),
        Err(e) => store_err(e).into_response(),
    }
}

fn render_login(gw: &Gateway, error: Option<&str>, return_to: &str) -> Response {
    let policy = gw.accounts.policy(gw.config.signup());
    pages::sign_in_html(
        StatusCode::OK,
        &pages::Login {
            lang: crate::dashboard::i18n::Lang::current(),
            error,
            password_enabled: !policy.disable_basic_auth,
            signup_enabled: !policy.disable_basic_auth && !policy.disable_signup,
            sso_provider: gw
                .accounts
                .oidc
                .as_ref()
                .map(|o| o.settings().provider_id()),
            return_to,
        },
    )
}

async fn login_page(State(gw): Gw, RawQuery(q): RawQuery) -> Response {
    let return_to = q.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "return_to")
            .map(|(_, v)| v.into_owned())
    });
    render_login(&gw, None, &safe_return(return_to.as_deref()))
}

async fn register_page(State(gw): Gw, PeerAddr(peer): PeerAddr, headers: HeaderMap) -> Response {
    let policy = gw.accounts.policy(gw.config.signup());
    if policy.disable_signup || policy.disable_basic_auth {
        let var = if policy.disable_basic_auth {
            "DISABLE_BASIC_AUTH"
        } else {
            "DISABLE_SIGNUP"
        };
        return pages::error(
            StatusCode::FORBIDDEN,
            "Sign-up is turned off",
            "This metamcp does not accept new accounts through this form.",
            Some(var),
        );
    }
    let first_admin = gw
        .rt
        .store
        .read(async |tx| {
            Ok::<_, StoreError>(
                tx.web_setup().await? == WebSetup::Open && tx.count_active_admins().await? == 0,
            )
        })
        .await
        .unwrap_or(false);
    pages::html(
        StatusCode::OK,
        &pages::Register {
            lang: crate::dashboard::i18n::Lang::current(),
            error: None,
            first_admin,
            needs_setup_token: first_admin && !super::is_local_request(peer, &headers),
        },
    )
}

async fn account_page(State(gw): Gw, headers: HeaderMap) -> Response {
    match gw.accounts.signed_in(&gw.rt.store, &headers).await {
        Ok(Some(s)) => pages::html(
            StatusCode::OK,
            &pages::Account {
                chrome: crate::dashboard::chrome(&gw, &s, &headers, "/account", None),
                email: &s.user.email,
                has_password: s.user.has_password,
            },
        ),
        Ok(None) => Redirect::to("/login").into_response(),
        Err(e) => store_err(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_this_site() {
        assert_eq!(safe_return(Some("/metamcp/x")), "/metamcp/x");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "evil",
            "",
        ] {
            assert_eq!(safe_return(Some(bad)), "/account", "{bad:?}");
        }
        assert_eq!(safe_return(None), "/account");
    }
}
