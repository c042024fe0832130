//! Secret values in server specs: where they sit in a [`Transport`] ([`SecretField`]), which
//! parts of an upstream URL are credentials, `<redacted>` placeholders restored from what is
//! stored, and `${NAME}` references to the gateway's environment.
//!
//! URLs: the userinfo (`https://user:pass@host`) and the values of query parameters whose
//! names look secret ([`SECRET_PARAM_WORDS`]) are credentials. They are sealed at rest like
//! the other secrets and shown as `<redacted>` ([`redact_url`]) wherever a URL is displayed
//! or logged; [`split_url`] separates them for storage. The rest of a URL is kept byte for
//! byte: these functions never re-encode it.
//!
//! References: a secret value (stdio env value, header value, bearer token, a URL query
//! value) written exactly `${NAME}` is not a secret itself: it names a variable of the
//! gateway's environment, read when the server starts, so the value never reaches the
//! database. Partial interpolation (`x${NAME}`) is not supported: such a value is taken
//! literally. A reference may never name one of the gateway's own secrets
//! ([`is_gateway_secret`]): configuration cannot hand them to an upstream.

use std::collections::BTreeMap;

use crate::spec::{ImportError, REDACTED, ServerSpec, Transport};

/// The variable a value written exactly `${NAME}` refers to; `None` for any other value.
pub fn reference(value: &str) -> Option<&str> {
    let name = value.strip_prefix("${")?.strip_suffix('}')?;
    (!name.is_empty() && !name.contains(['{', '}', '$'])).then_some(name)
}

/// Where a secret value sits in a [`Transport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretField<'a> {
    /// The value of stdio env variable `NAME`.
    Env(&'a str),
    /// The value of HTTP header `NAME`.
    Header(&'a str),
    BearerToken,
    /// A credential in the upstream URL: its userinfo or a secret-looking query value.
    Url(UrlPart<'a>),
}

impl std::fmt::Display for SecretField<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretField::Env(k) => write!(f, "env {k}"),
            SecretField::Header(k) => write!(f, "header {k}"),
            SecretField::BearerToken => f.write_str("bearerToken"),
            SecretField::Url(part) => part.fmt(f),
        }
    }
}

impl Transport {
    /// [`Transport::map_secrets`] with the place of each value, failing on the first error.
    pub fn try_map_secrets<E>(
        &self,
        mut f: impl FnMut(SecretField<'_>, &str) -> Result<String, E>,
    ) -> Result<Transport, E> {
        let mut map = |m: &BTreeMap<String, String>,
                       field: fn(&str) -> SecretField<'_>|
         -> Result<BTreeMap<String, String>, E> {
            m.iter()
                .map(|(k, v)| Ok((k.clone(), f(field(k), v)?)))
                .collect()
        };
        Ok(match self {
            Transport::Stdio { command, args, env } => Transport::Stdio {
                command: command.clone(),
                args: args.clone(),
                env: map(env, |k| SecretField::Env(k))?,
            },
            Transport::Sse {
                url,
                headers,
                bearer_token,
            }
            | Transport::StreamableHttp {
                url,
                headers,
                bearer_token,
            } => {
                let headers = map(headers, |k| SecretField::Header(k))?;
                let bearer_token = bearer_token
                    .as_deref()
                    .map(|t| f(SecretField::BearerToken, t))
                    .transpose()?;
                let url = try_map_url(url, |part, v| {
                    if part.is_secret() {
                        f(SecretField::Url(part), v)
                    } else {
                        Ok(v.to_owned())
                    }
                })?;
                Transport::http(self.kind(), url, headers, bearer_token)
            }
        })
    }

    /// The secret value at `field`, if this transport has one there.
    pub fn secret(&self, field: SecretField<'_>) -> Option<String> {
        match (self, field) {
            (Transport::Stdio { env, .. }, SecretField::Env(k)) => env.get(k).cloned(),
            (_, SecretField::Env(_)) => None,
            (t, f) => {
                let (url, headers, bearer_token) = t.as_http()?;
                match f {
                    SecretField::Header(k) => headers.get(k).cloned(),
                    SecretField::BearerToken => bearer_token.map(str::to_owned),
                    SecretField::Url(part) => url_part(url, part),
                    SecretField::Env(_) => None,
                }
            }
        }
    }
}

impl ServerSpec {
    /// Every `${NAME}` reference of this spec, as `(where, NAME)`: env values, header
    /// values, the bearer token, and URL query values (any parameter).
    pub fn references(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let _ = self.transport.try_map_secrets(|field, v| {
            if let Some(name) = reference(v)
                && !matches!(field, SecretField::Url(_))
            {
                out.push((field.to_string(), name.to_owned()));
            }
            Ok::<_, std::convert::Infallible>(String::new())
        });
        if let Some((url, _, _)) = self.transport.as_http() {
            let _ = try_map_url(url, |part, v| {
                if let Some(name) = reference(v) {
                    out.push((part.to_string(), name.to_owned()));
                }
                Ok::<_, std::convert::Infallible>(String::new())
            });
        }
        out
    }

    /// This spec with every secret written [`REDACTED`] (as an export without secrets writes
    /// it) replaced by the value `stored` has at the same place: applying or importing an
    /// exported file keeps the secrets it could not show. A `<redacted>` with nothing stored
    /// there is an error naming the value.
    pub fn restore_redacted(&self, stored: Option<&ServerSpec>) -> Result<ServerSpec, ImportError> {
        let transport = self.transport.try_map_secrets(|field, value| {
            if value != REDACTED {
                return Ok(value.to_owned());
            }
            stored
                .and_then(|s| s.transport.secret(field))
                .ok_or_else(|| ImportError::Entry {
                    name: self.name.clone(),
                    message: format!(
                        "{field} is {REDACTED:?} and no value is stored; give the value or a \
                         ${{VAR}} reference (this file was exported without --include-secrets)"
                    ),
                })
        })?;
        Ok(ServerSpec {
            transport,
            ..self.clone()
        })
    }
}

/// Prefixes of the gateway's own secret environment variables (`METAMCP_SECRET_KEY`, …).
pub const GATEWAY_SECRET_PREFIXES: &[&str] =
    &["METAMCP_", "OIDC_", "BOOTSTRAP_", "OTEL_", "BETTER_AUTH_"];

/// The gateway's own secret environment variables that have no common prefix.
pub const GATEWAY_SECRET_NAMES: &[&str] =
    &["DATABASE_URL", "AUTH_SECRET", "PGPASSWORD", "PGPASSFILE"];

/// Whether `${name}` would read one of the gateway's own secrets: its database URL and
/// password, its secret key, identity-provider, bootstrap and telemetry credentials. Such a
/// reference is refused when stored and not resolved when a server starts.
///
/// The one deny-list: every secret a later feature adds to the gateway's environment must
/// be covered here (by its name or a prefix above). Names are compared case-insensitively.
pub fn is_gateway_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    GATEWAY_SECRET_PREFIXES.iter().any(|p| upper.starts_with(p))
        || GATEWAY_SECRET_NAMES.contains(&upper.as_str())
}

/// The deny-list in words, for error messages.
pub fn gateway_secrets_described() -> String {
    let mut parts: Vec<String> = GATEWAY_SECRET_PREFIXES
        .iter()
        .map(|p| format!("{p}*"))
        .collect();
    parts.extend(GATEWAY_SECRET_NAMES.iter().map(|n| (*n).to_owned()));
    parts.join(", ")
}

/// Words that make a URL query parameter a secret when its name contains one of them
/// (case-insensitive). The one list: every place that redacts or seals URL credentials asks
/// [`is_secret_param`].
pub const SECRET_PARAM_WORDS: &[&str] = &[
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "pwd",
    "auth",
    "sig",
    "signature",
    "credential",
    "session",
    "code",
];

/// Whether a query parameter named `name` (possibly percent-encoded) carries a secret.
pub fn is_secret_param(name: &str) -> bool {
    let name = percent_decode(name).to_ascii_lowercase();
    SECRET_PARAM_WORDS.iter().any(|w| name.contains(w))
}

/// A part of a URL that [`try_map_url`] hands to its function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlPart<'a> {
    /// `user:pass` of `scheme://user:pass@host` (always a secret).
    Userinfo,
    /// The value of the `index`-th (from 0) query parameter named `name`.
    Query {
        name: &'a str,
        index: usize,
        /// Its name looks secret ([`is_secret_param`]).
        secret: bool,
    },
}

impl UrlPart<'_> {
    /// A credential: the userinfo, or the value of a secret-looking parameter.
    pub fn is_secret(&self) -> bool {
        match self {
            UrlPart::Userinfo => true,
            UrlPart::Query { secret, .. } => *secret,
        }
    }
}

impl std::fmt::Display for UrlPart<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlPart::Userinfo => f.write_str("url credentials (user:password@)"),
            UrlPart::Query { name, .. } => write!(f, "url parameter {name}"),
        }
    }
}

/// `url` with its userinfo and every query value replaced by `f(part, value)`; everything
/// else unchanged. A text without `://` has no parts and comes back as it is.
pub fn try_map_url<E>(
    url: &str,
    mut f: impl FnMut(UrlPart<'_>, &str) -> Result<String, E>,
) -> Result<String, E> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return Ok(url.to_owned());
    };
    let (head, after) = url.split_at(scheme_end);
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, tail) = after.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(&f(UrlPart::Userinfo, &authority[..at])?);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let (before_fragment, fragment) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    match before_fragment.split_once('?') {
        None => out.push_str(before_fragment),
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let mut seen: Vec<&str> = Vec::new();
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((name, value)) => {
                        let index = seen.iter().filter(|n| **n == name).count();
                        seen.push(name);
                        let part = UrlPart::Query {
                            name,
                            index,
                            secret: is_secret_param(name),
                        };
                        out.push_str(name);
                        out.push('=');
                        out.push_str(&f(part, value)?);
                    }
                    None => out.push_str(pair),
                }
            }
        }
    }
    out.push_str(fragment);
    Ok(out)
}

/// The value of `part` in `url`, if it has one.
pub fn url_part(url: &str, part: UrlPart<'_>) -> Option<String> {
    let mut found = None;
    let _ = try_map_url(url, |p, v| {
        let same = match (p, part) {
            (UrlPart::Userinfo, UrlPart::Userinfo) => true,
            (
                UrlPart::Query { name, index, .. },
                UrlPart::Query {
                    name: want,
                    index: i,
                    ..
                },
            ) => name == want && index == i,
            _ => false,
        };
        if same && found.is_none() {
            found = Some(v.to_owned());
        }
        Ok::<_, std::convert::Infallible>(String::new())
    });
    found
}

/// `url` with its credentials shown as `<redacted>` (`${NAME}` references are kept: they
/// are no secrets), for display and logs.
pub fn redact_url(url: &str) -> String {
    split_url(url).0
}

/// The credentials of a URL, as [`split_url`] finds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlSecrets {
    /// `user:pass`, if the URL has one.
    pub userinfo: Option<String>,
    /// The secret-looking query parameters, as `(name, value)`, in order.
    pub params: Vec<(String, String)>,
}

impl UrlSecrets {
    pub fn is_empty(&self) -> bool {
        self.userinfo.is_none() && self.params.is_empty()
    }
}

/// `url` cut in two: the URL with its credentials redacted, and the credentials.
pub fn split_url(url: &str) -> (String, UrlSecrets) {
    let mut secrets = UrlSecrets::default();
    let redacted = try_map_url(url, |part, value| {
        if !part.is_secret() || reference(value).is_some() || value == REDACTED {
            return Ok::<_, std::convert::Infallible>(value.to_owned());
        }
        match part {
            UrlPart::Userinfo => secrets.userinfo = Some(value.to_owned()),
            UrlPart::Query { name, .. } => secrets.params.push((name.to_owned(), value.to_owned())),
        }
        Ok(REDACTED.to_owned())
    });
    match redacted {
        Ok(r) => (r, secrets),
        Err(never) => match never {},
    }
}

/// `%XX` decoded (invalid escapes kept as they are), for matching names.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_import;

    #[test]
    fn gateway_secrets_are_denied() {
        for name in [
            "METAMCP_SECRET_KEY",
            "METAMCP_DATA_DIR",
            "metamcp_secret_key",
            "DATABASE_URL",
            "OIDC_CLIENT_SECRET",
            "BOOTSTRAP_ADMIN_PASSWORD",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "BETTER_AUTH_SECRET",
            "AUTH_SECRET",
            "PGPASSWORD",
            "PGPASSFILE",
        ] {
            assert!(is_gateway_secret(name), "{name}");
        }
        for name in [
            "GITHUB_TOKEN",
            "PATH",
            "PGHOST",
            "MY_METAMCP_TOKEN",
            "DATABASE",
        ] {
            assert!(!is_gateway_secret(name), "{name}");
        }
        let described = gateway_secrets_described();
        assert!(described.contains("METAMCP_*") && described.contains("PGPASSWORD"));
    }

    #[test]
    fn secret_param_names() {
        for name in [
            "token",
            "access_token",
            "API_KEY",
            "apikey",
            "client_secret",
            "Password",
            "passwd",
            "pwd",
            "Authorization",
            "sig",
            "X-Amz-Signature",
            "credential",
            "sessionId",
            "code",
            "api%5Fkey",
        ] {
            assert!(is_secret_param(name), "{name}");
        }
        for name in ["q", "page", "format", "region", "id"] {
            assert!(!is_secret_param(name), "{name}");
        }
    }

    #[test]
    fn redacts_credentials_only() {
        let cases = [
            ("https://h.example/mcp", "https://h.example/mcp"),
            (
                "https://user:pa%40ss@h.example:8443/mcp?x=1",
                "https://<redacted>@h.example:8443/mcp?x=1",
            ),
            (
                "https://h/mcp?api_key=abc&page=2&token=t%20t#frag?token=x",
                "https://h/mcp?api_key=<redacted>&page=2&token=<redacted>#frag?token=x",
            ),
            (
                "https://tok@h/p?token=${TOKEN}&flag&key=",
                "https://<redacted>@h/p?token=${TOKEN}&flag&key=<redacted>",
            ),
            ("not a url ?token=x", "not a url ?token=x"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
            // Redacting twice changes nothing more.
            assert_eq!(redact_url(want), want, "{want}");
        }
    }

    #[test]
    fn splits_and_finds_parts() {
        let url = "https://u:p@h/m?token=a&q=1&token=b&sig=s";
        let (shown, secrets) = split_url(url);
        assert_eq!(
            shown,
            "https://<redacted>@h/m?token=<redacted>&q=1&token=<redacted>&sig=<redacted>"
        );
        assert_eq!(secrets.userinfo.as_deref(), Some("u:p"));
        let names: Vec<(&str, &str)> = secrets
            .params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(names, [("token", "a"), ("token", "b"), ("sig", "s")]);
        assert!(split_url("https://h/m?q=1").1.is_empty());
        let second = UrlPart::Query {
            name: "token",
            index: 1,
            secret: true,
        };
        assert_eq!(url_part(url, second).as_deref(), Some("b"));
        assert_eq!(url_part(url, UrlPart::Userinfo).as_deref(), Some("u:p"));
        assert_eq!(url_part("https://h/m", UrlPart::Userinfo), None);
        // Mapping with the identity gives the URL back byte for byte.
        let odd = "https://a:b@h:1/p;x?%74oken=%41&&x=&y#f";
        assert_eq!(
            try_map_url(odd, |_, v| Ok::<_, ()>(v.to_owned())),
            Ok(odd.to_owned())
        );
        assert_eq!(
            redact_url(odd),
            "https://<redacted>@h:1/p;x?%74oken=<redacted>&&x=&y#f"
        );
    }

    #[test]
    fn references_are_whole_values() {
        assert_eq!(reference("${TOKEN}"), Some("TOKEN"));
        assert_eq!(reference("${}"), None);
        assert_eq!(reference("x${TOKEN}"), None);
        assert_eq!(reference("${A}${B}"), None);
        assert_eq!(reference("$TOKEN"), None);
    }

    #[test]
    fn lists_references() {
        let specs = parse_import(
            r#"{"mcpServers":{"a":{"command":"c","env":{"K":"${A}","L":"plain"}},
               "b":{"url":"https://h/m?token=${B}&q=${C}","headers":{"H":"${D}"},"bearerToken":"${E}"}}}"#,
        )
        .unwrap();
        assert_eq!(
            specs[0].references(),
            [("env K".to_owned(), "A".to_owned())]
        );
        let mut got: Vec<String> = specs[1].references().into_iter().map(|(_, n)| n).collect();
        got.sort();
        assert_eq!(got, ["B", "C", "D", "E"]);
    }

    #[test]
    fn url_credentials_restore_by_place() {
        let stored = parse_import(
            r#"{"mcpServers":{"r":{"url":"https://me:pw@h/m?token=one&token=two&x=1"}}}"#,
        )
        .unwrap();
        // The exported form, with the non-secret part changed: secrets come back by place.
        let given = parse_import(
            r#"{"mcpServers":{"r":{"url":"https://<redacted>@h/m?token=<redacted>&token=<redacted>&x=2"}}}"#,
        )
        .unwrap();
        let restored = given[0].restore_redacted(Some(&stored[0])).unwrap();
        let Transport::StreamableHttp { url, .. } = &restored.transport else {
            panic!("{restored:?}");
        };
        assert_eq!(url, "https://me:pw@h/m?token=one&token=two&x=2");
        let err = given[0].restore_redacted(None).unwrap_err().to_string();
        assert!(
            err.contains("url credentials") && err.contains("no value is stored"),
            "{err}"
        );
        // Errors about a URL never print its credentials.
        let err =
            parse_import(r#"{"mcpServers":{"r":{"type":"http","url":"ftp://u:pw@h/?token=t"}}}"#)
                .unwrap_err()
                .to_string();
        assert!(!err.contains("pw") && !err.contains("token=t"), "{err}");
    }
}
