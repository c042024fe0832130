//! The gateway as an OAuth client of upstream servers that need OAuth (a server's
//! connection settings say `oauth = shared | per-user`).
//!
//! - `discover` — from the server's URL alone: its 401, RFC 9728 protected-resource
//!   metadata, RFC 8414 / OpenID authorization-server metadata.
//! - `flow` — a signed-in user authorizes in the browser (authorization code, PKCE S256,
//!   RFC 8707 `resource`, RFC 9207 `iss`); the client is the configured one or registered
//!   dynamically (RFC 7591); the grant is stored sealed.
//! - `source` — the upstream connections' token source: memory, then the store, then a
//!   refresh under a lease in the database (one replica refreshes; rotating refresh tokens
//!   race).
//!
//! Calls of a `per-user` server run on the calling user's own upstream connection, carrying
//! that user's token (see `metamcp_upstream::Caller`); its lists use the server's grant.

pub mod discover;
pub mod flow;
pub mod source;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;

use crate::state::Gateway;

/// The HTTP client of discovery, registration and token requests, and the token source.
#[derive(Debug)]
pub struct UpstreamAuthState {
    pub http: reqwest::Client,
    pub tokens: Arc<source::StoreTokens>,
}

impl UpstreamAuthState {
    /// A client trusting the system's roots and `extra_ca_pem` (`METAMCP_EXTRA_CA_FILE`).
    /// Redirects are not followed: every URL it calls comes from a document it checked.
    pub fn new(
        store: metamcp_store::Store,
        app_url: &url::Url,
        extra_ca_pem: Option<&[u8]>,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .tcp_nodelay(true)
            .user_agent(concat!("metamcp/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("METAMCP_EXTRA_CA_FILE: {e}"))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        let tokens = source::StoreTokens::new(store, http.clone(), app_url.as_str());
        Ok(UpstreamAuthState { http, tokens })
    }
}

/// Tells the gateway (and its clients) that `server`'s lists changed, as if the server had
/// sent `list_changed` for tools, prompts and resources.
pub fn announce_lists(rt: &crate::namespace::Runtime, server: &str) {
    let events = rt.pool.events();
    for method in [
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
    ] {
        events.notify(metamcp_upstream::UpstreamEvent {
            server: Arc::from(server),
            method: method.to_owned(),
            message: metamcp_core::jsonrpc::notification(method, None),
        });
    }
}

/// The route any web origin may read: the gateway's client metadata document.
pub fn any_origin_routes() -> Router<Arc<Gateway>> {
    Router::new().route("/oauth/upstream/client.json", get(flow::metadata_document))
}

/// The browser routes (exact origin): begin an authorization, take its answer.
pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/oauth/upstream/callback", get(flow::callback))
        .route("/oauth/upstream/{server}/authorize", get(flow::start))
}
