//! Namespaces as an operator manages them: create, change (prefix mode, default-deny,
//! name-length limit), add and remove servers, list, remove. A prefix mode under which two
//! known tools would share a name is refused here, before anything is written.

use metamcp_core::mangle::{self, PrefixMode};
use metamcp_store::{NamespaceRecord, Store};
use serde::Serialize;

use super::AdminError;
use super::tools as shaping;

/// One member server.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub server: String,
    pub active: bool,
}

/// A tool name two or more active members share (only possible without prefixes).
#[derive(Debug, Clone, Serialize)]
pub struct Collision {
    pub tool: String,
    pub servers: Vec<String>,
}

/// One namespace as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceView {
    pub name: String,
    pub description: Option<String>,
    /// `always`, `conditional` or `never`.
    pub prefix: &'static str,
    pub servers: Vec<MemberView>,
    pub new_tools_enabled: bool,
    pub max_name_length: Option<i64>,
    /// Known tool names that clash (calls to them are refused).
    pub collisions: Vec<Collision>,
}

/// A namespace to create.
#[derive(Debug, Clone)]
pub struct NewNamespace {
    pub name: String,
    pub servers: Vec<String>,
    pub description: Option<String>,
    pub prefix: PrefixMode,
    /// `None`: the default (enabled).
    pub new_tools_enabled: Option<bool>,
    /// `Some(None)`: no limit.
    pub max_name_length: Option<Option<u32>>,
}

/// What creating a namespace did.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub namespace: NamespaceView,
    /// Remarks (servers whose tools are not known yet, so clashes cannot be checked).
    pub notes: Vec<String>,
}

/// A change of a namespace; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct NamespacePatch {
    pub prefix: Option<PrefixMode>,
    pub new_tools_enabled: Option<bool>,
    /// `Some(None)`: remove the limit.
    pub max_name_length: Option<Option<u32>>,
}

/// What a change did.
#[derive(Debug, Clone, Serialize)]
pub struct Updated {
    pub namespace: NamespaceView,
    /// Set when the prefix mode was changed.
    pub prefix_changed: bool,
    /// Set when the defaults were changed.
    pub defaults_changed: bool,
    /// Known tools that keep their current state under the new defaults.
    pub known_tools_kept: usize,
    pub notes: Vec<String>,
}

/// `always`, `conditional` or `never`.
pub fn parse_prefix(s: &str) -> Result<PrefixMode, AdminError> {
    PrefixMode::parse(s).ok_or_else(|| {
        AdminError::Invalid(format!(
            "unknown prefix mode {s:?} (always, conditional or never)"
        ))
    })
}

/// `enabled` or `disabled`.
pub fn parse_new_tools(s: &str) -> Result<bool, AdminError> {
    match s {
        "enabled" => Ok(true),
        "disabled" => Ok(false),
        _ => Err(AdminError::Invalid(format!(
            "new tools are `enabled` or `disabled`, not {s:?}"
        ))),
    }
}

/// `N` or `off` (→ `None`).
pub fn parse_name_length(s: &str) -> Result<Option<u32>, AdminError> {
    if s == "off" {
        return Ok(None);
    }
    s.parse::<u32>().map(Some).map_err(|_| {
        AdminError::Invalid(format!(
            "--max-name-length takes a number or `off`, not {s:?}"
        ))
    })
}

fn not_found(name: &str) -> AdminError {
    AdminError::NotFound(format!("no namespace named {name:?}"))
}

fn active_members(ns: &NamespaceRecord) -> Vec<String> {
    ns.servers
        .iter()
        .filter(|m| m.active)
        .map(|m| m.server_name.clone())
        .collect()
}

async fn view(store: &Store, n: NamespaceRecord) -> Result<NamespaceView, AdminError> {
    let active = active_members(&n);
    let collisions = if n.prefix.prefixes(active.len()) {
        Vec::new()
    } else {
        known_collisions(store, &active)
            .await?
            .into_iter()
            .map(|(tool, servers)| Collision { tool, servers })
            .collect()
    };
    Ok(NamespaceView {
        name: n.name,
        description: n.description,
        prefix: n.prefix.as_str(),
        servers: n
            .servers
            .into_iter()
            .map(|m| MemberView {
                server: m.server_name,
                active: m.active,
            })
            .collect(),
        new_tools_enabled: n.new_tools_enabled,
        max_name_length: n.max_name_length,
        collisions,
    })
}

/// Every namespace.
pub async fn list(store: &Store) -> Result<Vec<NamespaceView>, AdminError> {
    let mut out = Vec::new();
    for n in store.list_namespaces().await? {
        out.push(view(store, n).await?);
    }
    Ok(out)
}

/// One namespace by name.
pub async fn get(store: &Store, name: &str) -> Result<NamespaceView, AdminError> {
    let n = store
        .get_namespace(name)
        .await?
        .ok_or_else(|| not_found(name))?;
    view(store, n).await
}

/// Creates a namespace, refusing a prefix mode under which known tool names clash.
pub async fn create(store: &Store, new: NewNamespace) -> Result<Created, AdminError> {
    // why: refuse a bad limit before the namespace is written, not after.
    if let Some(Some(l)) = new.max_name_length {
        metamcp_core::shaping::validate_limit(usize::try_from(l).unwrap_or(usize::MAX))
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
    }
    let notes = check_collisions(store, &new.servers, new.prefix).await?;
    store
        .create_namespace_with_prefix(
            &new.name,
            new.description.as_deref(),
            &new.servers,
            new.prefix,
        )
        .await?;
    if new.new_tools_enabled.is_some() || new.max_name_length.is_some() {
        shaping::set_defaults(store, &new.name, new.new_tools_enabled, new.max_name_length).await?;
    }
    Ok(Created {
        namespace: get(store, &new.name).await?,
        notes,
    })
}

/// Changes a namespace's prefix mode and/or defaults.
pub async fn update(
    store: &Store,
    name: &str,
    patch: NamespacePatch,
) -> Result<Updated, AdminError> {
    let ns = store
        .get_namespace(name)
        .await?
        .ok_or_else(|| not_found(name))?;
    let mut notes = Vec::new();
    if let Some(mode) = patch.prefix {
        notes = check_collisions(store, &active_members(&ns), mode).await?;
        store.set_namespace_prefix(name, mode).await?;
    }
    let defaults_changed = patch.new_tools_enabled.is_some() || patch.max_name_length.is_some();
    let mut known_tools_kept = 0;
    if defaults_changed {
        let changed =
            shaping::set_defaults(store, name, patch.new_tools_enabled, patch.max_name_length)
                .await?;
        known_tools_kept = changed.tools.len();
    }
    Ok(Updated {
        namespace: get(store, name).await?,
        prefix_changed: patch.prefix.is_some(),
        defaults_changed,
        known_tools_kept,
        notes,
    })
}

/// Adds servers to a namespace.
pub async fn add_servers(store: &Store, name: &str, servers: &[String]) -> Result<(), AdminError> {
    for s in servers {
        store.add_namespace_server(name, s).await?;
    }
    Ok(())
}

/// Takes servers out of a namespace.
pub async fn remove_servers(
    store: &Store,
    name: &str,
    servers: &[String],
) -> Result<(), AdminError> {
    for s in servers {
        store.remove_namespace_server(name, s).await?;
    }
    Ok(())
}

/// Removes a namespace (and its endpoints).
pub async fn remove(store: &Store, name: &str) -> Result<(), AdminError> {
    store.remove_namespace(name).await?;
    Ok(())
}

/// Tool names two of `servers` share, from the tools the gateway has discovered so far.
async fn known_collisions(
    store: &Store,
    servers: &[String],
) -> Result<Vec<(String, Vec<String>)>, AdminError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for name in servers {
        let Some(rec) = store.get_server(name).await? else {
            continue;
        };
        for t in store.list_tools(&rec.id).await? {
            pairs.push((name.clone(), t.name));
        }
    }
    Ok(mangle::collisions(
        pairs.iter().map(|(s, t)| (s.as_str(), t.as_str())),
    ))
}

/// Refuses a prefix mode under which known tool names would clash; notes what is unknown.
async fn check_collisions(
    store: &Store,
    servers: &[String],
    mode: PrefixMode,
) -> Result<Vec<String>, AdminError> {
    if mode.prefixes(servers.len()) {
        return Ok(Vec::new());
    }
    let clashes = known_collisions(store, servers).await?;
    if !clashes.is_empty() {
        let list: Vec<String> = clashes
            .iter()
            .map(|(t, s)| format!("{t} ({})", s.join(", ")))
            .collect();
        return Err(AdminError::Collision(format!(
            "without prefixes these tool names clash: {}; use --prefix always or conditional",
            list.join("; ")
        )));
    }
    let mut notes = Vec::new();
    for name in servers {
        if let Some(rec) = store.get_server(name).await?
            && store.list_tools(&rec.id).await?.is_empty()
        {
            notes.push(format!(
                "note: the tools of {name} are not known yet; clashes are refused at run time and shown by `namespace list`"
            ));
        }
    }
    Ok(notes)
}
