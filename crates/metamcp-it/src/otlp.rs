//! A small OTLP/HTTP trace receiver for tests (no OpenTelemetry Collector here): `POST
//! /v1/traces` bodies are decoded as the official `ExportTraceServiceRequest` (protobuf,
//! `opentelemetry-proto` + prost) and the spans kept, on an ephemeral loopback port.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;

/// One received span, ids in lowercase hex (as W3C `traceparent` writes them).
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// `SpanKind` as the protocol numbers it (1 internal, 2 server, 3 client).
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    /// `Status.code`: 0 unset, 1 ok, 2 error.
    pub status: i32,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    /// Headers of the export requests (`OTEL_EXPORTER_OTLP_HEADERS` reach here).
    headers: Vec<HeaderMap>,
}

/// The receiver; it stops when dropped.
pub struct OtlpReceiver {
    /// `http://127.0.0.1:PORT` (for `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub endpoint: String,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn text_of(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text_of(kv.value.as_ref())))
        .collect()
}

/// The spans of one export request.
pub fn decode(body: &[u8]) -> anyhow::Result<Vec<ReceivedSpan>> {
    let req =
        ExportTraceServiceRequest::decode(body).context("not an ExportTraceServiceRequest")?;
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| attrs(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(ReceivedSpan {
                    service: service.clone(),
                    name: s.name.clone(),
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    kind: s.kind,
                    attributes: attrs(&s.attributes),
                    status: s.status.as_ref().map_or(0, |st| st.code),
                });
            }
        }
    }
    Ok(out)
}

impl OtlpReceiver {
    pub async fn start() -> anyhow::Result<Self> {
        let received = Arc::new(Mutex::new(Received::default()));
        let kept = received.clone();
        let router = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let kept = kept.clone();
                async move {
                    let spans = match decode(&body) {
                        Ok(s) => s,
                        Err(e) => {
                            return (StatusCode::BAD_REQUEST, format!("{e:#}")).into_response();
                        }
                    };
                    {
                        let mut r = kept
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        r.spans.extend(spans);
                        r.headers.push(headers);
                    }
                    (
                        [(header::CONTENT_TYPE, "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                        .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(OtlpReceiver {
            endpoint: format!("http://{addr}"),
            received,
            task,
        })
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.lock().spans.clone()
    }

    /// The headers of every export request so far.
    pub fn request_headers(&self) -> Vec<HeaderMap> {
        self.lock().headers.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The spans as indented trees (children under their parent; a span whose parent was not
/// received starts a tree of its own, its parent id shown).
pub fn render_tree(spans: &[ReceivedSpan]) -> String {
    fn walk(out: &mut String, spans: &[ReceivedSpan], s: &ReceivedSpan, depth: usize) {
        let kind = match s.kind {
            1 => "internal",
            2 => "server",
            3 => "client",
            _ => "other",
        };
        let attrs: Vec<String> = s
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            out,
            "{}{} [{kind}] span={} {}",
            "  ".repeat(depth),
            s.name,
            s.span_id,
            attrs.join(" ")
        );
        for c in spans.iter().filter(|c| c.parent_span_id == s.span_id) {
            walk(out, spans, c, depth + 1);
        }
    }
    let mut out = String::new();
    for root in spans
        .iter()
        .filter(|s| !spans.iter().any(|p| p.span_id == s.parent_span_id))
    {
        let _ = writeln!(
            out,
            "trace {} (service {}, parent {})",
            root.trace_id,
            root.service,
            if root.parent_span_id.is_empty() {
                "none"
            } else {
                &root.parent_span_id
            }
        );
        walk(&mut out, spans, root, 1);
    }
    out
}
