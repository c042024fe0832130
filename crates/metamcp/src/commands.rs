//! What each CLI command does: parse the arguments, call the service layer
//! ([`metamcp_server::admin`], shared with the admin API) and format its typed results as
//! text. No rule lives here.

use std::fmt::Write as _;

use anyhow::Context;
use metamcp_core::spec;
use metamcp_server::admin::{
    declare, endpoints as ep_admin, keys as key_admin, logs as log_admin, namespaces as ns_admin,
    servers as srv_admin, settings as set_admin, tools as shaping,
};
use metamcp_store::{Store, Upsert};

use crate::cli::{
    Cli, Command, EndpointCmd, KeyCmd, NamespaceCmd, ServerCmd, SettingsCmd, ToolCmd,
};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Serve { bind } = &cli.command {
        crate::config::init_logging("info");
        return crate::app::serve(&cli.store, bind).await;
    }
    crate::config::init_logging("warn");
    let store = cli.store.open().await?;
    let out = match cli.command {
        Command::Serve { .. } => unreachable!("handled above"),
        Command::Import { file } => import(&store, &file).await?,
        Command::Export {
            include_secrets,
            full: true,
            format,
        } => {
            let fmt = if format == "yaml" {
                declare::Format::Yaml
            } else {
                declare::Format::Toml
            };
            if !include_secrets {
                eprintln!(
                    "note: secrets other than ${{VAR}} references are written as \"{}\"; use \
                     --include-secrets to export them",
                    spec::REDACTED
                );
            }
            declare::render(&declare::current(&store, include_secrets).await?, fmt)?
        }
        Command::Export {
            include_secrets, ..
        } => export(&store, include_secrets).await?,
        Command::Apply {
            file,
            dry_run,
            prune,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let desired = declare::parse(&text, declare::Format::of_path(&file))
                .with_context(|| format!("{}", file.display()))?;
            declare::apply(&store, &desired, prune, dry_run)
                .await?
                .report()
        }
        Command::Server(c) => server(&store, c).await?,
        Command::Namespace(c) => namespace(&store, c).await?,
        Command::Endpoint(c) => endpoint(&store, c).await?,
        Command::Key(c) => key(&store, c).await?,
        Command::Tool(c) => tool(&store, c).await?,
        Command::Logs { server, lines } => logs(&store, &server, lines).await?,
        Command::Settings(c) => settings(&store, c).await?,
    };
    print!("{out}");
    store.close().await;
    Ok(())
}

async fn import(store: &Store, file: &std::path::Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let specs = srv_admin::parse_import(&text).with_context(|| format!("{}", file.display()))?;
    let report = srv_admin::import(store, &specs).await?;
    let mut out = String::new();
    for s in &report.servers {
        let what = match s.result {
            Upsert::Created => "created",
            Upsert::Updated => "updated",
            Upsert::Unchanged => "unchanged",
        };
        let _ = writeln!(out, "{what}: {} ({})", s.name, s.kind);
    }
    let _ = writeln!(
        out,
        "imported {} servers: {} created, {} updated, {} unchanged",
        report.servers.len(),
        report.created,
        report.updated,
        report.unchanged
    );
    Ok(out)
}

async fn export(store: &Store, include_secrets: bool) -> anyhow::Result<String> {
    let specs: Vec<spec::ServerSpec> = store
        .list_servers()
        .await?
        .into_iter()
        .map(|r| r.spec)
        .collect();
    if !include_secrets {
        eprintln!(
            "note: secrets are written as \"{}\"; use --include-secrets to export them",
            spec::REDACTED
        );
    }
    let v = spec::export(&specs, include_secrets);
    Ok(format!("{}\n", serde_json::to_string_pretty(&v)?))
}

async fn server(store: &Store, c: ServerCmd) -> anyhow::Result<String> {
    match c {
        ServerCmd::List => {
            let servers = srv_admin::list(store).await?;
            let mut out = String::new();
            if servers.is_empty() {
                out.push_str("no servers (add some with `metamcp import FILE`)\n");
            }
            for s in servers {
                let ns = if s.namespaces.is_empty() {
                    "-".to_owned()
                } else {
                    s.namespaces.join(",")
                };
                let state = match &s.state {
                    Some(st) => {
                        let mut state = st.state.clone();
                        if let Some(pid) = st.pid {
                            let _ = write!(state, " pid {pid}");
                        }
                        if st.failures > 0 {
                            let _ = write!(state, ", {} failures", st.failures);
                        }
                        if let Some(e) = &st.last_error {
                            let _ = write!(state, ", last error: {e}");
                        }
                        state
                    }
                    None => "not running".to_owned(),
                };
                let mode = if s.mode == "per-session" {
                    format!("per-session (warm {}, cap {})", s.warm, s.cap)
                } else {
                    s.mode.to_owned()
                };
                let mut target = s.target.clone();
                if !s.env.is_empty() {
                    let _ = write!(target, "  (env: {})", s.env.join(", "));
                }
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\tnamespaces: {ns}\tmode: {mode}\tstate: {state}",
                    s.name,
                    s.kind.to_ascii_uppercase(),
                    target
                );
                for l in &s.recent_logs {
                    let _ = writeln!(out, "    | {l}");
                }
            }
            Ok(out)
        }
        ServerCmd::Update {
            name,
            mode,
            warm,
            cap,
        } => {
            let c = srv_admin::update(store, &name, srv_admin::ConnectionPatch { mode, warm, cap })
                .await?;
            Ok(format!(
                "server {name}: mode {}, warm {}, cap {}\n",
                c.mode, c.warm, c.cap
            ))
        }
        ServerCmd::Reset { name } => {
            srv_admin::reset(store, &name).await?;
            Ok(format!(
                "reset requested for server {name}; running gateways apply it within a second\n"
            ))
        }
        ServerCmd::Remove { name } => {
            srv_admin::remove(store, &name).await?;
            Ok(format!("removed server {name}\n"))
        }
    }
}

fn notes_text(notes: &[String]) -> String {
    notes.iter().map(|n| format!("{n}\n")).collect()
}

async fn namespace(store: &Store, c: NamespaceCmd) -> anyhow::Result<String> {
    match c {
        NamespaceCmd::Create {
            name,
            servers,
            description,
            prefix,
            new_tools,
            max_name_length,
        } => {
            let mode = ns_admin::parse_prefix(&prefix)?;
            let new_tools = new_tools
                .as_deref()
                .map(ns_admin::parse_new_tools)
                .transpose()?;
            let limit = max_name_length
                .as_deref()
                .map(ns_admin::parse_name_length)
                .transpose()?;
            let created = ns_admin::create(
                store,
                ns_admin::NewNamespace {
                    name,
                    servers: servers.clone(),
                    description,
                    prefix: mode,
                    new_tools_enabled: new_tools,
                    max_name_length: limit,
                },
            )
            .await?;
            Ok(format!(
                "created namespace {} with servers {} (prefix: {})\n{}",
                created.namespace.name,
                servers.join(", "),
                mode.as_str(),
                notes_text(&created.notes)
            ))
        }
        NamespaceCmd::Update {
            name,
            prefix,
            new_tools,
            max_name_length,
        } => {
            let new_tools = new_tools
                .as_deref()
                .map(ns_admin::parse_new_tools)
                .transpose()?;
            let limit = max_name_length
                .as_deref()
                .map(ns_admin::parse_name_length)
                .transpose()?;
            let prefix = prefix.as_deref().map(ns_admin::parse_prefix).transpose()?;
            let u = ns_admin::update(
                store,
                &name,
                ns_admin::NamespacePatch {
                    prefix,
                    new_tools_enabled: new_tools,
                    max_name_length: limit,
                },
            )
            .await?;
            let mut out = String::new();
            if u.prefix_changed {
                let _ = write!(
                    out,
                    "namespace {name}: prefix {}\n{}",
                    u.namespace.prefix,
                    notes_text(&u.notes)
                );
            }
            if u.defaults_changed {
                let _ = writeln!(
                    out,
                    "namespace {name}: new tools {}, {}",
                    if u.namespace.new_tools_enabled {
                        "enabled"
                    } else {
                        "disabled"
                    },
                    describe_limit(u.namespace.max_name_length)
                );
                if u.known_tools_kept > 0 {
                    let _ = writeln!(
                        out,
                        "{} known tools keep their current state",
                        u.known_tools_kept
                    );
                }
            }
            Ok(out)
        }
        NamespaceCmd::AddServer { name, servers } => {
            ns_admin::add_servers(store, &name, &servers).await?;
            Ok(format!(
                "added {} to namespace {name}\n",
                servers.join(", ")
            ))
        }
        NamespaceCmd::RemoveServer { name, servers } => {
            ns_admin::remove_servers(store, &name, &servers).await?;
            Ok(format!(
                "removed {} from namespace {name}\n",
                servers.join(", ")
            ))
        }
        NamespaceCmd::List => {
            let mut out = String::new();
            let list = ns_admin::list(store).await?;
            if list.is_empty() {
                out.push_str("no namespaces\n");
            }
            for n in list {
                let members: Vec<String> = n
                    .servers
                    .iter()
                    .map(|m| {
                        if m.active {
                            m.server.clone()
                        } else {
                            format!("{} (inactive)", m.server)
                        }
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "{}\tprefix: {}\tservers: {}",
                    n.name,
                    n.prefix,
                    members.join(", ")
                );
                for c in &n.collisions {
                    let _ = writeln!(
                        out,
                        "  COLLISION: tool {:?} is exposed by {}; calls to it are refused",
                        c.tool,
                        c.servers.join(", ")
                    );
                }
            }
            Ok(out)
        }
        NamespaceCmd::Remove { name } => {
            ns_admin::remove(store, &name).await?;
            Ok(format!("removed namespace {name}\n"))
        }
    }
}

fn describe_limit(limit: Option<i64>) -> String {
    limit.map_or_else(
        || "no name-length limit".to_owned(),
        |l| format!("names shortened beyond {l} characters"),
    )
}

async fn tool(store: &Store, c: ToolCmd) -> anyhow::Result<String> {
    let mut out = String::new();
    let changed = match c {
        ToolCmd::List { namespace } => {
            let t = shaping::list(store, &namespace).await?;
            let _ = writeln!(
                out,
                "namespace {}: new tools {}, {}",
                t.namespace,
                if t.new_tools_enabled {
                    "enabled"
                } else {
                    "disabled (default-deny)"
                },
                describe_limit(t.max_name_length)
            );
            if t.tools.is_empty() {
                out.push_str(
                    "no tools known yet: a running gateway records them when a client lists \
                     tools\n",
                );
            }
            for v in &t.tools {
                let state = match (v.enabled, v.explicit) {
                    (true, true) => "on",
                    (true, false) => "on (default)",
                    (false, true) => "off",
                    (false, false) => "off (default)",
                };
                let _ = write!(out, "{:<14}{}", state, v.exposed);
                if v.exposed != v.canonical {
                    let _ = write!(out, "\t<- {}", v.canonical);
                }
                if !v.overrides.is_empty() {
                    let _ = write!(out, "\toverridden: {}", v.overrides.join(", "));
                }
                if !v.discovered {
                    out.push_str("\t(not reported by its server yet)");
                }
                out.push('\n');
            }
            return Ok(out);
        }
        ToolCmd::Enable {
            namespace,
            patterns,
        } => (
            "enabled",
            shaping::set_enabled(store, &namespace, &patterns, true).await?,
        ),
        ToolCmd::Disable {
            namespace,
            patterns,
        } => (
            "disabled",
            shaping::set_enabled(store, &namespace, &patterns, false).await?,
        ),
        ToolCmd::Override {
            namespace,
            tool,
            name,
            title,
            description,
            annotations,
        } => {
            let patch = shaping::OverridePatch {
                name,
                title,
                description,
                annotations,
            };
            (
                "overridden",
                shaping::override_tool(store, &namespace, &tool, patch).await?,
            )
        }
        ToolCmd::Reset { namespace, tool } => (
            "reset",
            shaping::reset_tool(store, &namespace, &tool).await?,
        ),
    };
    let (what, changed) = changed;
    for t in &changed.tools {
        let _ = writeln!(out, "{what}: {t}");
    }
    Ok(out)
}

async fn settings(store: &Store, c: SettingsCmd) -> anyhow::Result<String> {
    match c {
        SettingsCmd::List => {
            let mut out = String::new();
            for s in set_admin::list(store).await? {
                if s.default {
                    let _ = writeln!(out, "{}={}\t# default; {}", s.key, s.value, s.meaning);
                } else {
                    let _ = writeln!(out, "{}={}\t# {}", s.key, s.value, s.meaning);
                }
            }
            Ok(out)
        }
        SettingsCmd::Set { key, value } => {
            let s = set_admin::set(store, &key, &value).await?;
            Ok(format!("{}={}\n", s.key, s.value))
        }
    }
}

async fn endpoint(store: &Store, c: EndpointCmd) -> anyhow::Result<String> {
    match c {
        EndpointCmd::Create {
            name,
            namespace,
            no_auth,
            query_auth,
            description,
            rate,
            client_rate,
        } => {
            let ep = ep_admin::create(
                store,
                ep_admin::NewEndpoint {
                    name,
                    namespace,
                    description,
                    api_key_auth: !no_auth,
                    query_auth,
                    rate,
                    client_rate,
                },
            )
            .await?;
            let mut out = format!(
                "created endpoint {} on namespace {}\n  {}\n",
                ep.name, ep.namespace, ep.url
            );
            if no_auth {
                out.push_str(
                    "  WARNING: no authentication: anyone who can reach the gateway can use it\n",
                );
            }
            let _ = writeln!(out, "  {}", limits_text(&ep));
            Ok(out)
        }
        EndpointCmd::Update {
            name,
            rate,
            client_rate,
        } => {
            let ep =
                ep_admin::update(store, &name, rate.as_deref(), client_rate.as_deref()).await?;
            Ok(format!(
                "updated endpoint {}: {}\n",
                ep.name,
                limits_text(&ep)
            ))
        }
        EndpointCmd::List => {
            let mut out = String::new();
            let list = ep_admin::list(store).await?;
            if list.is_empty() {
                out.push_str("no endpoints\n");
            }
            for e in list {
                let auth = match (e.api_key_auth, e.query_auth) {
                    (false, _) => "auth: NONE (open to anyone)",
                    (true, false) => "auth: API key (header)",
                    (true, true) => "auth: API key (header or ?api_key=)",
                };
                let _ = writeln!(
                    out,
                    "{}\tnamespace: {}\t{auth}\t{}\t{}",
                    e.name,
                    e.namespace,
                    limits_text(&e),
                    e.url
                );
            }
            Ok(out)
        }
        EndpointCmd::Remove { name } => {
            ep_admin::remove(store, &name).await?;
            Ok(format!("removed endpoint {name}\n"))
        }
    }
}

/// `rate: 100/60, per client: off` (as `endpoint list` and `update` print it).
fn limits_text(e: &ep_admin::EndpointView) -> String {
    format!(
        "rate: {}, per client: {}",
        e.rate.as_deref().unwrap_or("off"),
        e.client_rate.as_deref().unwrap_or("off")
    )
}

async fn key(store: &Store, c: KeyCmd) -> anyhow::Result<String> {
    match c {
        KeyCmd::Create { name, admin } => {
            let k = key_admin::create(store, &name, admin).await?;
            let what = if k.info.admin {
                "admin API key"
            } else {
                "API key"
            };
            Ok(format!(
                "created {what} {} (shown once; store it now):\n{}\n",
                k.info.name, k.key
            ))
        }
        KeyCmd::List => {
            let mut out = String::new();
            let list = key_admin::list(store).await?;
            if list.is_empty() {
                out.push_str("no API keys\n");
            }
            for k in list {
                let state = if k.active { "active" } else { "revoked" };
                let _ = write!(out, "{}\t{}…\t{state}", k.name, k.prefix);
                if k.admin {
                    out.push_str("\tadmin");
                }
                out.push('\n');
            }
            Ok(out)
        }
        KeyCmd::Revoke { name } => {
            key_admin::revoke(store, &name).await?;
            Ok(format!("revoked API key {name}\n"))
        }
    }
}

async fn logs(store: &Store, server: &str, lines: usize) -> anyhow::Result<String> {
    let list = log_admin::tail(store, server, lines).await?;
    if list.is_empty() {
        // Not an error: the server exists but has not been started by a gateway yet.
        eprintln!(
            "no log lines for server {server:?} yet (they appear once the gateway has started it)"
        );
    }
    let mut out = String::new();
    for l in list {
        let _ = writeln!(out, "{} {}", l.time, l.line);
    }
    Ok(out)
}
