//! The `<server>__<name>` scheme that makes tool and prompt names unique within a namespace.
//!
//! Exposed names are split at the *first* `__`: server names cannot contain `__`, so the
//! rest (which may itself contain `__`, e.g. a nested gateway's `inner__tool`) is the
//! upstream's own name. Resources are not prefixed; they are routed by URI.

/// How a namespace exposes tool and prompt names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PrefixMode {
    /// `<server>__<name>` (MetaMCP's scheme).
    #[default]
    Always,
    /// Prefixed only when the namespace has more than one active server.
    Conditional,
    /// Names pass unchanged; a name two servers share is refused, never resolved silently.
    Never,
}

impl PrefixMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PrefixMode::Always => "always",
            PrefixMode::Conditional => "conditional",
            PrefixMode::Never => "never",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "always" => Some(PrefixMode::Always),
            "conditional" => Some(PrefixMode::Conditional),
            "never" => Some(PrefixMode::Never),
            _ => None,
        }
    }

    /// Whether names are prefixed in a namespace with `active_servers` active servers.
    pub fn prefixes(self, active_servers: usize) -> bool {
        match self {
            PrefixMode::Always => true,
            PrefixMode::Conditional => active_servers > 1,
            PrefixMode::Never => false,
        }
    }
}

/// Names that more than one server would expose unprefixed: `(name, servers)`, sorted.
pub fn collisions<'a>(
    tools: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, Vec<String>)> {
    let mut by_name: std::collections::BTreeMap<&str, Vec<String>> =
        std::collections::BTreeMap::new();
    for (server, name) in tools {
        let servers = by_name.entry(name).or_default();
        if !servers.iter().any(|s| s == server) {
            servers.push(server.to_owned());
        }
    }
    by_name
        .into_iter()
        .filter(|(_, s)| s.len() > 1)
        .map(|(n, s)| (n.to_owned(), s))
        .collect()
}

/// Separator between the server prefix and the upstream's own name.
pub const SEPARATOR: &str = "__";

/// The exposed name of `name` on `server`.
pub fn qualify(server: &str, name: &str) -> String {
    let mut s = String::with_capacity(server.len() + SEPARATOR.len() + name.len());
    s.push_str(server);
    s.push_str(SEPARATOR);
    s.push_str(name);
    s
}

/// Splits an exposed name into `(server, upstream name)`; `None` when it has no prefix.
pub fn split(exposed: &str) -> Option<(&str, &str)> {
    let at = exposed.find(SEPARATOR)?;
    let (server, rest) = exposed.split_at(at);
    let name = &rest[SEPARATOR.len()..];
    if server.is_empty() || name.is_empty() {
        return None;
    }
    Some((server, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(qualify("everything", "echo"), "everything__echo");
        assert_eq!(split("everything__echo"), Some(("everything", "echo")));
    }

    #[test]
    fn splits_at_first_separator() {
        assert_eq!(split("outer__inner__tool"), Some(("outer", "inner__tool")));
        assert_eq!(split("a__b___c"), Some(("a", "b___c")));
    }

    #[test]
    fn prefix_modes_and_collisions() {
        assert!(PrefixMode::Always.prefixes(1));
        assert!(!PrefixMode::Conditional.prefixes(1) && PrefixMode::Conditional.prefixes(2));
        assert!(!PrefixMode::Never.prefixes(5));
        assert_eq!(PrefixMode::parse("never"), Some(PrefixMode::Never));
        assert_eq!(PrefixMode::parse("sometimes"), None);
        let c = collisions([("a", "echo"), ("b", "echo"), ("a", "add"), ("a", "echo")]);
        assert_eq!(
            c,
            vec![("echo".to_owned(), vec!["a".to_owned(), "b".to_owned()])]
        );
    }

    #[test]
    fn rejects_unprefixed() {
        assert_eq!(split("echo"), None);
        assert_eq!(split("__echo"), None);
        assert_eq!(split("srv__"), None);
    }
}
