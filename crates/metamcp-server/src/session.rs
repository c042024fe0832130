//! Client sessions of the Streamable HTTP face and of the legacy HTTP+SSE face.
//!
//! A session id is 122 random bits (UUIDv4) and is bound to the endpoint and the API key
//! that created it, and to its transport ([`SessionKind`]): presented on another endpoint,
//! with another key or on the other transport it is unknown (404), so a leaked id is not a
//! credential. Sessions hold no upstream resources (upstream connections are shared), so an
//! abandoned session costs a few hundred bytes until it expires after its idle timeout —
//! measured from its last request, not its creation. A legacy SSE session lives exactly as
//! long as its SSE stream: it does not expire while the stream is open, and the stream's
//! end removes it.
//!
//! Bounds (see `crate::limits`): a client — its API key, or its IP on a `--no-auth`
//! endpoint — holds at most `sessions_per_client` sessions, an endpoint at most
//! `sessions_per_endpoint`; one more is refused ([`Exceeded`]) and nothing else is
//! affected. A session holds at most `streams_per_session` server-to-client streams at
//! once ([`Session::stream_permit`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use tokio::time::Instant;

use metamcp_core::LogLevel;

use crate::auth::ClientId;
use crate::limits::Exceeded;

/// The transport a session was created on; its id is valid on that transport only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// Streamable HTTP: created by `initialize`, presented as `Mcp-Session-Id` on `/mcp`.
    Streamable,
    /// Legacy HTTP+SSE (MCP 2024-11-05): created by `GET /sse`, presented as `?sessionId=`
    /// on `/message`; every answer travels on its SSE stream.
    LegacySse,
    /// A `subscriptions/listen` stream of the stateless 2026-07-28 era (`modern.rs`): never
    /// presented by a client (its id is valid on no transport), it only receives the
    /// notifications fanned out to the endpoint, and it lives exactly as long as its stream.
    Listener,
}

/// One client session.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub endpoint_id: String,
    pub key_id: Option<String>,
    /// The negotiated version (Streamable HTTP); `2024-11-05` for legacy SSE sessions,
    /// which exist before their `initialize`.
    pub protocol_version: String,
    pub kind: SessionKind,
    /// Whom the session counts against (its key, or its IP on a `--no-auth` endpoint).
    pub client: ClientId,
    last_seen: Mutex<Instant>,
    stream: Mutex<Option<mpsc::Sender<String>>>,
    /// Server-to-client streams open now (see [`Session::stream_permit`]).
    streams: Arc<AtomicUsize>,
    /// The threshold the client asked for with `logging/setLevel`; `None`: every message.
    log_level: Mutex<Option<LogLevel>>,
}

/// One open server-to-client stream of a session; dropping it frees the slot.
#[derive(Debug)]
pub struct StreamPermit(Arc<AtomicUsize>);

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Session {
    pub fn touch(&self) {
        *self.last_seen.lock() = Instant::now();
    }

    /// A slot for one more server-to-client stream, if the session holds fewer than
    /// `limit`.
    pub fn stream_permit(&self, limit: usize) -> Option<StreamPermit> {
        let taken = self
            .streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| StreamPermit(self.streams.clone()))
    }

    pub fn set_log_level(&self, level: LogLevel) {
        *self.log_level.lock() = Some(level);
    }

    /// Whether a log message at `level` passes the session's threshold.
    pub fn wants_log(&self, level: Option<LogLevel>) -> bool {
        match (*self.log_level.lock(), level) {
            (Some(threshold), Some(level)) => level >= threshold,
            (Some(_), None) | (None, _) => true,
        }
    }

    /// Opens the session's standalone GET stream; `None` when one is already open.
    pub fn open_stream(&self) -> Option<mpsc::Receiver<String>> {
        let mut s = self.stream.lock();
        if s.as_ref().is_some_and(|tx| !tx.is_closed()) {
            return None;
        }
        let (tx, rx) = mpsc::channel(256);
        *s = Some(tx);
        Some(rx)
    }

    /// A sender onto the session's open stream, for answers that must wait for room
    /// rather than be dropped (legacy SSE delivers every response this way).
    pub fn sender(&self) -> Option<mpsc::Sender<String>> {
        self.stream
            .lock()
            .as_ref()
            .filter(|tx| !tx.is_closed())
            .cloned()
    }

    fn stream_open(&self) -> bool {
        self.stream
            .lock()
            .as_ref()
            .is_some_and(|tx| !tx.is_closed())
    }

    /// Queues a server-to-client message on the GET stream, if one is open.
    pub fn push(&self, message: String) -> bool {
        self.stream
            .lock()
            .as_ref()
            .is_some_and(|tx| tx.try_send(message).is_ok())
    }
}

/// What runs when a session ends.
type EndHook = Box<dyn Fn(&str) + Send + Sync>;

/// The live sessions and how many each client and endpoint holds.
#[derive(Default)]
struct Table {
    map: HashMap<String, Arc<Session>>,
    per_client: HashMap<ClientId, usize>,
    per_endpoint: HashMap<String, usize>,
}

impl Table {
    fn insert(&mut self, s: Arc<Session>) {
        *self.per_client.entry(s.client.clone()).or_default() += 1;
        *self.per_endpoint.entry(s.endpoint_id.clone()).or_default() += 1;
        self.map.insert(s.id.clone(), s);
    }

    fn uncount(&mut self, s: &Session) {
        fn down<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
            if let Some(n) = counts.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(key);
                }
            }
        }
        down(&mut self.per_endpoint, &s.endpoint_id);
        down(&mut self.per_client, &s.client);
    }

    fn remove(&mut self, id: &str) -> Option<Arc<Session>> {
        let s = self.map.remove(id)?;
        self.uncount(&s);
        Some(s)
    }
}

/// All live sessions, by id.
#[derive(Default)]
pub struct Sessions {
    table: RwLock<Table>,
    /// The bounds new sessions are checked against.
    caps: RwLock<SessionCaps>,
    /// Called with the id of every session that ends (removed, expired, cleared): releases
    /// what the rest of the gateway holds for it (per-session upstream connections,
    /// subscriptions).
    on_end: std::sync::OnceLock<EndHook>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("len", &self.table.read().map.len())
            .finish_non_exhaustive()
    }
}

/// How many sessions a client and an endpoint may hold.
#[derive(Debug, Clone, Copy)]
pub struct SessionCaps {
    pub per_client: usize,
    pub per_endpoint: usize,
}

impl Default for SessionCaps {
    fn default() -> Self {
        let l = crate::limits::Limits::default();
        Self {
            per_client: l.sessions_per_client,
            per_endpoint: l.sessions_per_endpoint,
        }
    }
}

/// What a new session is bound to.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub kind: SessionKind,
    pub endpoint_id: &'a str,
    /// The API key that opened it (`None` on a `--no-auth` endpoint).
    pub key_id: Option<&'a str>,
    pub client: ClientId,
    pub protocol_version: &'a str,
}

impl Sessions {
    /// Sets the bounds new sessions are checked against.
    pub fn set_caps(&self, caps: SessionCaps) {
        *self.caps.write() = caps;
    }

    /// A new session, unless its client or endpoint already holds as many as allowed.
    pub fn create(&self, new: NewSession<'_>) -> Result<Arc<Session>, Exceeded> {
        let caps = *self.caps.read();
        let mut table = self.table.write();
        if table.per_client.get(&new.client).copied().unwrap_or(0) >= caps.per_client {
            return Err(Exceeded::new(
                "METAMCP_MAX_SESSIONS_PER_CLIENT",
                caps.per_client,
                "Too many open sessions for this client: end unused ones (DELETE) or let them \
                 expire",
            ));
        }
        if table
            .per_endpoint
            .get(new.endpoint_id)
            .copied()
            .unwrap_or(0)
            >= caps.per_endpoint
        {
            return Err(Exceeded::new(
                "METAMCP_MAX_SESSIONS_PER_ENDPOINT",
                caps.per_endpoint,
                "Too many open sessions on this endpoint; try again later",
            ));
        }
        let s = Arc::new(Session {
            id: crate::relay::unguessable(),
            endpoint_id: new.endpoint_id.to_owned(),
            key_id: new.key_id.map(str::to_owned),
            protocol_version: new.protocol_version.to_owned(),
            kind: new.kind,
            client: new.client,
            last_seen: Mutex::new(Instant::now()),
            stream: Mutex::new(None),
            streams: Arc::default(),
            log_level: Mutex::new(None),
        });
        table.insert(s.clone());
        Ok(s)
    }

    /// The Streamable HTTP session `id` if it belongs to this endpoint and key.
    pub fn get_bound(
        &self,
        id: &str,
        endpoint_id: &str,
        key_id: Option<&str>,
    ) -> Option<Arc<Session>> {
        self.get_bound_kind(SessionKind::Streamable, id, endpoint_id, key_id)
    }

    /// The session `id` if it is of `kind` and belongs to this endpoint and key.
    pub fn get_bound_kind(
        &self,
        kind: SessionKind,
        id: &str,
        endpoint_id: &str,
        key_id: Option<&str>,
    ) -> Option<Arc<Session>> {
        let s = self.table.read().map.get(id).cloned()?;
        (s.kind == kind && s.endpoint_id == endpoint_id && s.key_id.as_deref() == key_id)
            .then_some(s)
    }

    /// Sets what runs when a session ends (once, at gateway start).
    pub fn on_end(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.on_end.set(Box::new(f));
    }

    fn ended(&self, id: &str) {
        if let Some(f) = self.on_end.get() {
            f(id);
        }
    }

    pub fn remove(&self, id: &str) -> bool {
        let removed = self.table.write().remove(id).is_some();
        if removed {
            self.ended(id);
        }
        removed
    }

    /// Drops sessions idle longer than `idle`; returns how many. A legacy SSE session or a
    /// listener whose stream is open is never idle: a client may listen for hours between
    /// requests.
    pub fn expire(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut table = self.table.write();
        let gone: Vec<String> = table
            .map
            .values()
            .filter(|s| {
                now.duration_since(*s.last_seen.lock()) >= idle
                    && !(matches!(s.kind, SessionKind::LegacySse | SessionKind::Listener)
                        && s.stream_open())
            })
            .map(|s| s.id.clone())
            .collect();
        for id in &gone {
            table.remove(id);
        }
        drop(table);
        for id in &gone {
            self.ended(id);
        }
        gone.len()
    }

    /// The live sessions of the given endpoints (for notifications fan-out).
    pub fn on_endpoints(
        &self,
        endpoint_ids: &std::collections::HashSet<&str>,
    ) -> Vec<Arc<Session>> {
        self.table
            .read()
            .map
            .values()
            .filter(|s| endpoint_ids.contains(s.endpoint_id.as_str()))
            .cloned()
            .collect()
    }

    /// The session `id`, whatever its endpoint (for routing relayed messages).
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.table.read().map.get(id).cloned()
    }

    /// Open sessions by era: `streamable`, `sse` (legacy), `listen` (2026-07-28 streams).
    pub fn count_by_era(&self) -> Vec<(&'static str, usize)> {
        let table = self.table.read();
        let mut counts = [0usize; 3];
        for s in table.map.values() {
            counts[match s.kind {
                SessionKind::Streamable => 0,
                SessionKind::LegacySse => 1,
                SessionKind::Listener => 2,
            }] += 1;
        }
        vec![
            ("streamable", counts[0]),
            ("sse", counts[1]),
            ("listen", counts[2]),
        ]
    }

    pub fn count_for_endpoint(&self, endpoint_id: &str) -> usize {
        self.table
            .read()
            .per_endpoint
            .get(endpoint_id)
            .copied()
            .unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.table.read().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        let ids: Vec<String> = {
            let mut table = self.table.write();
            table.per_client.clear();
            table.per_endpoint.clear();
            table.map.drain().map(|(id, _)| id).collect()
        };
        for id in &ids {
            self.ended(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(
        s: &Sessions,
        kind: SessionKind,
        ep: &str,
        key: Option<&str>,
    ) -> Result<Arc<Session>, Exceeded> {
        s.create(NewSession {
            kind,
            endpoint_id: ep,
            key_id: key,
            client: ClientId::Key(key.unwrap_or("-").to_owned()),
            protocol_version: "2025-06-18",
        })
    }

    #[tokio::test]
    async fn bound_to_endpoint_and_key() {
        let s = Sessions::default();
        let a = open(&s, SessionKind::Streamable, "ep1", Some("k1")).unwrap();
        assert!(s.get_bound(&a.id, "ep1", Some("k1")).is_some());
        assert!(s.get_bound(&a.id, "ep2", Some("k1")).is_none());
        assert!(s.get_bound(&a.id, "ep1", Some("k2")).is_none());
        assert!(s.get_bound(&a.id, "ep1", None).is_none());
        assert_eq!(a.id.len(), 32);
    }

    #[tokio::test]
    async fn bound_to_their_transport() {
        let s = Sessions::default();
        let a = open(&s, SessionKind::LegacySse, "ep", Some("k")).unwrap();
        assert!(s.get_bound(&a.id, "ep", Some("k")).is_none());
        assert!(
            s.get_bound_kind(SessionKind::LegacySse, &a.id, "ep", Some("k"))
                .is_some()
        );
        let b = open(&s, SessionKind::Streamable, "ep", Some("k")).unwrap();
        assert_eq!(b.kind, SessionKind::Streamable);
        assert!(
            s.get_bound_kind(SessionKind::LegacySse, &b.id, "ep", Some("k"))
                .is_none()
        );
    }

    #[tokio::test]
    async fn clients_and_endpoints_hold_a_bounded_number_of_sessions() {
        let s = Sessions::default();
        s.set_caps(SessionCaps {
            per_client: 2,
            per_endpoint: 3,
        });
        let a1 = open(&s, SessionKind::Streamable, "ep", Some("a")).unwrap();
        open(&s, SessionKind::Listener, "ep", Some("a")).unwrap();
        assert_eq!(
            open(&s, SessionKind::Streamable, "ep", Some("a"))
                .unwrap_err()
                .variable,
            "METAMCP_MAX_SESSIONS_PER_CLIENT"
        );
        // Another client is not affected by a's bound, only by the endpoint's.
        open(&s, SessionKind::Streamable, "ep", Some("b")).unwrap();
        let refused = open(&s, SessionKind::Streamable, "ep", Some("c")).unwrap_err();
        assert_eq!(refused.variable, "METAMCP_MAX_SESSIONS_PER_ENDPOINT");
        assert_eq!(refused.max, 3);
        open(&s, SessionKind::Streamable, "other", Some("c")).unwrap();
        // An ended session frees its slots.
        assert!(s.remove(&a1.id));
        open(&s, SessionKind::Streamable, "ep", Some("a")).unwrap();
        assert_eq!(s.count_for_endpoint("ep"), 3);
    }

    #[tokio::test]
    async fn a_session_holds_a_bounded_number_of_streams() {
        let s = Sessions::default();
        let a = open(&s, SessionKind::Streamable, "ep", None).unwrap();
        let p1 = a.stream_permit(2).unwrap();
        let _p2 = a.stream_permit(2).unwrap();
        assert!(a.stream_permit(2).is_none());
        drop(p1);
        assert!(a.stream_permit(2).is_some());
    }

    #[tokio::test]
    async fn log_thresholds_are_per_session() {
        let s = Sessions::default();
        let a = open(&s, SessionKind::Streamable, "ep", None).unwrap();
        assert!(a.wants_log(Some(LogLevel::Debug)));
        a.set_log_level(LogLevel::Warning);
        assert!(!a.wants_log(Some(LogLevel::Info)));
        assert!(a.wants_log(Some(LogLevel::Error)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_sse_stream_keeps_its_session() {
        let s = Sessions::default();
        let a = open(&s, SessionKind::LegacySse, "ep", None).unwrap();
        let rx = a.open_stream();
        assert!(a.sender().is_some());
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(s.expire(Duration::from_secs(60)), 0);
        drop(rx);
        assert!(a.sender().is_none());
        assert_eq!(s.expire(Duration::from_secs(60)), 1);
        assert_eq!(s.count_for_endpoint("ep"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_counts_from_last_activity() {
        let s = Sessions::default();
        let a = open(&s, SessionKind::Streamable, "ep", None).unwrap();
        tokio::time::advance(Duration::from_secs(50)).await;
        a.touch();
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(s.expire(Duration::from_secs(60)), 0);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(s.expire(Duration::from_secs(60)), 1);
    }
}
