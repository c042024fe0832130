//! Every configured upstream server, each with one supervised connection that all client
//! sessions and namespaces share (MetaMCP spawned one per client session per namespace).
//!
//! The pool follows the configuration: [`Pool::sync`] adds new servers, and stops servers
//! that were removed or whose spec changed (their processes die with their groups).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metamcp_core::{ConnectionMode, ConnectionSettings, ServerSpec};
use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::supervisor::Upstream;

/// Timeouts and limits of upstream connections.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Per request (MetaMCP's `MCP_TIMEOUT`, default 60 s).
    pub request_timeout: Duration,
    /// For spawning and the handshake; separate so a slow `npx` install is not a crash.
    pub start_timeout: Duration,
    /// Longest a request may run when progress keeps resetting its timeout
    /// (MetaMCP's `MCP_MAX_TOTAL_TIMEOUT`).
    pub max_total_timeout: Duration,
    /// Whether progress resets a request's timeout (`MCP_RESET_TIMEOUT_ON_PROGRESS`).
    pub reset_timeout_on_progress: bool,
    /// Consecutive failed starts after which the circuit opens (`MCP_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// How long an open circuit refuses attempts before one probe is let through.
    pub breaker_cooldown: Duration,
    /// Stop a server unused this long (`None`: keep it running).
    pub idle_stop: Option<Duration>,
    /// Start every server in a namespace when the configuration loads, not on first use.
    pub eager_start: bool,
    /// Longest message an upstream may send (a stdout line, a JSON body, an SSE event); a
    /// longer one fails only the request it answers.
    pub max_message_bytes: usize,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(120),
            max_total_timeout: Duration::from_secs(600),
            reset_timeout_on_progress: true,
            max_attempts: 3,
            breaker_cooldown: Duration::from_secs(30),
            idle_stop: None,
            eager_start: false,
            max_message_bytes: 16 * 1024 * 1024,
        }
    }
}

/// A message an upstream sent on its own (a notification), for the namespace layer.
#[derive(Debug, Clone)]
pub struct UpstreamEvent {
    pub server: Arc<str>,
    pub method: String,
    /// The whole message as the upstream wrote it.
    pub message: String,
}

/// Where connections put what upstreams send on their own (notifications other than
/// progress, which reaches its call through the connection, see [`crate::scope`]).
#[derive(Debug, Clone)]
pub struct Events {
    tx: mpsc::Sender<UpstreamEvent>,
}

impl Events {
    pub fn new(tx: mpsc::Sender<UpstreamEvent>) -> Self {
        Self { tx }
    }

    /// Hands a notification on to the gateway's event queue.
    pub fn notify(&self, ev: UpstreamEvent) {
        if self.tx.try_send(ev).is_err() {
            tracing::warn!("upstream event dropped (queue full)");
        }
    }
}

/// What every supervisor shares: the pooled HTTP client, the event channel, the options.
#[derive(Debug)]
pub(crate) struct PoolCtx {
    pub(crate) http: reqwest::Client,
    pub(crate) events: Events,
    pub(crate) opts: parking_lot::RwLock<PoolOptions>,
    /// Access tokens of servers that need OAuth (set by the gateway).
    pub(crate) tokens: parking_lot::RwLock<Option<Arc<dyn crate::token::TokenSource>>>,
}

impl PoolCtx {
    /// The options now (they change when the settings do).
    pub(crate) fn opts(&self) -> PoolOptions {
        self.opts.read().clone()
    }
}

/// The configured upstreams, by server id.
#[derive(Debug)]
pub struct Pool {
    ctx: Arc<PoolCtx>,
    servers: RwLock<HashMap<String, Arc<Upstream>>>,
}

impl Pool {
    /// Where upstream notifications go (also for the gateway's own, e.g. a list that
    /// arrived after its client was answered).
    pub fn events(&self) -> Events {
        self.ctx.events.clone()
    }

    /// A pool whose upstream notifications go to `events`.
    pub fn new(opts: PoolOptions, events: Events) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("metamcp/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            ctx: Arc::new(PoolCtx {
                http,
                events,
                opts: parking_lot::RwLock::new(opts),
                tokens: parking_lot::RwLock::new(None),
            }),
            servers: RwLock::new(HashMap::new()),
        })
    }

    /// Brings the pool in line with the configuration. Returns the ids of servers that were
    /// removed or replaced (their caches must be dropped); their connections are shut down in
    /// the background.
    pub fn sync(&self, specs: &[(String, ServerSpec, ConnectionSettings)]) -> Vec<String> {
        let mut gone = Vec::new();
        let mut stop = Vec::new();
        {
            let mut servers = self.servers.write();
            let wanted: HashMap<&str, (&ServerSpec, &ConnectionSettings)> = specs
                .iter()
                .map(|(id, s, c)| (id.as_str(), (s, c)))
                .collect();
            servers.retain(|id, up| match wanted.get(id.as_str()) {
                Some((spec, conn)) if *spec == up.spec() && **conn == up.connection() => true,
                _ => {
                    gone.push(id.clone());
                    stop.push(up.clone());
                    false
                }
            });
            for (id, spec, conn) in specs {
                servers.entry(id.clone()).or_insert_with(|| {
                    Arc::new(Upstream::new(
                        id.clone(),
                        spec.clone(),
                        *conn,
                        self.ctx.clone(),
                    ))
                });
            }
        }
        for up in stop {
            tracing::info!(
                server = up.name(),
                "upstream removed or changed; stopping it"
            );
            tokio::spawn(async move { up.shutdown().await });
        }
        gone
    }

    pub fn get(&self, id: &str) -> Option<Arc<Upstream>> {
        self.servers.read().get(id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Upstream>> {
        self.servers.read().values().cloned().collect()
    }

    pub fn options(&self) -> PoolOptions {
        self.ctx.opts()
    }

    /// Where servers that need OAuth get their access tokens.
    pub fn set_token_source(&self, source: Arc<dyn crate::token::TokenSource>) {
        *self.ctx.tokens.write() = Some(source);
    }

    /// A user's grant for server `id` ended: their connection to it stops.
    pub fn release_user(&self, id: &str, user: &str) {
        if let Some(up) = self.get(id) {
            let user = user.to_owned();
            tokio::spawn(async move { up.release_user(&user).await });
        }
    }

    /// Applies new options to every connection from now on (settings changed).
    pub fn set_options(&self, opts: PoolOptions) {
        *self.ctx.opts.write() = opts;
    }

    /// A client session ended: its per-session connections stop.
    pub fn release_session(&self, session_id: &str) {
        for up in self.all() {
            if up.connection().mode == ConnectionMode::PerSession {
                let id = session_id.to_owned();
                tokio::spawn(async move { up.release_session(&id).await });
            }
        }
    }

    /// Stops every connection (whole process groups) and waits for them.
    pub async fn shutdown(&self) {
        let all: Vec<Arc<Upstream>> = self.servers.write().drain().map(|(_, u)| u).collect();
        futures::future::join_all(all.iter().map(|u| u.shutdown())).await;
    }
}
