//! A namespace: the servers it groups, seen by a client as one MCP server.
//!
//! [`catalog`] builds and caches the merged lists (tools, prompts, resources, resource
//! templates) with `server__name` prefixes; [`route`] sends each request to the server that
//! owns it, by prefix or by resource URI, rewriting only the name. Both run on a
//! [`Runtime`]: the live parts below the endpoint, which knows nothing of HTTP or sessions'
//! bookkeeping. See `README.md` beside this file for the naming and routing rules.

pub mod answer;
pub mod catalog;
pub mod route;

pub use answer::Answer;
pub use catalog::Catalogs;
pub use route::{handle, handle_ctx};

use std::sync::Arc;

use metamcp_store::Store;
use metamcp_upstream::Pool;

use crate::limits::Limits;
use crate::relay::Relay;

/// What a namespace request runs on: the upstream pool, the catalog cache, the relay of
/// messages outside request/response pairs, the store that discovered tools are recorded
/// in, and the bounds. One per gateway.
#[derive(Debug)]
pub struct Runtime {
    pub(crate) store: Store,
    pub(crate) pool: Arc<Pool>,
    pub(crate) catalogs: Catalogs,
    pub(crate) relay: Arc<Relay>,
    /// Bounds on what clients make the gateway hold (subscriptions, nesting, …).
    pub(crate) limits: Limits,
    /// Where calls are recorded.
    pub(crate) audit: Arc<crate::audit::Audit>,
    /// Where calls are counted.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Where spans go; `None` (the default) when tracing is off.
    pub(crate) otel: Option<crate::otel::Otel>,
}

impl Runtime {
    pub(crate) fn new(
        store: Store,
        pool: Pool,
        limits: Limits,
        audit: Arc<crate::audit::Audit>,
        metrics: Arc<crate::metrics::Metrics>,
        otel: Option<crate::otel::Otel>,
    ) -> Self {
        Self {
            otel,
            audit,
            metrics,
            store,
            pool: Arc::new(pool),
            catalogs: Catalogs::default(),
            relay: Arc::default(),
            limits,
        }
    }
}
