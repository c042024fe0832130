//! Single sign-on routes (MetaMCP's paths): `POST /api/auth/sign-in/oauth2` starts it,
//! `GET /api/auth/oauth2/callback/<provider>` finishes it, and a person ends up signed in —
//! to the account linked to that identity, to an existing account with the same *verified*
//! email (which gets linked), or to a new member account (unless `DISABLE_SSO_SIGNUP`).
//!
//! Every failure ends on an error page that says what happened and which variable to fix —
//! never on a redirect (a redirect back to the sign-in page is how SSO loops start). The
//! checks before leaving for the provider catch the classic misconfiguration: a browser on
//! another origin than `APP_URL`, whose binding cookie the callback (at `APP_URL`) would
//! never see.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use metamcp_store::{NewUser, Role, StoreError, UserRecord, WebSetup};
use serde_json::json;

use super::oidc::{BROWSER_COOKIE, Oidc, VerifiedIdentity};
use super::routes::Fields;
use super::{browser, pages};
use crate::ratelimit::PeerAddr;
use crate::state::Gateway;

type Gw = State<Arc<Gateway>>;

const TITLE: &str = "Single sign-on failed";

fn page(status: StatusCode, message: &str, variable: Option<&str>) -> Response {
    pages::error(status, TITLE, message, variable)
}

/// The origin (`scheme://host[:port]`) the browser used, from `Host` (the gateway is not
/// told the scheme; APP_URL's is assumed).
pub(crate) fn browser_origin(app_url: &url::Url, headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    Some(format!(
        "{}://{}",
        app_url.scheme(),
        host.to_ascii_lowercase()
    ))
}

/// Whether the browser is on APP_URL's origin (the callback's). Compared through `url`, so
/// default ports match (`http://h` and `http://h:80`).
pub(crate) fn on_app_origin(app_url: &url::Url, headers: &HeaderMap) -> bool {
    let Some(o) = browser_origin(app_url, headers) else {
        return true;
    };
    url::Url::parse(&o).is_ok_and(|u| u.origin() == app_url.origin())
}

pub(super) async fn start(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
    let fields = match Fields::parse(&headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = browser::check_same_site(&headers, &gw.allowed_origins) {
        return e.into_response();
    }
    let Some(oidc) = &gw.accounts.oidc else {
        return page(
            StatusCode::NOT_FOUND,
            "Single sign-on is not configured on this metamcp.",
            Some("OIDC_CLIENT_ID, OIDC_CLIENT_SECRET and OIDC_DISCOVERY_URL"),
        );
    };
    let wanted = fields
        .get("providerId")
        .unwrap_or(oidc.settings().provider_id());
    if wanted != oidc.settings().provider_id() {
        return page(
            StatusCode::BAD_REQUEST,
            &format!(
                "The sign-in asked for provider {wanted:?}, but this metamcp's provider is {:?}.",
                oidc.settings().provider_id()
            ),
            Some("OIDC_PROVIDER_ID"),
        );
    }
    let app_url = &gw.opts.app_url;
    if !on_app_origin(app_url, &headers) {
        let seen = browser_origin(app_url, &headers).unwrap_or_default();
        return page(
            StatusCode::BAD_REQUEST,
            &format!(
                "This page was opened at {seen}, but APP_URL is {}. The identity provider \
                 sends the browser back to APP_URL, where this sign-in could not be \
                 recognised. Open metamcp at {} or set APP_URL to the address people use.",
                app_url.origin().ascii_serialization(),
                app_url.origin().ascii_serialization()
            ),
            Some("APP_URL"),
        );
    }
    let return_to = fields.get("return_to").or(fields.get("callbackURL"));
    match oidc.begin(&gw.rt.store, return_to).await {
        Ok(b) => {
            let mut resp = if fields.form {
                Redirect::to(b.redirect.as_str()).into_response()
            } else {
                axum::Json(json!({ "url": b.redirect.as_str(), "redirect": true })).into_response()
            };
            if let Ok(v) = HeaderValue::from_str(&oidc.browser_cookie_header(&b.browser_cookie)) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on could not start");
            page(e.status(), &e.to_string(), e.variable())
        }
    }
}

pub(super) async fn callback(
    State(gw): Gw,
    PeerAddr(peer): PeerAddr,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(oidc) = &gw.accounts.oidc else {
        return page(
            StatusCode::NOT_FOUND,
            "Single sign-on is not configured on this metamcp.",
            Some("OIDC_CLIENT_ID, OIDC_CLIENT_SECRET and OIDC_DISCOVERY_URL"),
        );
    };
    let mut resp = finish(
        &gw,
        oidc,
        peer,
        &provider,
        query.as_deref().unwrap_or(""),
        &headers,
    )
    .await;
    if let Ok(v) = HeaderValue::from_str(&oidc.clear_browser_cookie_header()) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

async fn finish(
    gw: &Gateway,
    oidc: &Oidc,
    peer: Option<std::net::SocketAddr>,
    provider: &str,
    query: &str,
    headers: &HeaderMap,
) -> Response {
    let cookie = browser::cookie_value(headers, BROWSER_COOKIE);
    let done = match oidc
        .finish(&gw.rt.store, provider, query, cookie.as_deref())
        .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on failed");
            let ip = gw.limiter.client_ip(peer, headers);
            super::routes::record_account(gw, "auth_failed", "", None, ip, Some("sso_failed"))
                .await;
            return page(e.status(), &e.to_string(), e.variable());
        }
    };
    let ip = gw.limiter.client_ip(peer, headers);
    let user = match account_for(gw, &done.identity, super::is_local_request(peer, headers)).await {
        Ok(u) => u,
        Err(r) => {
            let email = done.identity.email.clone().unwrap_or_default();
            super::routes::record_account(gw, "auth_failed", &email, None, ip, Some("sso_refused"))
                .await;
            return r;
        }
    };
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    match gw.accounts.start_session(&gw.rt.store, &user, ip, ua).await {
        Ok((token, _)) => {
            tracing::info!(email = %user.email, issuer = %done.identity.issuer, "signed in through single sign-on");
            super::routes::record_account(gw, "sign_in", &user.email, Some(&user.id), ip, None)
                .await;
            let to = done.return_to.unwrap_or_else(|| "/account".to_owned());
            let mut resp = Redirect::to(&to).into_response();
            resp.headers_mut().append(
                header::SET_COOKIE,
                gw.accounts
                    .cookie
                    .set(&token, gw.accounts.opts.session_absolute.as_secs()),
            );
            resp
        }
        Err(e) => internal(&e),
    }
}

fn internal(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "single sign-on: store operation failed");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal error; see the gateway's log.",
        None,
    )
}

/// The account this identity signs in to: the linked one, else the one with the same
/// verified email (linked now), else a new one.
async fn account_for(
    gw: &Gateway,
    id: &VerifiedIdentity,
    local: bool,
) -> Result<UserRecord, Response> {
    let store = &gw.rt.store;
    let disabled = || {
        page(
            StatusCode::FORBIDDEN,
            "This account is disabled; ask an admin.",
            None,
        )
    };
    if let Some(u) = store
        .user_by_identity(&id.issuer, &id.subject)
        .await
        .map_err(|e| internal(&e))?
    {
        return if u.disabled { Err(disabled()) } else { Ok(u) };
    }
    let email = match id.email.as_deref().map(super::normalize_email) {
        Some(Ok(e)) => e,
        Some(Err(why)) => {
            return Err(page(
                StatusCode::FORBIDDEN,
                &format!("The identity provider sent an email metamcp cannot use ({why})."),
                None,
            ));
        }
        None => {
            return Err(page(
                StatusCode::FORBIDDEN,
                "The identity provider did not say who you are by email; metamcp needs the \
                 `email` scope to make or find your account.",
                Some("OIDC_SCOPES"),
            ));
        }
    };
    if let Some(existing) = store
        .user_credentials(&email)
        .await
        .map_err(|e| internal(&e))?
    {
        if !id.email_verified {
            return Err(page(
                StatusCode::FORBIDDEN,
                "An account with this email exists, but the identity provider does not say the \
                 email is verified, and metamcp links accounts by verified email only. Sign \
                 in with your password, or ask the provider's admin to verify the email.",
                None,
            ));
        }
        if existing.user.disabled {
            return Err(disabled());
        }
        let (uid, iss, sub) = (
            existing.user.id.clone(),
            id.issuer.clone(),
            id.subject.clone(),
        );
        store
            .write(async |tx| tx.link_identity(&uid, &iss, &sub, Some(&email)).await)
            .await
            .map_err(|e| internal(&e))?;
        tracing::info!(email = %email, issuer = %id.issuer, "linked a single sign-on identity by verified email");
        return Ok(existing.user);
    }
    if gw.accounts.policy(gw.config.signup()).disable_sso_signup {
        return Err(page(
            StatusCode::FORBIDDEN,
            "There is no metamcp account for this identity, and new accounts through single \
             sign-on are turned off. Ask an admin to create your account.",
            Some("DISABLE_SSO_SIGNUP"),
        ));
    }
    if !id.email_verified {
        return Err(page(
            StatusCode::FORBIDDEN,
            "The identity provider does not say your email is verified; metamcp makes \
             accounts for verified emails only.",
            None,
        ));
    }
    let name = super::normalize_name(
        id.name.as_deref(),
        email.split('@').next().unwrap_or("user"),
    )
    .unwrap_or_else(|_| email.clone());
    let (iss, sub) = (id.issuer.clone(), id.subject.clone());
    let made = store
        .write(async |tx| {
            // The first account of a fresh instance becomes admin only from this machine.
            let first =
                tx.web_setup().await? == WebSetup::Open && tx.count_active_admins().await? == 0;
            let role = if first && local {
                Role::Admin
            } else {
                Role::Member
            };
            let u = tx
                .create_user(&NewUser {
                    email: &email,
                    name: &name,
                    password_hash: None,
                    role,
                })
                .await?;
            tx.link_identity(&u.id, &iss, &sub, Some(&email)).await?;
            Ok::<_, StoreError>(u)
        })
        .await;
    match made {
        Ok(u) => {
            tracing::info!(email = %u.email, role = %u.role, "account created through single sign-on");
            Ok(u)
        }
        Err(StoreError::Duplicate { .. }) => Err(page(
            StatusCode::CONFLICT,
            "An account with this email was created at the same moment; sign in again.",
            None,
        )),
        Err(e) => Err(internal(&e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn origin_check_follows_app_url() {
        let app = url::Url::parse("http://localhost:12008").unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("localhost:12008"));
        assert!(on_app_origin(&app, &h));
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:12008"));
        assert!(!on_app_origin(&app, &h));
        let app = url::Url::parse("https://mcp.example.com").unwrap();
        h.insert(
            header::HOST,
            HeaderValue::from_static("mcp.example.com:443"),
        );
        assert!(on_app_origin(&app, &h));
    }
}
