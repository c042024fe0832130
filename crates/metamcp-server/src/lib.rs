//! The gateway's faces: upstream pools aggregated into namespaces, served on endpoints,
//! guarded by API keys.
//!
//! Data flow of one request: [`endpoint`] (HTTP, sessions, Host/Origin checks) →
//! [`auth`] (API key of the endpoint) → [`ratelimit`] (per endpoint and client) → [`namespace`] (merged catalogs, routing by
//! `server__name` prefix or resource URI) → `metamcp_upstream::Pool` (one shared connection
//! per server). Configuration reaches the data path only as an immutable [`Snapshot`]
//! swapped in by [`reload`] when the store's change counter moves.
//!
//! Invariant: this crate never decodes a payload it only forwards; lists are decoded (to
//! prefix names) once per catalog build, off the per-call path.

pub mod account;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod dashboard;
pub mod endpoint;
pub mod error;
pub mod fanout;
pub mod health;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod namespace;
pub mod oauth;
pub mod otel;
pub mod ratelimit;
pub mod relay;
pub mod reload;
pub mod session;
pub mod settings;
pub mod snapshot;
pub mod state;
pub mod upstream_auth;

pub use endpoint::{Faces, router};
pub use snapshot::Snapshot;
pub use state::{Gateway, GatewayOptions};
