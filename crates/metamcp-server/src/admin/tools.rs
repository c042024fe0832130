//! Tool shaping as an operator edits it: list a namespace's tools with their effective
//! state, switch them on and off by name, glob or regex, override and reset them, and
//! change the namespace's defaults (default-deny, name-length limit).
//!
//! Patterns match a tool's canonical name `server__tool` (stable whatever the prefix mode
//! and overrides) or its exposed name: a glob (`*`, `?`, `[…]`) or `re:REGEX` (whole name).
//! Patterns expand against the tools upstreams reported (recorded by running gateways); an
//! exact `server__tool` of a member server may name a tool not discovered yet.
//!
//! Every change is checked before it is written: a rename, an enable or a length limit that
//! would give two enabled tools the same exposed name is refused (the gateway would
//! otherwise have to hide both).

use std::collections::{BTreeMap, HashMap};

use metamcp_core::mangle;
use metamcp_core::shaping::{self, Shaping, ToolRule};
use metamcp_store::{DiscoveredTool, NamespaceRecord, ShapingChange, ToolRuleRecord, Tx};
use serde::Serialize;

use super::{Access, AdminError, Cx};

/// One tool of a namespace as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ToolView {
    /// `server__tool`: how patterns and `tool override`/`reset` name it in any prefix mode.
    pub canonical: String,
    pub server: String,
    /// The tool's name on its upstream.
    pub tool: String,
    /// The name clients see (or would see, when disabled).
    pub exposed: String,
    pub enabled: bool,
    /// The status comes from a rule (else from the namespace's default).
    pub explicit: bool,
    /// Reported by an upstream (else only known from a rule).
    pub discovered: bool,
    /// The description clients see.
    pub description: Option<String>,
    /// Overridden fields: `name`, `title`, `description`, `annotations`.
    pub overrides: Vec<&'static str>,
}

/// A namespace's tools and defaults.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceTools {
    pub namespace: String,
    pub new_tools_enabled: bool,
    pub max_name_length: Option<i64>,
    pub tools: Vec<ToolView>,
}

/// Fields of `tool override`; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct OverridePatch {
    pub name: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// JSON object text.
    pub annotations: Option<String>,
}

/// What the operator's change did.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    /// Canonical names of the tools changed.
    pub tools: Vec<String>,
}

/// Everything needed to judge a change: the namespace, its member tools and rules.
struct Scope {
    ns: NamespaceRecord,
    /// `(server name, tool)` → discovered tool, for active members.
    discovered: BTreeMap<(String, String), DiscoveredTool>,
    rules: BTreeMap<(String, String), ToolRuleRecord>,
}

impl Scope {
    async fn load(tx: &mut Tx, namespace: &str) -> Result<Scope, AdminError> {
        let ns = tx
            .get_namespace(namespace)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no namespace named {namespace:?}")))?;
        let mut discovered = BTreeMap::new();
        for m in ns.servers.iter().filter(|m| m.active) {
            for t in tx.list_tools(&m.server_id).await? {
                discovered.insert((m.server_name.clone(), t.name.clone()), t);
            }
        }
        let rules = ns
            .tools
            .iter()
            .map(|r| ((r.server_name.clone(), r.tool.clone()), r.clone()))
            .collect();
        Ok(Scope {
            ns,
            discovered,
            rules,
        })
    }

    fn prefixed(&self) -> bool {
        self.ns
            .prefix
            .prefixes(self.ns.servers.iter().filter(|m| m.active).count())
    }

    fn is_member(&self, server: &str) -> bool {
        self.ns.servers.iter().any(|m| m.server_name == server)
    }

    /// The shaping these rules and defaults give; an unreadable rule is an error here
    /// (the gateway would deny every tool).
    fn shaping(
        &self,
        new_tools_enabled: bool,
        limit: Option<i64>,
        rules: &BTreeMap<(String, String), ToolRuleRecord>,
    ) -> Result<Shaping, AdminError> {
        let mut parsed = Vec::with_capacity(rules.len());
        for (k, r) in rules {
            let rule = ToolRule::from_stored(
                r.status.as_deref(),
                r.name.clone(),
                r.title.clone(),
                r.description.clone(),
                r.annotations.as_deref(),
            )
            .map_err(|e| AdminError::Invalid(format!("{}: {e}", mangle::qualify(&k.0, &k.1))))?;
            parsed.push((k.clone(), rule));
        }
        let limit = limit
            .map(|l| usize::try_from(l).map_err(|_| AdminError::Invalid(format!("limit {l}"))))
            .transpose()?;
        Ok(Shaping::new(new_tools_enabled, limit, parsed))
    }

    /// Every tool known: discovered ones and those only named by one of `rules`.
    fn keys(&self, rules: &BTreeMap<(String, String), ToolRuleRecord>) -> Vec<(String, String)> {
        let mut keys: Vec<(String, String)> = self.discovered.keys().cloned().collect();
        for k in rules.keys() {
            if !self.discovered.contains_key(k) && self.is_member(&k.0) {
                keys.push(k.clone());
            }
        }
        keys.sort();
        keys
    }

    fn views(&self) -> Result<Vec<ToolView>, AdminError> {
        let shaping = self.shaping(
            self.ns.new_tools_enabled,
            self.ns.max_name_length,
            &self.rules,
        )?;
        let prefixed = self.prefixed();
        Ok(self
            .keys(&self.rules)
            .into_iter()
            .map(|(server, tool)| {
                let rule = self.rules.get(&(server.clone(), tool.clone()));
                let found = self.discovered.get(&(server.clone(), tool.clone()));
                let mut overrides = Vec::new();
                if let Some(r) = rule {
                    for (set, field) in [
                        (r.name.is_some(), "name"),
                        (r.title.is_some(), "title"),
                        (r.description.is_some(), "description"),
                        (r.annotations.is_some(), "annotations"),
                    ] {
                        if set {
                            overrides.push(field);
                        }
                    }
                }
                ToolView {
                    canonical: mangle::qualify(&server, &tool),
                    exposed: shaping.exposed_name(&server, &tool, prefixed),
                    enabled: shaping.enabled(&server, &tool),
                    explicit: rule.is_some_and(|r| r.status.is_some()),
                    discovered: found.is_some(),
                    description: rule
                        .and_then(|r| r.description.clone())
                        .or_else(|| found.and_then(|t| t.description.clone())),
                    overrides,
                    server,
                    tool,
                }
            })
            .collect())
    }

    /// Refuses `rules` (with these defaults) when two enabled known tools would share an
    /// exposed name.
    fn check(
        &self,
        new_tools_enabled: bool,
        limit: Option<i64>,
        rules: &BTreeMap<(String, String), ToolRuleRecord>,
    ) -> Result<(), AdminError> {
        let shaping = self.shaping(new_tools_enabled, limit, rules)?;
        let keys = self.keys(rules);
        let clashes = shaping.collisions(
            keys.iter().map(|(s, t)| (s.as_str(), t.as_str())),
            self.prefixed(),
        );
        if clashes.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = clashes
            .iter()
            .map(|(name, owners)| format!("{name:?} would name {}", owners.join(" and ")))
            .collect();
        Err(AdminError::Collision(format!(
            "refused: {}; rename or disable one of them",
            list.join("; ")
        )))
    }

    /// The tools `pattern` selects, as `(server, tool)`.
    fn select(&self, pattern: &str) -> Result<Vec<(String, String)>, AdminError> {
        let matcher = Matcher::new(pattern)?;
        let views = self.views()?;
        let mut hits: Vec<(String, String)> = views
            .iter()
            .filter(|v| matcher.is_match(&v.canonical) || matcher.is_match(&v.exposed))
            .map(|v| (v.server.clone(), v.tool.clone()))
            .collect();
        if hits.is_empty()
            && matcher.is_literal()
            && let Some((server, tool)) = mangle::split(pattern)
            && self.is_member(server)
        {
            // why: a tool the upstream has not reported yet (or whose server is down) can
            // still be named exactly, so a rule can precede it.
            hits.push((server.to_owned(), tool.to_owned()));
        }
        if hits.is_empty() {
            return Err(AdminError::NotFound(format!(
                "no tool of namespace {} matches {pattern:?} (see `metamcp tool list {}`)",
                self.ns.name, self.ns.name
            )));
        }
        Ok(hits)
    }

    /// The one tool `name` (canonical or exposed) designates.
    fn one(&self, name: &str) -> Result<(String, String), AdminError> {
        let views = self.views()?;
        if let Some(v) = views
            .iter()
            .find(|v| v.canonical == name)
            .or_else(|| views.iter().find(|v| v.exposed == name))
        {
            return Ok((v.server.clone(), v.tool.clone()));
        }
        match mangle::split(name) {
            Some((server, tool)) if self.is_member(server) => {
                Ok((server.to_owned(), tool.to_owned()))
            }
            _ => Err(AdminError::NotFound(format!(
                "no tool {name:?} in namespace {}: name it server__tool (see `metamcp tool list {}`)",
                self.ns.name, self.ns.name
            ))),
        }
    }

    fn rule_mut<'a>(
        rules: &'a mut BTreeMap<(String, String), ToolRuleRecord>,
        key: &(String, String),
    ) -> &'a mut ToolRuleRecord {
        rules.entry(key.clone()).or_insert_with(|| ToolRuleRecord {
            server_name: key.0.clone(),
            tool: key.1.clone(),
            ..ToolRuleRecord::default()
        })
    }
}

/// A glob or `re:` pattern over tool names.
enum Matcher {
    Glob(globset::GlobMatcher, bool),
    Regex(regex::Regex),
}

impl Matcher {
    fn new(pattern: &str) -> Result<Matcher, AdminError> {
        if let Some(re) = pattern.strip_prefix("re:") {
            let re = regex::Regex::new(&format!("^(?:{re})$"))
                .map_err(|e| AdminError::Invalid(format!("bad regex {re:?}: {e}")))?;
            return Ok(Matcher::Regex(re));
        }
        let literal = !pattern.contains(['*', '?', '[', '{']);
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()
            .map_err(|e| AdminError::Invalid(format!("bad glob {pattern:?}: {e}")))?;
        Ok(Matcher::Glob(glob.compile_matcher(), literal))
    }

    fn is_match(&self, name: &str) -> bool {
        match self {
            Matcher::Glob(g, _) => g.is_match(name),
            Matcher::Regex(r) => r.is_match(name),
        }
    }

    fn is_literal(&self) -> bool {
        matches!(self, Matcher::Glob(_, true))
    }
}

/// The namespace's tools with their effective state.
pub async fn list(cx: &mut Cx<'_>, namespace: &str) -> Result<NamespaceTools, AdminError> {
    let scope = Scope::load(cx.tx, namespace).await?;
    cx.require_object(
        Access::Read,
        "namespace",
        namespace,
        scope.ns.owner.as_ref(),
    )?;
    Ok(NamespaceTools {
        namespace: scope.ns.name.clone(),
        new_tools_enabled: scope.ns.new_tools_enabled,
        max_name_length: scope.ns.max_name_length,
        tools: scope.views()?,
    })
}

/// Switches on (or off) every tool any of `patterns` selects.
pub async fn set_enabled(
    cx: &mut Cx<'_>,
    namespace: &str,
    patterns: &[String],
    enabled: bool,
) -> Result<Changed, AdminError> {
    let scope = Scope::load(cx.tx, namespace).await?;
    cx.require_object(
        Access::Configure,
        "namespace",
        namespace,
        scope.ns.owner.as_ref(),
    )?;
    let mut keys: Vec<(String, String)> = Vec::new();
    for p in patterns {
        for k in scope.select(p)? {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let mut rules = scope.rules.clone();
    for k in &keys {
        Scope::rule_mut(&mut rules, k).status =
            Some(if enabled { "ACTIVE" } else { "INACTIVE" }.to_owned());
    }
    if enabled {
        scope.check(scope.ns.new_tools_enabled, scope.ns.max_name_length, &rules)?;
    }
    write(cx.tx, namespace, &rules, &keys, ShapingChange::default()).await
}

/// Overrides fields of one tool (name, title, description, annotations).
pub async fn override_tool(
    cx: &mut Cx<'_>,
    namespace: &str,
    tool: &str,
    patch: OverridePatch,
) -> Result<Changed, AdminError> {
    let scope = Scope::load(cx.tx, namespace).await?;
    cx.require_object(
        Access::Configure,
        "namespace",
        namespace,
        scope.ns.owner.as_ref(),
    )?;
    let key = scope.one(tool)?;
    if let Some(n) = &patch.name {
        shaping::validate_tool_name(n).map_err(|e| AdminError::Invalid(e.to_string()))?;
    }
    if let Some(a) = &patch.annotations {
        shaping::parse_annotations(a).map_err(|e| AdminError::Invalid(e.to_string()))?;
    }
    let mut rules = scope.rules.clone();
    let rule = Scope::rule_mut(&mut rules, &key);
    if let Some(n) = patch.name {
        // why: a rename back to the upstream's own name is no override at all.
        rule.name = (n != key.1).then_some(n);
    }
    if patch.title.is_some() {
        rule.title = patch.title;
    }
    if patch.description.is_some() {
        rule.description = patch.description;
    }
    if patch.annotations.is_some() {
        rule.annotations = patch.annotations;
    }
    scope.check(scope.ns.new_tools_enabled, scope.ns.max_name_length, &rules)?;
    write(cx.tx, namespace, &rules, &[key], ShapingChange::default()).await
}

/// Drops every rule of one tool: it follows the namespace's default again, unrenamed.
pub async fn reset_tool(
    cx: &mut Cx<'_>,
    namespace: &str,
    tool: &str,
) -> Result<Changed, AdminError> {
    let scope = Scope::load(cx.tx, namespace).await?;
    cx.require_object(
        Access::Configure,
        "namespace",
        namespace,
        scope.ns.owner.as_ref(),
    )?;
    let key = scope.one(tool)?;
    let mut rules = scope.rules.clone();
    rules.remove(&key);
    scope.check(scope.ns.new_tools_enabled, scope.ns.max_name_length, &rules)?;
    let mut cleared = BTreeMap::new();
    cleared.insert(
        key.clone(),
        ToolRuleRecord {
            server_name: key.0.clone(),
            tool: key.1.clone(),
            ..ToolRuleRecord::default()
        },
    );
    write(cx.tx, namespace, &cleared, &[key], ShapingChange::default()).await
}

/// Changes the namespace's defaults. Changing whether new tools arrive enabled never changes
/// a tool already discovered: each keeps its current state as an explicit rule.
pub async fn set_defaults(
    cx: &mut Cx<'_>,
    namespace: &str,
    new_tools_enabled: Option<bool>,
    max_name_length: Option<Option<u32>>,
) -> Result<Changed, AdminError> {
    let scope = Scope::load(cx.tx, namespace).await?;
    cx.require_object(
        Access::Configure,
        "namespace",
        namespace,
        scope.ns.owner.as_ref(),
    )?;
    if let Some(Some(l)) = max_name_length {
        validate_limit(l)?;
    }
    let limit = match max_name_length {
        Some(l) => l.map(i64::from),
        None => scope.ns.max_name_length,
    };
    let mut rules = scope.rules.clone();
    let mut keys = Vec::new();
    if let Some(on) = new_tools_enabled
        && on != scope.ns.new_tools_enabled
    {
        let old = scope.ns.new_tools_enabled;
        for k in scope.discovered.keys() {
            let rule = Scope::rule_mut(&mut rules, k);
            if rule.status.is_none() {
                rule.status = Some(if old { "ACTIVE" } else { "INACTIVE" }.to_owned());
                keys.push(k.clone());
            }
        }
    }
    let enabled = new_tools_enabled.unwrap_or(scope.ns.new_tools_enabled);
    scope.check(enabled, limit, &rules)?;
    let change = ShapingChange {
        new_tools_enabled,
        max_name_length: max_name_length.map(|l| l.map(i64::from)),
        rules: Vec::new(),
    };
    write(cx.tx, namespace, &rules, &keys, change).await
}

/// Makes the namespace's shaping exactly this — the defaults and `rules`, every other rule
/// removed — as `metamcp apply` declares it (unlike [`set_defaults`], tools already known
/// are not pinned to their current state). Refused, like every change here, when it would
/// give two enabled tools the same exposed name.
pub async fn replace(
    cx: &mut Cx<'_>,
    namespace: &str,
    new_tools_enabled: bool,
    max_name_length: Option<u32>,
    rules: Vec<ToolRuleRecord>,
) -> Result<Changed, AdminError> {
    let scope = Scope::load(cx.tx, namespace).await?;
    cx.require_object(
        Access::Configure,
        "namespace",
        namespace,
        scope.ns.owner.as_ref(),
    )?;
    if let Some(l) = max_name_length {
        validate_limit(l)?;
    }
    let mut wanted = BTreeMap::new();
    for r in rules {
        if !scope.is_member(&r.server_name) {
            return Err(AdminError::NotFound(format!(
                "tool {}: {} is not a server of namespace {namespace}",
                mangle::qualify(&r.server_name, &r.tool),
                r.server_name
            )));
        }
        wanted.insert((r.server_name.clone(), r.tool.clone()), r);
    }
    let limit = max_name_length.map(i64::from);
    scope.check(new_tools_enabled, limit, &wanted)?;
    let mut keys: Vec<(String, String)> = wanted.keys().cloned().collect();
    // Rules no longer declared are written empty, which deletes them.
    keys.extend(
        scope
            .rules
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned(),
    );
    let change = ShapingChange {
        new_tools_enabled: Some(new_tools_enabled),
        max_name_length: Some(limit),
        rules: Vec::new(),
    };
    write(cx.tx, namespace, &wanted, &keys, change).await
}

/// A name-length limit the shaping accepts.
pub(super) fn validate_limit(limit: u32) -> Result<(), AdminError> {
    shaping::validate_limit(usize::try_from(limit).unwrap_or(usize::MAX))
        .map_err(|e| AdminError::Invalid(e.to_string()))
}

/// Writes the rules of `keys` (whole) together with `change`.
async fn write(
    tx: &mut Tx,
    namespace: &str,
    rules: &BTreeMap<(String, String), ToolRuleRecord>,
    keys: &[(String, String)],
    mut change: ShapingChange,
) -> Result<Changed, AdminError> {
    let by_key: HashMap<&(String, String), &ToolRuleRecord> = rules.iter().collect();
    for k in keys {
        change.rules.push(by_key.get(k).map_or_else(
            || ToolRuleRecord {
                server_name: k.0.clone(),
                tool: k.1.clone(),
                ..ToolRuleRecord::default()
            },
            |r| (*r).clone(),
        ));
    }
    tx.change_shaping(namespace, &change).await?;
    Ok(Changed {
        tools: keys.iter().map(|(s, t)| mangle::qualify(s, t)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let g = Matcher::new("alpha__*").ok();
        assert!(g.as_ref().is_some_and(|m| m.is_match("alpha__echo")));
        assert!(g.as_ref().is_some_and(|m| !m.is_match("beta__echo")));
        assert!(g.as_ref().is_some_and(|m| !m.is_literal()));
        let r = Matcher::new("re:.*__(add|echo)").ok();
        assert!(r.as_ref().is_some_and(|m| m.is_match("beta__add")));
        assert!(r.as_ref().is_some_and(|m| !m.is_match("beta__adder")));
        assert!(Matcher::new("re:(").is_err());
        assert!(Matcher::new("alpha__echo").is_ok_and(|m| m.is_literal()));
    }
}
