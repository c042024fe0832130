//! Messages fanned out to client sessions: what upstreams send on their own (list
//! changes, log messages, resource updates) and the `list_changed` a configuration change
//! causes. A message from a server reaches only sessions of endpoints whose namespace holds
//! that server; log messages only those whose `logging/setLevel` threshold they pass.
//! (Progress and withdrawn requests belong to one call and are routed by the connection
//! they arrive on: see `metamcp_upstream::scope`.)

use metamcp_core::{LogLevel, jsonrpc};
use metamcp_upstream::UpstreamEvent;

use crate::namespace::Runtime;
use crate::namespace::catalog;
use crate::session::Sessions;
use crate::snapshot::Snapshot;

/// Reacts to a notification an upstream sent on its own: list changes drop the catalog and
/// reach the clients of every namespace holding the server; log messages reach those
/// clients too, each at its own level; resource updates reach those of them subscribed to
/// the URI.
pub(crate) fn on_upstream_event(
    rt: &Runtime,
    sessions: &Sessions,
    snap: &Snapshot,
    ev: &UpstreamEvent,
) {
    match ev.method.as_str() {
        "notifications/tools/list_changed"
        | "notifications/prompts/list_changed"
        | "notifications/resources/list_changed" => {
            let kinds: &[catalog::ListKind] = match ev.method.as_str() {
                "notifications/tools/list_changed" => &[catalog::ListKind::Tools],
                "notifications/prompts/list_changed" => &[catalog::ListKind::Prompts],
                // Templates change with resources as far as a client can tell.
                _ => &[catalog::ListKind::Resources, catalog::ListKind::Templates],
            };
            for kind in kinds {
                rt.catalogs.invalidate_server_kind(snap, &ev.server, *kind);
            }
            tracing::info!(server = %ev.server, method = %ev.method, "upstream list changed; catalog dropped");
            let n = fan_out(
                sessions,
                snap,
                Some(&ev.server),
                &[],
                &jsonrpc::notification(&ev.method, None),
            );
            tracing::debug!(sessions = n, "list_changed relayed");
        }
        "notifications/message" => {
            let level = LogLevel::of_message(&ev.message);
            let endpoints = crate::relay::endpoints_of(snap, Some(&ev.server), &[]);
            let n = sessions
                .on_endpoints(&endpoints)
                .iter()
                .filter(|s| s.wants_log(level) && s.push(ev.message.clone()))
                .count();
            tracing::trace!(sessions = n, "log message relayed");
        }
        "notifications/resources/updated" => {
            let uri = serde_json::from_str::<serde_json::Value>(&ev.message)
                .ok()
                .and_then(|v| {
                    v.pointer("/params/uri")
                        .and_then(|u| u.as_str())
                        .map(str::to_owned)
                });
            // why: a server may only notify the sessions that can see it; another tenant
            // subscribed to the same URI on a server of its own gets nothing from this one.
            let endpoints = crate::relay::endpoints_of(snap, Some(&ev.server), &[]);
            for sid in uri.map(|u| rt.relay.subscribers(&u)).unwrap_or_default() {
                if let Some(s) = sessions.get(&sid)
                    && endpoints.contains(s.endpoint_id.as_str())
                {
                    s.push(ev.message.clone());
                }
            }
        }
        other => {
            tracing::debug!(server = %ev.server, method = other, "upstream notification not relayed")
        }
    }
}

/// Sends `message` to every session of the endpoints whose namespace holds `server` or is
/// one of `namespaces`; returns how many sessions had a stream to take it.
pub(crate) fn fan_out(
    sessions: &Sessions,
    snap: &Snapshot,
    server: Option<&str>,
    namespaces: &[String],
    message: &str,
) -> usize {
    let endpoints = crate::relay::endpoints_of(snap, server, namespaces);
    if endpoints.is_empty() {
        return 0;
    }
    sessions
        .on_endpoints(&endpoints)
        .iter()
        .filter(|s| s.push(message.to_owned()))
        .count()
}
