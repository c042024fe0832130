//! The configuration the data path reads, and how it follows the store: [`Config::reload`]
//! turns the store's configuration into a new [`Snapshot`] and applies it — the pool starts
//! following new servers and stops removed or changed ones, the catalogs of namespaces
//! whose membership or servers changed are dropped (rebuilt on the next list), and their
//! clients get `list_changed`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use metamcp_core::shaping::{Shaping, ToolRule};
use metamcp_store::StoreError;
use metamcp_upstream::PoolOptions;
use parking_lot::{Mutex, RwLock};

use crate::namespace::Runtime;
use crate::session::Sessions;
use crate::snapshot::{EndpointCfg, KeyInfo, MemberCfg, NamespaceCfg, Snapshot};

/// The live configuration: the snapshot every request reads, the settings derived from it,
/// and what reloading remembers between runs.
#[derive(Debug)]
pub struct Config {
    snapshot: ArcSwap<Snapshot>,
    /// `SESSION_LIFETIME`, from the settings (else the process default).
    session_idle: RwLock<Duration>,
    /// `DISABLE_SIGNUP`, `DISABLE_SSO_SIGNUP`, `DISABLE_BASIC_AUTH` as stored.
    signup: RwLock<crate::settings::SignupPolicy>,
    oauth: RwLock<crate::settings::OAuthSettings>,
    /// Reset requests already applied: server id → requested_at.
    resets_seen: Mutex<HashMap<String, i64>>,
    /// One reload at a time.
    lock: tokio::sync::Mutex<()>,
    /// Defaults the stored settings override.
    pool_defaults: PoolOptions,
    session_idle_default: Duration,
}

impl Config {
    /// An empty configuration (version -1) until the first reload.
    pub fn new(pool_defaults: PoolOptions, session_idle_default: Duration) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot {
                version: -1,
                ..Snapshot::default()
            }),
            session_idle: RwLock::new(session_idle_default),
            signup: RwLock::default(),
            oauth: RwLock::default(),
            resets_seen: Mutex::default(),
            lock: tokio::sync::Mutex::new(()),
            pool_defaults,
            session_idle_default,
        }
    }

    /// The configuration as the data path sees it now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// How long an idle client session lives (`SESSION_LIFETIME`).
    pub fn session_idle(&self) -> Duration {
        *self.session_idle.read()
    }

    /// The OAuth authorization server's settings in force.
    pub fn oauth(&self) -> crate::settings::OAuthSettings {
        *self.oauth.read()
    }

    /// The stored sign-up switches (the environment may override them: `account`).
    pub fn signup(&self) -> crate::settings::SignupPolicy {
        *self.signup.read()
    }

    /// Re-reads the configuration and applies it (pool, catalogs, snapshot, clients).
    pub async fn reload(&self, rt: &Runtime, sessions: &Sessions) -> Result<(), StoreError> {
        let _g = self.lock.lock().await;
        self.reload_locked(rt, sessions).await
    }

    async fn reload_locked(&self, rt: &Runtime, sessions: &Sessions) -> Result<(), StoreError> {
        // why: one read transaction, so the snapshot is one committed configuration (never
        // half of a change), and its version is the one these reads saw.
        let read = async {
            let mut tx = rt.store.begin_read().await?;
            let version = tx.config_version().await?;
            let servers = tx.list_servers().await?;
            let namespaces = tx.list_namespaces().await?;
            let endpoints = tx.list_endpoints().await?;
            let keys = tx.active_api_keys().await?;
            let users = tx.list_users().await?;
            let stored_settings = tx.list_settings().await?;
            let resets = tx.server_resets().await?;
            tx.commit().await?;
            Ok::<_, StoreError>((
                version,
                servers,
                namespaces,
                endpoints,
                keys,
                users,
                stored_settings,
                resets,
            ))
        };
        let (version, servers, namespaces, endpoints, keys, users, stored_settings, resets) =
            crate::otel::maybe_in_span(rt.otel.as_ref(), "store config read", Vec::new, read)
                .await?;

        let effective = crate::settings::effective(
            &stored_settings,
            &self.pool_defaults,
            self.session_idle_default,
        );
        let eager = effective.pool.eager_start;
        rt.pool.set_options(effective.pool);
        rt.catalogs
            .set_list_timeouts(effective.list_timeout, effective.first_list_timeout);
        *self.session_idle.write() = effective.session_idle;
        *self.signup.write() = effective.signup;
        *self.oauth.write() = effective.oauth;

        let specs: Vec<(
            String,
            metamcp_core::ServerSpec,
            metamcp_core::ConnectionSettings,
        )> = servers
            .into_iter()
            .map(|s| (s.id, s.spec, s.connection))
            .collect();
        let replaced: HashSet<String> = rt.pool.sync(&specs).into_iter().collect();

        let snapshot = Snapshot {
            version,
            endpoints: endpoints
                .into_iter()
                .map(|e| {
                    let cfg = EndpointCfg {
                        id: e.id,
                        name: e.name.clone(),
                        namespace_id: e.namespace_id,
                        api_key_auth: e.api_key_auth,
                        query_auth: e.query_auth,
                        oauth: e.oauth,
                        rate: e.rate,
                        client_rate: e.client_rate,
                        owner_disabled: e.owner.as_ref().is_some_and(|o| o.disabled),
                        owner: e.owner.map(|o| o.id),
                        admin_inspector_only: false,
                    };
                    (e.name, Arc::new(cfg))
                })
                .collect(),
            namespaces: namespaces
                .into_iter()
                .map(|n| {
                    let shaping = shaping_of(&n);
                    let members = n
                        .servers
                        .into_iter()
                        .map(|m| MemberCfg {
                            server_id: m.server_id,
                            server_name: m.server_name,
                            active: m.active,
                        })
                        .collect();
                    (
                        n.id.clone(),
                        Arc::new(NamespaceCfg {
                            audit_payloads: n.audit_payloads,
                            id: n.id,
                            name: n.name,
                            members,
                            prefix: n.prefix,
                            shaping,
                            inspect_only: false,
                        }),
                    )
                })
                .collect(),
            keys: keys
                .into_iter()
                .map(|k| {
                    (
                        k.hash,
                        KeyInfo {
                            id: k.id,
                            name: k.name,
                            admin: k.admin,
                            expires_at: k.expires_at,
                            owner_disabled: k.owner.as_ref().is_some_and(|o| o.disabled),
                            owner: k.owner.map(|o| o.id),
                        },
                    )
                })
                .collect(),
            users: users
                .into_iter()
                .map(|u| {
                    (
                        u.id,
                        crate::snapshot::UserCfg {
                            email: u.email,
                            disabled: u.disabled,
                            admin: u.role == metamcp_store::Role::Admin,
                        },
                    )
                })
                .collect(),
        };

        let mut snapshot = snapshot;
        add_inspect_targets(&mut snapshot, &specs);

        let old = self.snapshot.load_full();
        let mut stale: Vec<String> = Vec::new();
        for (id, ns) in &snapshot.namespaces {
            let changed = match old.namespaces.get(id) {
                Some(prev) => {
                    prev.members != ns.members
                        || prev.prefix != ns.prefix
                        || prev.shaping != ns.shaping
                }
                None => true,
            };
            if changed || ns.members.iter().any(|m| replaced.contains(&m.server_id)) {
                stale.push(id.clone());
            }
        }
        stale.extend(
            old.namespaces
                .keys()
                .filter(|k| !snapshot.namespaces.contains_key(*k))
                .cloned(),
        );
        // why: swap first, then drop catalogs, so a list racing with us cannot rebuild a catalog
        // from the old snapshot after it was dropped.
        // Keys revoked or removed since: forget when they were last stamped as used.
        let live: HashSet<&str> = snapshot.keys.values().map(|k| k.id.as_str()).collect();
        rt.audit.retain_keys(|id| live.contains(id));
        drop(live);
        self.snapshot.store(Arc::new(snapshot));
        self.apply_resets(rt, &resets, old.version < 0);
        // Per-session servers keep warm connections ready for new sessions.
        for up in rt.pool.all() {
            up.refill_warm();
        }
        if eager {
            self.start_members(rt);
        }
        rt.catalogs.invalidate_namespaces(&stale);
        if old.version >= 0 && !stale.is_empty() {
            // Connected clients learn that what they listed may have changed.
            let snap = self.snapshot.load_full();
            for kind in ["tools", "prompts", "resources"] {
                let msg = metamcp_core::jsonrpc::notification(
                    &format!("notifications/{kind}/list_changed"),
                    None,
                );
                crate::fanout::fan_out(sessions, &snap, None, &stale, &msg);
            }
        }
        if old.version >= 0 {
            tracing::info!(
                version,
                namespaces_changed = stale.len(),
                servers_replaced = replaced.len(),
                "configuration reloaded"
            );
        }
        Ok(())
    }

    /// Applies `metamcp server reset` requests made since the last reload. At start-up the
    /// existing requests are only recorded: nothing is sticky across restarts anyway.
    fn apply_resets(&self, rt: &Runtime, resets: &[(String, i64)], starting: bool) {
        let mut seen = self.resets_seen.lock();
        for (server_id, at) in resets {
            let new = seen.get(server_id).is_none_or(|prev| prev < at);
            seen.insert(server_id.clone(), *at);
            if new
                && !starting
                && let Some(up) = rt.pool.get(server_id)
            {
                up.reset();
                if up.connection().oauth != metamcp_core::UpstreamAuth::Off {
                    // why: its grants changed (authorized, forgotten): lists built without
                    // it (or with it) are stale; clients hear list_changed.
                    crate::upstream_auth::announce_lists(rt, up.name());
                }
            }
        }
    }

    /// `MCP_EAGER_START`: starts every server that belongs to a namespace now, in the
    /// background (a server already running is left alone).
    fn start_members(&self, rt: &Runtime) {
        let snap = self.snapshot.load_full();
        let mut ids: Vec<&str> = snap
            .namespaces
            .values()
            .filter(|ns| !ns.inspect_only)
            .flat_map(|ns| ns.active().map(|m| m.server_id.as_str()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if let Some(up) = rt.pool.get(id) {
                tokio::spawn(async move {
                    if let Err(e) = up.conn().await {
                        tracing::warn!(server = up.name(), error = %e, "eager start failed");
                    }
                });
            }
        }
    }
}

/// One hidden namespace and endpoint per server, so an admin's inspector can talk to a
/// single server (`Snapshot::inspect_endpoint`); only inspector tokens of admins open them.
fn add_inspect_targets(
    snapshot: &mut Snapshot,
    servers: &[(
        String,
        metamcp_core::ServerSpec,
        metamcp_core::ConnectionSettings,
    )],
) {
    for (id, spec, _) in servers {
        let key = format!("inspect:{id}");
        snapshot.namespaces.insert(
            key.clone(),
            Arc::new(NamespaceCfg {
                id: key.clone(),
                name: format!("server {}", spec.name),
                members: vec![MemberCfg {
                    server_id: id.clone(),
                    server_name: spec.name.clone(),
                    active: true,
                }],
                prefix: metamcp_core::mangle::PrefixMode::Never,
                shaping: Shaping::default(),
                inspect_only: true,
                audit_payloads: false,
            }),
        );
        let name = Snapshot::inspect_endpoint(&spec.name);
        snapshot.endpoints.insert(
            name.clone(),
            Arc::new(EndpointCfg {
                id: key.clone(),
                name,
                namespace_id: key,
                api_key_auth: true,
                query_auth: false,
                oauth: false,
                rate: None,
                client_rate: None,
                owner: None,
                owner_disabled: false,
                admin_inspector_only: true,
            }),
        );
    }
}

/// The namespace's tool shaping; a namespace whose stored rules cannot be read exposes no
/// tool at all (fail closed) until they are fixed.
fn shaping_of(n: &metamcp_store::NamespaceRecord) -> Shaping {
    let parsed: Result<Vec<_>, String> = n
        .tools
        .iter()
        .map(|r| {
            ToolRule::from_stored(
                r.status.as_deref(),
                r.name.clone(),
                r.title.clone(),
                r.description.clone(),
                r.annotations.as_deref(),
            )
            .map(|rule| ((r.server_name.clone(), r.tool.clone()), rule))
            .map_err(|e| format!("rule for {}__{}: {e}", r.server_name, r.tool))
        })
        .collect();
    let limit = match n.max_name_length {
        None => Ok(None),
        Some(l) => usize::try_from(l)
            .map_err(|_| format!("name-length limit {l}"))
            .and_then(|l| {
                metamcp_core::shaping::validate_limit(l)
                    .map(|()| Some(l))
                    .map_err(|e| e.to_string())
            }),
    };
    match (parsed, limit) {
        (Ok(rules), Ok(limit)) => Shaping::new(n.new_tools_enabled, limit, rules),
        (Err(why), _) | (_, Err(why)) => {
            tracing::error!(namespace = %n.name, error = %why, "unreadable tool configuration; every tool of the namespace is refused until it is fixed");
            Shaping::deny_all(why)
        }
    }
}
