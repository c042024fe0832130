//! Endpoints (URLs, client snippets, auth, rate limits) and API keys.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use crate::dashboard::*;

// ---- endpoints ----

/// An endpoint with the URLs clients use.
pub(crate) struct EndpointRow {
    view: endpoints::EndpointView,
    urls: Vec<(&'static str, String)>,
    /// Ready-to-paste client configurations: (client, text).
    snippets: Vec<(&'static str, String)>,
}

/// Client configurations for an endpoint at `url` (a placeholder where the key goes).
pub(crate) fn snippets_of(name: &str, url: &str, key_auth: bool) -> Vec<(&'static str, String)> {
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
pub(crate) struct EndpointsPage {
    chrome: Chrome,
    endpoints: Vec<EndpointRow>,
    namespaces: Vec<String>,
}

pub(crate) fn urls_of(app: &url::Url, name: &str) -> Vec<(&'static str, String)> {
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

pub(crate) async fn endpoints_view(
    gw: &Gateway,
    s: &SignedIn,
    headers: &HeaderMap,
    query: Option<&str>,
    error: Option<Refusal>,
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

pub(crate) async fn endpoints_page(
    State(gw): Gw,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let s = match signed_in(&gw, &headers, "/endpoints").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    endpoints_view(&gw, &s, &headers, q.as_deref(), None).await
}

pub(crate) async fn create_endpoint(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
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
        oauth: first(&fields, "oauth") == "1",
        rate: None,
        client_rate: None,
        owner: owner_choice(&s, &fields),
    };
    match write(&gw, &s, async |cx| endpoints::create(cx, new).await).await {
        Ok(_) => Redirect::to("/endpoints?done=created").into_response(),
        Err(e) => {
            endpoints_view(
                &gw,
                &s,
                &headers,
                None,
                Some(Refusal::at(&e, &fields, &["name", "namespace"])),
            )
            .await
        }
    }
}

pub(crate) async fn endpoint_limits(
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
        Err(e) => endpoints_view(&gw, &s, &headers, None, Some(Refusal::of(&e))).await,
    }
}

pub(crate) async fn endpoint_auth(
    State(gw): Gw,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let key = first(&fields, "api_key_auth") == "1";
    let query = first(&fields, "query_auth") == "1";
    let oauth = first(&fields, "oauth") == "1";
    let result = write(&gw, &s, async |cx| {
        endpoints::set_auth(cx, &name, Some(key), Some(query), Some(oauth)).await
    })
    .await;
    match result {
        Ok(_) => Redirect::to("/endpoints?done=saved").into_response(),
        Err(e) => endpoints_view(&gw, &s, &headers, None, Some(Refusal::of(&e))).await,
    }
}

pub(crate) async fn delete_endpoint(
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
        Err(e) => endpoints_view(&gw, &s, &headers, None, Some(Refusal::of(&e))).await,
    }
}

// ---- keys ----

#[derive(Template)]
#[template(path = "dash/keys.html")]
pub(crate) struct KeysPage {
    chrome: Chrome,
    keys: Vec<keys::KeyView>,
    /// A key just made: (name, value), shown this once.
    created: Option<(String, String)>,
}

pub(crate) async fn keys_view(
    gw: &Gateway,
    s: &SignedIn,
    headers: &HeaderMap,
    query: Option<&str>,
    error: Option<Refusal>,
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

pub(crate) async fn keys_page(
    State(gw): Gw,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let s = match signed_in(&gw, &headers, "/keys").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    keys_view(&gw, &s, &headers, q.as_deref(), None, None).await
}

pub(crate) async fn create_key(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
    let (s, fields) = match form(&gw, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = first(&fields, "name").trim().to_owned();
    let make_admin = first(&fields, "admin") == "1";
    let owner = if make_admin {
        None
    } else {
        owner_choice(&s, &fields)
    };
    match write(&gw, &s, async |cx| {
        keys::create_owned(cx, &name, make_admin, owner.as_deref()).await
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
                Some(Refusal::at(&e, &fields, &["name"])),
                None,
            )
            .await
        }
    }
}

pub(crate) async fn revoke_key(
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
        Err(e) => keys_view(&gw, &s, &headers, None, Some(Refusal::of(&e)), None).await,
    }
}
