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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use tokio::time::Instant;

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
    last_seen: Mutex<Instant>,
    stream: Mutex<Option<mpsc::Sender<String>>>,
}

impl Session {
    pub fn touch(&self) {
        *self.last_seen.lock() = Instant::now();
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

/// All live sessions, by id.
#[derive(Default)]
pub struct Sessions {
    map: RwLock<HashMap<String, Arc<Session>>>,
    /// Called with the id of every session that ends (removed, expired, cleared): releases
    /// what the rest of the gateway holds for it (per-session upstream connections,
    /// subscriptions).
    on_end: std::sync::OnceLock<EndHook>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("len", &self.map.read().len())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// A new Streamable HTTP session.
    pub fn create(
        &self,
        endpoint_id: &str,
        key_id: Option<&str>,
        protocol_version: &str,
    ) -> Arc<Session> {
        self.create_kind(
            SessionKind::Streamable,
            endpoint_id,
            key_id,
            protocol_version,
        )
    }

    /// A new session of `kind`.
    pub fn create_kind(
        &self,
        kind: SessionKind,
        endpoint_id: &str,
        key_id: Option<&str>,
        protocol_version: &str,
    ) -> Arc<Session> {
        let s = Arc::new(Session {
            id: uuid::Uuid::new_v4().simple().to_string(),
            endpoint_id: endpoint_id.to_owned(),
            key_id: key_id.map(str::to_owned),
            protocol_version: protocol_version.to_owned(),
            kind,
            last_seen: Mutex::new(Instant::now()),
            stream: Mutex::new(None),
        });
        self.map.write().insert(s.id.clone(), s.clone());
        s
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
        let s = self.map.read().get(id).cloned()?;
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
        let removed = self.map.write().remove(id).is_some();
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
        let mut gone = Vec::new();
        self.map.write().retain(|id, s| {
            let keep = now.duration_since(*s.last_seen.lock()) < idle
                || (matches!(s.kind, SessionKind::LegacySse | SessionKind::Listener)
                    && s.stream_open());
            if !keep {
                gone.push(id.clone());
            }
            keep
        });
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
        self.map
            .read()
            .values()
            .filter(|s| endpoint_ids.contains(s.endpoint_id.as_str()))
            .cloned()
            .collect()
    }

    /// The session `id`, whatever its endpoint (for routing relayed messages).
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.map.read().get(id).cloned()
    }

    pub fn count_for_endpoint(&self, endpoint_id: &str) -> usize {
        self.map
            .read()
            .values()
            .filter(|s| s.endpoint_id == endpoint_id)
            .count()
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        let ids: Vec<String> = self.map.write().drain().map(|(id, _)| id).collect();
        for id in &ids {
            self.ended(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bound_to_endpoint_and_key() {
        let s = Sessions::default();
        let a = s.create("ep1", Some("k1"), "2025-06-18");
        assert!(s.get_bound(&a.id, "ep1", Some("k1")).is_some());
        assert!(s.get_bound(&a.id, "ep2", Some("k1")).is_none());
        assert!(s.get_bound(&a.id, "ep1", Some("k2")).is_none());
        assert!(s.get_bound(&a.id, "ep1", None).is_none());
        assert_eq!(a.id.len(), 32);
    }

    #[tokio::test]
    async fn bound_to_their_transport() {
        let s = Sessions::default();
        let a = s.create_kind(SessionKind::LegacySse, "ep", Some("k"), "2024-11-05");
        assert!(s.get_bound(&a.id, "ep", Some("k")).is_none());
        assert!(
            s.get_bound_kind(SessionKind::LegacySse, &a.id, "ep", Some("k"))
                .is_some()
        );
        let b = s.create("ep", Some("k"), "2025-06-18");
        assert_eq!(b.kind, SessionKind::Streamable);
        assert!(
            s.get_bound_kind(SessionKind::LegacySse, &b.id, "ep", Some("k"))
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_sse_stream_keeps_its_session() {
        let s = Sessions::default();
        let a = s.create_kind(SessionKind::LegacySse, "ep", None, "2024-11-05");
        let rx = a.open_stream();
        assert!(a.sender().is_some());
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(s.expire(Duration::from_secs(60)), 0);
        drop(rx);
        assert!(a.sender().is_none());
        assert_eq!(s.expire(Duration::from_secs(60)), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_counts_from_last_activity() {
        let s = Sessions::default();
        let a = s.create("ep", None, "v");
        tokio::time::advance(Duration::from_secs(50)).await;
        a.touch();
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(s.expire(Duration::from_secs(60)), 0);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(s.expire(Duration::from_secs(60)), 1);
    }
}
