//! Connected apps: the OAuth grants people gave MCP clients (everyone sees and revokes their
//! own; admins everyone's) and, for admins, the dynamically registered clients.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use crate::admin::oauth::{ClientView, GrantView};
use crate::dashboard::*;

#[derive(Template)]
#[template(path = "dash/apps.html")]
pub(crate) struct AppsPage {
    chrome: Chrome,
    grants: Vec<GrantView>,
    clients: Vec<ClientView>,
}

impl AppsPage {
    fn when(&self, ms: &i64) -> String {
        crate::admin::logs::utc_timestamp(*ms)
    }
}

pub(crate) async fn apps_page(
    State(gw): Gw,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let s = match signed_in(&gw, &headers, "/apps").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let who = actor(&s);
    let now = crate::audit::now_ms();
    let got = async {
        let grants = crate::admin::oauth::list_grants(&gw.rt.store, &who, now).await?;
        let clients = if who.is_admin() {
            crate::admin::oauth::list_clients(&gw.rt.store, &who).await?
        } else {
            Vec::new()
        };
        Ok((grants, clients))
    }
    .await;
    let mut chrome = chrome(&gw, &s, &headers, "/apps", q.as_deref());
    let (status, (grants, clients)) = settle(&mut chrome, got, None);
    render(
        status,
        &AppsPage {
            chrome,
            grants,
            clients,
        },
    )
}

pub(crate) async fn revoke_grant(
    State(gw): Gw,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, _) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = crate::audit::now_ms();
    match crate::admin::oauth::revoke_grant(&gw.rt.store, &actor(&s), &id, now).await {
        Ok(_) => {
            crate::oauth::token::remember_revoked(&gw, &id, now);
            Redirect::to("/apps?done=revoked-grant").into_response()
        }
        Err(e) => refused(&gw, &s, &headers, e).await,
    }
}

pub(crate) async fn remove_client(
    State(gw): Gw,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, _) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = crate::audit::now_ms();
    match crate::admin::oauth::remove_client(&gw.rt.store, &actor(&s), &id, now).await {
        Ok(()) => Redirect::to("/apps?done=deleted").into_response(),
        Err(e) => refused(&gw, &s, &headers, e).await,
    }
}

async fn refused(gw: &Gateway, s: &SignedIn, headers: &HeaderMap, e: AdminError) -> Response {
    let mut chrome = chrome(gw, s, headers, "/apps", None);
    let (status, ()) = settle(&mut chrome, Err::<(), _>(e), None);
    render(
        status,
        &AppsPage {
            chrome,
            grants: Vec::new(),
            clients: Vec::new(),
        },
    )
}
