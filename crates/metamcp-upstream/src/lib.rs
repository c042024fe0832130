//! Connections to upstream MCP servers, and the pool that owns them.
//!
//! Data flow: [`transport`] moves raw JSON-RPC frames to and from one upstream (a stdio child
//! process, a Streamable HTTP server, or a legacy HTTP+SSE server); [`conn`] turns frames into request/response pairs
//! routed by id, with the MCP handshake; [`supervisor`] keeps one connection per server alive
//! (lazy start, restart with backoff, whole-process-group kill); [`pool`] holds every
//! configured server's supervisor and follows configuration changes.
//!
//! Invariants: this crate never serves HTTP and never touches the database. Payloads are
//! never decoded: requests go out and replies come back as raw JSON text. Only
//! `transport::stdio` spawns processes, and every child it spawns leads its own process group,
//! which is killed as a whole.

pub mod conn;
pub mod env;
pub mod error;
pub mod logs;
pub mod pool;
pub mod scope;
pub mod supervisor;
pub mod token;
pub mod transport;

pub use conn::{Reply, UpstreamInfo};
pub use error::UpstreamError;
pub use logs::{LogBuffer, LogLine};
pub use pool::{Events, Pool, PoolOptions, UpstreamEvent};
pub use supervisor::{Caller, Upstream, UpstreamState, UpstreamStatus};
pub use token::{AccessToken, Grantee, NeedsAuthorization, TokenSource};
