//! Configuration as code: one TOML or YAML file declares servers, namespaces (with tool
//! shaping), endpoints and settings. [`apply`] makes the store say what the file says and
//! reports the difference (`--dry-run` only reports it); applying the same file twice changes
//! nothing. [`current`] reads the store back into the same shape (`metamcp export --full`),
//! so export → apply to an empty store → export gives the same file.
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use metamcp_core::RateLimit;
use metamcp_core::mangle::{self, PrefixMode};
use metamcp_core::spec::{self, ConnectionMode, ConnectionSettings, ServerSpec, Transport};
use metamcp_store::{EndpointLimits, LimitsUpdate, ShapingChange, Store, ToolRuleRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AdminError;

/// The whole declared configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub servers: BTreeMap<String, ServerDecl>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, NamespaceDecl>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, EndpointDecl>,
}

/// A server, in the fields of the Claude-Desktop import format plus how sessions share it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerDecl {
    /// `stdio` (default), `streamable_http` or `sse`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(
        rename = "bearerToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bearer_token: Option<String>,
    /// `shared` (default) or `per-session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<u32>,
}

/// A namespace: its servers in order and how it names and shapes tools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceDecl {
    pub servers: Vec<String>,
    /// Members that are switched off (a subset of `servers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inactive: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `always` (default), `conditional` or `never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `enabled` (default) or `disabled` (default-deny).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tools: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_name_length: Option<u32>,
    /// Rules by `server__tool`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, ToolDecl>,
}

/// The rule for one upstream tool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolDecl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
}

/// An endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDecl {
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// API-key auth (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<bool>,
    /// Also accept `?api_key=` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_auth: Option<bool>,
    /// `N/SECONDS` for the whole endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// `N/SECONDS` per client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_rate: Option<String>,
}

/// The file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
}

impl Format {
    /// By file extension: `.yaml`/`.yml` → YAML, anything else TOML.
    pub fn of_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Toml,
        }
    }
}

/// Parses a declared configuration; the error names the line where the format says.
pub fn parse(text: &str, format: Format) -> Result<Declared, AdminError> {
    let parsed = match format {
        Format::Toml => toml::from_str::<Declared>(text).map_err(|e| {
            let msg = e.message().to_owned();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            format!("{msg}{at}")
        }),
        Format::Yaml => serde_yaml_ng::from_str::<Declared>(text).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| AdminError::Invalid(format!("invalid configuration: {e}")))
}

/// Writes a declared configuration.
pub fn render(d: &Declared, format: Format) -> Result<String, AdminError> {
    let out = match format {
        Format::Toml => toml::to_string(d).map_err(|e| e.to_string()),
        Format::Yaml => serde_yaml_ng::to_string(d).map_err(|e| e.to_string()),
    };
    out.map_err(|e| AdminError::Invalid(format!("cannot write the configuration: {e}")))
}

fn is_reference(v: &str) -> bool {
    v.starts_with("${") && v.ends_with('}') && v.len() > 3
}

fn redact(v: &str, include_secrets: bool) -> String {
    if include_secrets || is_reference(v) {
        v.to_owned()
    } else {
        spec::REDACTED.to_owned()
    }
}

/// The store's configuration in the declared shape.
pub async fn current(store: &Store, include_secrets: bool) -> Result<Declared, AdminError> {
    let mut d = Declared {
        settings: store.list_settings().await?.into_iter().collect(),
        ..Declared::default()
    };
    for s in store.list_servers().await? {
        d.servers.insert(
            s.spec.name.clone(),
            server_decl(&s.spec, s.connection, include_secrets)?,
        );
    }
    for n in store.list_namespaces().await? {
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
            },
        );
    }
    for e in store.list_endpoints().await? {
        d.endpoints.insert(
            e.name.clone(),
            EndpointDecl {
                namespace: e.namespace_name.clone(),
                description: e.description.clone(),
                auth: (!e.api_key_auth).then_some(false),
                query_auth: e.query_auth.then_some(true),
                rate: e.rate.map(|r| r.to_string()),
                client_rate: e.client_rate.map(|r| r.to_string()),
            },
        );
    }
    Ok(d)
}

fn server_decl(
    s: &ServerSpec,
    c: ConnectionSettings,
    include_secrets: bool,
) -> Result<ServerDecl, AdminError> {
    let shown = ServerSpec {
        transport: s.transport.map_secrets(|v| redact(v, include_secrets)),
        ..s.clone()
    };
    // why: the server fields are the import format's; one writer (`spec::export_entry`).
    let mut d: ServerDecl = serde_json::from_value(spec::export_entry(&shown))
        .map_err(|e| AdminError::Invalid(format!("server {}: {e}", s.name)))?;
    let defaults = ConnectionSettings::default();
    d.mode = (c.mode != defaults.mode).then(|| c.mode.as_str().to_owned());
    d.warm = (c.warm != defaults.warm).then_some(c.warm);
    d.cap = (c.cap != defaults.cap).then_some(c.cap);
    Ok(d)
}

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

/// The outcome of [`apply`].
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

/// A declared server made concrete: its spec, with `<redacted>` resolved from the store.
struct ServerPlan {
    spec: ServerSpec,
    connection: ConnectionSettings,
}

/// Makes the store say what `desired` says (or, with `dry_run`, only reports what would
/// change). Everything is validated before anything is written.
pub async fn apply(
    store: &Store,
    desired: &Declared,
    prune: bool,
    dry_run: bool,
) -> Result<Applied, AdminError> {
    let have = current(store, true).await?;
    let stored_servers: BTreeMap<String, metamcp_store::ServerRecord> = store
        .list_servers()
        .await?
        .into_iter()
        .map(|s| (s.spec.name.clone(), s))
        .collect();

    // Validate everything first.
    for (k, v) in &desired.settings {
        crate::settings::validate(k, v).map_err(AdminError::Invalid)?;
    }
    let mut plans: BTreeMap<&str, ServerPlan> = BTreeMap::new();
    for (name, decl) in &desired.servers {
        let stored = stored_servers.get(name).map(|r| &r.spec);
        plans.insert(name, server_plan(name, decl, stored)?);
    }
    let known_server = |s: &str| desired.servers.contains_key(s) || stored_servers.contains_key(s);
    for (name, ns) in &desired.namespaces {
        metamcp_core::validate_object_name("namespace", name)
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        namespace_checks(name, ns, &known_server)?;
    }
    let known_ns = |n: &str| desired.namespaces.contains_key(n) || have.namespaces.contains_key(n);
    for (name, e) in &desired.endpoints {
        metamcp_core::validate_object_name("endpoint", name)
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        if !known_ns(&e.namespace) {
            return Err(AdminError::NotFound(format!(
                "endpoint {name}: no namespace named {:?}",
                e.namespace
            )));
        }
        parse_rate(name, e.rate.as_deref())?;
        parse_rate(name, e.client_rate.as_deref())?;
    }

    // The difference.
    let mut changes = Vec::new();
    for (k, v) in &desired.settings {
        match have.settings.get(k) {
            Some(old) if old == v => {}
            Some(old) => changes.push(change('~', "setting", k, vec![format!("{old} -> {v}")])),
            None => changes.push(change('+', "setting", k, vec![v.clone()])),
        }
    }
    for (name, plan) in &plans {
        match stored_servers.get(*name) {
            None => changes.push(change('+', "server", name, vec![])),
            Some(old) => {
                let mut fields = spec_diff(&old.spec, &plan.spec);
                if old.connection != plan.connection {
                    fields.push("mode".into());
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
        for name in have.endpoints.keys() {
            if !desired.endpoints.contains_key(name) {
                changes.push(change('-', "endpoint", name, vec![]));
            }
        }
        for name in have.namespaces.keys() {
            if !desired.namespaces.contains_key(name) {
                changes.push(change('-', "namespace", name, vec![]));
            }
        }
        for name in have.servers.keys() {
            if !desired.servers.contains_key(name) {
                changes.push(change('-', "server", name, vec![]));
            }
        }
    }
    if dry_run || changes.is_empty() {
        return Ok(Applied { changes, dry_run });
    }

    // Write, in dependency order: removals that free names first, then what others need.
    for c in changes
        .iter()
        .filter(|c| c.op == '-' && c.kind == "endpoint")
    {
        store.remove_endpoint(&c.name).await?;
    }
    for c in changes
        .iter()
        .filter(|c| c.op == '-' && c.kind == "namespace")
    {
        store.remove_namespace(&c.name).await?;
    }
    for (k, v) in &desired.settings {
        if have.settings.get(k) != Some(v) {
            store.set_setting(k, v.trim()).await?;
        }
    }
    for (name, plan) in &plans {
        store.upsert_server(&plan.spec).await?;
        let old = stored_servers.get(*name).map(|r| r.connection);
        if old != Some(plan.connection) {
            store.set_server_connection(name, &plan.connection).await?;
        }
    }
    for (name, ns) in &desired.namespaces {
        write_namespace(store, name, ns, have.namespaces.get(name)).await?;
    }
    for (name, e) in &desired.endpoints {
        write_endpoint(store, name, e, have.endpoints.get(name)).await?;
    }
    for c in changes.iter().filter(|c| c.op == '-' && c.kind == "server") {
        store.remove_server(&c.name).await?;
    }
    Ok(Applied { changes, dry_run })
}

fn change(op: char, kind: &'static str, name: &str, fields: Vec<String>) -> Change {
    Change {
        op,
        kind,
        name: name.to_owned(),
        fields,
    }
}

fn server_plan(
    name: &str,
    d: &ServerDecl,
    stored: Option<&ServerSpec>,
) -> Result<ServerPlan, AdminError> {
    // The entry in the import format, so one parser validates both.
    let mut entry = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        entry.insert(k.to_owned(), v);
    };
    if let Some(k) = &d.kind {
        put("type", k.clone().into());
    }
    if let Some(v) = &d.description {
        put("description", v.clone().into());
    }
    if let Some(v) = &d.command {
        put("command", v.clone().into());
    }
    if !d.args.is_empty() {
        put("args", d.args.clone().into());
    }
    if let Some(v) = &d.url {
        put("url", v.clone().into());
    }
    let keep = |field: &str, key: Option<&str>, value: &str| -> Result<String, AdminError> {
        if value != spec::REDACTED {
            return Ok(value.to_owned());
        }
        stored_secret(stored, field, key).ok_or_else(|| {
            AdminError::Invalid(format!(
                "server {name}: {field}{} is {} and no value is stored; give the value or a \
                 ${{VAR}} reference",
                key.map(|k| format!(" {k}")).unwrap_or_default(),
                spec::REDACTED
            ))
        })
    };
    let mut env = serde_json::Map::new();
    for (k, v) in &d.env {
        env.insert(k.clone(), keep("env", Some(k), v)?.into());
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in &d.headers {
        headers.insert(k.clone(), keep("headers", Some(k), v)?.into());
    }
    if !env.is_empty() {
        put("env", Value::Object(env));
    }
    if !headers.is_empty() {
        put("headers", Value::Object(headers));
    }
    if let Some(t) = &d.bearer_token {
        put("bearerToken", keep("bearerToken", None, t)?.into());
    }
    let doc = serde_json::json!({ "mcpServers": { name: Value::Object(entry) } });
    let spec = spec::parse_import(&doc.to_string())
        .map_err(|e| AdminError::Invalid(e.to_string()))?
        .pop()
        .ok_or_else(|| AdminError::Invalid(format!("server {name}: empty declaration")))?;
    let defaults = ConnectionSettings::default();
    let mode = match d.mode.as_deref() {
        None => defaults.mode,
        Some(m) => ConnectionMode::parse(m).ok_or_else(|| {
            AdminError::Invalid(format!(
                "server {name}: unknown mode {m:?} (shared or per-session)"
            ))
        })?,
    };
    Ok(ServerPlan {
        spec,
        connection: ConnectionSettings {
            mode,
            warm: d.warm.unwrap_or(defaults.warm),
            cap: d.cap.unwrap_or(defaults.cap),
        },
    })
}

fn stored_secret(stored: Option<&ServerSpec>, field: &str, key: Option<&str>) -> Option<String> {
    match (&stored?.transport, field) {
        (Transport::Stdio { env, .. }, "env") => env.get(key?).cloned(),
        (
            Transport::Sse {
                headers,
                bearer_token,
                ..
            }
            | Transport::StreamableHttp {
                headers,
                bearer_token,
                ..
            },
            f,
        ) => match f {
            "headers" => headers.get(key?).cloned(),
            "bearerToken" => bearer_token.clone(),
            _ => None,
        },
        _ => None,
    }
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

fn namespace_checks(
    name: &str,
    ns: &NamespaceDecl,
    known_server: &dyn Fn(&str) -> bool,
) -> Result<(), AdminError> {
    let bad = |m: String| Err(AdminError::Invalid(format!("namespace {name}: {m}")));
    if ns.servers.is_empty() {
        return bad("needs at least one server".into());
    }
    for s in &ns.servers {
        if !known_server(s) {
            return Err(AdminError::NotFound(format!(
                "namespace {name}: no server named {s:?}"
            )));
        }
    }
    for s in &ns.inactive {
        if !ns.servers.contains(s) {
            return bad(format!("inactive server {s:?} is not one of its servers"));
        }
    }
    if let Some(p) = &ns.prefix
        && PrefixMode::parse(p).is_none()
    {
        return bad(format!("unknown prefix {p:?} (always, conditional, never)"));
    }
    if let Some(n) = &ns.new_tools
        && !matches!(n.as_str(), "enabled" | "disabled")
    {
        return bad(format!("new_tools is {n:?} (enabled or disabled)"));
    }
    if let Some(l) = ns.max_name_length {
        metamcp_core::shaping::validate_limit(l as usize).or_else(|e| bad(e.to_string()))?;
    }
    for (tool, t) in &ns.tools {
        let Some((server, _)) = mangle::split(tool) else {
            return bad(format!("tool {tool:?} must be written server__tool"));
        };
        if !ns.servers.iter().any(|s| s == server) {
            return bad(format!("tool {tool:?}: {server} is not one of its servers"));
        }
        let rule = tool_record(server, tool, t)?;
        metamcp_core::shaping::ToolRule::from_stored(
            rule.status.as_deref(),
            rule.name,
            rule.title,
            rule.description,
            rule.annotations.as_deref(),
        )
        .map_err(|e| AdminError::Invalid(format!("namespace {name}: tool {tool}: {e}")))?;
    }
    Ok(())
}

fn tool_record(server: &str, canonical: &str, t: &ToolDecl) -> Result<ToolRuleRecord, AdminError> {
    let tool = canonical
        .strip_prefix(server)
        .and_then(|r| r.strip_prefix(mangle::SEPARATOR))
        .unwrap_or(canonical);
    let annotations = match &t.annotations {
        None => None,
        Some(Value::Object(m)) => Some(Value::Object(m.clone()).to_string()),
        Some(other) => {
            return Err(AdminError::Invalid(format!(
                "tool {canonical}: annotations must be a table/object, got {other}"
            )));
        }
    };
    Ok(ToolRuleRecord {
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
    })
}

fn namespace_diff(old: &NamespaceDecl, new: &NamespaceDecl) -> Vec<String> {
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
    ] {
        if differs {
            fields.push(f.to_owned());
        }
    }
    fields
}

async fn write_namespace(
    store: &Store,
    name: &str,
    ns: &NamespaceDecl,
    old: Option<&NamespaceDecl>,
) -> Result<(), AdminError> {
    let prefix = ns
        .prefix
        .as_deref()
        .and_then(PrefixMode::parse)
        .unwrap_or_default();
    match old {
        None => {
            store
                .create_namespace_with_prefix(name, ns.description.as_deref(), &ns.servers, prefix)
                .await?;
        }
        Some(old) => {
            if old.servers != ns.servers {
                // why: membership order is meaningful; rebuild it in the declared order.
                for s in &old.servers {
                    store.remove_namespace_server(name, s).await?;
                }
                for s in &ns.servers {
                    store.add_namespace_server(name, s).await?;
                }
            }
            if old.prefix != ns.prefix {
                store.set_namespace_prefix(name, prefix).await?;
            }
            if old.description != ns.description {
                store
                    .set_namespace_description(name, ns.description.as_deref())
                    .await?;
            }
        }
    }
    let was_inactive: BTreeSet<&String> =
        old.map(|o| o.inactive.iter().collect()).unwrap_or_default();
    let rebuilt = old.is_some_and(|o| o.servers != ns.servers);
    for s in &ns.servers {
        let inactive = ns.inactive.contains(s);
        if inactive != (was_inactive.contains(s) && !rebuilt) {
            store
                .set_namespace_server_active(name, s, !inactive)
                .await?;
        }
    }
    // Tool shaping: the declared rules replace the stored ones whole.
    let empty = BTreeMap::new();
    let old_tools = old.map_or(&empty, |o| &o.tools);
    let old_defaults = old.map(|o| (o.new_tools.clone(), o.max_name_length));
    if old_tools != &ns.tools || old_defaults != Some((ns.new_tools.clone(), ns.max_name_length)) {
        let mut rules = Vec::new();
        for (canonical, t) in &ns.tools {
            let Some((server, _)) = mangle::split(canonical) else {
                continue;
            };
            rules.push(tool_record(server, canonical, t)?);
        }
        for canonical in old_tools.keys().filter(|k| !ns.tools.contains_key(*k)) {
            if let Some((server, tool)) = mangle::split(canonical) {
                rules.push(ToolRuleRecord {
                    server_name: server.to_owned(),
                    tool: tool.to_owned(),
                    ..ToolRuleRecord::default()
                });
            }
        }
        let change = ShapingChange {
            new_tools_enabled: Some(ns.new_tools.as_deref() != Some("disabled")),
            max_name_length: Some(ns.max_name_length.map(i64::from)),
            rules,
        };
        store.change_shaping(name, &change).await?;
    }
    Ok(())
}

fn parse_rate(endpoint: &str, v: Option<&str>) -> Result<Option<RateLimit>, AdminError> {
    v.map(|r| {
        r.parse::<RateLimit>()
            .map_err(|e| AdminError::Invalid(format!("endpoint {endpoint}: {e}")))
    })
    .transpose()
}

fn endpoint_diff(old: &EndpointDecl, new: &EndpointDecl) -> Vec<String> {
    let mut fields = Vec::new();
    for (differs, f) in [
        (old.namespace != new.namespace, "namespace"),
        (old.description != new.description, "description"),
        (old.auth.unwrap_or(true) != new.auth.unwrap_or(true), "auth"),
        (
            old.query_auth.unwrap_or(false) != new.query_auth.unwrap_or(false),
            "query_auth",
        ),
        (old.rate != new.rate, "rate"),
        (old.client_rate != new.client_rate, "client_rate"),
    ] {
        if differs {
            fields.push(f.to_owned());
        }
    }
    fields
}

async fn write_endpoint(
    store: &Store,
    name: &str,
    e: &EndpointDecl,
    old: Option<&EndpointDecl>,
) -> Result<(), AdminError> {
    let limits = EndpointLimits {
        rate: parse_rate(name, e.rate.as_deref())?,
        client_rate: parse_rate(name, e.client_rate.as_deref())?,
    };
    let fields = old.map(|o| endpoint_diff(o, e));
    match fields {
        Some(f) if f.is_empty() => return Ok(()),
        Some(f) if f.iter().all(|x| x == "rate" || x == "client_rate") => {
            let update = LimitsUpdate {
                rate: Some(limits.rate),
                client_rate: Some(limits.client_rate),
            };
            store.update_endpoint_limits(name, update).await?;
            return Ok(());
        }
        // why: an endpoint's namespace and auth are fixed at creation; recreate it.
        Some(_) => store.remove_endpoint(name).await?,
        None => {}
    }
    let auth = e.auth.unwrap_or(true);
    store
        .create_endpoint_limited(
            name,
            &e.namespace,
            e.description.as_deref(),
            auth,
            auth && e.query_auth.unwrap_or(false),
            limits,
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[settings]
MCP_TIMEOUT = "30000"

[servers.alpha]
command = "fixture"
args = ["--name", "alpha"]
env = { TOKEN = "${ALPHA_TOKEN}" }
mode = "per-session"
cap = 4

[servers.remote]
type = "streamable_http"
url = "http://127.0.0.1:9/mcp"
bearerToken = "${REMOTE_TOKEN}"

[namespaces.main]
servers = ["alpha", "remote"]
inactive = ["remote"]
new_tools = "disabled"
max_name_length = 64

[namespaces.main.tools.alpha__echo]
enabled = true
name = "say"
annotations = { readOnlyHint = true }

[endpoints.main]
namespace = "main"
rate = "100/60"
"#;

    #[test]
    fn toml_and_yaml_read_the_same_thing() {
        let t = parse(SAMPLE, Format::Toml);
        let Ok(t) = t else {
            panic!("{t:?}");
        };
        assert_eq!(t.servers["alpha"].mode.as_deref(), Some("per-session"));
        assert_eq!(
            t.namespaces["main"].tools["alpha__echo"].annotations,
            Some(serde_json::json!({"readOnlyHint": true}))
        );
        let yaml = render(&t, Format::Yaml).unwrap_or_default();
        let back = parse(&yaml, Format::Yaml).ok();
        assert_eq!(back.as_ref(), Some(&t), "{yaml}");
        let toml = render(&t, Format::Toml).unwrap_or_default();
        assert_eq!(parse(&toml, Format::Toml).ok().as_ref(), Some(&t), "{toml}");
    }

    #[test]
    fn unknown_fields_are_refused_with_a_line() {
        let e = parse(
            "[servers.a]\ncommand = \"x\"\ncomand = \"y\"\n",
            Format::Toml,
        );
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("comand") && msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn references_are_not_secrets() {
        assert_eq!(redact("${TOKEN}", false), "${TOKEN}");
        assert_eq!(redact("s3cret", false), spec::REDACTED);
        assert_eq!(redact("s3cret", true), "s3cret");
    }
}
