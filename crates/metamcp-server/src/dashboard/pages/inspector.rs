//! The inspector: a page whose script speaks MCP to one of the gateway's own endpoints, so
//! what it shows is what a client sees.
//!
//! The page lists the endpoints the user may call (public ones and their own). To connect,
//! the script asks `POST /inspector/token` (session + CSRF checked) for an inspector token
//! (`auth::token`): bound to that endpoint and the user, valid five minutes, re-asked before
//! it runs out. Endpoints never accept the dashboard's cookie.

use askama::Template;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::dashboard::*;

/// An endpoint the inspector can connect to.
pub(crate) struct Target {
    /// The endpoint's name (`~<server>` for one server).
    pub name: String,
    /// The namespace it serves (the server's name for one server).
    pub namespace: String,
    pub selected: bool,
    /// One server on its own (admins only).
    pub server: bool,
}

#[derive(Template)]
#[template(path = "dash/inspector.html")]
pub(crate) struct InspectorPage {
    chrome: Chrome,
    targets: Vec<Target>,
    /// The script's texts in the page's language, as JSON (`data-i18n`).
    strings: String,
}

/// What the inspector's script shows, by English wording.
pub(crate) const SCRIPT_TEXTS: &[&str] = &[
    "connecting…",
    "protocol",
    "Instructions",
    "connected",
    "could not connect",
    "disconnected",
    "none",
    "tools",
    "Annotations",
    "Arguments",
    "Edit the arguments as JSON",
    "Run tool",
    "progress",
    "running…",
    "tool error",
    "done",
    "failed",
    "(not set)",
    "Remove item",
    "Add item",
    "Structured content",
    "reading",
    "Read",
    "Get prompt",
];

/// Whether `s` may call the endpoint `ep` (public, or their own).
fn usable(ep: &endpoints::EndpointView, s: &SignedIn) -> bool {
    ep.owner.as_deref().is_none_or(|o| o == s.user.email)
}

pub(crate) async fn inspector_page(
    State(gw): Gw,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let s = match signed_in(&gw, &headers, "/inspector").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let wanted = q.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "endpoint")
            .map(|(_, v)| v.into_owned())
    });
    let is_admin = s.user.role == metamcp_store::Role::Admin;
    let got = admin::read(&gw.rt.store, &actor(&s), async |cx| {
        let eps = endpoints::list(cx).await?;
        // Admins may also talk to one server on its own.
        let servers = if is_admin {
            servers::list(cx).await?
        } else {
            Vec::new()
        };
        Ok((eps, servers))
    })
    .await;
    let mut chrome = chrome(&gw, &s, &headers, "/inspector", None);
    let (status, (eps, srvs)) = settle(&mut chrome, got, None);
    let mut targets: Vec<Target> = eps
        .into_iter()
        .filter(|e| usable(e, &s))
        .map(|e| Target {
            selected: wanted.as_deref() == Some(e.name.as_str()),
            name: e.name,
            namespace: e.namespace,
            server: false,
        })
        .collect();
    targets.extend(srvs.into_iter().map(|v| {
        let name = crate::snapshot::Snapshot::inspect_endpoint(&v.name);
        Target {
            selected: wanted.as_deref() == Some(name.as_str()),
            name,
            namespace: v.name,
            server: true,
        }
    }));
    let strings: serde_json::Map<String, serde_json::Value> = SCRIPT_TEXTS
        .iter()
        .map(|en| ((*en).to_owned(), chrome.t(en).into()))
        .collect();
    let strings = serde_json::Value::Object(strings).to_string();
    render(
        status,
        &InspectorPage {
            chrome,
            targets,
            strings,
        },
    )
}

fn refusal(status: StatusCode, message: impl Into<String>) -> Response {
    let mut r = (status, Json(serde_json::json!({ "error": message.into() }))).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}

/// `POST /inspector/token` (form: `csrf_token`, `endpoint`): a fresh inspector token for
/// that endpoint, as JSON `{ token, expires_at_ms, url }`.
pub(crate) async fn mint_token(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
    let Ok((s, fields)) = form(&gw, &headers, &body).await else {
        return refusal(
            StatusCode::FORBIDDEN,
            "Your session ended or this page is stale: reload it and sign in again.",
        );
    };
    let name = first(&fields, "endpoint").to_owned();
    if let Some(server) = name.strip_prefix('~') {
        // One server on its own: administrators only, and the server must exist.
        if s.user.role != metamcp_store::Role::Admin {
            return refusal(
                StatusCode::FORBIDDEN,
                "Only administrators may inspect a single server.",
            );
        }
        let got = admin::read(&gw.rt.store, &actor(&s), async |cx| {
            servers::get(cx, server).await
        })
        .await;
        if let Err(e) = got {
            return refusal(status_of(&e), words(&e));
        }
    } else {
        // The service layer decides whether the user may see the endpoint at all.
        let got = admin::read(&gw.rt.store, &actor(&s), async |cx| {
            endpoints::get(cx, &name).await
        })
        .await;
        let view = match got {
            Ok(v) => v,
            Err(e) => return refusal(status_of(&e), words(&e)),
        };
        if !usable(&view, &s) {
            return refusal(
                StatusCode::FORBIDDEN,
                "This endpoint is private to another user: only its owner can inspect it.",
            );
        }
    }
    // A just-made endpoint or user may not be in this gateway's snapshot yet: load it now
    // rather than hand out a token this gateway would refuse.
    let loaded = |snap: &crate::snapshot::Snapshot| {
        snap.users.contains_key(&s.user.id) && snap.endpoints.contains_key(&name)
    };
    if !loaded(&gw.snapshot())
        && let Err(e) = gw.reload().await
    {
        tracing::warn!(error = %e, "inspector: reloading the configuration failed");
    }
    let Some(ep) = gw.snapshot().endpoints.get(&name).cloned() else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "This gateway has not loaded the endpoint yet; try again in a second.",
        );
    };
    let (token, claims) = gw.tokens.mint(&ep.id, &s.user.id, crate::audit::now_ms());
    let mut r = Json(serde_json::json!({
        "token": token,
        "expires_at_ms": claims.expires_at_ms,
        "url": format!("/metamcp/{}/mcp", encode_path(&name)),
    }))
    .into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}
