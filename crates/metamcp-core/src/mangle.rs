//! The `<server>__<name>` scheme that makes tool and prompt names unique within a namespace.
//!
//! Exposed names are split at the *first* `__`: server names cannot contain `__`, so the
//! rest (which may itself contain `__`, e.g. a nested gateway's `inner__tool`) is the
//! upstream's own name. Resources are not prefixed; they are routed by URI.

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
    fn rejects_unprefixed() {
        assert_eq!(split("echo"), None);
        assert_eq!(split("__echo"), None);
        assert_eq!(split("srv__"), None);
    }
}
