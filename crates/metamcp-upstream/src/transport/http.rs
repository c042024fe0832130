//! A Streamable HTTP upstream (MCP 2025-03-26+ "Transports §Streamable HTTP").
//!
//! Every request is one POST on the gateway's single pooled HTTP client; the answer is read
//! from a JSON body or from the SSE stream of that POST (notifications on it go to the event
//! channel). The upstream session id is kept and sent on every request; when the upstream
//! answers 404 for it (it restarted or expired the session) the connection re-initializes
//! once and re-sends the request, which the upstream never executed. A background GET stream
//! carries the upstream's own notifications (e.g. `list_changed`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use metamcp_core::jsonrpc;
use parking_lot::RwLock;
use sse_stream::SseByteStream;
use tokio_util::sync::CancellationToken;

use super::bounded::{self, Oversized};
use super::describe;
use crate::conn::{
    Reply, Unanswerable, UpstreamInfo, handle_unsolicited, initialize_params, parse_initialize,
};
use crate::error::UpstreamError;
use crate::pool::Events;
use crate::scope::Serving;
use crate::token::Bearer;
use crate::transport::inline::InlinePool;

const SESSION_HEADER: &str = "mcp-session-id";
const PROTOCOL_HEADER: &str = "mcp-protocol-version";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// What it takes to reach a Streamable HTTP upstream.
#[derive(Debug)]
pub struct HttpParams<'a> {
    pub url: &'a str,
    pub headers: BTreeMap<String, String>,
    pub bearer_token: Option<String>,
    /// Handshake with `server/discover` (the server refused `initialize` before).
    pub stateless: bool,
    /// Longest JSON body or SSE event read (`METAMCP_MAX_UPSTREAM_MESSAGE_BYTES`).
    pub max_message: usize,
    /// The server needs OAuth: the token this connection sends (replaces `bearer_token`).
    pub bearer: Option<Arc<Bearer>>,
}

/// A connection (an upstream session) to a Streamable HTTP server.
#[derive(Debug)]
pub struct HttpConn {
    server: Arc<str>,
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    session: RwLock<Option<HeaderValue>>,
    protocol: RwLock<HeaderValue>,
    info: UpstreamInfo,
    next_id: AtomicU64,
    generation: AtomicU64,
    reinit: tokio::sync::Mutex<()>,
    events: Events,
    closed: RwLock<Option<String>>,
    cancel: CancellationToken,
    /// Requests of the upstream being asked of a client (the upstream may withdraw them).
    serving: Arc<Serving>,
    /// Longest JSON body or SSE event read.
    max_message: usize,
    /// Plain-http upstreams: connections driven by the calling task (see `inline`).
    inline: Option<Inline>,
    /// OAuth: the access token, refreshed before expiry and after a 401.
    bearer: Option<Arc<Bearer>>,
}

/// What the inline path needs besides its pool: the request target and `Host`.
#[derive(Debug)]
struct Inline {
    pool: InlinePool,
    target: http::Uri,
    host: HeaderValue,
}

/// The outcome of one POST of a request.
enum Exchange {
    Reply(Reply),
    /// The upstream answered 404 to our session id: it forgot the session.
    SessionGone,
    /// The upstream answered 401 to this access token.
    Refused(HeaderValue),
}

impl HttpConn {
    /// Initializes a session within `start_timeout` and starts the notification stream.
    pub async fn connect(
        server: Arc<str>,
        params: HttpParams<'_>,
        client: reqwest::Client,
        events: Events,
        start_timeout: Duration,
    ) -> Result<Arc<Self>, UpstreamError> {
        let start_err = |message: String| UpstreamError::Start {
            server: server.to_string(),
            message,
        };
        let url =
            reqwest::Url::parse(params.url).map_err(|e| start_err(format!("bad url: {e}")))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &params.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| start_err(format!("bad header name {k:?}")))?;
            let mut value = HeaderValue::from_str(v)
                .map_err(|_| start_err(format!("bad value for header {k:?}")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if let Some(token) = &params.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| start_err("bearer token is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        let mut conn = HttpConn {
            server: server.clone(),
            client,
            url,
            headers,
            session: RwLock::new(None),
            protocol: RwLock::new(HeaderValue::from_static(
                crate::conn::UPSTREAM_PROTOCOL_VERSION,
            )),
            info: UpstreamInfo::default(),
            next_id: AtomicU64::new(1),
            generation: AtomicU64::new(0),
            reinit: tokio::sync::Mutex::new(()),
            events,
            closed: RwLock::new(None),
            cancel: CancellationToken::new(),
            serving: Arc::default(),
            max_message: params.max_message,
            inline: None,
            bearer: params.bearer,
        };
        conn.inline = InlinePool::for_url(&conn.url).and_then(|pool| {
            let target = conn.url[url::Position::BeforePath..url::Position::AfterQuery]
                .parse()
                .ok()?;
            let host = HeaderValue::from_str(
                &conn.url[url::Position::BeforeHost..url::Position::AfterPort],
            )
            .ok()?;
            Some(Inline { pool, target, host })
        });
        let stateless = params.stateless;
        let info = tokio::time::timeout(start_timeout, async {
            if let Some(b) = &conn.bearer {
                b.header().await?;
            }
            if stateless {
                conn.discover().await
            } else {
                conn.initialize().await
            }
        })
        .await
        .map_err(|_| {
            start_err(format!(
                "no answer to initialize within {} ms",
                start_timeout.as_millis()
            ))
        })??;
        conn.info = info;
        let conn = Arc::new(conn);
        // why: the stateless era has no session GET stream (it uses subscriptions/listen).
        if !conn.info.stateless {
            tokio::spawn(notification_stream(
                Arc::downgrade(&conn),
                conn.cancel.clone(),
            ));
        }
        Ok(conn)
    }

    async fn initialize(&self) -> Result<UpstreamInfo, UpstreamError> {
        *self.session.write() = None;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = jsonrpc::request(id, "initialize", Some(&initialize_params()));
        let mut resp = self.post(body.clone()).await?;
        if let Some(sent) = self.refused(&resp) {
            self.bearer_refused(&sent).await?;
            resp = self.post(body).await?;
        }
        if let Some(sid) = resp.headers().get(SESSION_HEADER) {
            *self.session.write() = Some(sid.clone());
        }
        let (status, ct) = (resp.status(), content_type(resp.headers()));
        let (reply, _) = self
            .read_reply(id, status, &ct, resp.bytes_stream())
            .await?;
        let info = parse_initialize(&self.server, &reply)?;
        if let Ok(v) = HeaderValue::from_str(&info.protocol_version) {
            *self.protocol.write() = v;
        }
        self.notify("notifications/initialized", None).await?;
        Ok(info)
    }

    /// The stateless era's handshake: no session, the version in the header and `_meta`.
    async fn discover(&self) -> Result<UpstreamInfo, UpstreamError> {
        *self.session.write() = None;
        *self.protocol.write() = HeaderValue::from_static(crate::conn::STATELESS_VERSION);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let params = crate::conn::with_stateless_meta(None);
        let resp = self
            .post_builder(jsonrpc::request(id, "server/discover", Some(&params)))
            .headers(stateless_headers("server/discover", None))
            .send()
            .await
            .map_err(|e| self.http_err(describe(&e)))?;
        let (status, ct) = (resp.status(), content_type(resp.headers()));
        let (reply, _) = self
            .read_reply(id, status, &ct, resp.bytes_stream())
            .await?;
        crate::conn::parse_discover(&self.server, &reply)
    }

    /// Re-initializes after the upstream forgot our session, unless another request already
    /// did so since `seen` was read.
    async fn reinitialize(&self, seen: u64) -> Result<(), UpstreamError> {
        let _g = self.reinit.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        tracing::info!(server = %self.server, "upstream session expired; re-initializing");
        self.initialize().await?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn http_err(&self, message: String) -> UpstreamError {
        UpstreamError::Http {
            server: self.server.to_string(),
            message,
        }
    }

    /// The configured headers, with the access token when the server needs OAuth.
    fn base_headers(&self) -> HeaderMap {
        let mut h = self.headers.clone();
        if let Some(v) = self.bearer.as_ref().and_then(|b| b.cached()) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    /// The access token a 401 answer refused, when the server needs OAuth.
    fn refused(&self, resp: &reqwest::Response) -> Option<HeaderValue> {
        (resp.status() == StatusCode::UNAUTHORIZED)
            .then(|| self.bearer.as_ref()?.cached())
            .flatten()
    }

    async fn bearer_refused(&self, sent: &HeaderValue) -> Result<(), UpstreamError> {
        match &self.bearer {
            Some(b) => b.refused(sent).await.map(drop),
            None => Ok(()),
        }
    }

    /// A POST carrying the configured headers, the session and the protocol version.
    fn post_builder(&self, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        let req = self
            .client
            .post(self.url.clone())
            .headers(self.base_headers())
            .header(header::ACCEPT, ACCEPT_BOTH)
            .header(header::CONTENT_TYPE, "application/json")
            .header(PROTOCOL_HEADER, self.protocol.read().clone());
        let sid = self.session.read().clone();
        match sid {
            Some(sid) => req.header(SESSION_HEADER, sid),
            None => req,
        }
        .body(body)
    }

    async fn post(
        &self,
        body: impl Into<reqwest::Body>,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.post_builder(body)
            .send()
            .await
            .map_err(|e| self.http_err(describe(&e)))
    }

    pub async fn request(
        &self,
        method: &str,
        params: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        if let Some(reason) = self.closed_reason() {
            return Err(UpstreamError::Closed {
                server: self.server.to_string(),
                message: reason,
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (body, mut extra) = if self.info.stateless {
            (
                jsonrpc::request(id, method, Some(&crate::conn::with_stateless_meta(params))),
                stateless_headers(method, params),
            )
        } else {
            (jsonrpc::request(id, method, params), HeaderMap::new())
        };
        crate::scope::add_trace_headers(&mut extra);
        let mut guard = CancelOnDrop {
            conn: self,
            id,
            armed: true,
        };
        let body = Bytes::from(body);
        let exchange = async {
            if let Some(b) = &self.bearer {
                b.header().await?;
            }
            let (mut reinitialized, mut refreshed) = (false, false);
            loop {
                let seen = self.generation.load(Ordering::Acquire);
                match self.exchange(id, body.clone(), &extra).await? {
                    Exchange::Reply(r) => return Ok(r),
                    Exchange::SessionGone if !reinitialized => {
                        reinitialized = true;
                        self.reinitialize(seen).await?
                    }
                    Exchange::SessionGone => {
                        return Err(self.http_err("the upstream kept rejecting its session".into()));
                    }
                    Exchange::Refused(sent) if !refreshed => {
                        refreshed = true;
                        self.bearer_refused(&sent).await?
                    }
                    Exchange::Refused(_) => {
                        return Err(UpstreamError::Unauthorized {
                            server: self.server.to_string(),
                            message: "the upstream refused a freshly refreshed access token".into(),
                        });
                    }
                }
            }
        };
        let out = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                server: self.server.to_string(),
                ms: timeout.as_millis() as u64,
            }),
        };
        if !matches!(out, Err(UpstreamError::Timeout { .. })) {
            guard.armed = false;
        }
        if let Err(UpstreamError::Unauthorized { message, .. }) = &out {
            // why: without a grant the connection is useless; the next call starts a new
            // one, whose failure shows the server as needing authorization.
            *self.closed.write() = Some(format!("needs authorization: {message}"));
        }
        out
    }

    pub async fn notify(&self, method: &str, params: Option<&str>) -> Result<(), UpstreamError> {
        let resp = self.post(jsonrpc::notification(method, params)).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.http_err(format!("notification {method} answered {}", resp.status())))
        }
    }

    /// POSTs one request and reads its reply, on the inline path for plain-http upstreams.
    async fn exchange(
        &self,
        id: u64,
        body: Bytes,
        extra: &HeaderMap,
    ) -> Result<Exchange, UpstreamError> {
        if let Some(inline) = &self.inline {
            return self.exchange_inline(inline, id, body, extra).await;
        }
        let resp = self
            .post_builder(body)
            .headers(extra.clone())
            .send()
            .await
            .map_err(|e| self.http_err(describe(&e)))?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND && self.session.read().is_some() {
            return Ok(Exchange::SessionGone);
        }
        if let Some(sent) = self.refused(&resp) {
            return Ok(Exchange::Refused(sent));
        }
        let ct = content_type(resp.headers());
        let (reply, _) = self
            .read_reply(id, status, &ct, resp.bytes_stream())
            .await?;
        Ok(Exchange::Reply(reply))
    }

    async fn exchange_inline(
        &self,
        inline: &Inline,
        id: u64,
        body: Bytes,
        extra: &HeaderMap,
    ) -> Result<Exchange, UpstreamError> {
        for attempt in 0..2 {
            let c = inline
                .pool
                .take()
                .await
                .map_err(|e| self.http_err(format!("connection failed: {e}")))?;
            let (mut send, mut conn, reused) = (c.send, c.conn, c.reused);
            let mut req = self.hyper_request(inline, body.clone())?;
            let sent = req.headers().get(header::AUTHORIZATION).cloned();
            for (k, v) in extra {
                req.headers_mut().insert(k.clone(), v.clone());
            }
            let outcome = {
                let work = async {
                    let resp = match send.send_request(req).await {
                        Ok(r) => r,
                        // why: a request hyper never wrote can be sent again on a fresh connection.
                        Err(e) if e.is_canceled() => return Err(None),
                        Err(e) => return Err(Some(self.http_err(format!("request failed: {e}")))),
                    };
                    let status = resp.status();
                    if status == StatusCode::NOT_FOUND && self.session.read().is_some() {
                        let ended = drain(resp.into_body()).await;
                        return Ok((Exchange::SessionGone, ended));
                    }
                    if status == StatusCode::UNAUTHORIZED
                        && self.bearer.is_some()
                        && let Some(sent) = sent.clone()
                    {
                        let ended = drain(resp.into_body()).await;
                        return Ok((Exchange::Refused(sent), ended));
                    }
                    let ct = content_type(resp.headers());
                    let body = http_body_util::BodyExt::into_data_stream(resp.into_body());
                    let (reply, ended) =
                        self.read_reply(id, status, &ct, body).await.map_err(Some)?;
                    Ok((Exchange::Reply(reply), ended))
                };
                tokio::pin!(work);
                // The connection's I/O is polled right here, in the caller's task.
                tokio::select! {
                    biased;
                    r = &mut work => r,
                    ended = &mut conn => match ended {
                        Ok(()) if reused => Err(None),
                    Ok(()) => Err(Some(self.http_err("the upstream closed the connection".into()))),
                        // why: a reused connection the server had already closed fails before
                        // the server read anything; a fresh one gets the request again.
                        Err(e) if e.is_canceled() || (reused && e.is_incomplete_message()) => Err(None),
                        Err(e) => Err(Some(self.http_err(format!("connection failed: {e}")))),
                    },
                }
            };
            match outcome {
                Ok((exchange, reusable)) => {
                    if reusable {
                        inline.pool.put(send, conn);
                    }
                    return Ok(exchange);
                }
                Err(Some(e)) => return Err(e),
                Err(None) if attempt == 0 => continue,
                Err(None) => break,
            }
        }
        Err(self.http_err("the upstream closed the connection before reading the request".into()))
    }

    fn hyper_request(
        &self,
        inline: &Inline,
        body: Bytes,
    ) -> Result<http::Request<http_body_util::Full<Bytes>>, UpstreamError> {
        let mut req = http::Request::new(http_body_util::Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = inline.target.clone();
        let h = req.headers_mut();
        *h = self.base_headers();
        h.insert(header::HOST, inline.host.clone());
        h.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(PROTOCOL_HEADER, self.protocol.read().clone());
        if let Some(sid) = self.session.read().clone() {
            h.insert(SESSION_HEADER, sid);
        }
        Ok(req)
    }

    /// Reads the reply to request `id` from a JSON body or an SSE stream; also says whether
    /// the body was read to its end (so its connection can be reused).
    async fn read_reply<S, E>(
        &self,
        id: u64,
        status: StatusCode,
        content_type: &str,
        body: S,
    ) -> Result<(Reply, bool), UpstreamError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::error::Error + Send + Sync + 'static,
    {
        if !status.is_success() {
            let text = collect(body, 64 * 1024).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text).into_owned();
            // A JSON-RPC error for this request, sent with a 4xx status, is still its answer.
            if let Ok((rid, reply)) = Reply::from_message(text.clone())
                && rid == id
                && reply.is_error()
            {
                return Ok((reply, true));
            }
            let snippet: String = text.chars().take(300).collect();
            return Err(self.http_err(format!("HTTP {status}: {snippet}")));
        }
        if content_type.starts_with("text/event-stream") {
            // why: the stream is this call's own; an event over the limit fails the call.
            let body = bounded::Events::new(body, self.max_message, Oversized::Fail);
            let mut events = SseByteStream::new(body);
            let mut last_event_id: Option<String> = None;
            while let Some(ev) = events.next().await {
                let ev = ev.map_err(|e| self.http_err(format!("SSE stream broke: {e}")))?;
                if let Some(eid) = ev.id.filter(|i| !i.is_empty()) {
                    last_event_id = Some(eid);
                }
                let Some(data) = ev.data else { continue };
                if data.is_empty() {
                    continue;
                }
                match Reply::from_message(data) {
                    Ok((rid, reply)) if rid == id => {
                        // why: servers end the POST's stream right after the reply; reading
                        // that end lets the connection be reused. Do not wait for more.
                        let ended = matches!(
                            tokio::time::timeout(Duration::from_millis(5), events.next()).await,
                            Ok(None)
                        );
                        return Ok((reply, ended));
                    }
                    Ok((rid, _)) => {
                        tracing::debug!(server = %self.server, rid, "reply for another request on stream")
                    }
                    Err(text) => self.unsolicited(&text, true),
                }
            }
            // The server closed the stream before the reply (SEP-1699 polling): resume it.
            match last_event_id {
                Some(eid) => self.resume(id, eid).await.map(|r| (r, true)),
                None => Err(self.http_err("the SSE stream ended before the reply".into())),
            }
        } else if content_type.starts_with("application/json") {
            let bytes = collect(body, self.max_message.saturating_add(1))
                .await
                .map_err(|e| self.http_err(format!("reading the body failed: {e}")))?;
            if bytes.len() > self.max_message {
                return Err(UpstreamError::Protocol {
                    server: self.server.to_string(),
                    message: format!(
                        "its answer was larger than {} bytes (METAMCP_MAX_UPSTREAM_MESSAGE_BYTES)",
                        self.max_message
                    ),
                });
            }
            let text = String::from_utf8(bytes).map_err(|_| UpstreamError::Protocol {
                server: self.server.to_string(),
                message: "the reply is not UTF-8".into(),
            })?;
            match Reply::from_message(text) {
                Ok((rid, reply)) if rid == id => Ok((reply, true)),
                Ok((rid, _)) => Err(UpstreamError::Protocol {
                    server: self.server.to_string(),
                    message: format!("reply carries id {rid}, expected {id}"),
                }),
                Err(text) => Err(UpstreamError::Protocol {
                    server: self.server.to_string(),
                    message: format!(
                        "not a JSON-RPC response: {}",
                        text.chars().take(200).collect::<String>()
                    ),
                }),
            }
        } else {
            Err(UpstreamError::Protocol {
                server: self.server.to_string(),
                message: format!("HTTP {status} with unexpected content type {content_type:?}"),
            })
        }
    }

    /// Resumes a POST's event stream that closed before request `id` was answered: a GET
    /// with `Last-Event-ID` (MCP "Streamable HTTP": resumability), as often as the server
    /// closes it again, at most 100 times.
    async fn resume(&self, id: u64, mut last: String) -> Result<Reply, UpstreamError> {
        for _ in 0..100 {
            let mut req = self
                .client
                .get(self.url.clone())
                .headers(self.base_headers())
                .header(header::ACCEPT, "text/event-stream")
                .header(PROTOCOL_HEADER, self.protocol.read().clone())
                .header("last-event-id", last.clone());
            let sid = self.session.read().clone();
            if let Some(sid) = sid {
                req = req.header(SESSION_HEADER, sid);
            }
            let resp = req.send().await.map_err(|e| self.http_err(describe(&e)))?;
            if !resp.status().is_success() {
                return Err(
                    self.http_err(format!("resuming the stream answered {}", resp.status()))
                );
            }
            let body = bounded::Events::new(resp.bytes_stream(), self.max_message, Oversized::Fail);
            let mut events = SseByteStream::new(body);
            while let Some(ev) = events.next().await {
                let ev = ev.map_err(|e| self.http_err(format!("SSE stream broke: {e}")))?;
                if let Some(eid) = ev.id.filter(|i| !i.is_empty()) {
                    last = eid;
                }
                let Some(data) = ev.data.filter(|d| !d.is_empty()) else {
                    continue;
                };
                match Reply::from_message(data) {
                    Ok((rid, reply)) if rid == id => return Ok(reply),
                    Ok(_) => {}
                    Err(text) => self.unsolicited(&text, true),
                }
            }
        }
        Err(self.http_err("the resumed SSE stream kept ending before the reply".into()))
    }

    /// A message that is not the awaited reply: on a call's own POST stream
    /// (`on_call_stream`, read in the caller's task, so the call's scope is current) it
    /// belongs to that call; on the GET stream to no call.
    fn unsolicited(&self, text: &str, on_call_stream: bool) {
        let Ok(env) = jsonrpc::Envelope::parse(text.as_bytes()) else {
            tracing::debug!(server = %self.server, "unreadable message from upstream ignored");
            return;
        };
        let scope = if on_call_stream {
            crate::scope::current()
        } else {
            None
        };
        let why = match (env.kind(), env.method()) {
            (jsonrpc::Kind::Notification, "notifications/progress") => {
                let sink = scope.and_then(|s| s.progress).and_then(|(token, sink)| {
                    (crate::scope::progress_token(text).as_deref() == Some(&*token)).then_some(sink)
                });
                if !sink.is_some_and(|s| s.deliver(text)) {
                    tracing::debug!(server = %self.server, "progress for no call in flight dropped");
                }
                return;
            }
            (jsonrpc::Kind::Notification, "notifications/cancelled")
                if self.serving.withdraw(text) =>
            {
                return;
            }
            (jsonrpc::Kind::Request, m) if m != "ping" => match scope.and_then(|s| s.answerer) {
                Some(handler) => {
                    let up_id = env.id.map(|i| i.get().to_owned()).unwrap_or_default();
                    let post = self.post_builder(String::new());
                    let send = move |answer: String| async move {
                        let _ = post
                            .body(answer)
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                    };
                    match self
                        .serving
                        .spawn(up_id, handler.answer(text.to_owned()), send)
                    {
                        Ok(()) => return,
                        Err(_) => Unanswerable::TooMany,
                    }
                }
                None if on_call_stream => Unanswerable::NoClient,
                None => Unanswerable::NoCall,
            },
            _ => Unanswerable::NoCall,
        };
        if let Some(answer) = handle_unsolicited(&self.server, text, &self.events, why) {
            self.spawn_post(answer);
        }
    }

    fn spawn_post(&self, body: String) {
        let req = self.post_builder(body).timeout(Duration::from_secs(10));
        tokio::spawn(async move {
            let _ = req.send().await;
        });
    }

    pub fn info(&self) -> &UpstreamInfo {
        &self.info
    }

    pub fn closed_reason(&self) -> Option<String> {
        self.closed.read().clone()
    }

    /// Ends the upstream session (DELETE, best effort) and stops the notification stream.
    pub async fn shutdown(&self) {
        *self.closed.write() = Some("connection shut down by the gateway".into());
        self.cancel.cancel();
        self.serving.clear();
        let sid = self.session.read().clone();
        if let Some(sid) = sid {
            let req = self
                .client
                .delete(self.url.clone())
                .headers(self.base_headers())
                .header(SESSION_HEADER, sid);
            let _ = req.timeout(Duration::from_secs(2)).send().await;
        }
    }
}

/// Sends `notifications/cancelled` when a request is abandoned before its reply.
struct CancelOnDrop<'a> {
    conn: &'a HttpConn,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed && self.conn.closed_reason().is_none() {
            let params = format!(
                r#"{{"requestId":{},"reason":"request abandoned by the gateway"}}"#,
                self.id
            );
            self.conn.spawn_post(jsonrpc::notification(
                "notifications/cancelled",
                Some(&params),
            ));
        }
    }
}

/// The upstream's standalone GET stream: its notifications feed the event channel.
async fn notification_stream(conn: std::sync::Weak<HttpConn>, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let Some(c) = conn.upgrade() else { return };
        let mut req = c
            .client
            .get(c.url.clone())
            .headers(c.base_headers())
            .header(header::ACCEPT, "text/event-stream")
            .header(PROTOCOL_HEADER, c.protocol.read().clone());
        let sid = c.session.read().clone();
        if let Some(sid) = sid {
            req = req.header(SESSION_HEADER, sid);
        }
        let server = c.server.clone();
        drop(c);
        let resp = tokio::select! {
            _ = cancel.cancelled() => return,
            r = req.send() => r,
        };
        match resp {
            Ok(r) if r.status() == StatusCode::METHOD_NOT_ALLOWED => {
                tracing::debug!(server = %server, "upstream offers no GET stream");
                return;
            }
            Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
                // why: the token expired while the stream was down; the next try sends a new one.
                let refresh = conn
                    .upgrade()
                    .and_then(|c| Some((c.refused(&r)?, c.bearer.clone()?)));
                if let Some((sent, bearer)) = refresh
                    && let Err(e) = bearer.refused(&sent).await
                {
                    tracing::debug!(server = %server, error = %e, "upstream GET stream unauthorized");
                }
            }
            Ok(r) if r.status().is_success() => {
                backoff = Duration::from_millis(500);
                let limit = conn.upgrade().map_or(0, |c| c.max_message);
                let report = server.clone();
                // why: the GET stream carries no replies; an oversized event is dropped.
                let skip = Oversized::Skip(Box::new(move |_: &[u8]| {
                    tracing::warn!(server = %report, limit, "upstream notification over the size limit dropped");
                }));
                let mut events =
                    SseByteStream::new(bounded::Events::new(r.bytes_stream(), limit, skip));
                loop {
                    let ev = tokio::select! {
                        _ = cancel.cancelled() => return,
                        ev = events.next() => ev,
                    };
                    let Some(Ok(ev)) = ev else { break };
                    let Some(data) = ev.data else { continue };
                    let Some(c) = conn.upgrade() else { return };
                    c.unsolicited(&data, false);
                }
            }
            Ok(r) => {
                tracing::debug!(server = %server, status = %r.status(), "upstream GET stream refused")
            }
            Err(e) => {
                tracing::debug!(server = %server, error = %describe(&e), "upstream GET stream failed")
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// The routing headers the stateless era requires on every request (SEP-2243): `Mcp-Method`,
/// and `Mcp-Name` for methods that name a tool, prompt or resource (Base64-wrapped when the
/// value would not survive as a header).
fn stateless_headers(method: &str, params: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(method) {
        h.insert("mcp-method", v);
    }
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        _ => return h,
    };
    let name = params
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|v| {
            v.get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        });
    if let Some(name) = name
        && let Ok(v) = HeaderValue::from_str(&header_safe(&name))
    {
        h.insert("mcp-name", v);
    }
    h
}

fn header_safe(value: &str) -> String {
    use base64::Engine as _;
    let plain = !value.starts_with([' ', '\t'])
        && !value.ends_with([' ', '\t'])
        && !value.starts_with("=?base64?")
        && value.bytes().all(|b| (0x20..0x7f).contains(&b));
    if plain {
        value.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The whole body, up to `limit` bytes.
async fn collect<S, E>(mut body: S, limit: usize) -> Result<Vec<u8>, E>
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// Reads a body to its end; true when it ended cleanly.
async fn drain(body: hyper::body::Incoming) -> bool {
    let mut s = http_body_util::BodyExt::into_data_stream(body);
    loop {
        match s.next().await {
            None => return true,
            Some(Ok(_)) => {}
            Some(Err(_)) => return false,
        }
    }
}
