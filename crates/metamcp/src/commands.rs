//! What each CLI command does: parse the arguments, call the service layer
//! ([`metamcp_server::admin`], shared with the admin API) and format its typed results as
//! text. No rule lives here.

use std::fmt::Write as _;

use anyhow::Context;
use metamcp_core::spec;
use metamcp_server::admin::{
    self, Actor, AdminError, Cx, audit as audit_admin, declare, endpoints as ep_admin,
    keys as key_admin, logs as log_admin, namespaces as ns_admin, servers as srv_admin,
    settings as set_admin, tools as shaping,
};
use metamcp_store::{Store, Upsert};

use crate::cli::{
    Cli, Command, EndpointCmd, KeyCmd, NamespaceCmd, SecretsCmd, ServerCmd, SettingsCmd, ToolCmd,
};

/// The CLI acts as the local superuser: whoever can run it can read the data directory.
const ME: Actor = Actor::LocalSuperuser;

/// Runs operations in one write transaction.
async fn write<T>(
    store: &Store,
    f: impl AsyncFnOnce(&mut Cx<'_>) -> Result<T, AdminError>,
) -> Result<T, AdminError> {
    admin::run(store, &ME, f).await
}

/// Runs operations in one read-only transaction.
async fn read<T>(
    store: &Store,
    f: impl AsyncFnOnce(&mut Cx<'_>) -> Result<T, AdminError>,
) -> Result<T, AdminError> {
    admin::read(store, &ME, f).await
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Serve { bind } = &cli.command {
        crate::config::init_logging("info");
        return crate::app::serve(&cli.store, bind).await;
    }
    crate::config::init_logging("warn");
    if let Command::Secrets(SecretsCmd::Rotate { new_key: true }) = &cli.command {
        new_key_file(&cli.store.data_dir)?;
    }
    let store = cli.store.open().await?;
    // why: a change the command makes is recorded in the audit log under its name.
    let out = admin::audit::with_op("cli", op_name(std::env::args().skip(1)), async {
        dispatch(&store, cli.command).await
    })
    .await?;
    print!("{out}");
    store.close().await;
    Ok(())
}

/// `secrets rotate --new-key`: the current key file's key is appended to
/// `secret.key.previous` (so what it sealed still opens), then a fresh key replaces it
/// (written whole to a private temp file, then renamed into place). Refused when the key
/// comes from `METAMCP_SECRET_KEY`: then the operator sets the new key there.
fn new_key_file(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if std::env::var_os("METAMCP_SECRET_KEY").is_some_and(|v| !v.is_empty()) {
        anyhow::bail!(
            "--new-key makes a new key file, but the key comes from METAMCP_SECRET_KEY: set the \
             new key there and the old one in METAMCP_SECRET_KEY_PREVIOUS, then run `metamcp \
             secrets rotate`"
        );
    }
    let key_path = data_dir.join(metamcp_store::KEY_FILE);
    let old = std::fs::read_to_string(&key_path)
        .with_context(|| format!("cannot read the key file {}", key_path.display()))?;
    let previous = data_dir.join(metamcp_store::PREVIOUS_KEY_FILE);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&previous)
        .with_context(|| format!("cannot write {}", previous.display()))?;
    writeln!(f, "{}", old.trim())?;
    f.sync_all()?;
    let fresh = metamcp_store::generate_master_key()?;
    let tmp = data_dir.join(format!(".{}.new", metamcp_store::KEY_FILE));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    writeln!(f, "{fresh}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, &key_path)
        .with_context(|| format!("cannot replace {}", key_path.display()))?;
    eprintln!(
        "made a new key in {}; the old one is in {} (back both up)",
        key_path.display(),
        previous.display()
    );
    Ok(())
}

/// The command as the audit log names a change it makes: its first three words that are
/// not options (`key create laptop`), never an option's value.
fn op_name(args: impl Iterator<Item = String>) -> String {
    let mut words = Vec::new();
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        if a.starts_with('-') {
            // A global option's value follows it unless given as `--opt=value`.
            if matches!(a.as_str(), "--data-dir" | "--database-url") {
                args.next();
            }
            if words.is_empty() {
                continue;
            }
            break;
        }
        words.push(a);
        if words.len() == 3 {
            break;
        }
    }
    words.join(" ")
}

async fn dispatch(store: &Store, command: Command) -> anyhow::Result<String> {
    let store = store.clone();
    let out = match command {
        Command::Serve { .. } => unreachable!("handled above"),
        Command::Import { file, owner } => import(&store, &file, owner.as_deref()).await?,
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
            let d = read(&store, async |cx| {
                declare::current(cx, include_secrets).await
            })
            .await?;
            declare::render(&d, fmt)?
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
            let apply = async |cx: &mut Cx<'_>| declare::apply(cx, &desired, prune).await;
            let changes = if dry_run {
                admin::rehearse(&store, &ME, apply).await?
            } else {
                write(&store, apply).await?
            };
            declare::Applied { changes, dry_run }.report()
        }
        Command::Server(c) => server(&store, c).await?,
        Command::Namespace(c) => namespace(&store, c).await?,
        Command::Endpoint(c) => endpoint(&store, c).await?,
        Command::Key(c) => key(&store, c).await?,
        Command::Tool(c) => tool(&store, c).await?,
        Command::Logs { server, lines } => logs(&store, &server, lines).await?,
        Command::Settings(c) => settings(&store, c).await?,
        Command::User(c) => crate::users::command(&store, c).await?,
        Command::Secrets(SecretsCmd::Rotate { .. }) => {
            let r = store.rotate_secrets().await?;
            format!(
                "re-sealed {} secret values under key {} ({} already were); once every \
                 replica runs with this key, older keys can be removed \
                 (METAMCP_SECRET_KEY_PREVIOUS, {})\n",
                r.resealed,
                r.key_id,
                r.current,
                metamcp_store::PREVIOUS_KEY_FILE
            )
        }
        Command::Oauth(c) => oauth(&store, c).await?,
        Command::Audit {
            endpoint,
            server,
            tool,
            principal,
            since,
            outcome,
            limit,
            json,
        } => {
            let q = audit_admin::AuditQuery {
                endpoint,
                server,
                tool,
                principal,
                since,
                outcome,
                ..Default::default()
            };
            audit(&store, q, limit, json).await?
        }
    };
    Ok(out)
}

/// `metamcp audit`: newest first, `limit` records (0: all), as text or JSON lines.
async fn audit(
    store: &Store,
    mut q: audit_admin::AuditQuery,
    limit: usize,
    json: bool,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut left = if limit == 0 { usize::MAX } else { limit };
    let now = audit_admin::now_ms();
    while left > 0 {
        q.limit = Some(left.min(audit_admin::MAX_LIMIT));
        let page = read(store, async |cx| audit_admin::query(cx, &q, now).await).await?;
        left -= page.records.len();
        for r in &page.records {
            if json {
                out.push_str(&serde_json::to_string(r)?);
            } else {
                let place = match (&r.endpoint, &r.server) {
                    (Some(e), Some(s)) => format!("{e} → {s}"),
                    (Some(e), None) => e.to_string(),
                    (None, Some(s)) => s.to_string(),
                    (None, None) => "-".to_owned(),
                };
                let _ = write!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    r.time,
                    r.kind,
                    r.principal.as_deref().unwrap_or("(anonymous)"),
                    place,
                    r.tool.as_deref().unwrap_or("-"),
                    r.outcome,
                );
                if let Some(e) = &r.error {
                    let _ = write!(out, " ({e})");
                }
                if let Some(ms) = r.duration_ms {
                    let _ = write!(out, "\t{ms:.1} ms");
                }
                if let Some(c) = &r.client {
                    let _ = write!(out, "\tfrom {c}");
                }
            }
            out.push('\n');
        }
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    if out.is_empty() && !json {
        out.push_str("no audit records match\n");
    }
    Ok(out)
}

async fn import(
    store: &Store,
    file: &std::path::Path,
    owner: Option<&str>,
) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let specs = srv_admin::parse_import(&text).with_context(|| format!("{}", file.display()))?;
    let report = write(store, async |cx| {
        srv_admin::import_owned(cx, &specs, owner).await
    })
    .await?;
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
    let v = read(store, async |cx| {
        srv_admin::export(cx, include_secrets).await
    })
    .await?;
    if !include_secrets {
        eprintln!(
            "note: secrets are written as \"{}\"; use --include-secrets to export them",
            spec::REDACTED
        );
    }
    Ok(format!("{}\n", serde_json::to_string_pretty(&v)?))
}

async fn server(store: &Store, c: ServerCmd) -> anyhow::Result<String> {
    match c {
        ServerCmd::List => {
            let servers = read(store, async |cx| srv_admin::list(cx).await).await?;
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
                    "{}\t{}\t{}\tnamespaces: {ns}\tmode: {mode}\tstate: {state}\towner: {}",
                    s.name,
                    s.kind.to_ascii_uppercase(),
                    target,
                    owner_text(s.owner.as_deref())
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
            oauth,
        } => {
            let patch = srv_admin::ConnectionPatch {
                mode,
                warm,
                cap,
                oauth,
            };
            let c = write(store, async |cx| srv_admin::update(cx, &name, patch).await).await?;
            Ok(format!(
                "server {name}: mode {}, warm {}, cap {}, oauth {}\n",
                c.mode, c.warm, c.cap, c.oauth
            ))
        }
        ServerCmd::Reset { name } => {
            write(store, async |cx| srv_admin::reset(cx, &name).await).await?;
            Ok(format!(
                "reset requested for server {name}; running gateways apply it within a second\n"
            ))
        }
        ServerCmd::Remove { name } => {
            write(store, async |cx| srv_admin::remove(cx, &name).await).await?;
            Ok(format!("removed server {name}\n"))
        }
        ServerCmd::Grants { name } => upstream_grants(store, name.as_deref()).await,
        ServerCmd::Deauthorize { name, user } => {
            let (server, user_id) = server_and_user(store, &name, user.as_deref()).await?;
            let grant = store.upstream_token(&server, user_id.as_deref()).await?;
            let Some(g) = grant else {
                anyhow::bail!("server {name} holds no such grant");
            };
            store.remove_upstream_token(&g.id).await?;
            // Running gateways drop the connections and tokens they hold for it.
            write(store, async |cx| srv_admin::reset(cx, &name).await).await?;
            Ok(format!(
                "server {name}: grant of {} removed; calls needing it now ask for authorization\n",
                user.as_deref().unwrap_or("the server")
            ))
        }
        ServerCmd::OauthClient {
            name,
            client_id,
            client_secret_stdin,
            scope,
            remove,
        } => {
            let (server, _) = server_and_user(store, &name, None).await?;
            if remove {
                store.remove_upstream_client(&server).await?;
                return Ok(format!("server {name}: OAuth client removed\n"));
            }
            let secret = if client_secret_stdin {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                Some(s.trim().to_owned()).filter(|s| !s.is_empty())
            } else {
                None
            };
            let Some(client_id) = client_id else {
                anyhow::bail!("--client-id is required");
            };
            store
                .put_upstream_client(&metamcp_store::UpstreamClient {
                    server_id: server,
                    client_id: client_id.clone(),
                    client_secret: secret,
                    scope,
                    source: "configured".into(),
                    issuer: None,
                    created_at: metamcp_server::audit::now_ms(),
                })
                .await?;
            Ok(format!("server {name}: OAuth client {client_id}\n"))
        }
        ServerCmd::SetOwner { name, owner } => {
            let to = owner_arg(&owner);
            write(store, async |cx| srv_admin::set_owner(cx, &name, to).await).await?;
            Ok(format!("server {name}: owner {}\n", owner_text(to)))
        }
    }
}

/// A server's id, and a user's id from an email.
async fn server_and_user(
    store: &Store,
    name: &str,
    email: Option<&str>,
) -> anyhow::Result<(String, Option<String>)> {
    let mut tx = store.begin_read().await?;
    let Some(server) = tx.get_server(name).await? else {
        anyhow::bail!("no server named {name}");
    };
    let user = match email {
        Some(e) => Some(tx.user_by_email(e).await?.id),
        None => None,
    };
    Ok((server.id, user))
}

/// `metamcp server grants`: one line per grant, never a token.
async fn upstream_grants(store: &Store, only: Option<&str>) -> anyhow::Result<String> {
    let (servers, users) = {
        let mut tx = store.begin_read().await?;
        (tx.list_servers().await?, tx.list_users().await?)
    };
    let server_name = |id: &str| {
        servers
            .iter()
            .find(|s| s.id == id)
            .map_or_else(|| id.to_owned(), |s| s.spec.name.clone())
    };
    let email = |id: &str| {
        users
            .iter()
            .find(|u| u.id == id)
            .map_or_else(|| id.to_owned(), |u| u.email.clone())
    };
    let when = |ms: i64| metamcp_server::admin::logs::utc_timestamp(ms);
    let mut out = String::new();
    for g in store.list_upstream_tokens(None).await? {
        let name = server_name(&g.server_id);
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let _ = writeln!(
            out,
            "{name}\tfor: {}\tby: {}\tgranted {}\texpires {}\trefreshed {} times{}",
            g.user_id
                .as_deref()
                .map_or_else(|| "(server)".to_owned(), email),
            g.authorized_by
                .as_deref()
                .map_or_else(|| "-".to_owned(), email),
            when(g.created_at),
            g.expires_at.map_or_else(|| "never".to_owned(), when),
            g.refreshes,
            g.refreshed_at
                .map(|t| format!(", last {}", when(t)))
                .unwrap_or_default(),
        );
    }
    if out.is_empty() {
        out.push_str("no grants\n");
    }
    Ok(out)
}

/// `public` → `None`, else the email.
fn owner_arg(owner: &str) -> Option<&str> {
    (!owner.trim().eq_ignore_ascii_case("public")).then_some(owner)
}

/// How listings show an owner.
fn owner_text(owner: Option<&str>) -> &str {
    owner.unwrap_or("public")
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
            owner,
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
            let new = ns_admin::NewNamespace {
                name,
                servers: servers.clone(),
                inactive: Vec::new(),
                description,
                prefix: mode,
                new_tools_enabled: new_tools,
                max_name_length: limit,
                owner,
            };
            let created = write(store, async move |cx| ns_admin::create(cx, new).await).await?;
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
            audit_payloads,
        } => {
            let payloads = audit_payloads.map(|v| v == "on");
            let new_tools = new_tools
                .as_deref()
                .map(ns_admin::parse_new_tools)
                .transpose()?;
            let limit = max_name_length
                .as_deref()
                .map(ns_admin::parse_name_length)
                .transpose()?;
            let prefix = prefix.as_deref().map(ns_admin::parse_prefix).transpose()?;
            let layout = prefix.is_some() || new_tools.is_some() || limit.is_some();
            let patch = ns_admin::NamespacePatch {
                prefix,
                new_tools_enabled: new_tools,
                max_name_length: limit,
            };
            let (u, payloads) = write(store, async |cx| {
                let payloads = match payloads {
                    Some(on) => Some(ns_admin::set_audit_payloads(cx, &name, on).await?),
                    None => None,
                };
                let u = if layout {
                    Some(ns_admin::update(cx, &name, patch).await?)
                } else {
                    None
                };
                Ok((u, payloads))
            })
            .await?;
            let mut out = String::new();
            if let Some(v) = payloads {
                let _ = writeln!(
                    out,
                    "namespace {name}: tool-call arguments and results {} in the audit log",
                    if v.audit_payloads {
                        "recorded (redacted, capped)"
                    } else {
                        "not recorded"
                    }
                );
            }
            let Some(u) = u else {
                return Ok(out);
            };
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
            write(store, async |cx| {
                ns_admin::add_servers(cx, &name, &servers).await
            })
            .await?;
            Ok(format!(
                "added {} to namespace {name}\n",
                servers.join(", ")
            ))
        }
        NamespaceCmd::RemoveServer { name, servers } => {
            write(store, async |cx| {
                ns_admin::remove_servers(cx, &name, &servers).await
            })
            .await?;
            Ok(format!(
                "removed {} from namespace {name}\n",
                servers.join(", ")
            ))
        }
        NamespaceCmd::SetOwner { name, owner } => {
            let to = owner_arg(&owner);
            write(store, async |cx| ns_admin::set_owner(cx, &name, to).await).await?;
            Ok(format!("namespace {name}: owner {}\n", owner_text(to)))
        }
        NamespaceCmd::List => {
            let mut out = String::new();
            let list = read(store, async |cx| ns_admin::list(cx).await).await?;
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
                    "{}\tprefix: {}\tservers: {}\towner: {}",
                    n.name,
                    n.prefix,
                    members.join(", "),
                    owner_text(n.owner.as_deref())
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
            write(store, async |cx| ns_admin::remove(cx, &name).await).await?;
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
            let t = read(store, async |cx| shaping::list(cx, &namespace).await).await?;
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
            write(store, async |cx| {
                shaping::set_enabled(cx, &namespace, &patterns, true).await
            })
            .await?,
        ),
        ToolCmd::Disable {
            namespace,
            patterns,
        } => (
            "disabled",
            write(store, async |cx| {
                shaping::set_enabled(cx, &namespace, &patterns, false).await
            })
            .await?,
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
                write(store, async |cx| {
                    shaping::override_tool(cx, &namespace, &tool, patch).await
                })
                .await?,
            )
        }
        ToolCmd::Reset { namespace, tool } => (
            "reset",
            write(store, async |cx| {
                shaping::reset_tool(cx, &namespace, &tool).await
            })
            .await?,
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
            for s in read(store, async |cx| set_admin::list(cx).await).await? {
                if s.default {
                    let _ = writeln!(out, "{}={}\t# default; {}", s.key, s.value, s.meaning);
                } else {
                    let _ = writeln!(out, "{}={}\t# {}", s.key, s.value, s.meaning);
                }
            }
            Ok(out)
        }
        SettingsCmd::Set { key, value } => {
            let s = write(store, async |cx| set_admin::set(cx, &key, &value).await).await?;
            Ok(format!("{}={}\n", s.key, s.value))
        }
    }
}

async fn oauth(store: &Store, c: crate::cli::OauthCmd) -> anyhow::Result<String> {
    use crate::cli::OauthCmd;
    use metamcp_server::admin::oauth as oauth_admin;
    let me = metamcp_server::admin::Actor::LocalSuperuser;
    let now = metamcp_server::audit::now_ms();
    let when = |ms: i64| metamcp_server::admin::logs::utc_timestamp(ms);
    let mut out = String::new();
    match c {
        OauthCmd::Grants { user, all } => {
            let list = oauth_admin::list_grants(store, &me, now).await?;
            let mut n = 0;
            for g in list {
                if user
                    .as_deref()
                    .is_some_and(|u| !u.eq_ignore_ascii_case(&g.user))
                    || (!all && !g.active)
                {
                    continue;
                }
                n += 1;
                let state = match (&g.revoked_reason, g.active) {
                    (Some(r), _) => format!("revoked ({r})"),
                    (None, true) => format!("active until {}", when(g.expires_at)),
                    (None, false) => "expired".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "{}	user: {}	endpoint: {}	client: {} ({})	granted {}	last used {}	{state}",
                    g.id,
                    g.user,
                    g.endpoint,
                    g.client_name.as_deref().unwrap_or("-"),
                    g.client_id,
                    when(g.created_at),
                    g.last_used_at.map(when).unwrap_or_else(|| "never".into()),
                );
            }
            if n == 0 {
                out.push_str("no grants\n");
            }
        }
        OauthCmd::Revoke { id } => {
            let g = oauth_admin::revoke_grant(store, &me, &id, now).await?;
            let _ = writeln!(
                out,
                "revoked grant {} ({} for {} on {}); its refresh tokens stop now, its access \
                 tokens within their lifetime",
                g.id,
                g.client_name.as_deref().unwrap_or(&g.client_id),
                g.user,
                g.endpoint
            );
        }
        OauthCmd::Clients => {
            let list = oauth_admin::list_clients(store, &me).await?;
            if list.is_empty() {
                out.push_str("no registered clients\n");
            }
            for c in list {
                let _ = writeln!(
                    out,
                    "{}	{}	redirects: {}	registered {}{}	last used {}",
                    c.client_id,
                    c.client_name.as_deref().unwrap_or("-"),
                    c.redirect_uris.join(" "),
                    when(c.created_at),
                    c.created_from
                        .map(|f| format!(" from {f}"))
                        .unwrap_or_default(),
                    c.last_used_at.map(when).unwrap_or_else(|| "never".into()),
                );
            }
        }
        OauthCmd::RemoveClient { client_id } => {
            oauth_admin::remove_client(store, &me, &client_id, now).await?;
            let _ = writeln!(out, "removed client {client_id} and revoked its grants");
        }
    }
    Ok(out)
}

async fn endpoint(store: &Store, c: EndpointCmd) -> anyhow::Result<String> {
    match c {
        EndpointCmd::Create {
            name,
            namespace,
            no_auth,
            query_auth,
            oauth,
            description,
            rate,
            client_rate,
            owner,
        } => {
            let new = ep_admin::NewEndpoint {
                name,
                namespace,
                description,
                api_key_auth: !no_auth,
                query_auth,
                oauth,
                rate,
                client_rate,
                owner,
            };
            let ep = write(store, async move |cx| ep_admin::create(cx, new).await).await?;
            let mut out = format!(
                "created endpoint {} on namespace {}\n  {}\n",
                ep.name, ep.namespace, ep.url
            );
            if ep.oauth {
                let _ = writeln!(
                    out,
                    "  OAuth: on (clients discover it from {}/.well-known/oauth-protected-resource/metamcp/{}/mcp)",
                    ep_admin::base_url(),
                    ep.name
                );
            }
            if no_auth && !oauth {
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
            auth,
            query_auth,
            oauth,
        } => {
            let limits = rate.is_some() || client_rate.is_some();
            let auth_change = auth.is_some() || query_auth.is_some() || oauth.is_some();
            let ep = write(store, async |cx| {
                if auth_change {
                    let ep = ep_admin::set_auth(cx, &name, auth, query_auth, oauth).await?;
                    if !limits {
                        return Ok(ep);
                    }
                }
                ep_admin::update(cx, &name, rate.as_deref(), client_rate.as_deref()).await
            })
            .await?;
            let auth = if auth_change {
                format!("auth: {}, ", ep_admin::auth_text(&ep))
            } else {
                String::new()
            };
            Ok(format!(
                "updated endpoint {}: {auth}{}\n",
                ep.name,
                limits_text(&ep)
            ))
        }
        EndpointCmd::List => {
            let mut out = String::new();
            let list = read(store, async |cx| ep_admin::list(cx).await).await?;
            if list.is_empty() {
                out.push_str("no endpoints\n");
            }
            for e in list {
                let auth = format!("auth: {}", ep_admin::auth_text(&e));
                let _ = writeln!(
                    out,
                    "{}\tnamespace: {}\t{auth}\t{}\t{}\towner: {}",
                    e.name,
                    e.namespace,
                    limits_text(&e),
                    e.url,
                    owner_text(e.owner.as_deref())
                );
            }
            Ok(out)
        }
        EndpointCmd::SetOwner { name, owner } => {
            let to = owner_arg(&owner);
            write(store, async |cx| ep_admin::set_owner(cx, &name, to).await).await?;
            Ok(format!("endpoint {name}: owner {}\n", owner_text(to)))
        }
        EndpointCmd::Remove { name } => {
            write(store, async |cx| ep_admin::remove(cx, &name).await).await?;
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
        KeyCmd::Create {
            name,
            admin,
            owner,
            expires,
        } => {
            let k = write(store, async |cx| {
                key_admin::create_expiring(cx, &name, admin, owner.as_deref(), expires.as_deref())
                    .await
            })
            .await?;
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
            let list = read(store, async |cx| key_admin::list(cx).await).await?;
            if list.is_empty() {
                out.push_str("no API keys\n");
            }
            let now = audit_admin::now_ms();
            for k in list {
                let expired = k.expires_at.is_some_and(|t| t <= now);
                let state = match (k.active, expired) {
                    (false, _) => "revoked",
                    (true, true) => "expired",
                    (true, false) => "active",
                };
                let _ = write!(
                    out,
                    "{}\t{}…\t{state}\towner: {}",
                    k.name,
                    k.prefix,
                    owner_text(k.owner.as_deref())
                );
                let when = |t: Option<i64>, none: &str| {
                    t.map_or_else(|| none.to_owned(), log_admin::utc_timestamp)
                };
                let _ = write!(
                    out,
                    "\tlast used: {}\texpires: {}",
                    when(k.last_used_at, "never"),
                    when(k.expires_at, "never")
                );
                if k.admin {
                    out.push_str("\tadmin");
                }
                out.push('\n');
            }
            Ok(out)
        }
        KeyCmd::Revoke { name } => {
            write(store, async |cx| key_admin::revoke(cx, &name).await).await?;
            Ok(format!("revoked API key {name}\n"))
        }
    }
}

async fn logs(store: &Store, server: &str, lines: usize) -> anyhow::Result<String> {
    let list = read(store, async |cx| log_admin::tail(cx, server, lines).await).await?;
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
