//! Settings and users (admins only).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use crate::dashboard::*;

// ---- settings and users (admin) ----

#[derive(Template)]
#[template(path = "dash/settings.html")]
pub(crate) struct SettingsPage {
    chrome: Chrome,
    settings: Vec<crate::admin::settings::SettingView>,
    users: Vec<metamcp_store::UserRecord>,
}

pub(crate) async fn settings_view(
    gw: &Gateway,
    s: &SignedIn,
    headers: &HeaderMap,
    query: Option<&str>,
    error: Option<Refusal>,
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

pub(crate) async fn settings_page(
    State(gw): Gw,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let s = match signed_in(&gw, &headers, "/settings").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    settings_view(&gw, &s, &headers, q.as_deref(), None).await
}

pub(crate) async fn set_setting(
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
        Err(e) => settings_view(&gw, &s, &headers, None, Some(Refusal::of(&e))).await,
    }
}

/// Hashes a new password from a form, when one is given (before any transaction).
pub(crate) async fn hash_from_form(
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

pub(crate) async fn create_user(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let hash = match hash_from_form(&gw, &s, first(&fields, "password")).await {
        Ok(h) => h,
        Err(e) => {
            return settings_view(
                &gw,
                &s,
                &headers,
                None,
                Some(Refusal::at(&e, &fields, &["password"])),
            )
            .await;
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
        Err(e) => {
            settings_view(
                &gw,
                &s,
                &headers,
                None,
                Some(Refusal::at(&e, &fields, &["email", "password", "name"])),
            )
            .await
        }
    }
}

pub(crate) async fn update_user(
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
        Err(e) => settings_view(&gw, &s, &headers, None, Some(Refusal::of(&e))).await,
    }
}

pub(crate) async fn remove_user(
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
        Err(e) => settings_view(&gw, &s, &headers, None, Some(Refusal::of(&e))).await,
    }
}
