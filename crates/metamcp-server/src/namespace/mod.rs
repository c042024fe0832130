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
pub use route::handle;

use metamcp_upstream::UpstreamEvent;

use crate::state::Gateway;

/// Reacts to a notification an upstream sent on its own.
pub(crate) fn on_upstream_event(gw: &Gateway, ev: &UpstreamEvent) {
    let kind = match ev.method.as_str() {
        "notifications/tools/list_changed" => catalog::ListKind::Tools,
        "notifications/prompts/list_changed" => catalog::ListKind::Prompts,
        "notifications/resources/list_changed" => {
            // Templates change with resources as far as a client can tell.
            gw.catalogs.invalidate_server_kind(
                &gw.snapshot(),
                &ev.server,
                catalog::ListKind::Templates,
            );
            catalog::ListKind::Resources
        }
        other => {
            tracing::debug!(server = %ev.server, method = other, "upstream notification not relayed");
            return;
        }
    };
    tracing::info!(server = %ev.server, method = %ev.method, "upstream list changed; catalog dropped");
    gw.catalogs
        .invalidate_server_kind(&gw.snapshot(), &ev.server, kind);
}
