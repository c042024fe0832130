//! Upstream servers as an operator manages them: import (Claude-Desktop JSON, idempotent by
//! name), list with the state running gateways report, change how sessions share a server,
//! reset its failure state, remove it. Views never carry secrets: a stdio server shows its
//! env *names* only, an HTTP server its URL with its credentials redacted.

use metamcp_core::secrets;
use metamcp_core::spec::{self, ServerSpec, Transport};
use metamcp_core::{ConnectionMode, ConnectionSettings, ServerKind, UpstreamAuth};
use metamcp_store::Upsert;
use serde::Serialize;

use super::{Access, AdminError, Cx, tenancy};

/// What importing one server did.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    pub name: String,
    /// `stdio`, `streamable_http` or `sse` (the import format's spelling).
    pub kind: &'static str,
    pub result: Upsert,
}

/// What an import did, server by server.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub servers: Vec<Imported>,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// The state a running gateway reported for a server (within the last ten seconds).
#[derive(Debug, Clone, Serialize)]
pub struct ServerState {
    /// `idle`, `starting`, `running`, `backing_off`, `open`.
    pub state: String,
    pub pid: Option<i64>,
    pub failures: i64,
    pub last_error: Option<String>,
}

/// One server as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ServerView {
    pub name: String,
    /// The owner's email; `None`: public.
    pub owner: Option<String>,
    pub description: Option<String>,
    /// `stdio`, `streamable_http` or `sse`.
    pub kind: &'static str,
    /// The command and its arguments, or the URL (credentials redacted).
    pub target: String,
    /// Names of the configured env variables (never their values).
    pub env: Vec<String>,
    pub namespaces: Vec<String>,
    /// `shared` or `per-session`.
    pub mode: &'static str,
    pub warm: u32,
    pub cap: u32,
    /// `off`, `shared` or `per-user` (OAuth towards the server).
    pub oauth: &'static str,
    /// `None`: no gateway runs it now. Its pid and last error only for admins and the
    /// server's owner.
    pub state: Option<ServerState>,
    /// A failing server's newest log lines (why it fails): for admins and the owner.
    pub recent_logs: Vec<String>,
}

/// How sessions share a server.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionView {
    pub name: String,
    pub mode: &'static str,
    pub warm: u32,
    pub cap: u32,
    pub oauth: &'static str,
}

/// A change of [`ConnectionView`]'s fields; `None` leaves one alone.
#[derive(Debug, Clone, Default)]
pub struct ConnectionPatch {
    /// `shared` or `per-session`.
    pub mode: Option<String>,
    pub warm: Option<u32>,
    pub cap: Option<u32>,
    /// `off`, `shared` or `per-user`.
    pub oauth: Option<String>,
}

/// Parses Claude-Desktop JSON `{"mcpServers": {…}}`.
pub fn parse_import(text: &str) -> Result<Vec<ServerSpec>, AdminError> {
    spec::parse_import(text).map_err(|e| AdminError::Invalid(e.to_string()))
}

/// A spec made ready to store: secrets written `<redacted>` (an export without secrets)
/// take the value stored for the server now, and are refused where nothing is stored; a
/// `${NAME}` reference to one of the gateway's own secrets is refused.
pub fn prepare(spec: ServerSpec, stored: Option<&ServerSpec>) -> Result<ServerSpec, AdminError> {
    if let Some((place, var)) = spec
        .references()
        .into_iter()
        .find(|(_, var)| secrets::is_gateway_secret(var))
    {
        return Err(AdminError::Invalid(format!(
            "server {}: {place} refers to ${{{var}}}, a secret of the gateway itself; \
             references may not name {}",
            spec.name,
            secrets::gateway_secrets_described()
        )));
    }
    spec.restore_redacted(stored)
        .map_err(|e| AdminError::Invalid(e.to_string()))
}

/// Creates or updates each server by name; new ones get the actor's default owner
/// ([`import_owned`]).
pub async fn import(cx: &mut Cx<'_>, specs: &[ServerSpec]) -> Result<ImportReport, AdminError> {
    import_owned(cx, specs, None).await
}

/// Creates or updates each server by name. New servers are owned by `owner` (an email;
/// `None`: the actor's default, see [`Cx::owner_for_new`]); an existing server keeps its
/// owner, and only who may change it may replace it.
pub async fn import_owned(
    cx: &mut Cx<'_>,
    specs: &[ServerSpec],
    owner: Option<&str>,
) -> Result<ImportReport, AdminError> {
    cx.require(Access::Configure)?;
    let mut new_owner: Option<Option<String>> = None;
    let mut report = ImportReport {
        servers: Vec::with_capacity(specs.len()),
        created: 0,
        updated: 0,
        unchanged: 0,
    };
    for s in specs {
        let stored = cx.tx.get_server(&s.name).await?;
        if let Some(r) = &stored {
            if !cx.actor.sees(tenancy::id(r.owner.as_ref())) {
                return Err(AdminError::Collision(format!(
                    "server name {:?} is taken",
                    s.name
                )));
            }
            cx.require_object(Access::Configure, "server", &s.name, r.owner.as_ref())?;
        }
        let spec = prepare(s.clone(), stored.as_ref().map(|r| &r.spec))?;
        tenancy::check_server(cx, &spec, stored.as_ref().map(|r| &r.spec)).await?;
        let result = cx.tx.upsert_server(&spec).await?;
        if result == Upsert::Created {
            let owner_id = match &new_owner {
                Some(o) => o.clone(),
                None => {
                    let o = cx.owner_for_new(owner).await?;
                    new_owner = Some(o.clone());
                    o
                }
            };
            if let Some(id) = owner_id {
                cx.tx
                    .set_owner(metamcp_store::Owned::Server, &spec.name, Some(&id))
                    .await?;
            }
        }
        match result {
            Upsert::Created => report.created += 1,
            Upsert::Updated => report.updated += 1,
            Upsert::Unchanged => report.unchanged += 1,
        }
        report.servers.push(Imported {
            name: s.name.clone(),
            kind: s.transport.kind().import_name(),
            result,
        });
    }
    Ok(report)
}

fn target_and_env(t: &Transport) -> (String, Vec<String>) {
    match t {
        Transport::Stdio { command, args, env } => {
            let mut s = command.clone();
            for a in args {
                s.push(' ');
                s.push_str(a);
            }
            (s, env.keys().cloned().collect())
        }
        Transport::Sse { url, .. } | Transport::StreamableHttp { url, .. } => {
            (secrets::redact_url(url), Vec::new())
        }
    }
}

fn mode_str(c: &ConnectionSettings) -> &'static str {
    match c.mode {
        ConnectionMode::Shared => "shared",
        ConnectionMode::PerSession => "per-session",
    }
}

/// Every server in the Claude-Desktop format (`metamcp export`); secrets as
/// `<redacted>` unless `include_secrets`.
pub async fn export(
    cx: &mut Cx<'_>,
    include_secrets: bool,
) -> Result<serde_json::Value, AdminError> {
    cx.require(Access::Read)?;
    let specs: Vec<ServerSpec> = cx
        .tx
        .list_servers()
        .await?
        .into_iter()
        .filter(|r| tenancy::visible(cx.actor, r.owner.as_ref()))
        .map(|r| r.spec)
        .collect();
    Ok(spec::export(&specs, include_secrets))
}

/// Every server the actor sees, ordered as the store lists them.
pub async fn list(cx: &mut Cx<'_>) -> Result<Vec<ServerView>, AdminError> {
    cx.require(Access::Read)?;
    let mut servers = cx.tx.list_servers().await?;
    servers.retain(|s| tenancy::visible(cx.actor, s.owner.as_ref()));
    let mut namespaces = cx.tx.list_namespaces().await?;
    // why: a public server may be in another user's private namespace; its name is theirs.
    namespaces.retain(|n| tenancy::visible(cx.actor, n.owner.as_ref()));
    let statuses = cx.tx.server_statuses().await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut out = Vec::with_capacity(servers.len());
    for s in servers {
        let inspect = cx
            .actor
            .may_touch(Access::Inspect, tenancy::id(s.owner.as_ref()));
        let ns = namespaces
            .iter()
            .filter(|n| n.servers.iter().any(|m| m.server_id == s.id))
            .map(|n| n.name.clone())
            .collect();
        // A report older than ten seconds means no gateway runs this server now.
        let state = statuses
            .iter()
            .find(|st| st.server_id == s.id && now - st.updated_at < 10_000)
            .map(|st| ServerState {
                state: st.state.clone(),
                pid: st.pid.filter(|_| inspect),
                failures: st.failures,
                last_error: st.last_error.clone().filter(|_| inspect),
            });
        // A failing server: the end of its stderr says why.
        let recent_logs = match &state {
            Some(st)
                if inspect
                    && (st.state.starts_with("backing_off") || st.state.starts_with("open")) =>
            {
                cx.tx
                    .server_logs(&s.spec.name, 3)
                    .await?
                    .into_iter()
                    .map(|l| l.line)
                    .collect()
            }
            _ => Vec::new(),
        };
        let (target, env) = target_and_env(&s.spec.transport);
        out.push(ServerView {
            owner: tenancy::email(s.owner.as_ref()),
            name: s.spec.name.clone(),
            description: s.spec.description.clone(),
            kind: s.spec.transport.kind().import_name(),
            target,
            env,
            namespaces: ns,
            mode: mode_str(&s.connection),
            warm: s.connection.warm,
            cap: s.connection.cap,
            oauth: s.connection.oauth.as_str(),
            state,
            recent_logs,
        });
    }
    Ok(out)
}

/// One server by name.
pub async fn get(cx: &mut Cx<'_>, name: &str) -> Result<ServerView, AdminError> {
    list(cx)
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| not_found(name))
}

fn not_found(name: &str) -> AdminError {
    AdminError::NotFound(format!("no server named {name:?}"))
}

/// Changes how sessions share the server.
pub async fn update(
    cx: &mut Cx<'_>,
    name: &str,
    patch: ConnectionPatch,
) -> Result<ConnectionView, AdminError> {
    let rec = load(cx, name, Access::Configure).await?;
    tenancy::check_stdio(cx, &rec.spec, None).await?;
    let mut c = rec.connection;
    if let Some(m) = patch.mode {
        c.mode = ConnectionMode::parse(&m)
            .ok_or_else(|| AdminError::Invalid(format!("unknown mode {m:?}")))?;
    }
    if let Some(w) = patch.warm {
        c.warm = w;
    }
    if let Some(n) = patch.cap {
        if n == 0 {
            return Err(AdminError::Invalid("--cap must be at least 1".into()));
        }
        c.cap = n;
    }
    if let Some(o) = patch.oauth {
        c.oauth = UpstreamAuth::parse(&o).ok_or_else(|| {
            AdminError::Invalid(format!("unknown oauth {o:?} (off, shared or per-user)"))
        })?;
        if c.oauth != UpstreamAuth::Off && rec.spec.transport.kind() == ServerKind::Stdio {
            return Err(AdminError::Invalid(format!(
                "server {name}: OAuth is for HTTP servers (streamable-http or sse), not stdio"
            )));
        }
    }
    cx.tx.set_server_connection(name, &c).await?;
    Ok(ConnectionView {
        name: name.to_owned(),
        mode: mode_str(&c),
        warm: c.warm,
        cap: c.cap,
        oauth: c.oauth.as_str(),
    })
}

/// Asks running gateways to clear the server's failure state (backoff, open circuit).
pub async fn reset(cx: &mut Cx<'_>, name: &str) -> Result<(), AdminError> {
    load(cx, name, Access::Inspect).await?;
    cx.tx.request_server_reset(name).await?;
    Ok(())
}

/// Removes the server: its processes stop and it leaves every namespace.
pub async fn remove(cx: &mut Cx<'_>, name: &str) -> Result<(), AdminError> {
    load(cx, name, Access::Configure).await?;
    cx.tx.remove_server(name).await?;
    Ok(())
}

/// Gives the server to the user with `owner` (an email), or makes it public (`None`):
/// admins only; every namespace holding it must still be allowed to.
pub async fn set_owner(cx: &mut Cx<'_>, name: &str, owner: Option<&str>) -> Result<(), AdminError> {
    change_owner(cx, name, owner).await?;
    tenancy::check_all(cx.tx).await
}

/// [`set_owner`] without the composition check (`apply` checks everything at its end).
pub(super) async fn change_owner(
    cx: &mut Cx<'_>,
    name: &str,
    owner: Option<&str>,
) -> Result<(), AdminError> {
    cx.require(Access::Administer)?;
    load(cx, name, Access::Administer).await?;
    let id = cx.owner_for_new(owner).await?;
    cx.tx
        .set_owner(metamcp_store::Owned::Server, name, id.as_deref())
        .await?;
    Ok(())
}

/// The server `name`, if the actor may do `access` to it.
async fn load(
    cx: &mut Cx<'_>,
    name: &str,
    access: Access,
) -> Result<metamcp_store::ServerRecord, AdminError> {
    let rec = cx
        .tx
        .get_server(name)
        .await?
        .ok_or_else(|| not_found(name))?;
    cx.require_object(access, "server", name, rec.owner.as_ref())?;
    Ok(rec)
}
