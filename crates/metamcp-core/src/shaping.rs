//! Tool shaping: what a namespace makes of its upstreams' tools before any client sees them.
//!
//! Per namespace, each upstream tool may be switched on or off and have its name, title,
//! description and annotations overridden; tools without a rule follow the namespace's
//! default (on, MetaMCP's behaviour, or off: default-deny); exposed names longer than an
//! optional limit are shortened deterministically ([`shorten`]).
//!
//! [`Shaping`] is one value per namespace, applied in one place (the catalog build) to every
//! face: whatever a client can call is exactly what the shaped list shows, and resolution of
//! a call goes through the same shaped list, so a disabled tool is not callable under its
//! upstream name, its overridden name or any other spelling. A namespace whose stored rules
//! cannot be read gets [`Shaping::deny_all`]: it exposes no tool rather than every tool.
//!
//! Invariant: pure — no IO, no clock; the same rules give the same names on every replica.

use std::collections::HashMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::mangle;

/// The shortest name-length limit accepted: room for a readable head and the hash suffix.
pub const MIN_NAME_LENGTH: usize = 16;
/// The longest tool name MCP allows (SEP-986).
pub const MAX_TOOL_NAME: usize = 128;
/// Hex digits of the hash that ends a shortened name.
const HASH_DIGITS: usize = 8;

/// Why a rule or a limit is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapingError {
    #[error("invalid tool name {0:?}: use 1 to {MAX_TOOL_NAME} characters of A-Z a-z 0-9 _ - .")]
    ToolName(String),
    #[error("annotations must be a JSON object, got {0}")]
    Annotations(String),
    #[error("unreadable stored tool status {0:?}")]
    Status(String),
    #[error("a name-length limit must be at least {MIN_NAME_LENGTH}, got {0}")]
    Limit(usize),
}

/// What a namespace says about one upstream tool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolRule {
    /// `None`: the namespace's default for tools without a rule.
    pub enabled: Option<bool>,
    /// Replaces the upstream name; the server prefix is still applied.
    pub name: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Merged over the upstream's annotations, key by key; a `null` value removes the key.
    pub annotations: Option<Map<String, Value>>,
}

impl ToolRule {
    /// A rule from its stored form (`status` ACTIVE/INACTIVE, annotations as JSON text).
    pub fn from_stored(
        status: Option<&str>,
        name: Option<String>,
        title: Option<String>,
        description: Option<String>,
        annotations: Option<&str>,
    ) -> Result<Self, ShapingError> {
        let enabled = match status {
            None => None,
            Some("ACTIVE") => Some(true),
            Some("INACTIVE") => Some(false),
            Some(other) => return Err(ShapingError::Status(other.to_owned())),
        };
        if let Some(n) = &name {
            validate_tool_name(n)?;
        }
        let annotations = annotations.map(parse_annotations).transpose()?;
        Ok(ToolRule {
            enabled,
            name,
            title,
            description,
            annotations,
        })
    }

    /// True when the rule changes nothing (it can be deleted).
    pub fn is_empty(&self) -> bool {
        *self == ToolRule::default()
    }

    /// The stored status: `None`, `ACTIVE` or `INACTIVE`.
    pub fn status(&self) -> Option<&'static str> {
        self.enabled
            .map(|on| if on { "ACTIVE" } else { "INACTIVE" })
    }
}

/// Parses annotations given as JSON text; only an object is accepted.
pub fn parse_annotations(text: &str) -> Result<Map<String, Value>, ShapingError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ShapingError::Annotations(other.to_string())),
        Err(e) => Err(ShapingError::Annotations(format!("invalid JSON ({e})"))),
    }
}

/// A tool name as MCP allows it (SEP-986): 1–128 of `[A-Za-z0-9_.-]`.
pub fn validate_tool_name(name: &str) -> Result<(), ShapingError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TOOL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ShapingError::ToolName(name.to_owned()))
    }
}

/// Checks a name-length limit.
pub fn validate_limit(limit: usize) -> Result<(), ShapingError> {
    if limit < MIN_NAME_LENGTH {
        Err(ShapingError::Limit(limit))
    } else {
        Ok(())
    }
}

/// `name` cut to at most `max` bytes: unchanged when it fits, else a head of the name, `_`,
/// and the first 8 hex digits of the SHA-256 of the whole name (so two long names sharing a
/// head still differ, and every replica computes the same result).
pub fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest
        .iter()
        .take(HASH_DIGITS / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut head = max.saturating_sub(HASH_DIGITS + 1);
    while !name.is_char_boundary(head) {
        head -= 1;
    }
    format!("{}_{hash}", &name[..head])
}

/// The shaping of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shaping {
    /// Tools without a rule are exposed (true) or hidden (false, default-deny).
    pub new_tools_enabled: bool,
    /// Exposed names longer than this are shortened.
    pub max_name_length: Option<usize>,
    /// `(server name, upstream tool name)` → rule.
    rules: HashMap<(String, String), ToolRule>,
    /// Why the namespace exposes nothing: its configuration could not be read.
    denied: Option<String>,
}

impl Default for Shaping {
    fn default() -> Self {
        Shaping {
            new_tools_enabled: true,
            max_name_length: None,
            rules: HashMap::new(),
            denied: None,
        }
    }
}

impl Shaping {
    pub fn new(
        new_tools_enabled: bool,
        max_name_length: Option<usize>,
        rules: impl IntoIterator<Item = ((String, String), ToolRule)>,
    ) -> Self {
        Shaping {
            new_tools_enabled,
            max_name_length,
            rules: rules.into_iter().filter(|(_, r)| !r.is_empty()).collect(),
            denied: None,
        }
    }

    /// Fails closed: no tool is exposed or callable, and `reason` says why.
    pub fn deny_all(reason: impl Into<String>) -> Self {
        Shaping {
            new_tools_enabled: false,
            denied: Some(reason.into()),
            ..Shaping::default()
        }
    }

    /// Why every tool is refused, when the configuration was unreadable.
    pub fn denied(&self) -> Option<&str> {
        self.denied.as_deref()
    }

    /// True when shaping changes nothing: every tool on, under its (prefixed) upstream name.
    pub fn is_identity(&self) -> bool {
        self.denied.is_none()
            && self.new_tools_enabled
            && self.max_name_length.is_none()
            && self.rules.is_empty()
    }

    pub fn rule(&self, server: &str, tool: &str) -> Option<&ToolRule> {
        self.rules.get(&(server.to_owned(), tool.to_owned()))
    }

    /// Every rule, as `((server, tool), rule)`.
    pub fn rules(&self) -> impl Iterator<Item = (&(String, String), &ToolRule)> {
        self.rules.iter()
    }

    /// Whether `server`'s tool `tool` is exposed.
    pub fn enabled(&self, server: &str, tool: &str) -> bool {
        if self.denied.is_some() {
            return false;
        }
        self.rule(server, tool)
            .and_then(|r| r.enabled)
            .unwrap_or(self.new_tools_enabled)
    }

    /// The name `server`'s tool `tool` is exposed under (whether or not it is enabled).
    pub fn exposed_name(&self, server: &str, tool: &str, prefixed: bool) -> String {
        let base = self
            .rule(server, tool)
            .and_then(|r| r.name.as_deref())
            .unwrap_or(tool);
        let full = if prefixed {
            mangle::qualify(server, base)
        } else {
            base.to_owned()
        };
        match self.max_name_length {
            Some(max) => shorten(&full, max),
            None => full,
        }
    }

    /// Shapes one upstream tool object in place: exposed name, overridden title,
    /// description and annotations. `None` (and the object untouched) when the tool is not
    /// exposed or has no string `name`.
    pub fn shape_tool(
        &self,
        server: &str,
        prefixed: bool,
        tool: &mut Map<String, Value>,
    ) -> Option<String> {
        let upstream = tool.get("name")?.as_str()?.to_owned();
        if !self.enabled(server, &upstream) {
            return None;
        }
        let exposed = self.exposed_name(server, &upstream, prefixed);
        tool.insert("name".into(), Value::String(exposed.clone()));
        if let Some(rule) = self.rule(server, &upstream) {
            if let Some(t) = &rule.title {
                tool.insert("title".into(), Value::String(t.clone()));
            }
            if let Some(d) = &rule.description {
                tool.insert("description".into(), Value::String(d.clone()));
            }
            if let Some(over) = &rule.annotations {
                let mut merged = match tool.remove("annotations") {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                for (k, v) in over {
                    if v.is_null() {
                        merged.remove(k);
                    } else {
                        merged.insert(k.clone(), v.clone());
                    }
                }
                tool.insert("annotations".into(), Value::Object(merged));
            }
        }
        Some(exposed)
    }

    /// Exposed names that more than one enabled tool would get: `(name, ["server__tool", …])`.
    /// `tools` are `(server, upstream tool)` pairs.
    pub fn collisions<'a>(
        &self,
        tools: impl IntoIterator<Item = (&'a str, &'a str)>,
        prefixed: bool,
    ) -> Vec<(String, Vec<String>)> {
        let mut by_name: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (server, tool) in tools {
            if !self.enabled(server, tool) {
                continue;
            }
            let owners = by_name
                .entry(self.exposed_name(server, tool, prefixed))
                .or_default();
            let id = mangle::qualify(server, tool);
            if !owners.contains(&id) {
                owners.push(id);
            }
        }
        by_name.into_iter().filter(|(_, o)| o.len() > 1).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn rule(enabled: Option<bool>, name: Option<&str>) -> ToolRule {
        ToolRule {
            enabled,
            name: name.map(str::to_owned),
            ..ToolRule::default()
        }
    }

    fn key(s: &str, t: &str) -> (String, String) {
        (s.to_owned(), t.to_owned())
    }

    #[test]
    fn identity_keeps_everything() {
        let s = Shaping::default();
        assert!(s.is_identity());
        let mut t = obj(json!({"name": "echo", "x-vendor": 1}));
        assert_eq!(s.shape_tool("a", true, &mut t).as_deref(), Some("a__echo"));
        assert_eq!(t["x-vendor"], 1);
        assert_eq!(s.shape_tool("a", false, &mut t).as_deref(), Some("a__echo"));
    }

    #[test]
    fn disable_rename_and_override() {
        let mut over = Map::new();
        over.insert("readOnlyHint".into(), json!(true));
        over.insert("title".into(), Value::Null);
        let s = Shaping::new(
            true,
            None,
            [
                (key("a", "add"), rule(Some(false), None)),
                (
                    key("a", "echo"),
                    ToolRule {
                        name: Some("say".into()),
                        description: Some("Says it".into()),
                        annotations: Some(over),
                        ..ToolRule::default()
                    },
                ),
                (key("a", "gone"), rule(Some(false), Some("still_gone"))),
            ],
        );
        assert!(!s.is_identity());
        let mut add = obj(json!({"name": "add"}));
        assert_eq!(s.shape_tool("a", true, &mut add), None);
        assert_eq!(add["name"], "add", "a refused tool is left untouched");
        let mut echo = obj(json!({
            "name": "echo", "description": "Echoes",
            "annotations": {"title": "Echo", "destructiveHint": false}
        }));
        assert_eq!(
            s.shape_tool("a", true, &mut echo).as_deref(),
            Some("a__say")
        );
        assert_eq!(echo["description"], "Says it");
        assert_eq!(
            Value::Object(echo["annotations"].as_object().cloned().unwrap_or_default()),
            json!({"destructiveHint": false, "readOnlyHint": true})
        );
        assert!(!s.enabled("a", "gone"));
        assert!(s.enabled("b", "add"), "rules are per server");
    }

    #[test]
    fn default_deny_and_deny_all() {
        let s = Shaping::new(false, None, [(key("a", "echo"), rule(Some(true), None))]);
        assert!(s.enabled("a", "echo"));
        assert!(!s.enabled("a", "add"));
        let d = Shaping::deny_all("bad row");
        assert!(!d.enabled("a", "echo"));
        assert_eq!(d.denied(), Some("bad row"));
        assert!(!d.is_identity());
    }

    #[test]
    fn shortening_is_deterministic_and_bounded() {
        let long = "server__a_really_long_tool_name_that_goes_on_and_on_forever";
        let a = shorten(long, 32);
        assert_eq!(a.len(), 32);
        assert_eq!(a, shorten(long, 32));
        assert!(a.starts_with("server__a_really_long_t"));
        let b = shorten(&format!("{long}2"), 32);
        assert_ne!(a, b, "a shared head still gives different names");
        assert_eq!(shorten("short", 32), "short");
        let s = Shaping::new(true, Some(20), []);
        assert_eq!(s.exposed_name("srv", "tool", true), "srv__tool");
        assert_eq!(s.exposed_name("srv", long, true).len(), 20);
    }

    #[test]
    fn collisions_are_found() {
        let s = Shaping::new(true, None, [(key("a", "echo"), rule(None, Some("add")))]);
        let c = s.collisions([("a", "echo"), ("a", "add"), ("b", "add")], true);
        assert_eq!(
            c,
            vec![(
                "a__add".to_owned(),
                vec!["a__echo".to_owned(), "a__add".to_owned()]
            )]
        );
        let unprefixed = s.collisions([("a", "add"), ("b", "add")], false);
        assert_eq!(unprefixed.len(), 1);
    }

    #[test]
    fn stored_rules_are_validated() {
        assert!(ToolRule::from_stored(Some("MAYBE"), None, None, None, None).is_err());
        assert!(ToolRule::from_stored(None, Some("bad name".into()), None, None, None).is_err());
        assert!(ToolRule::from_stored(None, None, None, None, Some("[1]")).is_err());
        let r = ToolRule::from_stored(Some("INACTIVE"), None, None, None, Some("{}"));
        assert_eq!(r.map(|r| r.enabled), Ok(Some(false)));
        assert!(validate_limit(15).is_err() && validate_limit(64).is_ok());
    }
}
