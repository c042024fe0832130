//! The authorization endpoint: `GET /oauth/authorize` checks the request and shows the
//! signed-in user a consent page; `POST /oauth/authorize` (the page's form, with the
//! session's CSRF token, same-site only) answers it with a code or `access_denied`.
//!
//! Order of checks (RFC 6749 §4.1.2.1): while the client or its redirect URI is in doubt the
//! user sees an error page and nothing is redirected anywhere; after that, errors go back to
//! the client's redirect URI with `state` and `iss` (RFC 9207). Every parameter is checked
//! again on the POST (the form's hidden fields are the user's own to tamper with). PKCE is
//! S256 only and required; `resource` (RFC 8707) is required and must be a face URL of an
//! endpoint with OAuth on, which the user may use (public, or theirs). Codes live
//! `OAUTH_CODE_LIFETIME` (a minute by default) and are stored only hashed.
//!
//! The consent page is served without a `form-action` CSP directive: Chrome applies it to
//! the redirect that follows the form, which goes to the client (often another origin).

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::clients::{self, Client, Source};
use super::{SCOPE, endpoint_of_resource, issuer};
use crate::account::SignedIn;
use crate::dashboard::i18n::Lang;
use crate::snapshot::EndpointCfg;
use crate::state::Gateway;

/// Most pending (issued, not yet redeemed) codes held.
pub const MAX_PENDING_CODES: usize = 10_000;

/// The request parameters, as sent.
#[derive(Debug, Clone, Default)]
struct Params(BTreeMap<String, String>);

impl Params {
    fn parse(raw: &[u8]) -> Result<Params, String> {
        let mut map = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(raw) {
            if map.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(format!("the parameter {k:?} is given more than once"));
            }
        }
        Ok(Params(map))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// A request that passed every check.
struct Checked {
    client: Client,
    redirect_uri: String,
    challenge: String,
    state: Option<String>,
    resource: String,
    scope: String,
    ep: Arc<EndpointCfg>,
}

/// Why a request is refused, and how the refusal travels.
enum Refusal {
    /// An error page: the client or its redirect URI cannot be trusted with a redirect.
    Page(StatusCode, String),
    /// An error sent back to the client.
    Redirect(Response),
}

fn page(status: StatusCode, msg: impl Into<String>) -> Refusal {
    Refusal::Page(status, msg.into())
}

/// A 303 to `redirect_uri` with `pairs`, `state` and `iss` added to its query.
fn back_to(
    gw: &Gateway,
    redirect_uri: &str,
    pairs: &[(&str, &str)],
    state: Option<&str>,
) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return crate::account::pages::error(
            StatusCode::BAD_REQUEST,
            "Authorization failed",
            "The redirect URI is not a URL.",
            None,
        );
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", &issuer(gw));
    }
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn check(gw: &Gateway, p: &Params) -> Result<Checked, Refusal> {
    let Some(client_id) = p.get("client_id") else {
        return Err(page(
            StatusCode::BAD_REQUEST,
            "The request names no client (client_id).",
        ));
    };
    let client = clients::resolve(gw, client_id).await.map_err(|e| {
        if let clients::ClientError::Store(e) = &e {
            tracing::error!(error = %e, "reading an OAuth client failed");
        }
        page(StatusCode::BAD_REQUEST, e.to_string())
    })?;
    let Some(redirect_uri) = p.get("redirect_uri") else {
        return Err(page(
            StatusCode::BAD_REQUEST,
            "The request names no redirect_uri.",
        ));
    };
    if !client.allows_redirect(redirect_uri) {
        return Err(page(
            StatusCode::BAD_REQUEST,
            format!("The redirect URI {redirect_uri:?} is not registered for this client."),
        ));
    }
    let state = p.get("state").map(str::to_owned);
    let fail = |code: &str, why: &str| {
        Refusal::Redirect(back_to(
            gw,
            redirect_uri,
            &[("error", code), ("error_description", why)],
            state.as_deref(),
        ))
    };
    if state.as_ref().is_some_and(|s| s.len() > 1024) {
        return Err(fail("invalid_request", "state is longer than 1024 bytes"));
    }
    if p.get("response_type") != Some("code") {
        return Err(fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    let challenge = match (p.get("code_challenge"), p.get("code_challenge_method")) {
        (Some(c), Some("S256"))
            if c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            c.to_owned()
        }
        (Some(_), Some("S256")) => {
            return Err(fail(
                "invalid_request",
                "code_challenge is not a base64url SHA-256",
            ));
        }
        _ => {
            return Err(fail(
                "invalid_request",
                "PKCE is required: code_challenge with code_challenge_method=S256",
            ));
        }
    };
    let Some(resource) = p.get("resource") else {
        return Err(fail(
            "invalid_target",
            "resource is required: the endpoint URL, e.g. <APP_URL>/metamcp/<endpoint>/mcp",
        ));
    };
    let snap = gw.snapshot();
    let ep = endpoint_of_resource(gw, resource)
        .and_then(|name| snap.endpoints.get(name))
        .filter(|e| e.oauth && !e.admin_inspector_only)
        .cloned();
    let Some(ep) = ep else {
        return Err(fail(
            "invalid_target",
            "resource is not an endpoint of this gateway with OAuth on",
        ));
    };
    let scope = match p.get("scope") {
        None => SCOPE.to_owned(),
        Some(s) if s.split(' ').filter(|x| !x.is_empty()).all(|x| x == SCOPE) => SCOPE.to_owned(),
        Some(_) => return Err(fail("invalid_scope", "the only scope is \"mcp\"")),
    };
    Ok(Checked {
        client,
        redirect_uri: redirect_uri.to_owned(),
        challenge,
        state,
        resource: resource.trim_end_matches('/').to_owned(),
        scope,
        ep,
    })
}

/// Whether `user` may use `ep`: the endpoint is public or theirs, and nobody disabled.
fn may_use(ep: &EndpointCfg, s: &SignedIn) -> bool {
    !s.user.disabled && !ep.owner_disabled && ep.owner.as_ref().is_none_or(|o| *o == s.user.id)
}

fn refusal_response(r: Refusal) -> Response {
    match r {
        Refusal::Page(status, msg) => {
            let lang = Lang::current();
            crate::account::pages::error(status, lang.t("Authorization failed"), &msg, None)
        }
        Refusal::Redirect(resp) => resp,
    }
}

/// The consent page.
#[derive(Template)]
#[template(path = "oauth_consent.html")]
struct Consent<'a> {
    lang: Lang,
    client_name: &'a str,
    client_id: &'a str,
    metadata_document: bool,
    redirect_host: String,
    loopback: bool,
    endpoint: &'a str,
    email: &'a str,
    fields: Vec<(&'a str, &'a str)>,
}

/// `GET /oauth/authorize`.
pub async fn authorize_page(
    State(gw): State<Arc<Gateway>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let p = match Params::parse(query.as_bytes()) {
        Ok(p) => p,
        Err(e) => return refusal_response(page(StatusCode::BAD_REQUEST, e)),
    };
    let c = match check(&gw, &p).await {
        Ok(c) => c,
        Err(r) => return refusal_response(r),
    };
    let session = match gw.accounts.signed_in(&gw.rt.store, &headers).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "reading the browser session failed");
            return refusal_response(page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The store failed; try again.",
            ));
        }
    };
    let Some(s) = session else {
        let back = format!("/oauth/authorize?{query}");
        let to: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("return_to", &back)
            .finish();
        let mut resp = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("/login?{to}")) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        return resp;
    };
    if !may_use(&c.ep, &s) {
        return back_to(
            &gw,
            &c.redirect_uri,
            &[
                ("error", "access_denied"),
                (
                    "error_description",
                    "this endpoint is not yours to authorize",
                ),
            ],
            c.state.as_deref(),
        );
    }
    let redirect = url::Url::parse(&c.redirect_uri).ok();
    let redirect_host = redirect
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| {
            redirect
                .as_ref()
                .map(|u| format!("{}:", u.scheme()))
                .unwrap_or_default()
        });
    let loopback = redirect.as_ref().is_some_and(|u| {
        u.scheme() == "http"
            && u.host_str()
                .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]")
    });
    let mut fields: Vec<(&str, &str)> =
        p.0.iter()
            .filter(|(k, _)| {
                [
                    "response_type",
                    "client_id",
                    "redirect_uri",
                    "code_challenge",
                    "code_challenge_method",
                    "state",
                    "resource",
                    "scope",
                ]
                .contains(&k.as_str())
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
    fields.push(("csrf", s.csrf.as_str()));
    let name = c
        .client
        .name
        .clone()
        .unwrap_or_else(|| c.client.client_id.clone());
    let consent = Consent {
        lang: Lang::current(),
        client_name: &name,
        client_id: &c.client.client_id,
        metadata_document: c.client.source == Source::MetadataDocument,
        redirect_host,
        loopback,
        endpoint: &c.ep.name,
        email: &s.user.email,
        fields,
    };
    crate::account::pages::consent_html(StatusCode::OK, &consent)
}

/// Records the user's answer to the consent page (`refused`: its error class).
async fn audit_consent(
    gw: &Gateway,
    s: &SignedIn,
    c: &Checked,
    ip: Option<std::net::IpAddr>,
    refused: Option<&'static str>,
) {
    super::audit(
        gw,
        super::Event {
            kind: "oauth_consent",
            email: Some(&s.user.email),
            user_id: Some(&s.user.id),
            endpoint: Some(&c.ep.name),
            client_id: &c.client.client_id,
            refused,
            client: ip,
        },
    )
    .await;
}

/// `POST /oauth/authorize`: the consent form's answer.
pub async fn decide(
    State(gw): State<Arc<Gateway>>,
    crate::ratelimit::PeerAddr(peer): crate::ratelimit::PeerAddr,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let ip = gw.limiter.client_ip(peer, &headers);
    if let Err(e) = crate::account::browser::check_same_site(&headers, &gw.allowed_origins) {
        return e.into_response();
    }
    let p = match Params::parse(&body) {
        Ok(p) => p,
        Err(e) => return refusal_response(page(StatusCode::BAD_REQUEST, e)),
    };
    let s = match gw.accounts.signed_in(&gw.rt.store, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return refusal_response(page(
                StatusCode::UNAUTHORIZED,
                "You are not signed in any more; start again from the client.",
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the browser session failed");
            return refusal_response(page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The store failed; try again.",
            ));
        }
    };
    if !gw.accounts.csrf_ok(&s, p.get("csrf")) {
        return refusal_response(page(
            StatusCode::FORBIDDEN,
            "The form is stale or was not sent by this page; start again from the client.",
        ));
    }
    let c = match check(&gw, &p).await {
        Ok(c) => c,
        Err(r) => return refusal_response(r),
    };
    if p.get("decision") != Some("approve") || !may_use(&c.ep, &s) {
        audit_consent(&gw, &s, &c, ip, Some("access_denied")).await;
        return back_to(
            &gw,
            &c.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "the user did not allow access"),
            ],
            c.state.as_deref(),
        );
    }
    let code = super::random_token();
    let now = crate::audit::now_ms();
    let rec = metamcp_store::OAuthCode {
        code_hash: super::hash(&code),
        client_id: c.client.client_id.clone(),
        client_name: c.client.name.clone(),
        user_id: s.user.id.clone(),
        endpoint_id: c.ep.id.clone(),
        resource: c.resource.clone(),
        redirect_uri: c.redirect_uri.clone(),
        code_challenge: c.challenge.clone(),
        scope: c.scope.clone(),
        created_at: now,
        expires_at: now.saturating_add(gw.config.oauth().code_ms),
    };
    if let Err(e) = gw.rt.store.insert_oauth_code(&rec, MAX_PENDING_CODES).await {
        tracing::error!(error = %e, "storing an authorization code failed");
        return back_to(
            &gw,
            &c.redirect_uri,
            &[
                ("error", "server_error"),
                ("error_description", "the code could not be stored"),
            ],
            c.state.as_deref(),
        );
    }
    if c.client.source == Source::Registered
        && let Err(e) = gw
            .rt
            .store
            .touch_oauth_client(&c.client.client_id, now)
            .await
    {
        tracing::debug!(error = %e, "could not stamp the client's last use");
    }
    tracing::info!(
        client_id = %c.client.client_id,
        endpoint = %c.ep.name,
        user = %s.user.email,
        "OAuth access allowed"
    );
    audit_consent(&gw, &s, &c, ip, None).await;
    back_to(&gw, &c.redirect_uri, &[("code", &code)], c.state.as_deref())
}
