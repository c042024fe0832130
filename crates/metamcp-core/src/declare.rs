//! The file format of configuration as code (`metamcp apply`, `metamcp export --full`): one
//! TOML or YAML document declaring settings, servers, namespaces (with tool shaping) and
//! endpoints, and its conversions from and to server specs.
//!
//! Pure: text in, typed values out (and back), no IO and no store, so the format can be
//! tested and fuzzed alone. What a declaration *means* for a store — the difference, the
//! rules, the writes — is `metamcp_server::admin::declare`'s business.
//!
//! Server entries use the fields of the Claude-Desktop import format (one parser,
//! [`crate::spec::parse_import`], validates both) plus how sessions share the server.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::{self, ConnectionMode, ConnectionSettings, ServerKind, ServerSpec, UpstreamAuth};

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
    /// `off` (default), `shared` or `per-user`: the server needs OAuth (Streamable HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<String>,
    /// The email of the user who owns it; absent: public (see `metamcp apply`'s ownership
    /// rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
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
    /// The email of the user who owns it; absent: public (see `metamcp apply`'s ownership
    /// rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Tool-call arguments and results go into the audit log (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_payloads: Option<bool>,
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
    /// Also accept OAuth access tokens the gateway issues for it (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<bool>,
    /// `N/SECONDS` for the whole endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// `N/SECONDS` per client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_rate: Option<String>,
    /// The email of the user who owns it; absent: public (see `metamcp apply`'s ownership
    /// rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
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

/// Why a declaration could not be read, written or converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeclareError {
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("cannot write the configuration: {0}")]
    Render(String),
    #[error("{0}")]
    Invalid(String),
}

/// Parses a declared configuration; the error names the line where the format says.
pub fn parse(text: &str, format: Format) -> Result<Declared, DeclareError> {
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
    parsed.map_err(DeclareError::Parse)
}

/// Writes a declared configuration.
pub fn render(d: &Declared, format: Format) -> Result<String, DeclareError> {
    let out = match format {
        Format::Toml => toml::to_string(d).map_err(|e| e.to_string()),
        Format::Yaml => serde_yaml_ng::to_string(d).map_err(|e| e.to_string()),
    };
    out.map_err(DeclareError::Render)
}

impl ServerDecl {
    /// The declaration of a stored server, each secret value shown as `shown(value)`
    /// (itself, a `${VAR}` reference, or `<redacted>`); defaults are left out.
    pub fn from_spec(
        s: &ServerSpec,
        c: ConnectionSettings,
        shown: impl Fn(&str) -> String,
    ) -> Result<ServerDecl, DeclareError> {
        let visible = ServerSpec {
            transport: s.transport.map_secrets(shown),
            ..s.clone()
        };
        // why: the server fields are the import format's; one writer (`spec::export_entry`).
        let mut d: ServerDecl = serde_json::from_value(spec::export_entry(&visible))
            .map_err(|e| DeclareError::Invalid(format!("server {}: {e}", s.name)))?;
        let defaults = ConnectionSettings::default();
        d.mode = (c.mode != defaults.mode).then(|| c.mode.as_str().to_owned());
        d.warm = (c.warm != defaults.warm).then_some(c.warm);
        d.cap = (c.cap != defaults.cap).then_some(c.cap);
        d.oauth = (c.oauth != defaults.oauth).then(|| c.oauth.as_str().to_owned());
        Ok(d)
    }

    /// The spec and connection settings this declares for server `name`, validated by the
    /// import format's parser. `<redacted>` values stay (see
    /// [`ServerSpec::restore_redacted`]).
    pub fn to_spec(&self, name: &str) -> Result<(ServerSpec, ConnectionSettings), DeclareError> {
        let mut entry = serde_json::Map::new();
        let mut put = |k: &str, v: Value| {
            entry.insert(k.to_owned(), v);
        };
        let text = |v: &Option<String>| v.clone().map(Value::from);
        for (k, v) in [
            ("type", text(&self.kind)),
            ("description", text(&self.description)),
            ("command", text(&self.command)),
            ("url", text(&self.url)),
            ("bearerToken", text(&self.bearer_token)),
        ] {
            if let Some(v) = v {
                put(k, v);
            }
        }
        if !self.args.is_empty() {
            put("args", self.args.clone().into());
        }
        let object = |m: &BTreeMap<String, String>| {
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.clone().into()))
                    .collect(),
            )
        };
        if !self.env.is_empty() {
            put("env", object(&self.env));
        }
        if !self.headers.is_empty() {
            put("headers", object(&self.headers));
        }
        let doc = serde_json::json!({ "mcpServers": { name: Value::Object(entry) } });
        let spec = spec::parse_import(&doc.to_string())
            .map_err(|e| DeclareError::Invalid(e.to_string()))?
            .pop()
            .ok_or_else(|| DeclareError::Invalid(format!("server {name}: empty declaration")))?;
        let defaults = ConnectionSettings::default();
        let mode = match self.mode.as_deref() {
            None => defaults.mode,
            Some(m) => ConnectionMode::parse(m).ok_or_else(|| {
                DeclareError::Invalid(format!(
                    "server {name}: unknown mode {m:?} (shared or per-session)"
                ))
            })?,
        };
        let oauth = match self.oauth.as_deref() {
            None => defaults.oauth,
            Some(m) => UpstreamAuth::parse(m).ok_or_else(|| {
                DeclareError::Invalid(format!(
                    "server {name}: unknown oauth {m:?} (off, shared or per-user)"
                ))
            })?,
        };
        if oauth != UpstreamAuth::Off && spec.transport.kind() == ServerKind::Stdio {
            return Err(DeclareError::Invalid(format!(
                "server {name}: oauth needs an HTTP server (streamable-http or sse)"
            )));
        }
        let connection = ConnectionSettings {
            mode,
            warm: self.warm.unwrap_or(defaults.warm),
            cap: self.cap.unwrap_or(defaults.cap),
            oauth,
        };
        Ok((spec, connection))
    }
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

[servers.github]
type = "streamable_http"
url = "https://mcp.example.com/mcp"
oauth = "per-user"

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
    fn servers_convert_both_ways() {
        let Ok(d) = parse(SAMPLE, Format::Toml) else {
            panic!("sample does not parse");
        };
        for (name, decl) in &d.servers {
            let (spec, conn) = decl.to_spec(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let back =
                ServerDecl::from_spec(&spec, conn, str::to_owned).and_then(|b| b.to_spec(name));
            assert_eq!(back, Ok((spec, conn)), "{name}");
        }
        let bad = ServerDecl {
            command: Some("x".into()),
            mode: Some("sometimes".into()),
            ..ServerDecl::default()
        };
        let err = bad
            .to_spec("a")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown mode"), "{err}");
        let err = ServerDecl::default().to_spec("a").err();
        assert!(err.is_some_and(|e| e.to_string().contains("command")));
    }

    #[test]
    fn oauth_is_declared_for_http_servers_only() {
        let Ok(d) = parse(SAMPLE, Format::Toml) else {
            panic!("sample does not parse");
        };
        let (_, conn) = d.servers["github"]
            .to_spec("github")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(conn.oauth, UpstreamAuth::PerUser);
        let (_, conn) = d.servers["remote"]
            .to_spec("remote")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(conn.oauth, UpstreamAuth::Off);
        for (decl, why) in [
            (
                ServerDecl {
                    command: Some("x".into()),
                    oauth: Some("shared".into()),
                    ..ServerDecl::default()
                },
                "HTTP server",
            ),
            (
                ServerDecl {
                    url: Some("http://h/mcp".into()),
                    oauth: Some("always".into()),
                    ..ServerDecl::default()
                },
                "unknown oauth",
            ),
        ] {
            let err = decl.to_spec("a").err().map(|e| e.to_string());
            assert!(err.as_deref().is_some_and(|e| e.contains(why)), "{err:?}");
        }
    }
}
