//! A namespace: the servers it groups, seen by a client as one MCP server.
//!
//! [`catalog`] builds and caches the merged lists (tools, prompts, resources, resource
//! templates) with `server__name` prefixes; [`route`] sends each request to the server that
//! owns it, by prefix or by resource URI, rewriting only the name. See `README.md` beside
//! this file for the naming and routing rules.

pub mod catalog;
pub mod route;
pub mod uri_template;

pub use catalog::Catalogs;
pub use route::{handle, handle_ctx};

use metamcp_core::jsonrpc;
use metamcp_upstream::UpstreamEvent;

use crate::state::Gateway;

/// Reacts to a notification an upstream sent on its own: progress goes to the call that
/// asked for it; list changes drop the catalog and reach the clients of every namespace
/// holding the server; log messages reach those clients too; resource updates reach the
/// sessions subscribed to the URI.
pub(crate) fn on_upstream_event(gw: &Gateway, ev: &UpstreamEvent) {
    let snap = gw.snapshot();
    match ev.method.as_str() {
        "notifications/progress" => {
            if !gw.relay.deliver_progress(&ev.message) {
                tracing::debug!(server = %ev.server, "progress for no live call dropped");
            }
        }
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
                gw.catalogs.invalidate_server_kind(&snap, &ev.server, *kind);
            }
            tracing::info!(server = %ev.server, method = %ev.method, "upstream list changed; catalog dropped");
            let n = fan_out(
                gw,
                &snap,
                Some(&ev.server),
                &[],
                &jsonrpc::notification(&ev.method, None),
            );
            tracing::debug!(sessions = n, "list_changed relayed");
        }
        "notifications/cancelled" => {
            let relayed = gw.relay.upstream_cancelled(&ev.server, &ev.message);
            tracing::debug!(server = %ev.server, relayed, "upstream cancelled a request it sent");
        }
        "notifications/message" => {
            fan_out(gw, &snap, Some(&ev.server), &[], &ev.message);
        }
        "notifications/resources/updated" => {
            let uri = serde_json::from_str::<serde_json::Value>(&ev.message)
                .ok()
                .and_then(|v| {
                    v.pointer("/params/uri")
                        .and_then(|u| u.as_str())
                        .map(str::to_owned)
                });
            for sid in uri.map(|u| gw.relay.subscribers(&u)).unwrap_or_default() {
                if let Some(s) = gw.sessions.get(&sid) {
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
    gw: &Gateway,
    snap: &crate::snapshot::Snapshot,
    server: Option<&str>,
    namespaces: &[String],
    message: &str,
) -> usize {
    let endpoints = crate::relay::endpoints_of(snap, server, namespaces);
    if endpoints.is_empty() {
        return 0;
    }
    gw.sessions
        .on_endpoints(&endpoints)
        .iter()
        .filter(|s| s.push(message.to_owned()))
        .count()
}
