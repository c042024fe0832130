//! Carrying out a plan: every change through the service function an operator would use for
//! it (`servers::import`, `namespaces::create`/`reshape`, `tools::replace`,
//! `endpoints::create`/`update`, `settings::set`, the removals), so an apply is refused by
//! exactly the rules that refuse the same change from the CLI or the admin API.
//!
//! Order: removals that free names (endpoints, then namespaces), settings, servers,
//! namespaces, endpoints, and removed servers last (namespaces may stop using them first).
//! All of it happens in the caller's one transaction.

use super::plan::{Plan, endpoint_diff, namespace_diff, tool_rules};
use super::{Declared, EndpointDecl, NamespaceDecl};
use crate::admin::{AdminError, Cx, endpoints, namespaces, servers, settings, tools};

pub(super) async fn write(
    cx: &mut Cx<'_>,
    plan: &Plan,
    desired: &Declared,
) -> Result<(), AdminError> {
    for c in plan.changes.iter().filter(|c| c.op == '-') {
        let name = c.name.as_str();
        match c.kind {
            "endpoint" => endpoints::remove(cx, name).await,
            "namespace" => namespaces::remove(cx, name).await,
            _ => Ok(()),
        }
        .map_err(|e| e.within(format!("{} {name}", c.kind)))?;
    }
    // Owners first, unchecked: the composition rule is checked once everything is written.
    for c in plan
        .changes
        .iter()
        .filter(|c| c.op == '~' && c.fields.iter().any(|f| f == "owner"))
    {
        let name = c.name.as_str();
        match c.kind {
            "server" => {
                let owner = desired.servers.get(name).and_then(|d| d.owner.as_deref());
                servers::change_owner(cx, name, owner).await
            }
            "namespace" => {
                let owner = desired
                    .namespaces
                    .get(name)
                    .and_then(|d| d.owner.as_deref());
                namespaces::change_owner(cx, name, owner).await
            }
            "endpoint" => {
                let owner = desired.endpoints.get(name).and_then(|d| d.owner.as_deref());
                endpoints::change_owner(cx, name, owner).await
            }
            _ => Ok(()),
        }
        .map_err(|e| e.within(format!("{} {name}", c.kind)))?;
    }
    for (k, v) in &desired.settings {
        if plan.has('~', "setting", k) || plan.has('+', "setting", k) {
            settings::set(cx, k, v)
                .await
                .map_err(|e| e.within(format!("setting {k}")))?;
        }
    }
    for (name, s) in &plan.servers {
        let in_server = |e: AdminError| e.within(format!("server {name}"));
        if !(plan.has('+', "server", name) || plan.has('~', "server", name)) {
            continue;
        }
        let owner = desired.servers.get(name).and_then(|d| d.owner.as_deref());
        servers::import_owned(cx, std::slice::from_ref(&s.spec), owner)
            .await
            .map_err(in_server)?;
        let old = plan.stored.get(name).map(|r| r.connection);
        if old != Some(s.connection) {
            let patch = servers::ConnectionPatch {
                mode: Some(s.connection.mode.as_str().to_owned()),
                warm: Some(s.connection.warm),
                cap: Some(s.connection.cap),
                oauth: Some(s.connection.oauth.as_str().to_owned()),
            };
            servers::update(cx, name, patch).await.map_err(in_server)?;
        }
    }
    for (name, ns) in &desired.namespaces {
        write_namespace(cx, name, ns, plan.have.namespaces.get(name))
            .await
            .map_err(|e| e.within(format!("namespace {name}")))?;
    }
    for (name, e) in &desired.endpoints {
        write_endpoint(cx, name, e, plan.have.endpoints.get(name))
            .await
            .map_err(|err| err.within(format!("endpoint {name}")))?;
    }
    for c in plan
        .changes
        .iter()
        .filter(|c| c.op == '-' && c.kind == "server")
    {
        servers::remove(cx, &c.name)
            .await
            .map_err(|e| e.within(format!("server {}", c.name)))?;
    }
    Ok(())
}

async fn write_namespace(
    cx: &mut Cx<'_>,
    name: &str,
    ns: &NamespaceDecl,
    old: Option<&NamespaceDecl>,
) -> Result<(), AdminError> {
    let prefix = namespaces::parse_prefix(ns.prefix.as_deref().unwrap_or("always"))?;
    let fields = match old {
        None => {
            namespaces::create(
                cx,
                namespaces::NewNamespace {
                    name: name.to_owned(),
                    servers: ns.servers.clone(),
                    inactive: ns.inactive.clone(),
                    description: ns.description.clone(),
                    prefix,
                    new_tools_enabled: None,
                    max_name_length: None,
                    owner: ns.owner.clone(),
                },
            )
            .await?;
            vec!["tools".to_owned()]
        }
        Some(old) => namespace_diff(old, ns),
    };
    let has = |f: &str| fields.iter().any(|x| x == f);
    if old.is_some() && (has("servers") || has("inactive") || has("prefix")) {
        namespaces::reshape(cx, name, &ns.servers, &ns.inactive, Some(prefix)).await?;
    }
    if old.is_some() && has("description") {
        namespaces::set_description(cx, name, ns.description.as_deref()).await?;
    }
    if has("audit_payloads") || (old.is_none() && ns.audit_payloads == Some(true)) {
        namespaces::set_audit_payloads(cx, name, ns.audit_payloads.unwrap_or(false)).await?;
    }
    if has("tools") || has("new_tools") || has("max_name_length") {
        let new_tools = match ns.new_tools.as_deref() {
            Some(n) => namespaces::parse_new_tools(n)?,
            None => true,
        };
        tools::replace(cx, name, new_tools, ns.max_name_length, tool_rules(ns)?).await?;
    }
    Ok(())
}

/// Creates the endpoint, changes its limits, or — when its namespace, auth or description
/// change, which are fixed at creation — recreates it (in the same transaction: clients
/// never see it missing).
async fn write_endpoint(
    cx: &mut Cx<'_>,
    name: &str,
    e: &EndpointDecl,
    old: Option<&EndpointDecl>,
) -> Result<(), AdminError> {
    let fields = old.map(|o| {
        let mut f = endpoint_diff(o, e);
        // why: a new owner was written before (`write`); it needs no new endpoint.
        f.retain(|x| x != "owner");
        f
    });
    match fields {
        Some(f) if f.is_empty() => return Ok(()),
        // why: changed in place, the endpoint keeps its id, so OAuth grants, sessions and
        // audit history stay attached to it.
        Some(f)
            if f.iter().all(|x| {
                ["rate", "client_rate", "auth", "query_auth", "oauth"].contains(&x.as_str())
            }) =>
        {
            if f.iter()
                .any(|x| x == "auth" || x == "query_auth" || x == "oauth")
            {
                endpoints::set_auth(
                    cx,
                    name,
                    Some(e.auth.unwrap_or(true)),
                    Some(e.query_auth.unwrap_or(false)),
                    Some(e.oauth.unwrap_or(false)),
                )
                .await?;
            }
            if f.iter().any(|x| x == "rate" || x == "client_rate") {
                let off = |r: &Option<String>| r.clone().unwrap_or_else(|| "off".to_owned());
                endpoints::update(cx, name, Some(&off(&e.rate)), Some(&off(&e.client_rate)))
                    .await?;
            }
            return Ok(());
        }
        Some(_) => endpoints::remove(cx, name).await?,
        None => {}
    }
    let new = endpoints::NewEndpoint {
        name: name.to_owned(),
        namespace: e.namespace.clone(),
        description: e.description.clone(),
        api_key_auth: e.auth.unwrap_or(true),
        query_auth: e.query_auth.unwrap_or(false),
        oauth: e.oauth.unwrap_or(false),
        rate: e.rate.clone(),
        client_rate: e.client_rate.clone(),
        owner: e.owner.clone(),
    };
    endpoints::create(cx, new).await?;
    Ok(())
}
