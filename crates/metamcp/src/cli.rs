//! The command line: `metamcp serve | import | export | server | namespace | endpoint | key |
//! tool | settings | logs | apply`. Every command takes `--data-dir` / `DATABASE_URL`, works while `serve` runs (the
//! gateway picks changes up within a second), and fails with one line and a non-zero exit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::StoreArgs;

#[derive(Debug, Parser)]
#[command(
    name = "metamcp",
    version,
    about = "An MCP gateway: many MCP servers behind one URL, in namespaces, on endpoints."
)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (dashboard and MCP endpoints) until SIGINT/SIGTERM.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "METAMCP_BIND", default_value = "127.0.0.1:12008")]
        bind: String,
    },
    /// Import servers from a Claude-Desktop JSON file ({"mcpServers": {...}}); idempotent by name.
    Import {
        file: PathBuf,
        /// The email of the user new servers belong to (default: public).
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
    },
    /// Print all servers as Claude-Desktop JSON, or (--full) the whole configuration in the
    /// format `apply` reads.
    Export {
        /// Include env values, header values and bearer tokens in clear text (`${VAR}`
        /// references are always written as they are).
        #[arg(long)]
        include_secrets: bool,
        /// Servers, namespaces (with tool shaping), endpoints and settings, as TOML or YAML.
        #[arg(long)]
        full: bool,
        /// Format of --full.
        #[arg(long, default_value = "toml", value_parser = ["toml", "yaml"], requires = "full")]
        format: String,
    },
    /// Make the configuration what a TOML or YAML file declares (see `export --full`);
    /// prints the difference. Applying the same file twice changes nothing.
    Apply {
        file: PathBuf,
        /// Only print what would change.
        #[arg(long)]
        dry_run: bool,
        /// Also remove servers, namespaces and endpoints the file does not declare.
        #[arg(long)]
        prune: bool,
    },
    /// Upstream MCP servers.
    #[command(subcommand)]
    Server(ServerCmd),
    /// Namespaces: named groups of servers.
    #[command(subcommand)]
    Namespace(NamespaceCmd),
    /// Endpoints: URLs that serve a namespace.
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// API keys (sk_mt_…).
    #[command(subcommand)]
    Key(KeyCmd),
    /// Tool shaping per namespace: switch tools on and off, rename them, rewrite them.
    #[command(subcommand)]
    Tool(ToolCmd),
    /// Runtime settings (timeouts, circuit breaker, session lifetime).
    #[command(subcommand)]
    Settings(SettingsCmd),
    /// User accounts (sign-in to the dashboard and the admin API); also the recovery path
    /// when nobody can sign in.
    #[command(subcommand)]
    User(UserCmd),
    /// Secrets at rest: re-seal them under a new master key.
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// OAuth for endpoints: the grants users gave MCP clients, and registered clients.
    #[command(subcommand)]
    Oauth(OauthCmd),
    /// Read the audit log: tool calls, resource reads, prompt gets, admin changes, sign-ins
    /// and refused authentication, newest first.
    Audit {
        /// Only calls to this endpoint.
        #[arg(long)]
        endpoint: Option<String>,
        /// Only calls answered by this server.
        #[arg(long)]
        server: Option<String>,
        /// Only this exposed tool name (or prompt name, resource URI, admin operation).
        #[arg(long)]
        tool: Option<String>,
        /// Only this key name or user email.
        #[arg(long)]
        principal: Option<String>,
        /// Only records this recent: 90s, 15m, 1h, 2d, 1w.
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// `error` (every outcome but ok), or one of ok, tool_error, upstream_error, timeout,
        /// rate_limited, denied, cancelled.
        #[arg(long)]
        outcome: Option<String>,
        /// At most this many records (newest first).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line (JSON lines, for a SIEM), every matching record.
        #[arg(long)]
        json: bool,
    },
    /// Print a server's captured stderr and lifecycle lines.
    Logs {
        server: String,
        /// How many of the newest lines.
        #[arg(long, default_value_t = 200)]
        lines: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum OauthCmd {
    /// List grants (a user's consent to a client for an endpoint), newest first.
    Grants {
        /// Only this user's (an email).
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// Also those revoked or expired.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a grant: its refresh tokens stop at once, its access tokens within their
    /// lifetime (at most 5 minutes).
    Revoke { id: String },
    /// List dynamically registered clients.
    Clients,
    /// Remove a registered client and revoke its grants.
    RemoveClient { client_id: String },
}

#[derive(Debug, Subcommand)]
pub enum ServerCmd {
    /// List servers, with the state a running gateway reports for each.
    List,
    /// Remove a server (its processes stop; it leaves every namespace).
    Remove { name: String },
    /// Clear a server's failure state (backoff, open circuit) on running gateways at once.
    Reset { name: String },
    /// Change how client sessions share a server.
    Update {
        name: String,
        /// `shared`: one connection (process) for every session; `per-session`: one each.
        #[arg(long, value_parser = ["shared", "per-session"])]
        mode: Option<String>,
        /// Per-session mode: connections kept started for new sessions (default 1).
        #[arg(long)]
        warm: Option<u32>,
        /// Per-session mode: most session connections at once (default 16).
        #[arg(long)]
        cap: Option<u32>,
        /// OAuth towards the server (streamable-http or sse): `shared`, one grant an admin gives
        /// at <APP_URL>/oauth/upstream/<name>/authorize; `per-user`, each user's own; `off`.
        #[arg(long, value_parser = ["off", "shared", "per-user"])]
        oauth: Option<String>,
    },
    /// The OAuth grants held for servers that need OAuth (the server's own, and users').
    Grants {
        /// Only this server's.
        name: Option<String>,
    },
    /// Forget a server's OAuth grant (the server's own, or one user's with --user): calls
    /// needing it answer "needs authorization" with the link until someone authorizes again.
    Deauthorize {
        name: String,
        /// The user whose grant goes (an email); default: the server's own.
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
    },
    /// Set the OAuth client the gateway uses at the server's authorization server, for
    /// servers that offer no dynamic registration (or to use a pre-registered one); the
    /// secret is read from stdin. `--remove`: register dynamically again.
    OauthClient {
        name: String,
        #[arg(long, required_unless_present = "remove")]
        client_id: Option<String>,
        /// Read a client secret from stdin (a confidential client).
        #[arg(long)]
        client_secret_stdin: bool,
        /// Scopes to ask for (space separated); default: those the server advertises.
        #[arg(long)]
        scope: Option<String>,
        #[arg(long, conflicts_with_all = ["client_id", "client_secret_stdin", "scope"])]
        remove: bool,
    },
    /// Give it to a user (by email), or make it public (`public`).
    SetOwner {
        name: String,
        /// An email, or `public`.
        owner: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCmd {
    /// List every setting with its value (or default) and meaning.
    List,
    /// Set a setting; running gateways apply it within a second.
    Set { key: String, value: String },
}

#[derive(Debug, Subcommand)]
pub enum NamespaceCmd {
    /// Create a namespace holding the given servers.
    Create {
        name: String,
        #[arg(long = "server", required = true)]
        servers: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        /// How tool and prompt names are exposed: `always` <server>__<name>; `conditional`,
        /// prefixed only with more than one server; `never`, unchanged (clashes refused).
        #[arg(long, default_value = "always", value_parser = ["always", "conditional", "never"])]
        prefix: String,
        /// Whether tools new to an upstream arrive `enabled` (default) or `disabled`.
        #[arg(long, value_parser = ["enabled", "disabled"])]
        new_tools: Option<String>,
        /// Shorten exposed tool names longer than N (at least 16), or `off`.
        #[arg(long, value_name = "N|off")]
        max_name_length: Option<String>,
        /// The email of the user it belongs to (default: public).
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
    },
    /// Change a namespace's settings.
    #[command(arg_required_else_help = true)]
    Update {
        name: String,
        #[arg(long, value_parser = ["always", "conditional", "never"])]
        prefix: Option<String>,
        /// Whether tools new to an upstream arrive `enabled` or `disabled` (default-deny);
        /// tools already known keep their current state.
        #[arg(long, value_parser = ["enabled", "disabled"])]
        new_tools: Option<String>,
        /// Shorten exposed tool names longer than N (at least 16), or `off`.
        #[arg(long, value_name = "N|off")]
        max_name_length: Option<String>,
        /// Record tool-call arguments and results in the audit log (`on`; secrets redacted
        /// by key name, size capped), or not (`off`, the default).
        #[arg(long, value_parser = ["on", "off"])]
        audit_payloads: Option<String>,
    },
    /// Add servers to a namespace (their tools appear to connected clients).
    AddServer {
        name: String,
        #[arg(long = "server", required = true)]
        servers: Vec<String>,
    },
    /// Take servers out of a namespace.
    RemoveServer {
        name: String,
        #[arg(long = "server", required = true)]
        servers: Vec<String>,
    },
    /// Give it to a user (by email), or make it public (`public`).
    SetOwner {
        name: String,
        /// An email, or `public`.
        owner: String,
    },
    /// List namespaces and their servers.
    List,
    /// Remove a namespace (and its endpoints).
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
    /// Create an endpoint serving a namespace at /metamcp/NAME/mcp.
    Create {
        name: String,
        #[arg(long)]
        namespace: String,
        /// Serve without an API key (anyone who can reach the port can use it).
        #[arg(long)]
        no_auth: bool,
        /// Also accept the key as ?api_key= / ?apikey= in the URL.
        #[arg(long, conflicts_with = "no_auth")]
        query_auth: bool,
        /// Also accept OAuth access tokens the gateway issues for this endpoint (MCP
        /// clients sign in through the browser). With --no-auth: OAuth only, no API keys.
        #[arg(long)]
        oauth: bool,
        #[arg(long)]
        description: Option<String>,
        /// At most N requests per SECONDS on the whole endpoint (e.g. 100/60).
        #[arg(long, value_name = "N/SECONDS", allow_hyphen_values = true)]
        rate: Option<String>,
        /// At most N requests per SECONDS per client: per API key, or per client IP on an
        /// endpoint without auth.
        #[arg(long, value_name = "N/SECONDS", allow_hyphen_values = true)]
        client_rate: Option<String>,
        /// The email of the user it belongs to (default: public).
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
    },
    /// Change an endpoint's rate limits or auth (running gateways apply them within a second).
    Update {
        name: String,
        /// At most N requests per SECONDS on the whole endpoint, or `off`.
        #[arg(long, value_name = "N/SECONDS|off", allow_hyphen_values = true)]
        rate: Option<String>,
        /// At most N requests per SECONDS per client (API key, else IP), or `off`.
        #[arg(long, value_name = "N/SECONDS|off", allow_hyphen_values = true)]
        client_rate: Option<String>,
        /// Whether callers must present an API key (`off`: anyone who reaches the gateway).
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        auth: Option<bool>,
        /// Whether the key may also be given as `?api_key=` (needs `--auth on`).
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        query_auth: Option<bool>,
        /// Whether OAuth access tokens issued for this endpoint open it.
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        oauth: Option<bool>,
    },
    /// Give it to a user (by email), or make it public (`public`).
    SetOwner {
        name: String,
        /// An email, or `public`.
        owner: String,
    },
    /// List endpoints with their URLs, auth and rate limits.
    List,
    /// Remove an endpoint.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ToolCmd {
    /// List a namespace's tools: exposed name, state, overrides.
    List { namespace: String },
    /// Switch tools on. PATTERN: server__tool, an exposed name, a glob (`github__*`) or
    /// `re:REGEX` (whole name).
    Enable {
        namespace: String,
        #[arg(required = true)]
        patterns: Vec<String>,
    },
    /// Switch tools off: they vanish from lists and cannot be called under any name.
    Disable {
        namespace: String,
        #[arg(required = true)]
        patterns: Vec<String>,
    },
    /// Override a tool's exposed name (the server prefix still applies), title,
    /// description or annotations (a JSON object merged over the upstream's; null removes
    /// a key).
    #[command(arg_required_else_help = true)]
    Override {
        namespace: String,
        /// server__tool or the exposed name.
        tool: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, value_name = "JSON")]
        annotations: Option<String>,
    },
    /// Drop a tool's overrides and status: it is the upstream's again, in the default state.
    Reset { namespace: String, tool: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create a key; it is printed once, alone on the last line.
    Create {
        name: String,
        /// The key may also use the admin API (/api/v1/…): full control of the gateway.
        #[arg(long, conflicts_with = "owner")]
        admin: bool,
        /// The email of the user it belongs to: it opens that user's private endpoints and
        /// the public ones (default: a public key, which opens public endpoints only).
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
        /// It stops working after this long (12h, 90d, 1w); default: never.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// List keys (never their values), with when each was last used and when it expires.
    List,
    /// Revoke a key (a running gateway refuses it within a second).
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// Re-seal every stored secret under the current key (METAMCP_SECRET_KEY, else the key
    /// file); values sealed with older keys open with METAMCP_SECRET_KEY_PREVIOUS or the
    /// file secret.key.previous meanwhile.
    Rotate {
        /// First make a new key file: the current secret.key is added to
        /// secret.key.previous and a fresh key replaces it (only without METAMCP_SECRET_KEY).
        #[arg(long)]
        new_key: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create an account. Its password is read from stdin (`--password-stdin`), or a random
    /// one is made and printed once.
    Create {
        email: String,
        /// Display name (default: the part of the email before @).
        #[arg(long)]
        name: Option<String>,
        /// The account is an admin (may do everything, including managing users).
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of stdin.
        #[arg(long, conflicts_with = "sso_only")]
        password_stdin: bool,
        /// No password: the account signs in only through single sign-on.
        #[arg(long)]
        sso_only: bool,
    },
    /// List accounts.
    List,
    /// Make an account an admin or a member.
    SetRole {
        email: String,
        #[arg(value_parser = ["admin", "member"])]
        role: String,
    },
    /// Set a new password (from stdin with `--password-stdin`, else a random one, printed
    /// once); ends the account's browser sessions. Works when password sign-in is off.
    SetPassword {
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account: it cannot sign in and its browser sessions end.
    Disable { email: String },
    /// Enable a disabled account again.
    Enable { email: String },
    /// Remove an account.
    Remove { email: String },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match &cli.command {
        Command::Serve { .. } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(crate::config::worker_threads())
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// `on` / `off` (also `true`/`false`, `yes`/`no`).
fn on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("{s:?}: expected on or off")),
    }
}
