//! What each CLI command does, on top of the store (and, for `serve`, the gateway).

use std::fmt::Write as _;

use anyhow::{Context, bail};
use metamcp_core::mangle::{self, PrefixMode};
use metamcp_core::spec::{self, ServerSpec, Transport};
use metamcp_store::{Store, Upsert};

use crate::cli::{
    Cli, Command, EndpointCmd, KeyCmd, NamespaceCmd, ServerCmd, SettingsCmd, ToolCmd,
};
use metamcp_server::admin::declare;
use metamcp_server::admin::tools as shaping;

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
    let specs = spec::parse_import(&text).with_context(|| format!("{}", file.display()))?;
    let mut out = String::new();
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for s in &specs {
        let what = match store.upsert_server(s).await? {
            Upsert::Created => {
                created += 1;
                "created"
            }
            Upsert::Updated => {
                updated += 1;
                "updated"
            }
            Upsert::Unchanged => {
                unchanged += 1;
                "unchanged"
            }
        };
        let _ = writeln!(
            out,
            "{what}: {} ({})",
            s.name,
            s.transport.kind().import_name()
        );
    }
    let _ = writeln!(
        out,
        "imported {} servers: {created} created, {updated} updated, {unchanged} unchanged",
        specs.len()
    );
    Ok(out)
}

async fn export(store: &Store, include_secrets: bool) -> anyhow::Result<String> {
    let specs: Vec<ServerSpec> = store
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

fn describe(t: &Transport) -> String {
    match t {
        Transport::Stdio { command, args, env } => {
            let mut s = command.clone();
            for a in args {
                s.push(' ');
                s.push_str(a);
            }
            if !env.is_empty() {
                let keys: Vec<&str> = env.keys().map(String::as_str).collect();
                let _ = write!(s, "  (env: {})", keys.join(", "));
            }
            s
        }
        Transport::Sse { url, .. } | Transport::StreamableHttp { url, .. } => url.clone(),
    }
}

async fn server(store: &Store, c: ServerCmd) -> anyhow::Result<String> {
    match c {
        ServerCmd::List => {
            let servers = store.list_servers().await?;
            let namespaces = store.list_namespaces().await?;
            let statuses = store.server_statuses().await?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let mut out = String::new();
            if servers.is_empty() {
                out.push_str("no servers (add some with `metamcp import FILE`)\n");
            }
            for s in servers {
                let ns: Vec<&str> = namespaces
                    .iter()
                    .filter(|n| n.servers.iter().any(|m| m.server_id == s.id))
                    .map(|n| n.name.as_str())
                    .collect();
                let ns = if ns.is_empty() {
                    "-".to_owned()
                } else {
                    ns.join(",")
                };
                // A report older than ten seconds means no gateway runs this server now.
                let state = match statuses
                    .iter()
                    .find(|st| st.server_id == s.id && now - st.updated_at < 10_000)
                {
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
                let mode = match s.connection.mode {
                    metamcp_core::ConnectionMode::Shared => "shared".to_owned(),
                    metamcp_core::ConnectionMode::PerSession => {
                        format!(
                            "per-session (warm {}, cap {})",
                            s.connection.warm, s.connection.cap
                        )
                    }
                };
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\tnamespaces: {ns}\tmode: {mode}\tstate: {state}",
                    s.spec.name,
                    s.spec.transport.kind().as_str(),
                    describe(&s.spec.transport)
                );
                // A failing server: the end of its stderr says why.
                if state.starts_with("backing_off") || state.starts_with("open") {
                    for l in store.server_logs(&s.spec.name, 3).await? {
                        let _ = writeln!(out, "    | {}", l.line);
                    }
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
            let rec = store
                .get_server(&name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no server named {name:?}"))?;
            let mut c = rec.connection;
            if let Some(m) = mode {
                c.mode = metamcp_core::ConnectionMode::parse(&m)
                    .ok_or_else(|| anyhow::anyhow!("unknown mode {m:?}"))?;
            }
            if let Some(w) = warm {
                c.warm = w;
            }
            if let Some(n) = cap {
                if n == 0 {
                    bail!("--cap must be at least 1");
                }
                c.cap = n;
            }
            store.set_server_connection(&name, &c).await?;
            Ok(format!(
                "server {name}: mode {}, warm {}, cap {}\n",
                c.mode.as_str(),
                c.warm,
                c.cap
            ))
        }
        ServerCmd::Reset { name } => {
            store.request_server_reset(&name).await?;
            Ok(format!(
                "reset requested for server {name}; running gateways apply it within a second\n"
            ))
        }
        ServerCmd::Remove { name } => {
            store.remove_server(&name).await?;
            Ok(format!("removed server {name}\n"))
        }
    }
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
            let mode = parse_prefix(&prefix)?;
            let new_tools = new_tools.as_deref().map(parse_new_tools);
            let limit = max_name_length.as_deref().map(parse_limit).transpose()?;
            let mut note = check_collisions(store, &servers, mode).await?;
            let ns = store
                .create_namespace_with_prefix(&name, description.as_deref(), &servers, mode)
                .await?;
            if new_tools.is_some() || limit.is_some() {
                shaping::set_defaults(store, &name, new_tools, limit).await?;
            }
            note.insert_str(
                0,
                &format!(
                    "created namespace {} with servers {} (prefix: {})\n",
                    ns.name,
                    servers.join(", "),
                    mode.as_str()
                ),
            );
            Ok(note)
        }
        NamespaceCmd::Update {
            name,
            prefix,
            new_tools,
            max_name_length,
        } => {
            let new_tools = new_tools.as_deref().map(parse_new_tools);
            let limit = max_name_length.as_deref().map(parse_limit).transpose()?;
            let ns = store
                .get_namespace(&name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no namespace named {name:?}"))?;
            let mut out = String::new();
            if let Some(prefix) = prefix {
                let mode = parse_prefix(&prefix)?;
                let servers: Vec<String> = ns
                    .servers
                    .iter()
                    .filter(|m| m.active)
                    .map(|m| m.server_name.clone())
                    .collect();
                let note = check_collisions(store, &servers, mode).await?;
                store.set_namespace_prefix(&name, mode).await?;
                let _ = write!(out, "namespace {name}: prefix {}\n{note}", mode.as_str());
            }
            if new_tools.is_some() || limit.is_some() {
                let changed = shaping::set_defaults(store, &name, new_tools, limit).await?;
                let t = shaping::list(store, &name).await?;
                let _ = writeln!(
                    out,
                    "namespace {name}: new tools {}, {}",
                    if t.new_tools_enabled {
                        "enabled"
                    } else {
                        "disabled"
                    },
                    describe_limit(t.max_name_length)
                );
                if !changed.tools.is_empty() {
                    let _ = writeln!(
                        out,
                        "{} known tools keep their current state",
                        changed.tools.len()
                    );
                }
            }
            Ok(out)
        }
        NamespaceCmd::AddServer { name, servers } => {
            for s in &servers {
                store.add_namespace_server(&name, s).await?;
            }
            Ok(format!(
                "added {} to namespace {name}\n",
                servers.join(", ")
            ))
        }
        NamespaceCmd::RemoveServer { name, servers } => {
            for s in &servers {
                store.remove_namespace_server(&name, s).await?;
            }
            Ok(format!(
                "removed {} from namespace {name}\n",
                servers.join(", ")
            ))
        }
        NamespaceCmd::List => {
            let mut out = String::new();
            let list = store.list_namespaces().await?;
            if list.is_empty() {
                out.push_str("no namespaces\n");
            }
            for n in list {
                let members: Vec<String> = n
                    .servers
                    .iter()
                    .map(|m| {
                        if m.active {
                            m.server_name.clone()
                        } else {
                            format!("{} (inactive)", m.server_name)
                        }
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "{}\tprefix: {}\tservers: {}",
                    n.name,
                    n.prefix.as_str(),
                    members.join(", ")
                );
                let active: Vec<String> = n
                    .servers
                    .iter()
                    .filter(|m| m.active)
                    .map(|m| m.server_name.clone())
                    .collect();
                if !n.prefix.prefixes(active.len()) {
                    for (tool, servers) in known_collisions(store, &active).await? {
                        let _ = writeln!(
                            out,
                            "  COLLISION: tool {tool:?} is exposed by {}; calls to it are refused",
                            servers.join(", ")
                        );
                    }
                }
            }
            Ok(out)
        }
        NamespaceCmd::Remove { name } => {
            store.remove_namespace(&name).await?;
            Ok(format!("removed namespace {name}\n"))
        }
    }
}

fn parse_new_tools(s: &str) -> bool {
    s == "enabled"
}

/// `N` or `off` (→ `Some(None)`).
fn parse_limit(s: &str) -> anyhow::Result<Option<u32>> {
    if s == "off" {
        return Ok(None);
    }
    s.parse::<u32>()
        .map(Some)
        .map_err(|_| anyhow::anyhow!("--max-name-length takes a number or `off`, not {s:?}"))
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
    use metamcp_server::settings::{KEYS, validate};
    match c {
        SettingsCmd::List => {
            let stored = store.list_settings().await?;
            let mut out = String::new();
            for (key, meaning, default) in KEYS {
                match stored.iter().find(|(k, _)| k == key) {
                    Some((_, v)) => {
                        let _ = writeln!(out, "{key}={v}\t# {meaning}");
                    }
                    None => {
                        let _ = writeln!(out, "{key}={default}\t# default; {meaning}");
                    }
                }
            }
            Ok(out)
        }
        SettingsCmd::Set { key, value } => {
            validate(&key, &value).map_err(|e| anyhow::anyhow!(e))?;
            store.set_setting(&key, value.trim()).await?;
            Ok(format!("{key}={}\n", value.trim()))
        }
    }
}

fn parse_prefix(s: &str) -> anyhow::Result<PrefixMode> {
    PrefixMode::parse(s)
        .ok_or_else(|| anyhow::anyhow!("unknown prefix mode {s:?} (always, conditional or never)"))
}

/// Tool names two of `servers` share, from the tools the gateway has discovered so far.
async fn known_collisions(
    store: &Store,
    servers: &[String],
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for name in servers {
        let Some(rec) = store.get_server(name).await? else {
            continue;
        };
        for t in store.list_tools(&rec.id).await? {
            pairs.push((name.clone(), t.name));
        }
    }
    Ok(mangle::collisions(
        pairs.iter().map(|(s, t)| (s.as_str(), t.as_str())),
    ))
}

/// Refuses a prefix mode under which known tool names would clash; notes what is unknown.
async fn check_collisions(
    store: &Store,
    servers: &[String],
    mode: PrefixMode,
) -> anyhow::Result<String> {
    if mode.prefixes(servers.len()) {
        return Ok(String::new());
    }
    let clashes = known_collisions(store, servers).await?;
    if !clashes.is_empty() {
        let list: Vec<String> = clashes
            .iter()
            .map(|(t, s)| format!("{t} ({})", s.join(", ")))
            .collect();
        bail!(
            "without prefixes these tool names clash: {}; use --prefix always or conditional",
            list.join("; ")
        );
    }
    let mut note = String::new();
    for name in servers {
        if let Some(rec) = store.get_server(name).await?
            && store.list_tools(&rec.id).await?.is_empty()
        {
            let _ = writeln!(
                note,
                "note: the tools of {name} are not known yet; clashes are refused at run time and shown by `namespace list`"
            );
        }
    }
    Ok(note)
}

async fn endpoint(store: &Store, c: EndpointCmd) -> anyhow::Result<String> {
    let base = std::env::var("APP_URL").unwrap_or_else(|_| "http://localhost:12008".into());
    let base = base.trim_end_matches('/');
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
            let ep = store
                .create_endpoint_limited(
                    &name,
                    &namespace,
                    description.as_deref(),
                    !no_auth,
                    query_auth,
                    metamcp_store::EndpointLimits {
                        rate: rate.as_deref().map(parse_rate).transpose()?,
                        client_rate: client_rate.as_deref().map(parse_rate).transpose()?,
                    },
                )
                .await?;
            let mut out = format!(
                "created endpoint {} on namespace {}\n  {base}/metamcp/{}/mcp\n",
                ep.name, ep.namespace_name, ep.name
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
            if rate.is_none() && client_rate.is_none() {
                anyhow::bail!("nothing to change: give --rate and/or --client-rate");
            }
            let update = metamcp_store::LimitsUpdate {
                rate: rate.as_deref().map(parse_rate_or_off).transpose()?,
                client_rate: client_rate.as_deref().map(parse_rate_or_off).transpose()?,
            };
            let ep = store.update_endpoint_limits(&name, update).await?;
            Ok(format!(
                "updated endpoint {}: {}\n",
                ep.name,
                limits_text(&ep)
            ))
        }
        EndpointCmd::List => {
            let mut out = String::new();
            let list = store.list_endpoints().await?;
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
                    "{}\tnamespace: {}\t{auth}\t{}\t{base}/metamcp/{}/mcp",
                    e.name,
                    e.namespace_name,
                    limits_text(&e),
                    e.name
                );
            }
            Ok(out)
        }
        EndpointCmd::Remove { name } => {
            store.remove_endpoint(&name).await?;
            Ok(format!("removed endpoint {name}\n"))
        }
    }
}

/// `N/SECONDS` (validated here, so a mistake is one line of error).
fn parse_rate(s: &str) -> anyhow::Result<metamcp_core::RateLimit> {
    Ok(s.parse()?)
}

/// `N/SECONDS`, or `off` for no limit.
fn parse_rate_or_off(s: &str) -> anyhow::Result<Option<metamcp_core::RateLimit>> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_rate(s).map(Some)
}

/// `rate: 100/60, per client: off` (as `endpoint list` and `update` print it).
fn limits_text(e: &metamcp_store::EndpointRecord) -> String {
    let show =
        |l: Option<metamcp_core::RateLimit>| l.map_or_else(|| "off".to_owned(), |l| l.to_string());
    format!(
        "rate: {}, per client: {}",
        show(e.rate),
        show(e.client_rate)
    )
}

async fn key(store: &Store, c: KeyCmd) -> anyhow::Result<String> {
    match c {
        KeyCmd::Create { name } => {
            let (rec, key) = store.create_api_key(&name).await?;
            Ok(format!(
                "created API key {} (shown once; store it now):\n{key}\n",
                rec.name
            ))
        }
        KeyCmd::List => {
            let mut out = String::new();
            let list = store.list_api_keys().await?;
            if list.is_empty() {
                out.push_str("no API keys\n");
            }
            for k in list {
                let state = if k.active { "active" } else { "revoked" };
                let _ = writeln!(out, "{}\t{}…\t{state}", k.name, k.prefix);
            }
            Ok(out)
        }
        KeyCmd::Revoke { name } => {
            store.revoke_api_key(&name).await?;
            Ok(format!("revoked API key {name}\n"))
        }
    }
}

async fn logs(store: &Store, server: &str, lines: usize) -> anyhow::Result<String> {
    let list = store.server_logs(server, lines).await?;
    if list.is_empty() {
        // Not an error: the server exists but has not been started by a gateway yet.
        eprintln!(
            "no log lines for server {server:?} yet (they appear once the gateway has started it)"
        );
    }
    let mut out = String::new();
    for l in list {
        let _ = writeln!(out, "{} {}", utc_timestamp(l.ts_ms), l.line);
    }
    Ok(out)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for epoch milliseconds (proleptic Gregorian, UTC).
fn utc_timestamp(ts_ms: i64) -> String {
    let days = ts_ms.div_euclid(86_400_000);
    let ms_of_day = ts_ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, sec, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::utc_timestamp;

    #[test]
    fn formats_utc() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_timestamp(1_795_598_275_348), "2026-11-25T09:17:55.348Z");
        assert_eq!(utc_timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
