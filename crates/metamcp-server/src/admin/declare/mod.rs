//! Configuration as code: a TOML or YAML file ([`metamcp_core::declare`]) declares servers,
//! namespaces (with tool shaping), endpoints and settings. [`apply`] makes the store say
//! what the file says and reports the difference; applying the same file twice changes
//! nothing. [`current`] reads the store back into the same shape (`metamcp export --full`),
//! so export → apply to an empty store → export gives the same file.
//!
//! `apply` = [`plan`] (the file made concrete and compared with the store: the diff) +
//! [`write`] (the diff carried out through the very service functions the CLI and the admin
//! API use, so every rule — names, prefix collisions, tool-name clashes, rate limits,
//! settings — is checked exactly as there). It runs inside the caller's transaction
//! ([`super::run`]): a refusal half-way leaves nothing changed, and a running gateway sees
//! the old configuration or the new one, never a mix. A dry run is the same in a transaction
//! that is rolled back ([`super::rehearse`]).
//!
//! Secrets: a value written exactly `${NAME}` (stdio env, header values, bearer tokens) is
//! stored as that reference and read from the gateway's environment when the server starts,
//! so it never reaches the database. Export writes references as they are and other secret
//! values as `<redacted>` unless asked; applying `<redacted>` keeps the stored value (and is
//! refused when there is none).
//!
//! What the file does not name is left alone unless `prune` is set (then servers, namespaces
//! and endpoints it does not declare are removed; settings are never pruned). API keys are
//! never part of the file.
//!
//! Owners: each server, namespace and endpoint may say `owner = "ada@example.com"`; absent
//! means public (for a member acting, absent means the member). An unknown email is an
//! error naming it. Changing the owner of an existing object is an admin's change; every
//! namespace and endpoint is checked against the composition rule
//! ([`super::tenancy::check_all`]) once the whole file is written, so a file may move a
//! server, its namespace and its endpoint together. `--prune` never removes an object of
//! a user other than the actor: a signed-in user prunes only their own objects (and, if an
//! admin, public ones); the CLI and admin keys, which act for nobody, prune public objects
//! and those of the owners the file names (`owner = …` somewhere in it) — so a file that
//! describes only public configuration never removes anybody's private objects.
//! A member's `export --full` shows only what the member sees (public objects and theirs).

mod plan;
mod write;

use std::collections::BTreeMap;

pub use metamcp_core::declare::{
    DeclareError, Declared, EndpointDecl, Format, NamespaceDecl, ServerDecl, ToolDecl, parse,
    render,
};
use metamcp_core::mangle::{self, PrefixMode};
use metamcp_core::spec;
pub use plan::{Applied, Change};

use super::{Access, AdminError, Cx, tenancy};

impl From<DeclareError> for AdminError {
    fn from(e: DeclareError) -> Self {
        AdminError::Invalid(e.to_string())
    }
}

/// How a secret value appears in an export: itself with `include_secrets`, a `${VAR}`
/// reference as it is (it is no secret), anything else `<redacted>`.
fn shown(v: &str, include_secrets: bool) -> String {
    if include_secrets || metamcp_core::secrets::reference(v).is_some() {
        v.to_owned()
    } else {
        spec::REDACTED.to_owned()
    }
}

/// The store's configuration in the declared shape.
pub async fn current(cx: &mut Cx<'_>, include_secrets: bool) -> Result<Declared, AdminError> {
    cx.require(Access::Read)?;
    let mut d = Declared {
        settings: cx.tx.list_settings().await?.into_iter().collect(),
        ..Declared::default()
    };
    for s in cx.tx.list_servers().await? {
        if !tenancy::visible(cx.actor, s.owner.as_ref()) {
            continue;
        }
        let mut decl = ServerDecl::from_spec(&s.spec, s.connection, |v| shown(v, include_secrets))?;
        decl.owner = tenancy::email(s.owner.as_ref());
        d.servers.insert(s.spec.name.clone(), decl);
    }
    for n in cx.tx.list_namespaces().await? {
        if !tenancy::visible(cx.actor, n.owner.as_ref()) {
            continue;
        }
        let mut tools = BTreeMap::new();
        for r in &n.tools {
            let annotations = match r.annotations.as_deref() {
                Some(a) => Some(serde_json::from_str(a).map_err(|e| {
                    AdminError::Invalid(format!("stored annotations of {}: {e}", r.tool))
                })?),
                None => None,
            };
            tools.insert(
                mangle::qualify(&r.server_name, &r.tool),
                ToolDecl {
                    enabled: r.status.as_deref().map(|s| s == "ACTIVE"),
                    name: r.name.clone(),
                    title: r.title.clone(),
                    description: r.description.clone(),
                    annotations,
                },
            );
        }
        d.namespaces.insert(
            n.name.clone(),
            NamespaceDecl {
                servers: n.servers.iter().map(|m| m.server_name.clone()).collect(),
                inactive: n
                    .servers
                    .iter()
                    .filter(|m| !m.active)
                    .map(|m| m.server_name.clone())
                    .collect(),
                description: n.description.clone(),
                prefix: (n.prefix != PrefixMode::Always).then(|| n.prefix.as_str().to_owned()),
                new_tools: (!n.new_tools_enabled).then(|| "disabled".to_owned()),
                max_name_length: n.max_name_length.and_then(|l| u32::try_from(l).ok()),
                tools,
                owner: tenancy::email(n.owner.as_ref()),
                audit_payloads: n.audit_payloads.then_some(true),
            },
        );
    }
    for e in cx.tx.list_endpoints().await? {
        if !tenancy::visible(cx.actor, e.owner.as_ref()) {
            continue;
        }
        d.endpoints.insert(
            e.name.clone(),
            EndpointDecl {
                namespace: e.namespace_name.clone(),
                description: e.description.clone(),
                auth: (!e.api_key_auth).then_some(false),
                query_auth: e.query_auth.then_some(true),
                oauth: e.oauth.then_some(true),
                rate: e.rate.map(|r| r.to_string()),
                client_rate: e.client_rate.map(|r| r.to_string()),
                owner: tenancy::email(e.owner.as_ref()),
            },
        );
    }
    Ok(d)
}

/// Makes the configuration what `desired` declares, in the caller's transaction, and
/// returns the difference it made. Run it with [`super::run`] to keep the result, or with
/// [`super::rehearse`] for a dry run.
pub async fn apply(
    cx: &mut Cx<'_>,
    desired: &Declared,
    prune: bool,
) -> Result<Vec<Change>, AdminError> {
    cx.require(Access::Configure)?;
    let desired = &plan::with_owners(cx, desired).await?;
    let plan = plan::plan(cx, desired, prune).await?;
    write::write(cx, &plan, desired).await?;
    tenancy::check_all(cx.tx).await?;
    Ok(plan.changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_not_secrets() {
        assert_eq!(shown("${TOKEN}", false), "${TOKEN}");
        assert_eq!(shown("s3cret", false), spec::REDACTED);
        assert_eq!(shown("s3cret", true), "s3cret");
    }
}
