//! The environment a stdio child gets, and `${NAME}` references in secret values.
//!
//! A child never inherits the gateway's environment (which may hold `DATABASE_URL` or
//! `METAMCP_SECRET_KEY`): it gets a short allow-list of harmless variables plus its own
//! configured env. A configured value written exactly `${NAME}` — a stdio env value, an HTTP
//! header value, the bearer token, a URL query value — is read from the gateway's
//! environment when the server starts (MetaMCP's rule; partial interpolation is not
//! supported).
//!
//! Invariant: a reference to one of the gateway's own secrets
//! ([`metamcp_core::secrets::is_gateway_secret`]) is never resolved, whatever the store
//! holds (configuration refuses to store one, but a store written earlier may have one). An
//! unresolved reference is not passed (an empty URL value), and the caller logs an
//! [`Unresolved`] line naming the variable and why.

use std::collections::BTreeMap;

use metamcp_core::secrets::{self, UrlPart};

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

/// Why a reference was not resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The variable is not set in the gateway's environment.
    Unset,
    /// The variable is one of the gateway's own secrets.
    GatewaySecret,
}

/// A reference that was not passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// Where it was configured: `env GITHUB_TOKEN`, `header X-Key`, `bearerToken`,
    /// `url parameter token`.
    pub place: String,
    pub var: String,
    pub why: Refusal,
}

impl Unresolved {
    /// The line for the server's log (names the variable, never a value).
    pub fn log_line(&self) -> String {
        let Unresolved { place, var, why } = self;
        match why {
            Refusal::Unset => format!(
                "[metamcp] {place} refers to ${{{var}}}, which is not set in the gateway's \
                 environment; not passed"
            ),
            Refusal::GatewaySecret => format!(
                "[metamcp] {place} refers to ${{{var}}}, a secret of the gateway itself \
                 (never given to upstreams); refused, not passed"
            ),
        }
    }
}

/// Resolves a configured value: `${NAME}` → the gateway's `NAME`; any other value is
/// itself. `Err` names the variable and why it was not read.
pub fn resolve_value(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, (String, Refusal)> {
    let Some(var) = secrets::reference(value) else {
        return Ok(value.to_owned());
    };
    if secrets::is_gateway_secret(var) {
        return Err((var.to_owned(), Refusal::GatewaySecret));
    }
    lookup(var).ok_or_else(|| (var.to_owned(), Refusal::Unset))
}

/// `values` with their references resolved; unresolved entries are left out and reported.
fn resolve_map(
    values: &BTreeMap<String, String>,
    place: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unresolved: &mut Vec<Unresolved>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in values {
        match resolve_value(v, lookup) {
            Ok(v) => {
                out.insert(k.clone(), v);
            }
            Err((var, why)) => unresolved.push(Unresolved {
                place: format!("{place} {k}"),
                var,
                why,
            }),
        }
    }
    out
}

/// The full environment of a child: the allow-list, then the configured env on top.
/// Returns the env and the references that were not resolved (to log).
pub fn child_env(
    configured: &BTreeMap<String, String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (BTreeMap<String, String>, Vec<Unresolved>) {
    let mut env: BTreeMap<String, String> = INHERITED
        .iter()
        .filter_map(|k| lookup(k).map(|v| ((*k).to_owned(), v)))
        .collect();
    let mut unresolved = Vec::new();
    env.extend(resolve_map(configured, "env", lookup, &mut unresolved));
    (env, unresolved)
}

/// What an HTTP upstream is called with, references resolved.
#[derive(Debug, Default)]
pub struct HttpSecrets {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub bearer_token: Option<String>,
    pub unresolved: Vec<Unresolved>,
}

/// Resolves the references of an HTTP upstream's URL query values (percent-encoded into
/// the URL; an unresolved one becomes empty), header values and bearer token (an
/// unresolved one is left out).
pub fn http_secrets(
    url: &str,
    headers: &BTreeMap<String, String>,
    bearer_token: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> HttpSecrets {
    let mut unresolved = Vec::new();
    let headers = resolve_map(headers, "header", lookup, &mut unresolved);
    let bearer_token = bearer_token.and_then(|t| match resolve_value(t, lookup) {
        Ok(t) => Some(t),
        Err((var, why)) => {
            unresolved.push(Unresolved {
                place: "bearerToken".into(),
                var,
                why,
            });
            None
        }
    });
    let resolved = secrets::try_map_url(url, |part, value| {
        if !matches!(part, UrlPart::Query { .. }) || secrets::reference(value).is_none() {
            return Ok::<_, std::convert::Infallible>(value.to_owned());
        }
        Ok(match resolve_value(value, lookup) {
            Ok(v) => url::form_urlencoded::byte_serialize(v.as_bytes()).collect(),
            Err((var, why)) => {
                unresolved.push(Unresolved {
                    place: part.to_string(),
                    var,
                    why,
                });
                String::new()
            }
        })
    });
    let url = match resolved {
        Ok(u) => u,
        Err(never) => match never {},
    };
    HttpSecrets {
        url,
        headers,
        bearer_token,
        unresolved,
    }
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
            "METAMCP_SECRET_KEY" => Some("the-gateway-key".into()),
            "TOKEN" => Some("t0k".into()),
            "SPACED" => Some("a b&c".into()),
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
            ("E".to_owned(), "${METAMCP_SECRET_KEY}".to_owned()),
            ("F".to_owned(), "${DATABASE_URL}".to_owned()),
        ]
        .into();
        let (env, unresolved) = child_env(&cfg, &fake);
        assert_eq!(env.get("PATH").map(String::as_str), Some("/bin"));
        assert!(!env.contains_key("DATABASE_URL"));
        assert_eq!(env["A"], "plain");
        assert_eq!(env["B"], "t0k");
        assert!(!env.contains_key("C"));
        assert_eq!(env["D"], "x${TOKEN}");
        assert!(!env.contains_key("E") && !env.contains_key("F"));
        assert!(
            !env.values()
                .any(|v| v.contains("the-gateway-key") || v.contains("secret"))
        );
        let got: Vec<(&str, &str, Refusal)> = unresolved
            .iter()
            .map(|u| (u.place.as_str(), u.var.as_str(), u.why))
            .collect();
        assert_eq!(
            got,
            [
                ("env C", "MISSING", Refusal::Unset),
                ("env E", "METAMCP_SECRET_KEY", Refusal::GatewaySecret),
                ("env F", "DATABASE_URL", Refusal::GatewaySecret),
            ]
        );
        let line = unresolved[1].log_line();
        assert!(
            line.contains("env E")
                && line.contains("${METAMCP_SECRET_KEY}")
                && line.contains("secret of the gateway")
                && !line.contains("the-gateway-key"),
            "{line}"
        );
    }

    #[test]
    fn http_references_and_refusals() {
        let headers: BTreeMap<String, String> = [
            ("X-Ok".to_owned(), "${TOKEN}".to_owned()),
            ("X-Db".to_owned(), "${DATABASE_URL}".to_owned()),
        ]
        .into();
        let got = http_secrets(
            "https://h/mcp?token=${SPACED}&key=${METAMCP_SECRET_KEY}&q=${TOKEN}&x=${TOKEN}y",
            &headers,
            Some("${METAMCP_SECRET_KEY}"),
            &fake,
        );
        assert_eq!(
            got.url,
            "https://h/mcp?token=a+b%26c&key=&q=t0k&x=${TOKEN}y"
        );
        assert_eq!(got.headers.len(), 1);
        assert_eq!(got.headers["X-Ok"], "t0k");
        assert_eq!(got.bearer_token, None);
        let places: Vec<&str> = got.unresolved.iter().map(|u| u.place.as_str()).collect();
        assert_eq!(places, ["header X-Db", "bearerToken", "url parameter key"]);
        assert!(
            got.unresolved
                .iter()
                .all(|u| u.why == Refusal::GatewaySecret)
        );
    }
}
