//! The gateway's shared state and its background tasks: configuration reloads, upstream
//! events, log flushing, session expiry and rate-limit sweeps. Built once by the binary,
//! shared by every request handler.

use std::sync::Arc;
use std::time::Duration;

use metamcp_store::Store;
use metamcp_upstream::{Pool, PoolOptions, UpstreamEvent};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::namespace::Runtime;
use crate::reload::Config;
use crate::session::Sessions;
use crate::snapshot::Snapshot;

/// Process-level settings of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// The public URL (`APP_URL`); its host is allowed in `Host`, its origin in `Origin`.
    pub app_url: url::Url,
    /// Further hosts allowed in `Host` headers (besides loopback and APP_URL's).
    pub extra_allowed_hosts: Vec<String>,
    /// Further web origins allowed in `Origin` headers (`METAMCP_ALLOWED_ORIGINS`, each
    /// normalised by [`crate::auth::parse_origin`]), besides APP_URL's and the loopback
    /// origins of `listening`.
    pub extra_allowed_origins: Vec<String>,
    /// The addresses `serve` listens on: pages on loopback at their ports are allowed origins.
    pub listening: Vec<std::net::SocketAddr>,
    /// Client sessions idle this long are dropped (their id then answers 404).
    pub session_idle_timeout: Duration,
    /// How often the store's change counter is polled (PostgreSQL also notifies).
    pub config_poll: Duration,
    pub pool: PoolOptions,
    /// Peers whose `X-Forwarded-For` names the client for per-client rate limits
    /// (`METAMCP_TRUSTED_PROXIES`); empty by default: the TCP peer is the client.
    pub trusted_proxies: crate::ratelimit::TrustedProxies,
    /// Bounds on what clients can make the gateway hold.
    pub limits: crate::limits::Limits,
    /// Accounts: browser sessions, password hashing, sign-up switches from the environment.
    pub accounts: crate::account::AccountOptions,
    /// The audit log: on or off, its queue and retention.
    pub audit: crate::audit::AuditOptions,
    /// Prometheus metrics: on or off, and who may read `/metrics`.
    pub metrics: MetricsOptions,
    /// Further trusted root certificates (PEM, `METAMCP_EXTRA_CA_FILE`) for the gateway's
    /// own HTTPS fetches (client ID metadata documents).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// OpenTelemetry tracing: `Some` only when an OTLP endpoint is configured.
    pub otel: Option<crate::otel::Otel>,
}

/// Who may read `GET /metrics`.
#[derive(Clone, Default)]
pub struct MetricsOptions {
    /// `METAMCP_METRICS=off`: nothing counted, `/metrics` is 404.
    pub disabled: bool,
    /// `METAMCP_METRICS_TOKEN`: the bearer token `/metrics` asks for when the gateway's port
    /// is reachable from other machines.
    pub token: Option<String>,
    /// `METAMCP_METRICS_BIND` is set: `/metrics` is served there (open), not on the gateway's
    /// own listeners.
    pub own_listener: bool,
}

impl std::fmt::Debug for MetricsOptions {
    // why: the token is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsOptions")
            .field("disabled", &self.disabled)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("own_listener", &self.own_listener)
            .finish()
    }
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            app_url: url::Url::parse("http://localhost:12008").unwrap_or_else(|_| unreachable!()),
            extra_allowed_hosts: Vec::new(),
            extra_allowed_origins: Vec::new(),
            listening: Vec::new(),
            session_idle_timeout: Duration::from_secs(3600),
            config_poll: Duration::from_millis(500),
            pool: PoolOptions::default(),
            trusted_proxies: crate::ratelimit::TrustedProxies::default(),
            limits: crate::limits::Limits::default(),
            accounts: crate::account::AccountOptions::default(),
            audit: crate::audit::AuditOptions::default(),
            metrics: MetricsOptions::default(),
            extra_ca_pem: None,
            otel: None,
        }
    }
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Gateway {
    /// Upstreams, catalogs and the relay: what namespace requests run on.
    pub(crate) rt: Runtime,
    /// The configuration snapshot and its reloading.
    pub(crate) config: Config,
    pub(crate) sessions: Sessions,
    pub(crate) limiter: crate::ratelimit::Limiter,
    /// Parsed tool lists and compiled input validators of the REST face.
    pub(crate) rest: crate::endpoint::openapi::RestCache,
    /// People: sign-in, browser sessions, CSRF.
    pub(crate) accounts: crate::account::Accounts,
    /// Signs the dashboard inspector's endpoint tokens.
    pub(crate) tokens: crate::auth::token::TokenKey,
    /// The OAuth authorization server of endpoints with `oauth` on.
    pub(crate) oauth: crate::oauth::OAuth,
    /// The OAuth client side: upstream servers that need OAuth.
    pub(crate) upstream_auth: crate::upstream_auth::UpstreamAuthState,
    /// Open live-log streams of the dashboard (bounded per user and in all).
    pub(crate) live: crate::dashboard::live::Streams,
    pub(crate) opts: GatewayOptions,
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) allowed_origins: crate::auth::AllowedOrigins,
    pub(crate) started: Instant,
    stop: CancellationToken,
    /// The audit writer, awaited on shutdown so queued records are written.
    audit_writer: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("loading the configuration failed: {0}")]
    Store(#[from] metamcp_store::StoreError),
    #[error("building the HTTP client failed: {0}")]
    Http(String),
    #[error("starting accounts failed: {0}")]
    Accounts(#[from] crate::account::AccountError),
}

impl Gateway {
    /// Loads the configuration and starts the background tasks.
    pub async fn start(store: Store, mut opts: GatewayOptions) -> Result<Arc<Self>, GatewayError> {
        opts.pool.max_message_bytes = opts.limits.upstream_message_bytes;
        let (events_tx, events_rx) = mpsc::channel::<UpstreamEvent>(4096);
        let events = metamcp_upstream::Events::new(events_tx);
        let pool =
            Pool::new(opts.pool.clone(), events).map_err(|e| GatewayError::Http(e.to_string()))?;
        let mut allowed_hosts = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "[::1]".to_owned(),
            "::1".to_owned(),
        ];
        if let Some(h) = opts.app_url.host_str() {
            allowed_hosts.push(h.to_ascii_lowercase());
        }
        allowed_hosts.extend(
            opts.extra_allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase()),
        );
        let allowed_origins = crate::auth::AllowedOrigins::new(
            &opts.app_url,
            &opts.listening,
            &opts.extra_allowed_origins,
        );
        let accounts = crate::account::Accounts::new(&store, &opts.app_url, opts.accounts.clone())?;
        let tokens = crate::auth::token::TokenKey::new(store.derive_key("inspector-token"));
        let oauth = crate::oauth::OAuth::new(
            store.derive_key("oauth-access-token"),
            opts.extra_ca_pem.as_deref(),
        );
        let upstream_auth = crate::upstream_auth::UpstreamAuthState::new(
            store.clone(),
            &opts.app_url,
            opts.extra_ca_pem.as_deref(),
        )
        .map_err(GatewayError::Http)?;
        pool.set_token_source(upstream_auth.tokens.clone());
        let gw = Arc::new(Gateway {
            accounts,
            tokens,
            oauth,
            upstream_auth,
            live: Default::default(),
            rt: Runtime::new(
                store,
                pool,
                opts.limits.clone(),
                Arc::new(crate::audit::Audit::new(opts.audit.clone())),
                Arc::new(crate::metrics::Metrics::new(!opts.metrics.disabled)),
                opts.otel.clone(),
            ),
            audit_writer: parking_lot::Mutex::new(None),
            config: Config::new(opts.pool.clone(), opts.session_idle_timeout),
            sessions: Sessions::default(),
            limiter: crate::ratelimit::Limiter::new(opts.trusted_proxies.clone()),
            rest: Default::default(),
            allowed_hosts,
            allowed_origins,
            started: Instant::now(),
            stop: CancellationToken::new(),
            opts,
        });
        {
            let weak = Arc::downgrade(&gw);
            gw.upstream_auth.tokens.set_on_gone(Box::new(
                move |who: &metamcp_upstream::Grantee| {
                    if let (Some(gw), Some(user)) = (weak.upgrade(), &who.user) {
                        gw.rt.pool.release_user(&who.server_id, user);
                    }
                },
            ));
        }
        gw.sessions.set_caps(crate::session::SessionCaps {
            per_client: gw.opts.limits.sessions_per_client,
            per_endpoint: gw.opts.limits.sessions_per_endpoint,
        });
        {
            // why: a weak handle, or the hook (owned by the gateway) would keep it alive.
            let weak = Arc::downgrade(&gw);
            gw.sessions.on_end(move |id| {
                let Some(gw) = weak.upgrade() else { return };
                gw.rt.pool.release_session(id);
                let changes = gw.rt.relay.forget_session(id);
                if !changes.is_empty()
                    && let Ok(rt) = tokio::runtime::Handle::try_current()
                {
                    rt.spawn(async move {
                        crate::namespace::route::apply_log_levels(&gw.rt, changes, false).await;
                    });
                }
            });
        }
        gw.reload().await?;
        *gw.audit_writer.lock() =
            gw.rt
                .audit
                .start(gw.rt.store.clone(), gw.rt.metrics.clone(), gw.stop.clone());
        tokio::spawn(watch_config(gw.clone()));
        tokio::spawn(consume_events(gw.clone(), events_rx));
        tokio::spawn(flush_logs(gw.clone()));
        tokio::spawn(expire_sessions(gw.clone()));
        tokio::spawn(report_status(gw.clone()));
        tokio::spawn(stop_idle_upstreams(gw.clone()));
        tokio::spawn(sweep_rate_limits(gw.clone()));
        Ok(gw)
    }

    /// Re-reads the configuration and applies it (pool, catalogs, snapshot).
    pub async fn reload(&self) -> Result<(), metamcp_store::StoreError> {
        let started = std::time::Instant::now();
        let out = self.config.reload(&self.rt, &self.sessions).await;
        self.rt.metrics.store_op("config_reload", started.elapsed());
        out
    }

    /// The metrics text of `GET /metrics`, with upstreams, sessions and the audit queue read now.
    pub fn metrics_text(&self) -> String {
        let upstreams = self
            .rt
            .pool
            .all()
            .iter()
            .map(|u| {
                let s = u.status();
                crate::metrics::UpstreamSample {
                    server: u.name().to_owned(),
                    state: s.state.as_str(),
                    restarts: s.restarts,
                    failures: s.failures,
                    has_process: s.pid.is_some(),
                }
            })
            .collect();
        let sample = crate::metrics::Sample {
            upstreams,
            sessions: self.sessions.count_by_era(),
            audit_queued: self.rt.audit.queued(),
            audit_dropped: self.rt.audit.dropped(),
        };
        self.rt.metrics.render(&sample)
    }

    /// The configuration as the data path sees it now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.config.snapshot()
    }

    pub fn store(&self) -> &Store {
        &self.rt.store
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.rt.pool
    }

    /// The process-level settings it was started with.
    pub fn options(&self) -> &GatewayOptions {
        &self.opts
    }

    /// Interval of the keep-alive comment on the SSE streams it holds open.
    pub(crate) fn sse_keep_alive(&self) -> Duration {
        self.opts.limits.sse_keep_alive
    }

    /// Ends every client session (their GET streams close), e.g. before a graceful stop.
    pub fn end_sessions(&self) {
        self.sessions.clear();
    }

    /// Stops background tasks and every upstream (whole process groups), flushing logs.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.sessions.clear();
        let all = self.rt.pool.all();
        self.rt.pool.shutdown().await;
        for up in all {
            flush_one(&self.rt.store, up.id(), up.logs()).await;
        }
        let writer = self.audit_writer.lock().take();
        if let Some(writer) = writer
            && let Err(e) = writer.await
        {
            tracing::warn!(error = %e, "the audit writer failed");
        }
    }

    /// The audit log writer.
    pub fn audit(&self) -> &crate::audit::Audit {
        &self.rt.audit
    }
}

async fn watch_config(gw: Arc<Gateway>) {
    let mut rx = gw.rt.store.watch_changes(gw.opts.config_poll);
    loop {
        tokio::select! {
            _ = gw.stop.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        let seen = *rx.borrow_and_update();
        if seen == gw.snapshot().version {
            continue;
        }
        if let Err(e) = gw.reload().await {
            tracing::warn!(error = %e, "configuration reload failed; keeping the previous one");
        }
    }
}

/// Forgets rate-limit buckets that have refilled, every second.
async fn sweep_rate_limits(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = gw.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        gw.limiter.sweep_at(Instant::now());
    }
}

async fn consume_events(gw: Arc<Gateway>, mut rx: mpsc::Receiver<UpstreamEvent>) {
    loop {
        let ev = tokio::select! {
            _ = gw.stop.cancelled() => return,
            ev = rx.recv() => match ev { Some(ev) => ev, None => return },
        };
        crate::fanout::on_upstream_event(&gw.rt, &gw.sessions, &gw.snapshot(), &ev);
    }
}

async fn flush_logs(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = gw.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for up in gw.rt.pool.all() {
            flush_one(&gw.rt.store, up.id(), up.logs()).await;
        }
    }
}

/// Persists the lines an upstream logged since the last flush.
pub(crate) async fn flush_one(store: &Store, server_id: &str, logs: &metamcp_upstream::LogBuffer) {
    let lines = logs.take_unflushed();
    if lines.is_empty() {
        return;
    }
    let lines: Vec<metamcp_store::LogLine> = lines
        .into_iter()
        .map(|l| metamcp_store::LogLine {
            ts_ms: l.ts_ms,
            line: l.line,
        })
        .collect();
    if let Err(e) = store
        .append_server_logs(server_id, &lines, metamcp_upstream::logs::CAPACITY)
        .await
    {
        tracing::debug!(error = %e, "persisting server logs failed");
    }
}

async fn expire_sessions(gw: Arc<Gateway>) {
    loop {
        let idle = gw.config.session_idle();
        // Sweep often enough that a session outlives its lifetime by at most a quarter of it.
        // (At most a second, so a lowered SESSION_LIFETIME applies promptly.)
        let every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        tokio::select! {
            _ = gw.stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let n = gw.sessions.expire(idle);
        if n > 0 {
            tracing::debug!(expired = n, "idle client sessions dropped");
        }
    }
}

/// `MCP_IDLE_STOP`: stops upstreams nobody used for that long (checked a few times per period).
async fn stop_idle_upstreams(gw: Arc<Gateway>) {
    loop {
        let idle = gw.rt.pool.options().idle_stop;
        let every = idle.map_or(Duration::from_secs(5), |d| {
            (d / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
        });
        tokio::select! {
            _ = gw.stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Some(idle) = idle {
            for up in gw.rt.pool.all() {
                up.stop_if_idle(idle).await;
            }
        }
    }
}

/// Reports every upstream's state to the store every two seconds, for `metamcp server list`.
async fn report_status(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = gw.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let statuses: Vec<metamcp_store::ServerStatus> = gw
            .rt
            .pool
            .all()
            .iter()
            .map(|u| {
                let s = u.status();
                metamcp_store::ServerStatus {
                    server_id: u.id().to_owned(),
                    state: s.state.as_str().to_owned(),
                    failures: i64::from(s.failures),
                    restarts: i64::from(s.restarts),
                    last_error: s.last_error,
                    pid: s.pid.map(i64::from),
                    updated_at: now,
                }
            })
            .collect();
        if let Err(e) = gw.rt.store.put_server_statuses(&statuses).await {
            tracing::debug!(error = %e, "reporting upstream states failed");
        }
    }
}
