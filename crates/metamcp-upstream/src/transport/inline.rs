//! HTTP/1.1 connections to a plain-`http://` upstream, driven by the calling task itself.
//!
//! A pooled client (reqwest, hyper-util) runs every connection in its own task: each call
//! hops from the request's task to the connection's task and back, two cross-thread wake-ups
//! per call that the benchmark showed as the largest share of the relay's CPU. Here a
//! connection is taken from an idle stack, *polled by the request's own future* while the
//! request is written and the answer read, and put back once the answer has been read to its
//! end. Connections idle longer than [`MAX_IDLE`] are dropped rather than reused, so a
//! server's keep-alive timeout (Node's is 5 s) does not race a request. HTTPS upstreams use
//! the shared reqwest client instead.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Longest a connection may sit idle and still be reused.
pub const MAX_IDLE: Duration = Duration::from_secs(4);
/// Idle connections kept per upstream.
const MAX_POOLED: usize = 64;

type Io = TokioIo<TcpStream>;

/// One HTTP/1.1 connection: the request half and the I/O half that must be polled.
pub struct InlineConn {
    pub send: SendRequest<Full<Bytes>>,
    pub conn: Connection<Io, Full<Bytes>>,
    /// Taken from the idle stack (it served a request before).
    pub reused: bool,
    idle_since: Instant,
}

impl std::fmt::Debug for InlineConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineConn")
            .field("idle_since", &self.idle_since)
            .finish_non_exhaustive()
    }
}

/// Idle connections to one `host:port`.
#[derive(Debug)]
pub struct InlinePool {
    host: String,
    port: u16,
    idle: Mutex<Vec<InlineConn>>,
}

impl InlinePool {
    /// A pool for `url` when it is plain `http://`; `None` otherwise.
    pub fn for_url(url: &reqwest::Url) -> Option<Self> {
        if url.scheme() != "http" {
            return None;
        }
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default()?;
        Some(Self {
            host,
            port,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A reusable idle connection, or a new one.
    pub async fn take(&self) -> std::io::Result<InlineConn> {
        loop {
            let c = self.idle.lock().pop();
            match c {
                Some(mut c) if c.idle_since.elapsed() < MAX_IDLE && !c.send.is_closed() => {
                    // why: one poll notices a close (FIN) the server sent while we were idle.
                    if futures::FutureExt::now_or_never(&mut c.conn).is_some() {
                        continue;
                    }
                    c.reused = true;
                    return Ok(c);
                }
                Some(_) => continue,
                None => break,
            }
        }
        let stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        Ok(InlineConn {
            send,
            conn,
            reused: false,
            idle_since: Instant::now(),
        })
    }

    /// Returns a connection whose last answer was read to its end.
    pub fn put(&self, send: SendRequest<Full<Bytes>>, conn: Connection<Io, Full<Bytes>>) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_POOLED {
            idle.push(InlineConn {
                send,
                conn,
                reused: true,
                idle_since: Instant::now(),
            });
        }
    }
}
