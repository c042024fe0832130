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

/// All live sessions, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    map: RwLock<HashMap<String, Arc<Session>>>,
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

    pub fn remove(&self, id: &str) -> bool {
        self.map.write().remove(id).is_some()
    }

    /// Drops sessions idle longer than `idle`; returns how many. A legacy SSE session whose
    /// stream is open is never idle: a client may listen for hours between requests.
    pub fn expire(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut map = self.map.write();
        let before = map.len();
        map.retain(|_, s| {
            now.duration_since(*s.last_seen.lock()) < idle
                || (s.kind == SessionKind::LegacySse && s.stream_open())
        });
        before - map.len()
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
        self.map.write().clear();
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
