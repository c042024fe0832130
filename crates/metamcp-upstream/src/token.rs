//! Access tokens of upstreams that need OAuth: where they come from ([`TokenSource`], which
//! the server crate implements over the store) and the one a connection sends now
//! ([`Bearer`]).
//!
//! A connection reads its token from memory on every request; it asks the source only when
//! the token is about to expire (within [`REFRESH_MARGIN`]) or when the upstream answered
//! 401 to it, and then at most once per refused token (concurrent requests wait for the same
//! answer). The source never hands out the token that was refused: it refreshes or says the
//! grant is gone ([`NeedsAuthorization`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use http::HeaderValue;
use parking_lot::RwLock;

use crate::error::UpstreamError;

/// A token this close to its expiry is refreshed before it is used.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// Whose grant a connection carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grantee {
    pub server_id: String,
    pub server_name: String,
    /// `None`: the server's own grant (shared credentials; lists of per-user servers).
    pub user: Option<String>,
}

/// An access token and when it stops working.
#[derive(Clone)]
pub struct AccessToken {
    pub token: String,
    pub expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// There is no usable grant: someone must authorize in the browser (the message says who and
/// where).
#[derive(Debug, Clone)]
pub struct NeedsAuthorization(pub String);

/// Where access tokens come from.
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// A token for `who`, valid for longer than [`REFRESH_MARGIN`] when the grant allows it.
    /// `refused`: the token the upstream just answered 401 to; it is never returned again.
    fn token<'a>(
        &'a self,
        who: &'a Grantee,
        refused: Option<&'a str>,
    ) -> BoxFuture<'a, Result<AccessToken, NeedsAuthorization>>;

    /// Drops whatever is kept in memory for `server_id` (its grants changed elsewhere).
    fn forget(&self, _server_id: &str) {}
}

/// The `Authorization` header one connection sends, kept fresh.
#[derive(Debug)]
pub struct Bearer {
    source: Arc<dyn TokenSource>,
    who: Grantee,
    current: RwLock<Option<Current>>,
    /// One refresh at a time per connection.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
struct Current {
    header: HeaderValue,
    expires_at: Option<SystemTime>,
}

impl Current {
    fn fresh(&self) -> bool {
        self.expires_at
            .is_none_or(|at| at > SystemTime::now() + REFRESH_MARGIN)
    }
}

impl Bearer {
    pub fn new(source: Arc<dyn TokenSource>, who: Grantee) -> Self {
        Bearer {
            source,
            who,
            current: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn grantee(&self) -> &Grantee {
        &self.who
    }

    /// The header held now, fresh or not (for requests that cannot wait: cancellations,
    /// answers, the session's end).
    pub fn cached(&self) -> Option<HeaderValue> {
        self.current.read().as_ref().map(|c| c.header.clone())
    }

    /// The header to send now: from memory, or asked of the source when it is missing or
    /// about to expire.
    pub async fn header(&self) -> Result<HeaderValue, UpstreamError> {
        if let Some(c) = self.current.read().as_ref().filter(|c| c.fresh()) {
            return Ok(c.header.clone());
        }
        let _g = self.refreshing.lock().await;
        if let Some(c) = self.current.read().as_ref().filter(|c| c.fresh()) {
            return Ok(c.header.clone());
        }
        self.fetch(None).await
    }

    /// The upstream answered 401 to `sent`: a new header, unless another request already
    /// replaced it.
    pub async fn refused(&self, sent: &HeaderValue) -> Result<HeaderValue, UpstreamError> {
        let _g = self.refreshing.lock().await;
        if let Some(c) = self.current.read().as_ref()
            && c.header != *sent
        {
            return Ok(c.header.clone());
        }
        let token = sent
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        self.fetch(token.as_deref()).await
    }

    async fn fetch(&self, refused: Option<&str>) -> Result<HeaderValue, UpstreamError> {
        let got = self.source.token(&self.who, refused).await;
        let t = match got {
            Ok(t) => t,
            Err(NeedsAuthorization(message)) => {
                *self.current.write() = None;
                return Err(UpstreamError::Unauthorized {
                    server: self.who.server_name.clone(),
                    message,
                });
            }
        };
        if refused == Some(t.token.as_str()) {
            return Err(UpstreamError::Unauthorized {
                server: self.who.server_name.clone(),
                message: "the upstream refused its access token and no new one could be had".into(),
            });
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {}", t.token)).map_err(|_| {
            UpstreamError::Unauthorized {
                server: self.who.server_name.clone(),
                message: "the authorization server issued a token that is not a header value"
                    .into(),
            }
        })?;
        header.set_sensitive(true);
        *self.current.write() = Some(Current {
            header: header.clone(),
            expires_at: t.expires_at,
        });
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// Hands out `t1`, `t2`, … and counts the asks.
    #[derive(Debug, Default)]
    struct Counter {
        asks: Mutex<Vec<Option<String>>>,
        lifetime: Option<Duration>,
    }

    impl TokenSource for Counter {
        fn token<'a>(
            &'a self,
            _who: &'a Grantee,
            refused: Option<&'a str>,
        ) -> BoxFuture<'a, Result<AccessToken, NeedsAuthorization>> {
            Box::pin(async move {
                let mut asks = self.asks.lock();
                asks.push(refused.map(str::to_owned));
                if asks.len() > 3 {
                    return Err(NeedsAuthorization("gone".into()));
                }
                Ok(AccessToken {
                    token: format!("t{}", asks.len()),
                    expires_at: self.lifetime.map(|l| SystemTime::now() + l),
                })
            })
        }
    }

    fn who() -> Grantee {
        Grantee {
            server_id: "id".into(),
            server_name: "s".into(),
            user: None,
        }
    }

    #[tokio::test]
    async fn kept_in_memory_until_refused_then_asked_once() {
        let src = Arc::new(Counter::default());
        let b = Bearer::new(src.clone(), who());
        let h1 = b.header().await.unwrap();
        assert_eq!(h1.to_str().unwrap(), "Bearer t1");
        assert!(h1.is_sensitive());
        assert_eq!(b.header().await.unwrap(), h1);
        assert_eq!(src.asks.lock().len(), 1);
        // Two requests refused with the same token: one ask.
        let (a, c) = tokio::join!(b.refused(&h1), b.refused(&h1));
        assert_eq!(a.unwrap().to_str().unwrap(), "Bearer t2");
        assert_eq!(c.unwrap().to_str().unwrap(), "Bearer t2");
        assert_eq!(*src.asks.lock(), vec![None, Some("t1".to_owned())]);
    }

    #[tokio::test]
    async fn near_expiry_is_refreshed_before_use_and_a_gone_grant_is_an_error() {
        let src = Arc::new(Counter {
            lifetime: Some(Duration::from_secs(5)),
            ..Default::default()
        });
        let b = Bearer::new(src.clone(), who());
        assert_eq!(b.header().await.unwrap().to_str().unwrap(), "Bearer t1");
        assert_eq!(b.header().await.unwrap().to_str().unwrap(), "Bearer t2");
        assert_eq!(b.header().await.unwrap().to_str().unwrap(), "Bearer t3");
        let e = b.header().await.unwrap_err();
        assert!(matches!(e, UpstreamError::Unauthorized { .. }), "{e}");
        assert!(e.to_string().contains("gone"), "{e}");
    }
}
