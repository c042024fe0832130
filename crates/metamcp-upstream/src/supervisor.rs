//! Keeps one connection to one upstream server alive.
//!
//! The connection starts when first needed (single-flight: concurrent callers wait for the
//! same start). When it dies — the child exited, the handshake failed — the next caller
//! restarts it, but repeated failures back off exponentially (capped), so a broken server
//! costs one quick error per call instead of a spawn storm. Nothing here is sticky: a
//! success resets the failure count, and state lives only in memory.

use std::sync::Arc;
use std::time::Duration;

use metamcp_core::secrets::redact_url;
use metamcp_core::{ConnectionMode, ConnectionSettings, ServerSpec, Transport, UpstreamAuth};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::conn::{Conn, Reply, UpstreamInfo};
use crate::env::{Unresolved, child_env, http_secrets, process_lookup};
use crate::error::UpstreamError;
use crate::logs::LogBuffer;
use crate::pool::PoolCtx;
use crate::token::{Bearer, Grantee};
use crate::transport::http::{HttpConn, HttpParams};
use crate::transport::sse::{SseConn, SseParams};
use crate::transport::stdio::{StdioConn, StdioParams};

/// First retry delay after a failure; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest delay between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lived this long resets the failure count when it dies.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Where a server's connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamState {
    /// Not started yet (or stopped because unused).
    Idle,
    Starting,
    Running,
    /// The last attempt failed; the next one waits for the backoff.
    BackingOff,
    /// Too many consecutive failures: attempts are refused until the cool-down ends, then
    /// one probe is let through (half-open).
    Open,
    /// Removed from the configuration.
    Stopped,
    /// It needs OAuth and has no usable grant: someone must authorize in the browser.
    NeedsAuthorization,
}

impl UpstreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamState::Idle => "idle",
            UpstreamState::Starting => "starting",
            UpstreamState::Running => "running",
            UpstreamState::BackingOff => "backing_off",
            UpstreamState::Open => "open",
            UpstreamState::Stopped => "stopped",
            UpstreamState::NeedsAuthorization => "needs_authorization",
        }
    }
}

/// A snapshot of a server's health, for `server list` and the health endpoints.
#[derive(Debug, Clone)]
pub struct UpstreamStatus {
    pub state: UpstreamState,
    pub last_error: Option<String>,
    pub failures: u32,
    pub restarts: u32,
    pub pid: Option<u32>,
    pub retry_in_ms: Option<u64>,
}

#[derive(Debug)]
enum Slot {
    Idle,
    Running {
        conn: Arc<Conn>,
        since: Instant,
    },
    Failed {
        error: String,
        retry_at: Instant,
        open: bool,
    },
    Stopped,
}

#[derive(Debug)]
struct Health {
    slot: Slot,
    failures: u32,
    restarts: u32,
    last_error: Option<String>,
    starting: bool,
    /// The last start failed for want of an OAuth grant (not counted as a failure).
    needs_auth: bool,
}

/// The supervisor of one configured server.
#[derive(Debug)]
pub struct Upstream {
    id: String,
    name: Arc<str>,
    spec: ServerSpec,
    ctx: Arc<PoolCtx>,
    logs: Arc<LogBuffer>,
    health: Mutex<Health>,
    start_lock: Arc<tokio::sync::Mutex<()>>,
    connection: ConnectionSettings,
    /// Per-session mode: each client session's connection, and started spare ones.
    sessions: Mutex<std::collections::HashMap<String, Arc<Conn>>>,
    warm: Mutex<Vec<Arc<Conn>>>,
    /// Per-user OAuth: each user's connection, carrying that user's token, and when it was
    /// last used.
    users: Mutex<std::collections::HashMap<String, (Arc<Conn>, Instant)>>,
    user_start: tokio::sync::Mutex<()>,
    /// The server refused `initialize`: start it with `server/discover`.
    stateless: std::sync::atomic::AtomicBool,
    /// Session connections being started (changed only under the `sessions` lock).
    reserving: std::sync::atomic::AtomicUsize,
    filling: std::sync::atomic::AtomicBool,
    /// Requests in flight, and when the last one started (for stopping idle servers).
    in_flight: std::sync::atomic::AtomicUsize,
    last_used: Mutex<Instant>,
}

/// Shuts a connection down once no request uses it any more (or after `patience`): new
/// requests already go to its successor; those in flight finish on it.
async fn retire(conn: Arc<Conn>, patience: Duration) {
    let until = Instant::now() + patience;
    // why: every request in flight holds a clone of the Arc; ours is the last one left.
    while Arc::strong_count(&conn) > 1 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.shutdown().await;
}

/// On whose behalf a request is sent (see [`Upstream::request_for`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    /// The client session (per-session servers).
    pub session: Option<&'a str>,
    /// The user behind the call (per-user OAuth servers): a signed-in user, or an API key's
    /// owner.
    pub user: Option<&'a str>,
    /// The gateway's own request (lists, log levels), for no client: a per-user OAuth
    /// server gets it on its shared connection, with the server's own grant.
    pub gateway: bool,
}

/// Counts a request in flight for as long as it lives.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Upstream {
    pub(crate) fn new(
        id: String,
        spec: ServerSpec,
        connection: ConnectionSettings,
        ctx: Arc<PoolCtx>,
    ) -> Self {
        Self {
            connection,
            sessions: Mutex::default(),
            warm: Mutex::default(),
            users: Mutex::default(),
            user_start: tokio::sync::Mutex::new(()),
            reserving: std::sync::atomic::AtomicUsize::new(0),
            stateless: std::sync::atomic::AtomicBool::new(false),
            filling: std::sync::atomic::AtomicBool::new(false),
            id,
            name: spec.name.as_str().into(),
            spec,
            ctx,
            logs: Arc::new(LogBuffer::default()),
            health: Mutex::new(Health {
                slot: Slot::Idle,
                failures: 0,
                restarts: 0,
                last_error: None,
                starting: false,
                needs_auth: false,
            }),
            start_lock: Arc::new(tokio::sync::Mutex::new(())),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
        }
    }

    /// Stops a running connection unused for `idle` (no request in flight, none started
    /// since); the next call starts it again. True when it was stopped.
    pub async fn stop_if_idle(&self, idle: Duration) -> bool {
        let conn = {
            let mut h = self.health.lock();
            let quiet = self.in_flight.load(std::sync::atomic::Ordering::Acquire) == 0
                && self.last_used.lock().elapsed() >= idle;
            match &h.slot {
                Slot::Running { .. } if quiet && !h.starting => {
                    match std::mem::replace(&mut h.slot, Slot::Idle) {
                        Slot::Running { conn, .. } => conn,
                        _ => return false,
                    }
                }
                _ => return false,
            }
        };
        tracing::info!(server = %self.name, idle_s = idle.as_secs(), "stopping an idle upstream");
        self.logs.push(&format!(
            "[metamcp] stopped after {} s unused",
            idle.as_secs()
        ));
        conn.shutdown().await;
        true
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's name, shared (an answer names the server that gave it).
    pub fn shared_name(&self) -> Arc<str> {
        self.name.clone()
    }

    pub fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    pub fn logs(&self) -> &Arc<LogBuffer> {
        &self.logs
    }

    /// The live connection, started (or restarted) if needed.
    ///
    /// The start runs in its own task: a caller that gives up (timeout, client gone) does
    /// not abort a slow first start (`npx` installing a package); the next caller finds
    /// the connection running.
    pub async fn conn(self: &Arc<Self>) -> Result<Arc<Conn>, UpstreamError> {
        if let Some(c) = self.live_conn()? {
            return Ok(c);
        }
        let me = self.clone();
        let task = tokio::spawn(async move {
            let _g = me.start_lock.clone().lock_owned().await;
            if let Some(c) = me.live_conn()? {
                return Ok(c);
            }
            me.start_locked().await
        });
        task.await.map_err(|e| UpstreamError::Start {
            server: self.name.to_string(),
            message: format!("start task failed: {e}"),
        })?
    }

    async fn start_locked(&self) -> Result<Arc<Conn>, UpstreamError> {
        self.health.lock().starting = true;
        let started = self.start().await;
        let removed = {
            let mut h = self.health.lock();
            h.starting = false;
            matches!(h.slot, Slot::Stopped)
        };
        if removed {
            if let Ok(c) = started {
                c.shutdown().await;
            }
            return Err(UpstreamError::Removed {
                server: self.name.to_string(),
            });
        }
        let mut h = self.health.lock();
        match started {
            Ok(conn) => {
                let conn = Arc::new(conn);
                if h.restarts > 0 || h.failures > 0 {
                    tracing::info!(server = %self.name, "upstream recovered");
                }
                h.restarts += 1;
                h.failures = 0;
                h.needs_auth = false;
                h.slot = Slot::Running {
                    conn: conn.clone(),
                    since: Instant::now(),
                };
                Ok(conn)
            }
            Err(e @ UpstreamError::Unauthorized { .. }) => {
                // why: waiting for a person is not a fault; no backoff, so the first call
                // after they authorize connects.
                let msg = e.to_string();
                h.needs_auth = true;
                h.last_error = Some(msg.clone());
                h.slot = Slot::Failed {
                    error: msg,
                    retry_at: Instant::now(),
                    open: false,
                };
                Err(e)
            }
            Err(e) => {
                let msg = e.to_string();
                h.needs_auth = false;
                self.record_failure(&mut h, msg.clone());
                tracing::warn!(server = %self.name, error = %msg, "upstream failed to start");
                Err(e)
            }
        }
    }

    /// The running connection if it is alive; an error while backing off; `None` to start.
    fn live_conn(&self) -> Result<Option<Arc<Conn>>, UpstreamError> {
        let mut h = self.health.lock();
        match &h.slot {
            Slot::Running { conn, since } => match conn.closed_reason() {
                None => return Ok(Some(conn.clone())),
                Some(reason) => {
                    // why: a connection that served for a while and then died is restarted
                    // at once; one that keeps dying right after start backs off.
                    if since.elapsed() >= HEALTHY_AFTER {
                        h.failures = 0;
                    }
                    let message = format!("connection lost: {reason}");
                    tracing::warn!(server = %self.name, %message, "upstream connection lost");
                    self.record_failure(&mut h, message);
                }
            },
            Slot::Stopped => {
                return Err(UpstreamError::Removed {
                    server: self.name.to_string(),
                });
            }
            Slot::Idle | Slot::Failed { .. } => {}
        }
        let now = Instant::now();
        if let Slot::Failed {
            error, retry_at, ..
        } = &h.slot
            && *retry_at > now
        {
            return Err(UpstreamError::BackingOff {
                server: self.name.to_string(),
                message: error.clone(),
                retry_in_ms: (*retry_at - now).as_millis() as u64,
            });
        }
        Ok(None)
    }

    fn record_failure(&self, h: &mut Health, error: String) {
        // The first failure after a healthy run retries at once; later ones back off; after
        // `max_attempts` in a row the circuit opens for the cool-down, then one probe goes.
        let opts = self.ctx.opts();
        let open = h.failures + 1 >= opts.max_attempts.max(1);
        let delay = match h.failures {
            _ if open => opts.breaker_cooldown,
            0 => Duration::ZERO,
            n => BACKOFF_BASE
                .saturating_mul(1 << (n - 1).min(16))
                .min(BACKOFF_MAX),
        };
        h.failures += 1;
        if open {
            tracing::warn!(
                server = %self.name,
                failures = h.failures,
                cooldown_s = delay.as_secs(),
                "circuit open: upstream refused until the cool-down ends (metamcp server reset clears it)"
            );
        }
        h.last_error = Some(error.clone());
        h.slot = Slot::Failed {
            error,
            retry_at: Instant::now() + delay,
            open,
        };
    }

    /// Clears the failure state (backoff, open circuit) so the next call starts the server
    /// at once: `metamcp server reset`, MetaMCP's `resetServerErrorState`.
    ///
    /// A server that needs OAuth also drops its connections and the tokens kept in memory:
    /// its grants changed (authorized anew, or forgotten), and the next call reads them.
    pub fn reset(&self) {
        let mut conns = Vec::new();
        {
            let mut h = self.health.lock();
            h.failures = 0;
            h.last_error = None;
            h.needs_auth = false;
            if matches!(h.slot, Slot::Failed { .. }) {
                h.slot = Slot::Idle;
            }
            if self.connection.oauth != UpstreamAuth::Off
                && matches!(h.slot, Slot::Running { .. })
                && let Slot::Running { conn, .. } = std::mem::replace(&mut h.slot, Slot::Idle)
            {
                conns.push(conn);
            }
        }
        if self.connection.oauth != UpstreamAuth::Off {
            conns.extend(self.users.lock().drain().map(|(_, (c, _))| c));
            if let Some(source) = self.ctx.tokens.read().clone() {
                source.forget(&self.id);
            }
            if !conns.is_empty() {
                let patience = self.ctx.opts().request_timeout;
                tokio::spawn(async move {
                    futures::future::join_all(conns.into_iter().map(|c| retire(c, patience))).await;
                });
            }
        }
        tracing::info!(server = %self.name, "failure state reset");
    }

    /// Starts a connection in the era the server speaks: the session era first; a server
    /// that refuses `initialize` for the stateless era (2026-07-28) is remembered and
    /// started with `server/discover` from then on.
    async fn start(&self) -> Result<Conn, UpstreamError> {
        self.start_for(None).await
    }

    /// [`Self::start`] with `user`'s OAuth grant (`None`: the server's own, if it needs one).
    async fn start_for(&self, user: Option<&str>) -> Result<Conn, UpstreamError> {
        let stateless = self.stateless.load(std::sync::atomic::Ordering::Acquire);
        match self.start_in(stateless, user).await {
            Err(UpstreamError::StatelessOnly { .. }) if !stateless => {
                tracing::info!(server = %self.name, "upstream speaks only the stateless era; using server/discover");
                self.logs.push("[metamcp] initialize refused: switching to the stateless protocol (2026-07-28)");
                self.stateless
                    .store(true, std::sync::atomic::Ordering::Release);
                self.start_in(true, user).await
            }
            other => other,
        }
    }

    /// The token a new connection sends, when the server needs OAuth.
    fn bearer(&self, user: Option<&str>) -> Result<Option<Arc<Bearer>>, UpstreamError> {
        if self.connection.oauth == UpstreamAuth::Off {
            return Ok(None);
        }
        let source = self.ctx.tokens.read().clone();
        let source = source.ok_or_else(|| UpstreamError::Unauthorized {
            server: self.name.to_string(),
            message: "this process has no OAuth token source".into(),
        })?;
        Ok(Some(Arc::new(Bearer::new(
            source,
            Grantee {
                server_id: self.id.clone(),
                server_name: self.name.to_string(),
                user: user.map(str::to_owned),
            },
        ))))
    }

    async fn start_in(&self, stateless: bool, user: Option<&str>) -> Result<Conn, UpstreamError> {
        let ctx = &self.ctx;
        match &self.spec.transport {
            Transport::Stdio { command, args, env } => {
                let (env, unresolved) = child_env(env, &process_lookup);
                self.log_unresolved(&unresolved);
                let params = StdioParams {
                    command,
                    args,
                    env,
                    stateless,
                    max_message: ctx.opts().max_message_bytes,
                };
                let conn = StdioConn::spawn(
                    self.name.clone(),
                    params,
                    self.logs.clone(),
                    ctx.events.clone(),
                    ctx.opts().start_timeout,
                )
                .await?;
                Ok(Conn::Stdio(conn))
            }
            Transport::StreamableHttp {
                url,
                headers,
                bearer_token,
            } => {
                let http = http_secrets(url, headers, bearer_token.as_deref(), &process_lookup);
                self.log_unresolved(&http.unresolved);
                let bearer = self.bearer(user)?;
                let params = HttpParams {
                    url: &http.url,
                    headers: http.headers,
                    bearer_token: http.bearer_token.filter(|_| bearer.is_none()),
                    stateless,
                    max_message: ctx.opts().max_message_bytes,
                    bearer,
                };
                let conn = HttpConn::connect(
                    self.name.clone(),
                    params,
                    ctx.http.clone(),
                    ctx.events.clone(),
                    ctx.opts().start_timeout,
                )
                .await?;
                self.logs
                    .push(&format!("[metamcp] connected to {}", redact_url(url)));
                Ok(Conn::Http(conn))
            }
            Transport::Sse {
                url,
                headers,
                bearer_token,
            } => {
                let http = http_secrets(url, headers, bearer_token.as_deref(), &process_lookup);
                self.log_unresolved(&http.unresolved);
                let params = SseParams {
                    url: &http.url,
                    headers: http.headers,
                    bearer_token: http.bearer_token,
                    max_message: ctx.opts().max_message_bytes,
                    bearer: self.bearer(user)?,
                };
                let conn = SseConn::connect(
                    self.name.clone(),
                    params,
                    ctx.http.clone(),
                    ctx.events.clone(),
                    ctx.opts().start_timeout,
                )
                .await?;
                self.logs.push(&format!(
                    "[metamcp] connected to {} (legacy SSE)",
                    redact_url(url)
                ));
                Ok(Conn::Sse(conn))
            }
        }
    }

    /// Logs references that were not passed to the upstream (the variable and why; never a
    /// value), on the server's log and the gateway's.
    fn log_unresolved(&self, unresolved: &[Unresolved]) {
        for u in unresolved {
            self.logs.push(&u.log_line());
            tracing::warn!(server = %self.name, place = %u.place, var = %u.var, why = ?u.why, "reference not passed to the upstream");
        }
    }

    /// Sends one of the gateway's own requests (see [`Caller::gateway`]), starting the
    /// connection if needed.
    pub async fn request(
        self: &Arc<Self>,
        method: &str,
        params: Option<&str>,
    ) -> Result<Reply, UpstreamError> {
        self.request_with(method, params, None).await
    }

    /// [`Self::request`] whose timeout restarts whenever `activity` is notified (progress),
    /// up to the maximum total timeout.
    pub async fn request_with(
        self: &Arc<Self>,
        method: &str,
        params: Option<&str>,
        activity: Option<Arc<tokio::sync::Notify>>,
    ) -> Result<Reply, UpstreamError> {
        let gateway = Caller {
            gateway: true,
            ..Caller::default()
        };
        self.request_for(gateway, method, params, activity).await
    }

    /// Sends one request on behalf of `caller`: on the calling user's own connection when
    /// the server has per-user OAuth, on the session's own connection when the server is
    /// per-session, else on the shared one.
    pub async fn request_for(
        self: &Arc<Self>,
        caller: Caller<'_>,
        method: &str,
        params: Option<&str>,
        activity: Option<Arc<tokio::sync::Notify>>,
    ) -> Result<Reply, UpstreamError> {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let _counted = InFlight(&self.in_flight);
        *self.last_used.lock() = Instant::now();
        let conn = if self.connection.oauth == UpstreamAuth::PerUser {
            match caller.user {
                // why (boxed, as the per-session one below): the future of finding or making
                // a connection is about 3 KB; held inline, it was copied with every call's
                // future, also where the shared connection answers.
                Some(user) => Box::pin(self.user_conn(user)).await?,
                None if caller.gateway => self.conn().await?,
                None => {
                    return Err(UpstreamError::Unauthorized {
                        server: self.name.to_string(),
                        message: "its calls carry the calling user's own credentials, and this \
                                  caller is no user (an API key without an owner, or an endpoint \
                                  without auth)"
                            .into(),
                    });
                }
            }
        } else {
            match caller.session {
                Some(sid) if self.connection.mode == ConnectionMode::PerSession => {
                    Box::pin(self.session_conn(sid)).await?
                }
                _ => self.conn().await?,
            }
        };
        let opts = self.ctx.opts();
        let activity = activity.filter(|_| opts.reset_timeout_on_progress);
        // why one request future for both paths: two (one per path) made this future hold
        // both, and it is copied as a whole with every call's.
        let call = conn.request(
            method,
            params,
            if activity.is_some() {
                opts.max_total_timeout.max(opts.request_timeout)
            } else {
                opts.request_timeout
            },
        );
        let Some(activity) = activity else {
            return call.await;
        };
        tokio::pin!(call);
        let idle = tokio::time::sleep(opts.request_timeout);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                r = &mut call => return r,
                () = &mut idle => {
                    return Err(UpstreamError::Timeout {
                        server: self.name.to_string(),
                        ms: opts.request_timeout.as_millis() as u64,
                    });
                }
                () = activity.notified() => idle.as_mut().reset(Instant::now() + opts.request_timeout),
            }
        }
    }

    /// The connection of client session `sid` (per-session mode): its own, else a warm one,
    /// else a new one — refused beyond the cap. The warm pool is refilled in the background.
    async fn session_conn(self: &Arc<Self>, sid: &str) -> Result<Arc<Conn>, UpstreamError> {
        let cap = self.connection.cap as usize;
        {
            let mut sessions = self.sessions.lock();
            match sessions.get(sid) {
                Some(c) if c.closed_reason().is_none() => return Ok(c.clone()),
                Some(_) => {
                    sessions.remove(sid);
                }
                None => {}
            }
            // why: count connections still starting too, so concurrent new sessions can
            // never run more than `cap` processes, not even for a moment.
            let reserving = self.reserving.load(std::sync::atomic::Ordering::Acquire);
            if sessions.len() + reserving >= cap {
                return Err(UpstreamError::Cap {
                    server: self.name.to_string(),
                    cap: self.connection.cap,
                });
            }
            self.reserving
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        let warm = loop {
            let c = self.warm.lock().pop();
            match c {
                Some(c) if c.closed_reason().is_none() => break Some(c),
                Some(_) => continue,
                None => break None,
            }
        };
        let conn = match warm {
            Some(c) => Ok(c),
            None => self.start().await.map(Arc::new),
        };
        {
            let mut sessions = self.sessions.lock();
            self.reserving
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            if let Ok(c) = &conn {
                sessions.insert(sid.to_owned(), c.clone());
            }
        }
        let conn = conn?;
        self.refill_warm();
        Ok(conn)
    }

    /// The connection of `user` (per-user OAuth), started with their token if needed; at
    /// most `cap` users' connections at once: beyond it the least recently used one with no
    /// call in flight stops, and only when every one is busy is the call refused.
    async fn user_conn(self: &Arc<Self>, user: &str) -> Result<Arc<Conn>, UpstreamError> {
        type Users = std::collections::HashMap<String, (Arc<Conn>, Instant)>;
        let live = |users: &mut Users| match users.get_mut(user) {
            Some((c, used)) if c.closed_reason().is_none() => {
                *used = Instant::now();
                Some(c.clone())
            }
            Some(_) => {
                users.remove(user);
                None
            }
            None => None,
        };
        if let Some(c) = live(&mut self.users.lock()) {
            return Ok(c);
        }
        let _g = self.user_start.lock().await;
        let evicted = {
            let mut users = self.users.lock();
            if let Some(c) = live(&mut users) {
                return Ok(c);
            }
            users.retain(|_, (c, _)| c.closed_reason().is_none());
            if users.len() >= self.connection.cap as usize {
                // why: a connection no call holds (the map's is the only reference) can go.
                let idle = users
                    .iter()
                    .filter(|(_, (c, _))| Arc::strong_count(c) == 1)
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(u, _)| u.clone());
                match idle.and_then(|u| users.remove(&u)) {
                    Some((c, _)) => Some(c),
                    None => {
                        return Err(UpstreamError::Cap {
                            server: self.name.to_string(),
                            cap: self.connection.cap,
                        });
                    }
                }
            } else {
                None
            }
        };
        if let Some(c) = evicted {
            tokio::spawn(async move { c.shutdown().await });
        }
        let conn = Arc::new(self.start_for(Some(user)).await?);
        if matches!(self.health.lock().slot, Slot::Stopped) {
            conn.shutdown().await;
            return Err(UpstreamError::Removed {
                server: self.name.to_string(),
            });
        }
        self.users
            .lock()
            .insert(user.to_owned(), (conn.clone(), Instant::now()));
        Ok(conn)
    }

    /// A user's grant ended: their connection (per-user OAuth) stops.
    pub async fn release_user(&self, user: &str) {
        let conn = self.users.lock().remove(user);
        if let Some((c, _)) = conn {
            c.shutdown().await;
        }
    }

    /// Per-user OAuth: users with a connection now.
    pub fn user_conns(&self) -> usize {
        self.users.lock().len()
    }

    /// Starts connections in the background until `warm` are ready (per-session mode).
    pub fn refill_warm(self: &Arc<Self>) {
        if self.connection.mode != ConnectionMode::PerSession
            || self.filling.swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let have = me.warm.lock().len() + me.sessions.lock().len();
                let ready = me.warm.lock().len();
                if ready >= me.connection.warm as usize
                    || have >= me.connection.cap as usize + me.connection.warm as usize
                {
                    break;
                }
                if matches!(me.health.lock().slot, Slot::Stopped) {
                    break;
                }
                match me.start().await {
                    Ok(c) => me.warm.lock().push(Arc::new(c)),
                    Err(e) => {
                        tracing::warn!(server = %me.name, error = %e, "warm connection failed to start");
                        break;
                    }
                }
            }
            me.filling
                .store(false, std::sync::atomic::Ordering::Release);
        });
    }

    /// A client session ended: its connection (per-session mode) stops.
    pub async fn release_session(&self, sid: &str) {
        let conn = self.sessions.lock().remove(sid);
        if let Some(c) = conn {
            c.shutdown().await;
        }
    }

    /// How sessions share this server.
    pub fn connection(&self) -> ConnectionSettings {
        self.connection
    }

    /// Per-session connections in use, and warm ones ready.
    pub fn session_conns(&self) -> (usize, usize) {
        (self.sessions.lock().len(), self.warm.lock().len())
    }

    /// What the upstream declared at initialize, starting it if needed.
    pub async fn info(self: &Arc<Self>) -> Result<UpstreamInfo, UpstreamError> {
        Ok(self.conn().await?.info().clone())
    }

    /// What the upstream declared at initialize, if its shared connection is running now
    /// (never starts it).
    pub fn info_if_running(&self) -> Option<UpstreamInfo> {
        match &self.health.lock().slot {
            Slot::Running { conn, .. } if conn.closed_reason().is_none() => {
                Some(conn.info().clone())
            }
            _ => None,
        }
    }

    pub fn status(&self) -> UpstreamStatus {
        let h = self.health.lock();
        let now = Instant::now();
        let (state, pid, retry_in_ms) = match &h.slot {
            _ if h.starting => (UpstreamState::Starting, None, None),
            Slot::Idle => (UpstreamState::Idle, None, None),
            Slot::Running { conn, .. } if conn.closed_reason().is_none() => {
                (UpstreamState::Running, conn.pid(), None)
            }
            Slot::Running { .. } => (UpstreamState::BackingOff, None, Some(0)),
            Slot::Failed { .. } if h.needs_auth => (UpstreamState::NeedsAuthorization, None, None),
            Slot::Failed { retry_at, open, .. } => (
                if *open {
                    UpstreamState::Open
                } else {
                    UpstreamState::BackingOff
                },
                None,
                Some(retry_at.saturating_duration_since(now).as_millis() as u64),
            ),
            Slot::Stopped => (UpstreamState::Stopped, None, None),
        };
        UpstreamStatus {
            state,
            last_error: h.last_error.clone(),
            failures: h.failures,
            restarts: h.restarts.saturating_sub(1),
            pid,
            retry_in_ms,
        }
    }

    /// Stops the connection for good (server removed or gateway stopping).
    pub async fn shutdown(&self) {
        let conn = {
            let mut h = self.health.lock();
            match std::mem::replace(&mut h.slot, Slot::Stopped) {
                Slot::Running { conn, .. } => Some(conn),
                _ => None,
            }
        };
        if let Some(c) = conn {
            c.shutdown().await;
        }
        let mut others: Vec<Arc<Conn>> = self.sessions.lock().drain().map(|(_, c)| c).collect();
        others.append(&mut self.warm.lock());
        others.extend(self.users.lock().drain().map(|(_, (c, _))| c));
        futures::future::join_all(others.iter().map(|c| c.shutdown())).await;
        // A start in progress sees Stopped when it ends and shuts its connection down.
        let _g = self.start_lock.lock().await;
    }
}
