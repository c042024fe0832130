//! The plan of an apply: the declared servers made concrete (specs with `<redacted>` values
//! restored from the store), the declared tool rules as records, and the difference between
//! the store and the file, one [`Change`] per object.
//!
//! Only what is needed to compute the difference is checked here (a server entry must be a
//! valid server, a tool key must read `server__tool`); every rule about names, members,
//! prefixes, shaping, rates and settings is checked when [`super::write`] carries the plan
//! out through the service functions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use metamcp_core::mangle;
use metamcp_core::spec::{ConnectionSettings, ServerSpec, Transport};
use metamcp_store::{ServerRecord, ToolRuleRecord};
use serde::Serialize;
use serde_json::Value;

use super::{Declared, EndpointDecl, NamespaceDecl, current};
use crate::admin::{Actor, AdminError, Cx, servers, tenancy};

/// One difference between the store and the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `+` add, `~` change, `-` remove.
    pub op: char,
    /// `server`, `namespace`, `endpoint`, `setting`.
    pub kind: &'static str,
    pub name: String,
    /// What differs (for `~`).
    pub fields: Vec<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.op, self.kind, self.name)?;
        if !self.fields.is_empty() {
            write!(f, ": {}", self.fields.join(", "))?;
        }
        Ok(())
    }
}

/// The outcome of an apply, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub changes: Vec<Change>,
    pub dry_run: bool,
}

impl Applied {
    /// The diff, one line per change.
    pub fn report(&self) -> String {
        let mut out = String::new();
        if self.changes.is_empty() {
            out.push_str("no changes\n");
            return out;
        }
        for c in &self.changes {
            let _ = writeln!(out, "{c}");
        }
        let _ = writeln!(
            out,
            "{} change(s){}",
            self.changes.len(),
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                " applied"
            }
        );
        out
    }
}

/// A declared server made concrete.
pub(super) struct ServerPlan {
    pub(super) spec: ServerSpec,
    pub(super) connection: ConnectionSettings,
}

/// What an apply will do.
pub(super) struct Plan {
    pub(super) changes: Vec<Change>,
    /// The store's configuration before, in the declared shape (secrets included).
    pub(super) have: Declared,
    pub(super) stored: BTreeMap<String, ServerRecord>,
    pub(super) servers: BTreeMap<String, ServerPlan>,
}

impl Plan {
    pub(super) fn has(&self, op: char, kind: &str, name: &str) -> bool {
        self.changes
            .iter()
            .any(|c| c.op == op && c.kind == kind && c.name == name)
    }
}

/// `desired` with every owner written as the store writes emails (trimmed, lower-case) and,
/// for a member acting, absent owners made the member; an email that is no user is an error
/// naming it.
pub(super) async fn with_owners(
    cx: &mut Cx<'_>,
    desired: &Declared,
) -> Result<Declared, AdminError> {
    let mut d = desired.clone();
    let default = match cx.actor {
        Actor::User { email, .. } if !cx.actor.is_admin() => Some(email.clone()),
        _ => None,
    };
    let owners = d
        .servers
        .iter_mut()
        .map(|(n, s)| (format!("server {n}"), &mut s.owner))
        .chain(
            d.namespaces
                .iter_mut()
                .map(|(n, s)| (format!("namespace {n}"), &mut s.owner)),
        )
        .chain(
            d.endpoints
                .iter_mut()
                .map(|(n, s)| (format!("endpoint {n}"), &mut s.owner)),
        );
    for (place, owner) in owners {
        *owner = match owner.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
            None => default.clone(),
            Some(email) => Some(
                tenancy::user_by_email(cx.tx, email)
                    .await
                    .map_err(|e| e.within(&place))?
                    .email,
            ),
        };
    }
    Ok(d)
}

/// Whether `--prune` may remove an undeclared object owned by `owner` (an email): never
/// another user's. A signed-in user prunes their own objects (an admin also public ones);
/// the CLI and admin keys, acting for nobody, prune public objects and those of the owners
/// the file names.
fn prunable(actor: &Actor, owner: Option<&str>, desired: &Declared) -> bool {
    match actor {
        Actor::User { email, .. } => {
            owner == Some(email.as_str()) || (owner.is_none() && actor.is_admin())
        }
        _ => match owner {
            None => true,
            Some(o) => {
                let named = |x: &Option<String>| x.as_deref() == Some(o);
                desired.servers.values().any(|s| named(&s.owner))
                    || desired.namespaces.values().any(|n| named(&n.owner))
                    || desired.endpoints.values().any(|e| named(&e.owner))
            }
        },
    }
}

pub(super) async fn plan(
    cx: &mut Cx<'_>,
    desired: &Declared,
    prune: bool,
) -> Result<Plan, AdminError> {
    let have = current(cx, true).await?;
    let stored: BTreeMap<String, ServerRecord> = cx
        .tx
        .list_servers()
        .await?
        .into_iter()
        .map(|s| (s.spec.name.clone(), s))
        .collect();
    let mut plans = BTreeMap::new();
    for (name, decl) in &desired.servers {
        let (spec, connection) = decl.to_spec(name)?;
        let spec = servers::prepare(spec, stored.get(name).map(|r| &r.spec))?;
        plans.insert(name.clone(), ServerPlan { spec, connection });
    }
    for (name, ns) in &desired.namespaces {
        tool_rules(ns).map_err(|e| e.within(format!("namespace {name}")))?;
    }

    let mut changes = Vec::new();
    for (k, v) in &desired.settings {
        match have.settings.get(k) {
            Some(old) if old == v => {}
            Some(old) => changes.push(change('~', "setting", k, vec![format!("{old} -> {v}")])),
            None => changes.push(change('+', "setting", k, vec![v.clone()])),
        }
    }
    for (name, plan) in &plans {
        match stored.get(name) {
            None => changes.push(change('+', "server", name, vec![])),
            Some(old) => {
                let mut fields = spec_diff(&old.spec, &plan.spec);
                if old.connection != plan.connection {
                    fields.push("mode".into());
                }
                let owner = desired.servers.get(name).and_then(|s| s.owner.as_deref());
                if old.owner.as_ref().map(|o| o.email.as_str()) != owner {
                    fields.push("owner".into());
                }
                if !fields.is_empty() {
                    changes.push(change('~', "server", name, fields));
                }
            }
        }
    }
    for (name, ns) in &desired.namespaces {
        match have.namespaces.get(name) {
            None => changes.push(change('+', "namespace", name, vec![])),
            Some(old) => {
                let fields = namespace_diff(old, ns);
                if !fields.is_empty() {
                    changes.push(change('~', "namespace", name, fields));
                }
            }
        }
    }
    for (name, e) in &desired.endpoints {
        match have.endpoints.get(name) {
            None => changes.push(change('+', "endpoint", name, vec![])),
            Some(old) => {
                let fields = endpoint_diff(old, e);
                if !fields.is_empty() {
                    changes.push(change('~', "endpoint", name, fields));
                }
            }
        }
    }
    if prune {
        let may = |owner: &Option<String>| prunable(cx.actor, owner.as_deref(), desired);
        let endpoints = leftover(&have.endpoints, &desired.endpoints);
        let namespaces = leftover(&have.namespaces, &desired.namespaces);
        let servers = leftover(&have.servers, &desired.servers);
        for n in endpoints {
            if have.endpoints.get(n).is_some_and(|e| may(&e.owner)) {
                changes.push(change('-', "endpoint", n, vec![]));
            }
        }
        for n in namespaces {
            if have.namespaces.get(n).is_some_and(|x| may(&x.owner)) {
                changes.push(change('-', "namespace", n, vec![]));
            }
        }
        for n in servers {
            if have.servers.get(n).is_some_and(|s| may(&s.owner)) {
                changes.push(change('-', "server", n, vec![]));
            }
        }
    }
    Ok(Plan {
        changes,
        have,
        stored,
        servers: plans,
    })
}

/// Names in `have` that `desired` does not declare.
fn leftover<'a, A, B>(
    have: &'a BTreeMap<String, A>,
    desired: &BTreeMap<String, B>,
) -> Vec<&'a str> {
    have.keys()
        .filter(|k| !desired.contains_key(*k))
        .map(String::as_str)
        .collect()
}

fn change(op: char, kind: &'static str, name: &str, fields: Vec<String>) -> Change {
    Change {
        op,
        kind,
        name: name.to_owned(),
        fields,
    }
}

/// The declared tool rules of a namespace as store records (keys are `server__tool`).
pub(super) fn tool_rules(ns: &NamespaceDecl) -> Result<Vec<ToolRuleRecord>, AdminError> {
    let mut rules = Vec::with_capacity(ns.tools.len());
    for (canonical, t) in &ns.tools {
        let Some((server, tool)) = mangle::split(canonical) else {
            return Err(AdminError::Invalid(format!(
                "tool {canonical:?} must be written server__tool"
            )));
        };
        let annotations = match &t.annotations {
            None => None,
            Some(Value::Object(m)) => Some(Value::Object(m.clone()).to_string()),
            Some(other) => {
                return Err(AdminError::Invalid(format!(
                    "tool {canonical}: annotations must be a table/object, got {other}"
                )));
            }
        };
        rules.push(ToolRuleRecord {
            server_name: server.to_owned(),
            tool: tool.to_owned(),
            status: t
                .enabled
                .map(|on| if on { "ACTIVE" } else { "INACTIVE" }.to_owned()),
            name: t.name.clone(),
            title: t.title.clone(),
            description: t.description.clone(),
            annotations,
            ..ToolRuleRecord::default()
        });
    }
    Ok(rules)
}

/// What differs between two specs, by field name (never values: they may be secrets).
fn spec_diff(old: &ServerSpec, new: &ServerSpec) -> Vec<String> {
    if old == new {
        return Vec::new();
    }
    let mut fields = Vec::new();
    if old.description != new.description {
        fields.push("description".to_owned());
    }
    match (&old.transport, &new.transport) {
        (
            Transport::Stdio {
                command: c1,
                args: a1,
                env: e1,
            },
            Transport::Stdio {
                command: c2,
                args: a2,
                env: e2,
            },
        ) => {
            for (differs, f) in [(c1 != c2, "command"), (a1 != a2, "args"), (e1 != e2, "env")] {
                if differs {
                    fields.push(f.to_owned());
                }
            }
        }
        (a, b) if a.kind() == b.kind() => fields.push("url/headers/bearerToken".to_owned()),
        _ => fields.push("type".to_owned()),
    }
    fields
}

/// What differs between two declarations of a namespace, by field.
pub(super) fn namespace_diff(old: &NamespaceDecl, new: &NamespaceDecl) -> Vec<String> {
    let mut fields = Vec::new();
    let prefix = |p: &Option<String>| p.clone().unwrap_or_else(|| "always".into());
    let new_tools = |n: &Option<String>| n.clone().unwrap_or_else(|| "enabled".into());
    let sorted = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    for (differs, f) in [
        (old.servers != new.servers, "servers"),
        (sorted(&old.inactive) != sorted(&new.inactive), "inactive"),
        (old.description != new.description, "description"),
        (prefix(&old.prefix) != prefix(&new.prefix), "prefix"),
        (
            new_tools(&old.new_tools) != new_tools(&new.new_tools),
            "new_tools",
        ),
        (
            old.max_name_length != new.max_name_length,
            "max_name_length",
        ),
        (old.tools != new.tools, "tools"),
        (old.owner != new.owner, "owner"),
        (
            old.audit_payloads.unwrap_or(false) != new.audit_payloads.unwrap_or(false),
            "audit_payloads",
        ),
    ] {
        if differs {
            fields.push(f.to_owned());
        }
    }
    fields
}

/// What differs between two declarations of an endpoint, by field.
pub(super) fn endpoint_diff(old: &EndpointDecl, new: &EndpointDecl) -> Vec<String> {
    let mut fields = Vec::new();
    for (differs, f) in [
        (old.namespace != new.namespace, "namespace"),
        (old.description != new.description, "description"),
        (old.auth.unwrap_or(true) != new.auth.unwrap_or(true), "auth"),
        (
            old.query_auth.unwrap_or(false) != new.query_auth.unwrap_or(false),
            "query_auth",
        ),
        (
            old.oauth.unwrap_or(false) != new.oauth.unwrap_or(false),
            "oauth",
        ),
        (old.rate != new.rate, "rate"),
        (old.client_rate != new.client_rate, "client_rate"),
        (old.owner != new.owner, "owner"),
    ] {
        if differs {
            fields.push(f.to_owned());
        }
    }
    fields
}
