//! Turns the store's configuration into a new [`Snapshot`] and applies it: the pool starts
//! following new servers and stops removed or changed ones, and the catalogs of namespaces
//! whose membership or servers changed are dropped (rebuilt on the next list).

use std::collections::HashSet;
use std::sync::Arc;

use metamcp_core::shaping::{Shaping, ToolRule};
use metamcp_store::StoreError;

use crate::snapshot::{EndpointCfg, KeyInfo, MemberCfg, NamespaceCfg, Snapshot};
use crate::state::Gateway;

pub(crate) async fn reload(gw: &Gateway) -> Result<(), StoreError> {
    // why: one read transaction, so the snapshot is one committed configuration (never half
    // of a change), and its version is the one these reads saw.
    let mut tx = gw.store.begin_read().await?;
    let version = tx.config_version().await?;
    let servers = tx.list_servers().await?;
    let namespaces = tx.list_namespaces().await?;
    let endpoints = tx.list_endpoints().await?;
    let keys = tx.active_api_keys().await?;
    let stored_settings = tx.list_settings().await?;
    let resets = tx.server_resets().await?;
    tx.commit().await?;

    let effective = crate::settings::effective(
        &stored_settings,
        &gw.opts.pool,
        gw.opts.session_idle_timeout,
    );
    let eager = effective.pool.eager_start;
    gw.pool.set_options(effective.pool);
    *gw.session_idle.write() = effective.session_idle;

    let specs: Vec<(
        String,
        metamcp_core::ServerSpec,
        metamcp_core::ConnectionSettings,
    )> = servers
        .into_iter()
        .map(|s| (s.id, s.spec, s.connection))
        .collect();
    let replaced: HashSet<String> = gw.pool.sync(&specs).into_iter().collect();

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
                    rate: e.rate,
                    client_rate: e.client_rate,
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
                        id: n.id,
                        name: n.name,
                        members,
                        prefix: n.prefix,
                        shaping,
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
                    },
                )
            })
            .collect(),
    };

    let old = gw.snapshot.load_full();
    let mut stale: Vec<String> = Vec::new();
    for (id, ns) in &snapshot.namespaces {
        let changed = match old.namespaces.get(id) {
            Some(prev) => {
                prev.members != ns.members || prev.prefix != ns.prefix || prev.shaping != ns.shaping
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
    gw.snapshot.store(Arc::new(snapshot));
    apply_resets(gw, &resets, old.version < 0);
    // Per-session servers keep warm connections ready for new sessions.
    for up in gw.pool.all() {
        up.refill_warm();
    }
    if eager {
        start_members(gw);
    }
    gw.catalogs.invalidate_namespaces(&stale);
    if old.version >= 0 && !stale.is_empty() {
        // Connected clients learn that what they listed may have changed.
        let snap = gw.snapshot.load_full();
        for kind in ["tools", "prompts", "resources"] {
            let msg = metamcp_core::jsonrpc::notification(
                &format!("notifications/{kind}/list_changed"),
                None,
            );
            crate::namespace::fan_out(gw, &snap, None, &stale, &msg);
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

/// Applies `metamcp server reset` requests made since the last reload. At start-up the
/// existing requests are only recorded: nothing is sticky across restarts anyway.
fn apply_resets(gw: &Gateway, resets: &[(String, i64)], starting: bool) {
    let mut seen = gw.resets_seen.lock();
    for (server_id, at) in resets {
        let new = seen.get(server_id).is_none_or(|prev| prev < at);
        seen.insert(server_id.clone(), *at);
        if new
            && !starting
            && let Some(up) = gw.pool.get(server_id)
        {
            up.reset();
        }
    }
}

/// `MCP_EAGER_START`: starts every server that belongs to a namespace now, in the
/// background (a server already running is left alone).
fn start_members(gw: &Gateway) {
    let snap = gw.snapshot.load_full();
    let mut ids: Vec<&str> = snap
        .namespaces
        .values()
        .flat_map(|ns| ns.active().map(|m| m.server_id.as_str()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        if let Some(up) = gw.pool.get(id) {
            tokio::spawn(async move {
                if let Err(e) = up.conn().await {
                    tracing::warn!(server = up.name(), error = %e, "eager start failed");
                }
            });
        }
    }
}
