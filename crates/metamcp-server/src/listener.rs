//! The accept loop of every listener `serve` opens, and the bounds on its connections.
//!
//! Connections are HTTP/1.1 with keep-alive, served by hyper's connection builder (TCP_NODELAY
//! on every socket; handlers get the peer as `ConnectInfo<SocketAddr>`). What a client cannot
//! stretch, since `axum::serve` offered none of it:
//!
//! - **caps**: at most [`Limits::max_connections`] open connections per listener, and
//!   [`Limits::max_connections_per_ip`] per client IP (IPv6 per /64; a trusted proxy counts
//!   only against the global cap, as every client behind it shares its address). A connection
//!   over a cap is closed at once, before a byte is read; connections already open are
//!   untouched. Refusals are logged at most once per [`REFUSAL_LOG_EVERY`], with their count.
//! - **header timeout**: a request head must be complete within
//!   [`Limits::header_read_timeout`] of the connection's start, or of the first byte of a
//!   later request; else the connection is closed (slowloris).
//! - **idle timeout**: a keep-alive connection with no request in flight is closed after
//!   [`Limits::idle_timeout`].
//!
//! A request is in flight from its head until its response body is finished or dropped, so a
//! call waiting minutes for its upstream, or an SSE stream, is never idle and never timed out
//! here (the body-read timeout is the guard's, `endpoint::guard`). The timers live beside the
//! connection in its own task and are re-armed after each of its polls: they cost no task and
//! no wake-up per request.
//!
//! Stopping: when `stop` is cancelled the loop stops accepting, every connection finishes its
//! in-flight request and closes (idle ones at once), and [`serve`] returns when all are gone;
//! the caller bounds that wait.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::Limits;
use crate::ratelimit::TrustedProxies;

/// Refused connections are logged at most this often.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(5);

/// The bounds of one listener's connections.
#[derive(Debug, Clone)]
pub struct Bounds {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Peers counted only against `max_connections` (`METAMCP_TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
}

impl Bounds {
    pub fn new(limits: &Limits, trusted_proxies: TrustedProxies) -> Self {
        Self {
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            trusted_proxies,
        }
    }
}

/// Serves `app` on `listener` until `stop` is cancelled and every connection has ended.
pub async fn serve(listener: TcpListener, app: Router, bounds: Bounds, stop: CancellationToken) {
    let caps = Arc::new(Caps::new(&bounds));
    let timeouts = Timeouts {
        header: bounds.header_read_timeout,
        idle: bounds.idle_timeout,
    };
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            // The peer gave up before we took the connection: nothing to do.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // why: out of descriptors (EMFILE/ENFILE) retrying at once would spin; the
                // backlog keeps clients waiting until a connection closes.
                caps.note_accept_error(&e);
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Some(slot) = caps.admit(peer.ip()) else {
            drop(stream);
            continue;
        };
        // why: without it multi-chunk responses (SSE events, JSON after headers) stall on
        // Nagle's algorithm and delayed ACKs.
        let _ = stream.set_nodelay(true);
        tasks.spawn(connection(
            stream,
            peer,
            app.clone(),
            timeouts,
            stop.clone(),
            slot,
        ));
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// One connection, from accept to close. `_slot` holds its place under the caps.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    timeouts: Timeouts,
    stop: CancellationToken,
    _slot: Slot,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        io: stream,
        activity: activity.clone(),
    });
    let service = ConnService {
        app,
        peer,
        activity: activity.clone(),
    };
    let conn = http1::Builder::new()
        .keep_alive(true)
        // why: hyper's own header timer runs from the end of one response to the next head,
        // so it would also be the idle timeout; `Clock` keeps the two apart.
        .header_read_timeout(None)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut clock = Clock::new(timeouts);
    let mut stopping = false;
    loop {
        // why `biased`: the clock must look at the activity after the connection's poll,
        // which is where every change to it happens.
        tokio::select! {
            biased;
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            why = std::future::poll_fn(|cx| clock.poll_expired(cx, &activity)) => {
                tracing::debug!(%peer, "connection closed: {why}");
                return;
            }
        }
    }
}

// --- caps --------------------------------------------------------------------------------

/// Open connections of one listener, in all and per client.
#[derive(Debug)]
struct Caps {
    max_total: usize,
    max_per_ip: usize,
    trusted_proxies: TrustedProxies,
    state: Mutex<CapState>,
}

#[derive(Debug, Default)]
struct CapState {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Refusals (and accept errors) since the last log line, and when that was.
    unlogged: u64,
    logged_at: Option<Instant>,
}

/// A connection's place under the caps; given back when it is dropped.
#[derive(Debug)]
struct Slot {
    caps: Arc<Caps>,
    client: Option<IpAddr>,
}

impl Caps {
    fn new(b: &Bounds) -> Self {
        Self {
            max_total: b.max_connections,
            max_per_ip: b.max_connections_per_ip,
            trusted_proxies: b.trusted_proxies.clone(),
            state: Mutex::default(),
        }
    }

    /// A slot for a connection from `ip`, or `None` when a cap is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let client = (!self.trusted_proxies.contains(ip)).then(|| client_key(ip));
        let refused = {
            let mut st = self.state.lock();
            let mine = client.map_or(0, |c| st.per_ip.get(&c).copied().unwrap_or(0));
            if st.total >= self.max_total {
                Some(format!(
                    "{} open connections (METAMCP_MAX_CONNECTIONS)",
                    self.max_total
                ))
            } else if client.is_some() && mine >= self.max_per_ip {
                Some(format!(
                    "{} open connections from {} (METAMCP_MAX_CONNECTIONS_PER_IP)",
                    self.max_per_ip,
                    ip.to_canonical()
                ))
            } else {
                st.total += 1;
                if let Some(c) = client {
                    *st.per_ip.entry(c).or_insert(0) += 1;
                }
                None
            }
        };
        match refused {
            None => Some(Slot {
                caps: self.clone(),
                client,
            }),
            Some(why) => {
                if let Some(n) = self.due_for_log() {
                    tracing::warn!(
                        "connection refused at the cap of {why}; {n} refused since the last report"
                    );
                }
                None
            }
        }
    }

    fn note_accept_error(&self, e: &std::io::Error) {
        if let Some(n) = self.due_for_log() {
            tracing::warn!(error = %e, "accepting a connection failed ({n} since the last report)");
        }
    }

    /// Counts one event; `Some(count)` when a log line is due (at most once per
    /// [`REFUSAL_LOG_EVERY`]).
    fn due_for_log(&self) -> Option<u64> {
        let now = Instant::now();
        let mut st = self.state.lock();
        st.unlogged += 1;
        if st
            .logged_at
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY)
        {
            return None;
        }
        st.logged_at = Some(now);
        Some(std::mem::take(&mut st.unlogged))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.caps.state.lock();
        st.total = st.total.saturating_sub(1);
        if let Some(c) = self.client
            && let Some(n) = st.per_ip.get_mut(&c)
        {
            *n -= 1;
            if *n == 0 {
                st.per_ip.remove(&c);
            }
        }
    }
}

/// Whom a connection counts against: the IPv4 address (an IPv4-mapped IPv6 address is its
/// IPv4 one), or the /64 of an IPv6 address (one host usually holds a whole /64).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

// --- timeouts ------------------------------------------------------------------------------

/// What a connection is doing, as the timers need it. Written by the socket wrapper, the
/// service and the response bodies, all polled inside the connection's own task.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Requests whose response has not finished.
    in_flight: AtomicUsize,
    /// Milliseconds after `start`, plus one, when a request head began to arrive; 0 when no
    /// head is being read. A new connection is reading its first head from the start.
    head_since: AtomicU64,
    /// Milliseconds after `start` when the last response finished.
    idle_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            head_since: AtomicU64::new(1),
            idle_since: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Bytes arrived: between requests, they start the next head.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    /// A request head was read: the request is in flight until the guard is dropped.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When the connection expires if nothing happens, and why; `None` while a request is
    /// in flight.
    fn deadline(&self, t: Timeouts) -> Option<(Instant, &'static str)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let at = |ms: u64| self.start + Duration::from_millis(ms);
        Some(match self.head_since.load(Ordering::Relaxed) {
            0 => (
                at(self.idle_since.load(Ordering::Relaxed)) + t.idle,
                "idle keep-alive timeout",
            ),
            since => (
                at(since - 1) + t.header,
                "request head not complete in time",
            ),
        })
    }
}

/// A request in flight; dropped with its response body (or its handler, if that is dropped).
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            a.idle_since.store(a.now_ms(), Ordering::Relaxed);
        }
    }
}

/// The connection's timer: re-armed to the deadline the activity implies each time it is
/// polled, ready when that deadline passes.
struct Clock {
    t: Timeouts,
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl Clock {
    fn new(t: Timeouts) -> Self {
        Self {
            t,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
        }
    }

    /// Ready with the reason once the connection has expired. While a request is in flight
    /// it registers no timer: only the connection's own progress can end that state, and the
    /// connection is polled first (see `connection`).
    fn poll_expired(&mut self, cx: &mut Context<'_>, a: &Activity) -> Poll<&'static str> {
        let Some((deadline, why)) = a.deadline(self.t) else {
            self.armed = None;
            return Poll::Pending;
        };
        if self.armed != Some(deadline) {
            self.sleep.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
        ready!(self.sleep.as_mut().poll(cx));
        Poll::Ready(why)
    }
}

/// The socket, noting when bytes arrive.
struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The router as hyper calls it on one connection: the peer as `ConnectInfo`, and the
/// request counted in flight until its response body is done.
#[derive(Clone)]
struct ConnService {
    app: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Tracked>, Infallible>> + Send>>;

impl hyper::service::Service<http::Request<Incoming>> for ConnService {
    type Response = http::Response<Tracked>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        req.extensions_mut().insert(ConnectInfo(self.peer));
        // why: the router is always ready (`Router::poll_ready`), so `call` needs no
        // `poll_ready` first.
        let answer = tower_service::Service::call(&mut self.app.clone(), req);
        Box::pin(async move {
            let resp = match answer.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok(resp.map(|body| Tracked {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body holding its request's [`InFlight`].
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_addresses_and_ipv6_slash_64s() {
        let k = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(k("127.0.0.2"), k("127.0.0.2"));
        assert_ne!(k("127.0.0.1"), k("127.0.0.2"));
        assert_eq!(k("::ffff:10.0.0.1"), k("10.0.0.1"));
        assert_eq!(k("2001:db8:1:2:aaaa::1"), k("2001:db8:1:2:bbbb::2"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
    }

    #[test]
    fn caps_refuse_beyond_the_limits_and_give_back_on_drop() {
        let limits = Limits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..Limits::default()
        };
        let proxy: IpAddr = "10.9.9.9".parse().unwrap();
        let caps = Arc::new(Caps::new(&Bounds::new(
            &limits,
            "10.9.9.9".parse().unwrap(),
        )));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert!(caps.admit(a).is_none(), "per-IP cap");
        let b1 = caps.admit(b).unwrap();
        assert!(caps.admit(b).is_none(), "global cap");
        drop(a1);
        let _a3 = caps.admit(a).unwrap();
        drop(b1);
        // A trusted proxy is bounded by the global cap only.
        let _p1 = caps.admit(proxy).unwrap();
        assert!(caps.admit(proxy).is_none(), "global cap for the proxy too");
        assert_eq!(caps.state.lock().per_ip.get(&proxy), None);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_connection() {
        let t = Timeouts {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(75),
        };
        let a = Arc::new(Activity::new());
        let start = a.start;
        // A new connection must send its first head within the header timeout.
        assert_eq!(a.deadline(t).unwrap().0, start + t.header);
        tokio::time::advance(Duration::from_secs(2)).await;
        let req = a.begin();
        assert!(a.deadline(t).is_none(), "in flight: no deadline");
        tokio::time::advance(Duration::from_secs(300)).await;
        a.on_read();
        assert!(a.deadline(t).is_none(), "body bytes do not start a head");
        drop(req);
        let (idle, why) = a.deadline(t).unwrap();
        assert_eq!(idle, start + Duration::from_secs(302) + t.idle, "{why}");
        tokio::time::advance(Duration::from_secs(5)).await;
        a.on_read();
        let (head, _) = a.deadline(t).unwrap();
        assert_eq!(head, start + Duration::from_secs(307) + t.header);
    }
}
