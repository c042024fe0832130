//! A legacy HTTP+SSE upstream (MCP 2024-11-05 "Transports §HTTP with SSE").
//!
//! One long-lived GET opens the upstream's SSE stream. Its `endpoint` event names the URL
//! that messages are POSTed to, resolved against the SSE URL; a URL on another origin is
//! refused, so a server cannot make the gateway send its credentials elsewhere. Requests
//! are POSTed (the upstream answers 202) and their responses arrive as `message` events on
//! the stream, routed by the gateway's numeric id through [`Pending`] exactly as for stdio;
//! progress and requests for a client (sampling, elicitation, roots) are routed as
//! `crate::scope` describes, and other unsolicited messages go through
//! [`crate::conn::handle_unsolicited`]. Every GET and POST goes through the pool's shared
//! `reqwest::Client` with the configured headers and bearer token.
//!
//! Invariants: one reader task per connection owns the stream; when the stream ends or
//! breaks, the connection is closed, every request in flight fails at once, and the
//! supervisor starts a new connection (a new upstream session) on next use. Dropping or
//! shutting down the connection stops the reader, which closes the GET and so ends the
//! upstream's session.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use metamcp_core::jsonrpc;
use sse_stream::{Sse, SseByteStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::bounded::{self, Oversized};
use super::describe;
use crate::conn::{
    Pending, Reply, RequestGuard, UpstreamInfo, dispatch_shared, initialize_params,
    parse_initialize,
};
use crate::error::UpstreamError;
use crate::pool::Events;
use crate::token::Bearer;

/// Longest wait for the upstream to accept a notification or an answer we POST.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// What it takes to reach a legacy SSE upstream.
#[derive(Debug)]
pub struct SseParams<'a> {
    /// The SSE URL (the GET), e.g. `http://host/sse`.
    pub url: &'a str,
    pub headers: BTreeMap<String, String>,
    pub bearer_token: Option<String>,
    /// Longest SSE event read (`METAMCP_MAX_UPSTREAM_MESSAGE_BYTES`).
    pub max_message: usize,
    /// The server needs OAuth: the token this connection sends (replaces `bearer_token`).
    pub bearer: Option<Arc<Bearer>>,
}

/// Where and how messages are POSTed; shared with the reader task (which answers the
/// upstream's pings) and with abandoned requests (which send `notifications/cancelled`).
#[derive(Debug)]
struct Poster {
    server: Arc<str>,
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    /// OAuth: the access token, refreshed before expiry and after a 401.
    bearer: Option<Arc<Bearer>>,
}

impl Poster {
    fn builder(&self, body: String) -> reqwest::RequestBuilder {
        let mut headers = self.headers.clone();
        if let Some(v) = self.bearer.as_ref().and_then(|b| b.cached()) {
            headers.insert(header::AUTHORIZATION, v);
        }
        crate::scope::add_trace_headers(&mut headers);
        self.client
            .post(self.url.clone())
            .headers(headers)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
    }

    /// POSTs one message, which the upstream must accept (2xx); a refusal comes with its
    /// status.
    async fn post(&self, body: String) -> Result<(), (Option<StatusCode>, UpstreamError)> {
        if let Some(b) = &self.bearer {
            b.header().await.map_err(|e| (None, e))?;
        }
        let mut resp = self
            .builder(body.clone())
            .send()
            .await
            .map_err(|e| (None, http_err(&self.server, describe(&e))))?;
        if resp.status() == StatusCode::UNAUTHORIZED
            && let Some(b) = &self.bearer
            && let Some(sent) = b.cached()
        {
            // why: the token expired or was revoked early; one refresh, then the same POST.
            b.refused(&sent).await.map_err(|e| (None, e))?;
            resp = self
                .builder(body)
                .send()
                .await
                .map_err(|e| (None, http_err(&self.server, describe(&e))))?;
        }
        let status = resp.status();
        // why: reading the short body ("Accepted") lets the pooled connection be reused.
        let text = resp.bytes().await.unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let snippet: String = String::from_utf8_lossy(&text).chars().take(300).collect();
        Err((
            Some(status),
            http_err(&self.server, format!("HTTP {status}: {snippet}")),
        ))
    }

    /// POSTs in the background, best effort (answers to pings, cancellations).
    fn spawn_post(self: &Arc<Self>, body: String) {
        let req = self.builder(body).timeout(POST_TIMEOUT);
        tokio::spawn(async move {
            let _ = req.send().await;
        });
    }
}

/// A connection (an upstream session) to a legacy SSE server.
#[derive(Debug)]
pub struct SseConn {
    pending: Arc<Pending>,
    poster: Arc<Poster>,
    info: UpstreamInfo,
    /// Stops the reader task (and so closes the GET stream).
    stop: CancellationToken,
}

impl SseConn {
    /// Opens the stream, learns the POST URL and performs the MCP handshake, all within
    /// `start_timeout`.
    pub async fn connect(
        server: Arc<str>,
        params: SseParams<'_>,
        client: reqwest::Client,
        events: Events,
        start_timeout: Duration,
    ) -> Result<Self, UpstreamError> {
        let start_err = |message: String| UpstreamError::Start {
            server: server.to_string(),
            message,
        };
        let deadline = Instant::now() + start_timeout;
        let too_slow =
            |what: &str| start_err(format!("no {what} within {} ms", start_timeout.as_millis()));
        let sse_url =
            reqwest::Url::parse(params.url).map_err(|e| start_err(format!("bad url: {e}")))?;
        let mut headers = header_map(&params).map_err(start_err)?;
        let bearer = params.bearer.clone();
        if let Some(b) = &bearer {
            headers.insert(header::AUTHORIZATION, b.header().await?);
        }
        let pending = Arc::new(Pending::new(server.clone()));
        // why: the stream is shared by every call; an oversized event fails only the
        // request it answers (found from its first bytes).
        let limit = params.max_message;
        let oversized = {
            let pending = pending.clone();
            Oversized::Skip(Box::new(move |prefix: &[u8]| {
                pending.oversized(prefix, limit)
            }))
        };
        let opened = tokio::time::timeout_at(deadline, async {
            match (
                open_stream(&client, &sse_url, &headers, limit, oversized).await,
                &bearer,
                headers.get(header::AUTHORIZATION),
            ) {
                // why: the token expired or was revoked early; one refresh, then the GET again.
                (Err(Opening::Unauthorized(oversized)), Some(b), Some(sent)) => {
                    let mut retry = headers.clone();
                    retry.insert(header::AUTHORIZATION, b.refused(sent).await?);
                    open_stream(&client, &sse_url, &retry, limit, oversized)
                        .await
                        .map_err(|e| start_err(e.to_string()))
                }
                (other, _, _) => other.map_err(|e| start_err(e.to_string())),
            }
        })
        .await
        .map_err(|_| too_slow("endpoint event"))?;
        let (stream, post_url) = opened?;
        tracing::debug!(server = %server, origin = %post_url.origin().ascii_serialization(), "legacy SSE upstream gave its endpoint");

        // (With OAuth, the poster puts the token it holds now over the one the GET carried.)
        let poster = Arc::new(Poster {
            server: server.clone(),
            client,
            url: post_url,
            headers,
            bearer,
        });
        let stop = CancellationToken::new();
        tokio::spawn(read_loop(
            stream,
            pending.clone(),
            poster.clone(),
            events,
            stop.clone(),
        ));
        let mut conn = SseConn {
            pending,
            poster,
            info: UpstreamInfo::default(),
            stop,
        };
        // On failure `conn` is dropped, which stops the reader and closes the stream.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let reply = conn
            .request("initialize", Some(&initialize_params()), remaining)
            .await
            .map_err(|e| match e {
                UpstreamError::Timeout { .. } => too_slow("answer to initialize"),
                e => start_err(e.to_string()),
            })?;
        conn.info = parse_initialize(&server, &reply)?;
        tokio::time::timeout_at(deadline, conn.notify("notifications/initialized", None))
            .await
            .map_err(|_| too_slow("acceptance of notifications/initialized"))?
            .map_err(|e| start_err(e.to_string()))?;
        Ok(conn)
    }

    pub async fn request(
        &self,
        method: &str,
        params: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        let id = self.pending.next_id();
        let rx = self.pending.register(id)?;
        let poster = self.poster.clone();
        let _guard = RequestGuard {
            pending: &self.pending,
            id,
            on_abandon: Some(Box::new(move |cancel| poster.spawn_post(cancel))),
        };
        let exchange = async {
            if let Err(e) = self.post(jsonrpc::request(id, method, params)).await {
                // why: the upstream did not take the request; there is nothing to cancel.
                self.pending.forget(id);
                return Err(e);
            }
            match rx.await {
                Ok(result) => result,
                Err(_) => Err(self.closed_error()),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout {
                server: self.pending.server().to_string(),
                ms: timeout.as_millis() as u64,
            }),
        }
    }

    pub async fn notify(&self, method: &str, params: Option<&str>) -> Result<(), UpstreamError> {
        if self.pending.closed_reason().is_some() {
            return Err(self.closed_error());
        }
        tokio::time::timeout(
            POST_TIMEOUT,
            self.post(jsonrpc::notification(method, params)),
        )
        .await
        .map_err(|_| {
            http_err(
                self.pending.server(),
                format!("notification {method} not accepted in time"),
            )
        })?
    }

    /// POSTs a message; a 404 means the upstream forgot our session, so the connection is
    /// closed and the next use starts a new one.
    async fn post(&self, body: String) -> Result<(), UpstreamError> {
        match self.poster.post(body).await {
            Ok(()) => Ok(()),
            Err((Some(StatusCode::NOT_FOUND), e)) => {
                self.close("the upstream no longer knows the session (HTTP 404)");
                Err(e)
            }
            Err((_, e)) => Err(e),
        }
    }

    fn close(&self, reason: &str) {
        self.pending.close(reason);
        self.stop.cancel();
    }

    fn closed_error(&self) -> UpstreamError {
        UpstreamError::Closed {
            server: self.pending.server().to_string(),
            message: self
                .pending
                .closed_reason()
                .unwrap_or_else(|| "the SSE stream ended".into()),
        }
    }

    pub fn info(&self) -> &UpstreamInfo {
        &self.info
    }

    pub fn closed_reason(&self) -> Option<String> {
        self.pending.closed_reason()
    }

    /// Fails what is in flight and closes the stream (which ends the upstream session).
    pub async fn shutdown(&self) {
        self.close("connection shut down by the gateway");
    }
}

impl Drop for SseConn {
    // why: a connection dropped without shutdown (a start abandoned mid-handshake) must not
    // keep its stream open.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The configured headers and bearer token, marked sensitive so they never reach a log.
fn header_map(params: &SseParams<'_>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (k, v) in &params.headers {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad header name {k:?}"))?;
        let mut value =
            HeaderValue::from_str(v).map_err(|_| format!("bad value for header {k:?}"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    if let Some(token) = params
        .bearer_token
        .as_ref()
        .filter(|_| params.bearer.is_none())
    {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "bearer token is not a valid header value".to_owned())?;
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    Ok(headers)
}

type EventStream = std::pin::Pin<Box<dyn Stream<Item = Result<Sse, sse_stream::Error>> + Send>>;

/// Why the stream did not open.
enum Opening {
    /// 401: the access token was refused (the size guard comes back for a retry).
    Unauthorized(Oversized),
    Failed(String),
}

impl std::fmt::Display for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Opening::Unauthorized(_) => f.write_str("HTTP 401 Unauthorized"),
            Opening::Failed(m) => f.write_str(m),
        }
    }
}

impl From<String> for Opening {
    fn from(m: String) -> Self {
        Opening::Failed(m)
    }
}

/// GETs the SSE stream and reads up to its `endpoint` event; returns the rest of the stream
/// and the POST URL.
async fn open_stream(
    client: &reqwest::Client,
    sse_url: &reqwest::Url,
    headers: &HeaderMap,
    limit: usize,
    oversized: Oversized,
) -> Result<(EventStream, reqwest::Url), Opening> {
    let resp = client
        .get(sse_url.clone())
        .headers(headers.clone())
        .header(header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED && headers.contains_key(header::AUTHORIZATION) {
        return Err(Opening::Unauthorized(oversized));
    }
    if !status.is_success() {
        let text = resp.bytes().await.unwrap_or_default();
        let snippet: String = String::from_utf8_lossy(&text).chars().take(300).collect();
        return Err(format!("HTTP {status}: {snippet}").into());
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !content_type.starts_with("text/event-stream") {
        return Err(format!(
            "expected an SSE stream, got content type {content_type:?} (is this a Streamable HTTP server?)"
        )
        .into());
    }
    let body = bounded::Events::new(resp.bytes_stream(), limit, oversized);
    let mut stream: EventStream = Box::pin(SseByteStream::new(body));
    loop {
        match stream.next().await {
            None => {
                return Err(Opening::Failed(
                    "the SSE stream ended before its endpoint event".into(),
                ));
            }
            Some(Err(e)) => return Err(format!("the SSE stream broke: {e}").into()),
            Some(Ok(ev)) if ev.event.as_deref() == Some("endpoint") => {
                let url = endpoint_url(sse_url, ev.data.as_deref().unwrap_or(""))?;
                return Ok((stream, url));
            }
            // why: the spec puts `endpoint` first; anything before it cannot be routed.
            Some(Ok(_)) => {}
        }
    }
}

/// The POST URL named by an `endpoint` event: resolved against the SSE URL, and refused
/// unless it is on the SSE URL's origin (scheme, host and port).
fn endpoint_url(sse_url: &reqwest::Url, data: &str) -> Result<reqwest::Url, String> {
    let data = data.trim();
    if data.is_empty() {
        return Err("the endpoint event names no URL".into());
    }
    let url = sse_url
        .join(data)
        .map_err(|e| format!("the endpoint event names a bad URL: {e}"))?;
    if url.origin() != sse_url.origin() {
        return Err(format!(
            "the endpoint event names another origin ({}); refused",
            url.origin().ascii_serialization()
        ));
    }
    Ok(url)
}

/// Routes every message of the stream until it ends, then closes the connection.
async fn read_loop(
    mut stream: EventStream,
    pending: Arc<Pending>,
    poster: Arc<Poster>,
    events: Events,
    stop: CancellationToken,
) {
    let reason = loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => break "connection shut down by the gateway".to_owned(),
            ev = stream.next() => ev,
        };
        let ev = match ev {
            None => break "the upstream ended its SSE stream".to_owned(),
            Some(Err(e)) => break format!("the upstream's SSE stream broke: {e}"),
            Some(Ok(ev)) => ev,
        };
        match ev.event.as_deref() {
            None | Some("message") => {}
            Some(other) => {
                tracing::debug!(server = %pending.server(), event = other, "SSE event ignored");
                continue;
            }
        }
        let Some(data) = ev.data else { continue };
        if data.trim().is_empty() {
            continue;
        }
        match Reply::from_message(data) {
            Ok((id, reply)) => {
                if !pending.complete(id, reply) {
                    tracing::debug!(server = %pending.server(), id, "reply for an abandoned request");
                }
            }
            Err(text) => {
                // why: the stream is shared by every call, so a request for a client
                // (sampling, elicitation, roots) is attributed only to a sole caller.
                let poster = poster.clone();
                dispatch_shared(&pending, text, &events, move |answer| async move {
                    let _ = poster.builder(answer).timeout(POST_TIMEOUT).send().await;
                });
            }
        }
    };
    tracing::info!(server = %pending.server(), %reason, "legacy SSE upstream connection closed");
    pending.close(&reason);
}

fn http_err(server: &str, message: String) -> UpstreamError {
    UpstreamError::Http {
        server: server.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn endpoint_is_resolved_against_the_sse_url() {
        let base = url("http://127.0.0.1:3001/sse?x=1");
        assert_eq!(
            endpoint_url(&base, "/message?sessionId=abc")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:3001/message?sessionId=abc"
        );
        assert_eq!(
            endpoint_url(&url("http://h/mcp/sse"), "messages?s=1")
                .unwrap()
                .as_str(),
            "http://h/mcp/messages?s=1"
        );
        assert_eq!(
            endpoint_url(&base, " http://127.0.0.1:3001/m ")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:3001/m"
        );
        assert_eq!(
            endpoint_url(&url("https://h/sse"), "https://h:443/m")
                .unwrap()
                .as_str(),
            "https://h/m"
        );
    }

    #[test]
    fn endpoint_on_another_origin_is_refused() {
        let base = url("http://127.0.0.1:3001/sse");
        for other in [
            "http://evil.example.com/message",
            "http://127.0.0.1:3002/message",
            "https://127.0.0.1:3001/message",
            "//evil.example.com/message",
        ] {
            assert!(endpoint_url(&base, other).is_err(), "{other}");
        }
        assert!(endpoint_url(&base, "").is_err());
    }

    #[test]
    fn secrets_become_sensitive_headers() {
        let params = SseParams {
            url: "http://h/sse",
            headers: [("X-Team".to_owned(), "t1".to_owned())].into(),
            bearer_token: Some("tok".into()),
            max_message: 1024,
            bearer: None,
        };
        let h = header_map(&params).unwrap();
        assert!(h["x-team"].is_sensitive());
        assert_eq!(h[header::AUTHORIZATION], "Bearer tok");
        assert!(h[header::AUTHORIZATION].is_sensitive());
        let bad = SseParams {
            url: "http://h/sse",
            headers: [("bad name".to_owned(), "v".to_owned())].into(),
            bearer_token: None,
            max_message: 1024,
            bearer: None,
        };
        assert!(header_map(&bad).is_err());
    }
}
