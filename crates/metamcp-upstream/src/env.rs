//! The environment a stdio child gets, and `${NAME}` references in secret values.
//!
//! A child never inherits the gateway's environment (which may hold `DATABASE_URL` or
//! `METAMCP_SECRET_KEY`): it gets a short allow-list of harmless variables plus its own
//! configured env. A configured value written exactly `${NAME}` is read from the gateway's
//! environment at spawn time (MetaMCP's rule; partial interpolation is not supported).

use std::collections::BTreeMap;

/// Variables passed through from the gateway's environment to every stdio child.
pub const INHERITED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TMPDIR",
    "TZ",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "UV_CERT",
];

/// Resolves a configured value: `${NAME}` → the gateway's `NAME` (or `None` when unset).
pub fn resolve_value(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        Some(var) if !var.is_empty() && !var.contains(['{', '}', '$']) => lookup(var),
        _ => Some(value.to_owned()),
    }
}

/// The full environment of a child: the allow-list, then the configured env on top.
/// Returns the env and the names of `${NAME}` references that were unset (to warn about).
pub fn child_env(
    configured: &BTreeMap<String, String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut env: BTreeMap<String, String> = INHERITED
        .iter()
        .filter_map(|k| lookup(k).map(|v| ((*k).to_owned(), v)))
        .collect();
    let mut missing = Vec::new();
    for (k, v) in configured {
        match resolve_value(v, lookup) {
            Some(v) => {
                env.insert(k.clone(), v);
            }
            None => missing.push(k.clone()),
        }
    }
    (env, missing)
}

/// Looks a variable up in the gateway's own environment.
pub fn process_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(name: &str) -> Option<String> {
        match name {
            "PATH" => Some("/bin".into()),
            "DATABASE_URL" => Some("postgres://secret".into()),
            "TOKEN" => Some("t0k".into()),
            _ => None,
        }
    }

    #[test]
    fn allow_list_and_references() {
        let cfg: BTreeMap<String, String> = [
            ("A".to_owned(), "plain".to_owned()),
            ("B".to_owned(), "${TOKEN}".to_owned()),
            ("C".to_owned(), "${MISSING}".to_owned()),
            ("D".to_owned(), "x${TOKEN}".to_owned()),
        ]
        .into();
        let (env, missing) = child_env(&cfg, &fake);
        assert_eq!(env.get("PATH").map(String::as_str), Some("/bin"));
        assert!(!env.contains_key("DATABASE_URL"));
        assert_eq!(env["A"], "plain");
        assert_eq!(env["B"], "t0k");
        assert!(!env.contains_key("C"));
        assert_eq!(env["D"], "x${TOKEN}");
        assert_eq!(missing, vec!["C".to_owned()]);
    }
}
