//! Client sessions of the Streamable HTTP face.
//!
//! A session id is 122 random bits (UUIDv4) and is bound to the endpoint and the API key
//! that created it: presented on another endpoint or with another key it is unknown (404),
//! so a leaked id is not a credential. Sessions hold no upstream resources (upstream
//! connections are shared), so an abandoned session costs a few hundred bytes until it
//! expires after its idle timeout — measured from its last request, not its creation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One client session.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub endpoint_id: String,
    pub key_id: Option<String>,
    pub protocol_version: String,
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
    pub fn create(
        &self,
        endpoint_id: &str,
        key_id: Option<&str>,
        protocol_version: &str,
    ) -> Arc<Session> {
        let s = Arc::new(Session {
            id: uuid::Uuid::new_v4().simple().to_string(),
            endpoint_id: endpoint_id.to_owned(),
            key_id: key_id.map(str::to_owned),
            protocol_version: protocol_version.to_owned(),
            last_seen: Mutex::new(Instant::now()),
            stream: Mutex::new(None),
        });
        self.map.write().insert(s.id.clone(), s.clone());
        s
    }

    /// The session `id` if it belongs to this endpoint and key.
    pub fn get_bound(
        &self,
        id: &str,
        endpoint_id: &str,
        key_id: Option<&str>,
    ) -> Option<Arc<Session>> {
        let s = self.map.read().get(id).cloned()?;
        (s.endpoint_id == endpoint_id && s.key_id.as_deref() == key_id).then_some(s)
    }

    pub fn remove(&self, id: &str) -> bool {
        self.map.write().remove(id).is_some()
    }

    /// Drops sessions idle longer than `idle`; returns how many.
    pub fn expire(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut map = self.map.write();
        let before = map.len();
        map.retain(|_, s| now.duration_since(*s.last_seen.lock()) < idle);
        before - map.len()
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
