//! Namespaces as an operator manages them: create, change (prefix mode, default-deny,
//! name-length limit), add and remove servers, list, remove; and, for `metamcp apply`, set
//! the members and the prefix mode at once.
//!
//! One rule guards every change of members or prefix mode ([`check_layout`]): a change under
//! which known tool names clash without prefixes, where they did not clash before, is
//! refused (a clash that already exists — an upstream added a tool later — does not block
//! unrelated changes). Membership changes are written by difference, never by removing and
//! re-adding members.

use metamcp_core::mangle::{self, PrefixMode};
use metamcp_store::{NamespaceRecord, StoreError, Tx};
use serde::Serialize;

use super::tools as shaping;
use super::{Access, AdminError, Cx, tenancy};

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
    /// The owner's email; `None`: public.
    pub owner: Option<String>,
    pub description: Option<String>,
    /// `always`, `conditional` or `never`.
    pub prefix: &'static str,
    pub servers: Vec<MemberView>,
    pub new_tools_enabled: bool,
    pub max_name_length: Option<i64>,
    /// Tool-call arguments and results are recorded in the audit log (redacted, capped).
    pub audit_payloads: bool,
    /// Known tool names that clash (calls to them are refused).
    pub collisions: Vec<Collision>,
}

/// A namespace to create.
#[derive(Debug, Clone)]
pub struct NewNamespace {
    pub name: String,
    pub servers: Vec<String>,
    /// Members that start switched off (a subset of `servers`).
    pub inactive: Vec<String>,
    pub description: Option<String>,
    pub prefix: PrefixMode,
    /// `None`: the default (enabled).
    pub new_tools_enabled: Option<bool>,
    /// `Some(None)`: no limit.
    pub max_name_length: Option<Option<u32>>,
    /// The owner's email; `None`: the actor's default ([`Cx::owner_for_new`]).
    pub owner: Option<String>,
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

/// What decides a namespace's exposed names: its members (in order, with whether each is
/// active) and its prefix mode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    members: Vec<(String, bool)>,
    prefix: PrefixMode,
}

impl Layout {
    fn of(ns: &NamespaceRecord) -> Layout {
        Layout {
            members: ns
                .servers
                .iter()
                .map(|m| (m.server_name.clone(), m.active))
                .collect(),
            prefix: ns.prefix,
        }
    }

    fn active(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, active)| *active)
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Known tool names active members share, when this layout does not prefix them.
    async fn clashes(&self, tx: &mut Tx) -> Result<Vec<(String, Vec<String>)>, AdminError> {
        let active = self.active();
        if self.prefix.prefixes(active.len()) {
            return Ok(Vec::new());
        }
        known_collisions(tx, &active).await
    }
}

async fn view(tx: &mut Tx, n: NamespaceRecord) -> Result<NamespaceView, AdminError> {
    let collisions = Layout::of(&n)
        .clashes(tx)
        .await?
        .into_iter()
        .map(|(tool, servers)| Collision { tool, servers })
        .collect();
    Ok(NamespaceView {
        owner: tenancy::email(n.owner.as_ref()),
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
        audit_payloads: n.audit_payloads,
        collisions,
    })
}

/// Records (or stops recording) the namespace's tool-call arguments and results in the audit
/// log — redacted by key name and capped (`METAMCP_AUDIT_REDACT`,
/// `METAMCP_AUDIT_PAYLOAD_BYTES`).
pub async fn set_audit_payloads(
    cx: &mut Cx<'_>,
    name: &str,
    on: bool,
) -> Result<NamespaceView, AdminError> {
    let ns = load(cx, name, Access::Configure).await?;
    cx.tx.set_namespace_audit_payloads(&ns.name, on).await?;
    get(cx, name).await
}

/// Every namespace the actor sees.
pub async fn list(cx: &mut Cx<'_>) -> Result<Vec<NamespaceView>, AdminError> {
    cx.require(Access::Read)?;
    let mut out = Vec::new();
    let mut all = cx.tx.list_namespaces().await?;
    all.retain(|n| tenancy::visible(cx.actor, n.owner.as_ref()));
    for n in all {
        out.push(view(cx.tx, n).await?);
    }
    Ok(out)
}

/// One namespace by name.
pub async fn get(cx: &mut Cx<'_>, name: &str) -> Result<NamespaceView, AdminError> {
    let n = load(cx, name, Access::Read).await?;
    view(cx.tx, n).await
}

/// The namespace `name`, if the actor may do `access` to it.
pub(super) async fn load(
    cx: &mut Cx<'_>,
    name: &str,
    access: Access,
) -> Result<NamespaceRecord, AdminError> {
    let n = cx
        .tx
        .get_namespace(name)
        .await?
        .ok_or_else(|| not_found(name))?;
    cx.require_object(access, "namespace", name, n.owner.as_ref())?;
    Ok(n)
}

/// Gives the namespace to the user with `owner` (an email), or makes it public (`None`):
/// admins only; its servers and endpoints must still be allowed with it.
pub async fn set_owner(cx: &mut Cx<'_>, name: &str, owner: Option<&str>) -> Result<(), AdminError> {
    change_owner(cx, name, owner).await?;
    tenancy::check_all(cx.tx).await
}

/// [`set_owner`] without the composition check (`apply` checks everything at its end).
pub(super) async fn change_owner(
    cx: &mut Cx<'_>,
    name: &str,
    owner: Option<&str>,
) -> Result<(), AdminError> {
    cx.require(Access::Administer)?;
    load(cx, name, Access::Administer).await?;
    let id = cx.owner_for_new(owner).await?;
    cx.tx
        .set_owner(metamcp_store::Owned::Namespace, name, id.as_deref())
        .await?;
    Ok(())
}

/// Creates a namespace, refusing a prefix mode under which known tool names clash.
pub async fn create(cx: &mut Cx<'_>, new: NewNamespace) -> Result<Created, AdminError> {
    cx.require(Access::Configure)?;
    // why: refuse a bad limit before the namespace is written, not after.
    if let Some(Some(l)) = new.max_name_length {
        shaping::validate_limit(l)?;
    }
    check_members(&new.servers, &new.inactive)?;
    let owner_id = cx.owner_for_new(new.owner.as_deref()).await?;
    let owner = tenancy::owner_of(cx.tx, owner_id.as_deref()).await?;
    tenancy::check_members(cx, &new.name, owner.as_ref(), &new.servers).await?;
    let layout = Layout {
        members: new
            .servers
            .iter()
            .map(|s| (s.clone(), !new.inactive.contains(s)))
            .collect(),
        prefix: new.prefix,
    };
    let notes = check_layout(cx.tx, None, &layout).await?;
    cx.tx
        .create_namespace(
            &new.name,
            new.description.as_deref(),
            &new.servers,
            new.prefix,
        )
        .await?;
    if let Some(id) = &owner_id {
        cx.tx
            .set_owner(metamcp_store::Owned::Namespace, &new.name, Some(id))
            .await?;
    }
    for s in &new.inactive {
        cx.tx
            .set_namespace_server_active(&new.name, s, false)
            .await?;
    }
    if new.new_tools_enabled.is_some() || new.max_name_length.is_some() {
        shaping::set_defaults(cx, &new.name, new.new_tools_enabled, new.max_name_length).await?;
    }
    Ok(Created {
        namespace: get(cx, &new.name).await?,
        notes,
    })
}

/// Changes a namespace's prefix mode and/or defaults.
pub async fn update(
    cx: &mut Cx<'_>,
    name: &str,
    patch: NamespacePatch,
) -> Result<Updated, AdminError> {
    let ns = load(cx, name, Access::Configure).await?;
    let mut notes = Vec::new();
    if let Some(mode) = patch.prefix {
        let members = Layout::of(&ns).members;
        notes = relayout(cx.tx, &ns, members, mode).await?;
    }
    let defaults_changed = patch.new_tools_enabled.is_some() || patch.max_name_length.is_some();
    let mut known_tools_kept = 0;
    if defaults_changed {
        let changed =
            shaping::set_defaults(cx, name, patch.new_tools_enabled, patch.max_name_length).await?;
        known_tools_kept = changed.tools.len();
    }
    Ok(Updated {
        namespace: get(cx, name).await?,
        prefix_changed: patch.prefix.is_some(),
        defaults_changed,
        known_tools_kept,
        notes,
    })
}

/// Makes the namespace's members exactly `servers` (in this order; `inactive` ones switched
/// off) and, if given, its prefix mode: one change, checked as one (`metamcp apply`).
pub async fn reshape(
    cx: &mut Cx<'_>,
    name: &str,
    servers: &[String],
    inactive: &[String],
    prefix: Option<PrefixMode>,
) -> Result<Vec<String>, AdminError> {
    check_members(servers, inactive)?;
    let ns = load(cx, name, Access::Configure).await?;
    tenancy::check_members(cx, name, ns.owner.as_ref(), servers).await?;
    let members = servers
        .iter()
        .map(|s| (s.clone(), !inactive.contains(s)))
        .collect();
    relayout(cx.tx, &ns, members, prefix.unwrap_or(ns.prefix)).await
}

/// Adds servers (active, at the end) to a namespace.
pub async fn add_servers(
    cx: &mut Cx<'_>,
    name: &str,
    servers: &[String],
) -> Result<(), AdminError> {
    let ns = load(cx, name, Access::Configure).await?;
    tenancy::check_members(cx, name, ns.owner.as_ref(), servers).await?;
    let mut members = Layout::of(&ns).members;
    for s in servers {
        if members.iter().any(|(m, _)| m == s) {
            return Err(StoreError::Duplicate {
                kind: "namespace member",
                name: format!("{name}/{s}"),
            }
            .into());
        }
        members.push((s.clone(), true));
    }
    relayout(cx.tx, &ns, members, ns.prefix).await?;
    Ok(())
}

/// Takes servers out of a namespace.
pub async fn remove_servers(
    cx: &mut Cx<'_>,
    name: &str,
    servers: &[String],
) -> Result<(), AdminError> {
    let ns = load(cx, name, Access::Configure).await?;
    let mut members = Layout::of(&ns).members;
    for s in servers {
        let before = members.len();
        members.retain(|(m, _)| m != s);
        if members.len() == before {
            return Err(StoreError::NotFound {
                kind: "namespace member",
                name: format!("{name}/{s}"),
            }
            .into());
        }
    }
    relayout(cx.tx, &ns, members, ns.prefix).await?;
    Ok(())
}

/// Replaces a namespace's description.
pub async fn set_description(
    cx: &mut Cx<'_>,
    name: &str,
    description: Option<&str>,
) -> Result<(), AdminError> {
    load(cx, name, Access::Configure).await?;
    cx.tx.set_namespace_description(name, description).await?;
    Ok(())
}

/// Removes a namespace (and its endpoints).
pub async fn remove(cx: &mut Cx<'_>, name: &str) -> Result<(), AdminError> {
    load(cx, name, Access::Configure).await?;
    cx.tx.remove_namespace(name).await?;
    Ok(())
}

/// A namespace needs a server, and only members can be inactive.
fn check_members(servers: &[String], inactive: &[String]) -> Result<(), AdminError> {
    if servers.is_empty() {
        return Err(AdminError::Invalid(
            "servers: a namespace needs at least one server".into(),
        ));
    }
    match inactive.iter().find(|s| !servers.contains(s)) {
        Some(s) => Err(AdminError::Invalid(format!(
            "inactive server {s:?} is not one of its servers"
        ))),
        None => Ok(()),
    }
}

/// Checks and writes a new layout of `ns` (members by difference, then the prefix mode).
async fn relayout(
    tx: &mut Tx,
    ns: &NamespaceRecord,
    members: Vec<(String, bool)>,
    prefix: PrefixMode,
) -> Result<Vec<String>, AdminError> {
    let before = Layout::of(ns);
    let after = Layout { members, prefix };
    let notes = check_layout(tx, Some(&before), &after).await?;
    if after.members != before.members {
        tx.set_namespace_members(&ns.name, &after.members).await?;
    }
    if after.prefix != before.prefix {
        tx.set_namespace_prefix(&ns.name, after.prefix).await?;
    }
    Ok(notes)
}

/// The rule for members and prefix modes: refuses `after` when known tool names clash under
/// it that did not clash (among the same servers) under `before`; notes the members whose
/// tools are not known yet, when names are not prefixed.
async fn check_layout(
    tx: &mut Tx,
    before: Option<&Layout>,
    after: &Layout,
) -> Result<Vec<String>, AdminError> {
    let active = after.active();
    if after.prefix.prefixes(active.len()) {
        return Ok(Vec::new());
    }
    // why: compare clashes whatever the members' order.
    let sorted = |(tool, mut servers): (String, Vec<String>)| {
        servers.sort();
        (tool, servers)
    };
    let old: Vec<(String, Vec<String>)> = match before {
        Some(b) => b.clashes(tx).await?.into_iter().map(sorted).collect(),
        None => Vec::new(),
    };
    let new: Vec<(String, Vec<String>)> = after
        .clashes(tx)
        .await?
        .into_iter()
        .map(sorted)
        .filter(|c| !old.contains(c))
        .collect();
    if !new.is_empty() {
        let list: Vec<String> = new
            .iter()
            .map(|(t, s)| format!("{t} ({})", s.join(", ")))
            .collect();
        return Err(AdminError::Collision(format!(
            "without prefixes these tool names clash: {}; use --prefix always or conditional",
            list.join("; ")
        )));
    }
    let mut notes = Vec::new();
    for name in &active {
        if let Some(rec) = tx.get_server(name).await?
            && tx.list_tools(&rec.id).await?.is_empty()
        {
            notes.push(format!(
                "note: the tools of {name} are not known yet; clashes are refused at run time and shown by `namespace list`"
            ));
        }
    }
    Ok(notes)
}

/// Tool names two of `servers` share, from the tools the gateway has discovered so far.
async fn known_collisions(
    tx: &mut Tx,
    servers: &[String],
) -> Result<Vec<(String, Vec<String>)>, AdminError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for name in servers {
        let Some(rec) = tx.get_server(name).await? else {
            continue;
        };
        for t in tx.list_tools(&rec.id).await? {
            pairs.push((name.clone(), t.name));
        }
    }
    Ok(mangle::collisions(
        pairs.iter().map(|(s, t)| (s.as_str(), t.as_str())),
    ))
}
