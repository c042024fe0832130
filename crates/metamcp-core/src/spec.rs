//! Declarative description of an upstream MCP server, and the Claude-Desktop JSON format
//! (`{"mcpServers": {NAME: {...}}}`) that `metamcp import` reads and `metamcp export` writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::name::{NameError, validate_server_name};
use crate::secrets;

/// The placeholder `export` writes instead of a secret unless `--include-secrets` is given.
pub const REDACTED: &str = "<redacted>";

/// How the gateway talks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerKind {
    Stdio,
    Sse,
    StreamableHttp,
}

impl ServerKind {
    /// The stored and displayed form (MetaMCP's enum values).
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::Stdio => "STDIO",
            ServerKind::Sse => "SSE",
            ServerKind::StreamableHttp => "STREAMABLE_HTTP",
        }
    }

    /// Parses the stored form or any spelling the import format accepts.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "stdio" | "std" => Some(ServerKind::Stdio),
            "sse" => Some(ServerKind::Sse),
            "streamable_http" | "streamable-http" | "streamablehttp" | "http" => {
                Some(ServerKind::StreamableHttp)
            }
            _ => None,
        }
    }

    /// The `type` value written by `export`.
    pub fn import_name(self) -> &'static str {
        match self {
            ServerKind::Stdio => "stdio",
            ServerKind::Sse => "sse",
            ServerKind::StreamableHttp => "streamable_http",
        }
    }
}

/// Transport-specific settings. Env values, header values, bearer tokens and the URL's
/// credentials (see [`crate::secrets`]) are secrets: the store encrypts them and logs never
/// print them.
#[derive(Clone, PartialEq, Eq)]
pub enum Transport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    },
    Sse {
        url: String,
        headers: BTreeMap<String, String>,
        bearer_token: Option<String>,
    },
    StreamableHttp {
        url: String,
        headers: BTreeMap<String, String>,
        bearer_token: Option<String>,
    },
}

impl std::fmt::Debug for Transport {
    // why: a derived Debug would print secrets into any log line that formats a spec.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Stdio { command, args, env } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env_keys", &env.keys().collect::<Vec<_>>())
                .finish(),
            Transport::Sse {
                url,
                headers,
                bearer_token,
            }
            | Transport::StreamableHttp {
                url,
                headers,
                bearer_token,
            } => f
                .debug_struct(self.kind().as_str())
                .field("url", &secrets::redact_url(url))
                .field("header_names", &headers.keys().collect::<Vec<_>>())
                .field("bearer_token", &bearer_token.as_ref().map(|_| REDACTED))
                .finish(),
        }
    }
}

impl Transport {
    /// An HTTP-family transport of `kind` (`Sse` or `StreamableHttp`; anything else is
    /// taken as Streamable HTTP).
    pub fn http(
        kind: ServerKind,
        url: String,
        headers: BTreeMap<String, String>,
        bearer_token: Option<String>,
    ) -> Transport {
        if kind == ServerKind::Sse {
            Transport::Sse {
                url,
                headers,
                bearer_token,
            }
        } else {
            Transport::StreamableHttp {
                url,
                headers,
                bearer_token,
            }
        }
    }

    /// The same transport with every secret value (env values, header values, the bearer
    /// token, the URL's credentials) replaced by `f(value)`; keys, command, args and the
    /// rest of the URL unchanged.
    pub fn map_secrets(&self, f: impl Fn(&str) -> String) -> Transport {
        match self.try_map_secrets(|_, v| Ok::<_, std::convert::Infallible>(f(v))) {
            Ok(t) => t,
            Err(never) => match never {},
        }
    }

    /// The URL, headers and bearer token of an HTTP-family transport; `None` for stdio.
    pub fn as_http(&self) -> Option<(&str, &BTreeMap<String, String>, Option<&str>)> {
        match self {
            Transport::Stdio { .. } => None,
            Transport::Sse {
                url,
                headers,
                bearer_token,
            }
            | Transport::StreamableHttp {
                url,
                headers,
                bearer_token,
            } => Some((url, headers, bearer_token.as_deref())),
        }
    }

    pub fn kind(&self) -> ServerKind {
        match self {
            Transport::Stdio { .. } => ServerKind::Stdio,
            Transport::Sse { .. } => ServerKind::Sse,
            Transport::StreamableHttp { .. } => ServerKind::StreamableHttp,
        }
    }
}

/// How client sessions share an upstream server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionMode {
    /// One connection (one process for stdio) serves every session and namespace.
    #[default]
    Shared,
    /// An isolated connection per client session, for servers that keep per-client state or
    /// send requests (sampling, elicitation, roots) that must reach one client.
    PerSession,
}

impl ConnectionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionMode::Shared => "shared",
            ConnectionMode::PerSession => "per-session",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "shared" => Some(ConnectionMode::Shared),
            "per-session" => Some(ConnectionMode::PerSession),
            _ => None,
        }
    }
}

/// Per-server connection settings (stored as JSON beside the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConnectionSettings {
    pub mode: ConnectionMode,
    /// Per-session mode: connections kept started and ready for new sessions.
    pub warm: u32,
    /// Per-session mode: most session connections at once; beyond it calls are refused
    /// with an error naming the cap. Per-user OAuth: most users' connections at once.
    pub cap: u32,
    /// Whether the server needs OAuth, and whose grant its calls carry.
    pub oauth: UpstreamAuth,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            mode: ConnectionMode::Shared,
            warm: 1,
            cap: 16,
            oauth: UpstreamAuth::Off,
        }
    }
}

/// OAuth towards an upstream (Streamable HTTP servers that answer 401 without a token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamAuth {
    /// No OAuth: the configured headers and bearer token, if any.
    #[default]
    Off,
    /// One grant, authorized once by an admin (or the server's owner), for every call.
    Shared,
    /// Each user authorizes for themself; a call carries the calling user's own token, on a
    /// connection of that user's. Lists are read with the server's grant (as `Shared`).
    PerUser,
}

impl UpstreamAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamAuth::Off => "off",
            UpstreamAuth::Shared => "shared",
            UpstreamAuth::PerUser => "per-user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(UpstreamAuth::Off),
            "shared" => Some(UpstreamAuth::Shared),
            "per-user" => Some(UpstreamAuth::PerUser),
            _ => None,
        }
    }
}

/// One upstream server as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub name: String,
    pub description: Option<String>,
    pub transport: Transport,
}

/// Why an import file or one of its entries was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the file has no \"mcpServers\" object")]
    NoServers,
    #[error("server {name:?}: {message}")]
    Entry { name: String, message: String },
    #[error(transparent)]
    Name(#[from] NameError),
}

/// One entry of `mcpServers`, as written by users (camelCase, MetaMCP's field names).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEntry {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bearer_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawFile {
    #[serde(rename = "mcpServers")]
    mcp_servers: Option<Map<String, Value>>,
}

/// Parses a Claude-Desktop style file into validated specs (in file order). Secret values
/// written [`REDACTED`] stay so: [`ServerSpec::restore_redacted`] fills them from the store.
///
/// `type` defaults to stdio; an entry with a `url` and no `command` and no `type` is taken as
/// Streamable HTTP, since it could not be a stdio server.
pub fn parse_import(text: &str) -> Result<Vec<ServerSpec>, ImportError> {
    let file: RawFile = serde_json::from_str(text).map_err(|e| ImportError::Json {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    let servers = file.mcp_servers.ok_or(ImportError::NoServers)?;
    let mut out = Vec::with_capacity(servers.len());
    for (name, value) in servers {
        let entry: RawEntry = serde_json::from_value(value).map_err(|e| ImportError::Entry {
            name: name.clone(),
            message: e.to_string(),
        })?;
        out.push(entry_to_spec(name, entry)?);
    }
    Ok(out)
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

fn entry_to_spec(name: String, e: RawEntry) -> Result<ServerSpec, ImportError> {
    validate_server_name(&name)?;
    let bad = |message: String| ImportError::Entry {
        name: name.clone(),
        message,
    };
    let kind = match e.kind.as_deref() {
        Some(t) => ServerKind::parse(t).ok_or_else(|| {
            bad(format!(
                "unknown type {t:?} (expected stdio, sse, streamable_http or http)"
            ))
        })?,
        None if e.command.is_none() && e.url.is_some() => ServerKind::StreamableHttp,
        None => ServerKind::Stdio,
    };
    let transport = match kind {
        ServerKind::Stdio => {
            let command = e
                .command
                .filter(|c| !c.trim().is_empty())
                .ok_or_else(|| bad("a stdio server needs a \"command\"".into()))?;
            if e.url.is_some() || !e.headers.is_empty() || e.bearer_token.is_some() {
                return Err(bad(
                    "a stdio server takes no url, headers or bearerToken".into()
                ));
            }
            Transport::Stdio {
                command,
                args: e.args,
                env: e.env,
            }
        }
        ServerKind::Sse | ServerKind::StreamableHttp => {
            let url = e
                .url
                .ok_or_else(|| bad(format!("a {} server needs a \"url\"", kind.import_name())))?;
            validate_url(&url).map_err(bad)?;
            if e.command.is_some() || !e.args.is_empty() || !e.env.is_empty() {
                return Err(bad("an HTTP server takes no command, args or env".into()));
            }
            Transport::http(kind, url, e.headers, e.bearer_token)
        }
    };
    Ok(ServerSpec {
        name,
        description: e.description,
        transport,
    })
}

/// An upstream URL must be absolute http(s) with a host.
pub fn validate_url(url: &str) -> Result<(), String> {
    let shown = || secrets::redact_url(url);
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("url {:?} must start with http:// or https://", shown()))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("url {:?} has no host", shown()));
    }
    Ok(())
}

/// Writes specs in the import format; secrets become [`REDACTED`] unless `include_secrets`.
pub fn export(specs: &[ServerSpec], include_secrets: bool) -> Value {
    let mut servers = Map::new();
    for s in specs {
        let entry = if include_secrets {
            export_entry(s)
        } else {
            export_entry(&ServerSpec {
                transport: s.transport.map_secrets(|_| REDACTED.to_owned()),
                ..s.clone()
            })
        };
        servers.insert(s.name.clone(), entry);
    }
    let mut root = Map::new();
    root.insert("mcpServers".into(), Value::Object(servers));
    Value::Object(root)
}

/// One spec as its entry under `mcpServers` (secrets as they are).
pub fn export_entry(s: &ServerSpec) -> Value {
    let mut e = RawEntry {
        kind: Some(s.transport.kind().import_name().to_owned()),
        description: s.description.clone(),
        ..RawEntry::default()
    };
    match &s.transport {
        Transport::Stdio { command, args, env } => {
            e.command = Some(command.clone());
            e.args = args.clone();
            e.env = env.clone();
        }
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
            e.url = Some(url.clone());
            e.headers = headers.clone();
            e.bearer_token = bearer_token.clone();
        }
    }
    serde_json::to_value(&e).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_all_types() {
        let specs = parse_import(
            r#"{"mcpServers":{
                "everything":{"command":"npx","args":["-y","@modelcontextprotocol/server-everything"],"env":{"K":"${K}"}},
                "remote":{"type":"streamable-http","url":"https://x.example/mcp","bearerToken":"t","headers":{"X-A":"1"}},
                "legacy":{"type":"SSE","url":"http://127.0.0.1:9/sse"},
                "inferred":{"url":"http://127.0.0.1:9/mcp","description":"d"}
            }}"#,
        )
        .unwrap();
        assert_eq!(specs.len(), 4);
        let by = |n: &str| specs.iter().find(|s| s.name == n).unwrap();
        assert_eq!(by("everything").transport.kind(), ServerKind::Stdio);
        assert_eq!(by("remote").transport.kind(), ServerKind::StreamableHttp);
        assert_eq!(by("legacy").transport.kind(), ServerKind::Sse);
        assert_eq!(by("inferred").transport.kind(), ServerKind::StreamableHttp);
        assert_eq!(by("inferred").description.as_deref(), Some("d"));
    }

    #[test]
    fn reports_position_of_malformed_json() {
        let err = parse_import("{\n  \"mcpServers\": {\n    \"a\": {,}\n}}").unwrap_err();
        match err {
            ImportError::Json { line, column, .. } => assert_eq!((line, column), (3, 11)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn refuses_bad_entries() {
        let e = |s: &str| parse_import(s).unwrap_err().to_string();
        assert!(e(r#"{"mcpServers":{"a__b":{"command":"x"}}}"#).contains("__"));
        assert!(
            e(r#"{"mcpServers":{"a":{"type":"ws","url":"http://x"}}}"#).contains("unknown type")
        );
        assert!(e(r#"{"mcpServers":{"a":{"args":["x"]}}}"#).contains("command"));
        assert!(e(r#"{"mcpServers":{"a":{"type":"http","url":"ftp://x"}}}"#).contains("http://"));
        assert!(e(r#"{"mcpServers":{"a":{"command":"x","bogus":1}}}"#).contains("bogus"));
        assert!(e(r#"{"servers":{}}"#).contains("mcpServers"));
    }

    #[test]
    fn export_redacts_and_round_trips() {
        let src = r#"{"mcpServers":{"a":{"type":"stdio","command":"x","args":["1"],"env":{"K":"secret"}},
            "b":{"type":"streamable_http","url":"http://usr:pw@h/mcp?api_key=urlkey&q=1","headers":{"H":"v"},"bearerToken":"tok"}}}"#;
        let specs = parse_import(src).unwrap();
        let open = export(&specs, true);
        assert_eq!(parse_import(&open.to_string()).unwrap(), specs);
        let closed = export(&specs, false).to_string();
        assert!(!closed.contains("secret") && !closed.contains("tok") && closed.contains(REDACTED));
        assert!(
            !closed.contains("usr:pw") && !closed.contains("urlkey") && closed.contains("q=1"),
            "{closed}"
        );
        // A redacted export restores from what is stored, and only from that.
        let read = parse_import(&closed).unwrap();
        for (r, s) in read.iter().zip(&specs) {
            assert_eq!(&r.restore_redacted(Some(s)).unwrap(), s);
            let err = r.restore_redacted(None).unwrap_err().to_string();
            assert!(
                err.contains("include-secrets") && err.contains("no value is stored"),
                "{err}"
            );
        }
        let other =
            parse_import(r#"{"mcpServers":{"a":{"command":"x","env":{"OTHER":"v"}}}}"#).unwrap();
        assert!(read[0].restore_redacted(Some(&other[0])).is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let specs = parse_import(r#"{"mcpServers":{"b":{"url":"http://u9:p9@h/mcp?token=url9","bearerToken":"tok9","headers":{"H":"val9"}},"a":{"command":"c","env":{"K":"sec9"}}}}"#).unwrap();
        let dbg = format!("{specs:?}");
        for secret in ["tok9", "val9", "sec9", "p9", "url9"] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
        assert!(
            dbg.contains("http://<redacted>@h/mcp?token=<redacted>"),
            "{dbg}"
        );
    }
}
