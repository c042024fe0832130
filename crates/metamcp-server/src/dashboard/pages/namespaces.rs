//! Namespaces: the list, and one namespace's servers, naming and tool table (toggles,
//! bulk changes, overrides).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use crate::dashboard::*;

// ---- namespaces ----

#[derive(Template)]
#[template(path = "dash/namespaces.html")]
pub(crate) struct NamespacesPage {
    chrome: Chrome,
    namespaces: Vec<namespaces::NamespaceView>,
    servers: Vec<String>,
}

pub(crate) async fn namespaces_view(
    gw: &Gateway,
    s: &SignedIn,
    headers: &HeaderMap,
    query: Option<&str>,
    error: Option<Refusal>,
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

pub(crate) async fn namespaces_page(
    State(gw): Gw,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let s = match signed_in(&gw, &headers, "/namespaces").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    namespaces_view(&gw, &s, &headers, q.as_deref(), None).await
}

pub(crate) async fn create_namespace(State(gw): Gw, headers: HeaderMap, body: Bytes) -> Response {
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
        owner: owner_choice(&s, &fields),
    };
    match write(&gw, &s, async |cx| namespaces::create(cx, new).await).await {
        Ok(_) => Redirect::to("/namespaces?done=created").into_response(),
        Err(e) => {
            namespaces_view(
                &gw,
                &s,
                &headers,
                None,
                Some(Refusal::at(&e, &fields, &["name", "server"])),
            )
            .await
        }
    }
}

pub(crate) async fn delete_namespace(
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
        Err(e) => namespaces_view(&gw, &s, &headers, None, Some(Refusal::of(&e))).await,
    }
}

// ---- one namespace: servers, naming, tools ----

#[derive(Template)]
#[template(path = "dash/namespace.html")]
pub(crate) struct NamespacePage {
    chrome: Chrome,
    ns: namespaces::NamespaceView,
    tools: crate::admin::tools::NamespaceTools,
}

pub(crate) async fn namespace_view(
    gw: &Gateway,
    s: &SignedIn,
    headers: &HeaderMap,
    name: &str,
    query: Option<&str>,
    error: Option<Refusal>,
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
    let (status, ()) = settle(&mut chrome, Ok(()), error);
    render(status, &NamespacePage { chrome, ns, tools })
}

pub(crate) async fn namespace_page(
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
pub(crate) async fn namespace_change(
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
        Err(e) => namespace_view(gw, &s, headers, name, None, Some(Refusal::of(&e))).await,
    }
}

/// A name as one path segment.
pub(crate) async fn namespace_servers(
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

pub(crate) async fn namespace_settings(
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

pub(crate) async fn namespace_tools(
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

pub(crate) async fn override_tool(
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

pub(crate) async fn reset_tool(
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
