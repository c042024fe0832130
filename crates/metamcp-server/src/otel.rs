//! OpenTelemetry spans of the gateway's work: one per client request (`route::handle_ctx`),
//! children for the upstream call (`route::forward_ctx`), catalog builds and the
//! configuration reads of a reload. The binary builds the tracer (SDK, OTLP/HTTP exporter)
//! only when an `OTEL_EXPORTER_OTLP_*ENDPOINT` is set; without it [`Otel`] is `None`
//! everywhere and the per-call path does nothing but test that `Option`.
//!
//! W3C trace context: a request's parent is the client's `traceparent`/`tracestate` HTTP
//! headers, else `params._meta.traceparent`/`tracestate` (SEP-414). The upstream call's
//! context goes on in the forwarded `params._meta` (every transport) and, for HTTP and SSE
//! upstreams, as headers. Writing `_meta` rewrites a payload the relay otherwise passes
//! byte for byte, which is why it happens only while tracing is on.

use std::borrow::Cow;
use std::future::Future;

use http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;
use serde_json::value::RawValue;

pub use opentelemetry::context::FutureExt;

/// The gateway's tracer. Cloning is cheap (the SDK tracer is reference counted).
#[derive(Clone, Debug)]
pub struct Otel {
    tracer: SdkTracer,
}

/// What a face knows of a request that the request span records: which face, which
/// endpoint, and the W3C headers the client sent. Built by the faces only while tracing is
/// on ([`Incoming::from_headers`] is called behind the `Option<Otel>` test).
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    pub face: &'static str,
    pub endpoint: String,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Incoming {
    pub fn from_headers(face: &'static str, endpoint: &str, headers: &HeaderMap) -> Self {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Incoming {
            face,
            endpoint: endpoint.to_owned(),
            traceparent: get("traceparent"),
            tracestate: get("tracestate"),
        }
    }
}

/// Two optional W3C fields, read by the propagator (`Extractor`) or written by it
/// (`Injector`).
#[derive(Default)]
struct W3c {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Extractor for W3c {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent.as_deref(),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

impl Injector for W3c {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.traceparent = Some(value),
            "tracestate" if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

/// `params._meta.traceparent` / `tracestate` (SEP-414).
#[derive(serde::Deserialize)]
struct MetaOf<'a> {
    #[serde(rename = "_meta", borrow)]
    meta: Option<Meta<'a>>,
}

#[derive(serde::Deserialize)]
struct Meta<'a> {
    #[serde(borrow)]
    traceparent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tracestate: Option<Cow<'a, str>>,
}

fn w3c_of_params(params: Option<&RawValue>) -> Option<W3c> {
    let p = params?.get();
    if !p.contains("traceparent") {
        return None;
    }
    let meta = serde_json::from_str::<MetaOf<'_>>(p).ok()?.meta?;
    Some(W3c {
        traceparent: Some(meta.traceparent?.into_owned()),
        tracestate: meta.tracestate.map(Cow::into_owned),
    })
}

/// The parent context a client sent: its headers, else its `params._meta`; else none.
fn parent_of(incoming: Option<&Incoming>, params: Option<&RawValue>) -> Context {
    let propagator = TraceContextPropagator::new();
    let from_headers = incoming.and_then(|i| {
        i.traceparent.as_ref().map(|tp| W3c {
            traceparent: Some(tp.clone()),
            tracestate: i.tracestate.clone(),
        })
    });
    for w3c in [from_headers, w3c_of_params(params)].into_iter().flatten() {
        let cx = propagator.extract(&w3c);
        if cx.span().span_context().is_valid() {
            return cx;
        }
    }
    Context::new()
}

impl Otel {
    pub fn new(tracer: SdkTracer) -> Self {
        Otel { tracer }
    }

    /// Starts the span of one client request and returns the context that carries it.
    pub(crate) fn request(
        &self,
        incoming: Option<&Incoming>,
        namespace: &str,
        method: &str,
        params: Option<&RawValue>,
    ) -> Context {
        let parent = parent_of(incoming, params);
        let mut attrs = vec![
            KeyValue::new("mcp.method.name", method.to_owned()),
            KeyValue::new("rpc.system", "jsonrpc"),
            KeyValue::new("metamcp.namespace", namespace.to_owned()),
        ];
        if let Some(i) = incoming {
            attrs.push(KeyValue::new("metamcp.face", i.face));
            attrs.push(KeyValue::new("metamcp.endpoint", i.endpoint.clone()));
        }
        let target = match method {
            "tools/call" => Some(("gen_ai.tool.name", "name")),
            "prompts/get" => Some(("gen_ai.prompt.name", "name")),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                Some(("mcp.resource.uri", "uri"))
            }
            _ => None,
        };
        if let Some((key, field)) = target
            && let Some(v) = params.and_then(|p| metamcp_core::jsonrpc::str_field(p, field))
        {
            attrs.push(KeyValue::new(key, v.into_owned()));
        }
        let span = self
            .tracer
            .span_builder(method.to_owned())
            .with_kind(SpanKind::Server)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &parent);
        parent.with_span(span)
    }

    /// Starts a child span of the current context (the request's, where a request runs).
    pub(crate) fn child(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attrs: Vec<KeyValue>,
    ) -> Context {
        let parent = Context::current();
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &parent);
        parent.with_span(span)
    }

    /// Runs `fut` inside a child span named `name` (internal work: catalog builds, store
    /// reads); the span ends when `fut` does.
    pub(crate) async fn in_span<F: Future>(
        &self,
        name: &'static str,
        attrs: Vec<KeyValue>,
        fut: F,
    ) -> F::Output {
        let cx = self.child(name, SpanKind::Internal, attrs);
        let out = fut.with_context(cx.clone()).await;
        cx.span().end();
        out
    }
}

/// Runs `fut` in a child span when tracing is on, else as it is.
pub(crate) async fn maybe_in_span<F: Future>(
    otel: Option<&Otel>,
    name: &'static str,
    attrs: impl FnOnce() -> Vec<KeyValue>,
    fut: F,
) -> F::Output {
    match otel {
        Some(o) => o.in_span(name, attrs(), fut).await,
        None => fut.await,
    }
}

/// The W3C fields that carry `cx` on: `(traceparent, tracestate)`; `None` when `cx` has no
/// valid span.
pub(crate) fn w3c_of(cx: &Context) -> Option<(String, Option<String>)> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut w3c = W3c::default();
    TraceContextPropagator::new().inject_context(cx, &mut w3c);
    Some((w3c.traceparent?, w3c.tracestate))
}

/// Ends the span of `cx` with the outcome: the server that answered and, for a failure,
/// the error status and its class.
pub(crate) fn finish(cx: &Context, server: Option<&str>, failed: Option<&str>) {
    let span = cx.span();
    if let Some(s) = server {
        span.set_attribute(KeyValue::new("metamcp.server", s.to_owned()));
    }
    if let Some(class) = failed {
        span.set_attribute(KeyValue::new("error.type", class.to_owned()));
        span.set_status(Status::error(class.to_owned()));
    }
    span.end();
}

/// The header map form of `w3c_of`, for [`metamcp_upstream::scope::traced`].
pub(crate) fn trace_headers(
    traceparent: &str,
    tracestate: Option<&str>,
) -> Option<metamcp_upstream::scope::TraceHeaders> {
    Some(metamcp_upstream::scope::TraceHeaders {
        traceparent: http::HeaderValue::from_str(traceparent).ok()?,
        tracestate: tracestate.and_then(|s| http::HeaderValue::from_str(s).ok()),
    })
}

/// Attributes of a span, for tests.
#[cfg(test)]
fn parent_ids(cx: &Context) -> (String, String) {
    let sc = cx.span().span_context().clone();
    (sc.trace_id().to_string(), sc.span_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn the_parent_is_the_header_else_meta_else_none() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", TP.parse().expect("header"));
        let incoming = Incoming::from_headers("mcp", "ep", &headers);
        let cx = parent_of(Some(&incoming), None);
        assert_eq!(
            parent_ids(&cx),
            (
                "0af7651916cd43dd8448eb211c80319c".into(),
                "b7ad6b7169203331".into()
            )
        );
        let params = RawValue::from_string(format!(
            r#"{{"name":"a__b","_meta":{{"traceparent":"{}"}}}}"#,
            TP.replace("b7ad", "c7ad")
        ))
        .expect("json");
        let cx = parent_of(None, Some(&params));
        assert_eq!(parent_ids(&cx).1, "c7ad6b7169203331");
        // The header wins over `_meta`.
        let cx = parent_of(Some(&incoming), Some(&params));
        assert_eq!(parent_ids(&cx).1, "b7ad6b7169203331");
        // Garbage is no parent.
        let bad =
            RawValue::from_string(r#"{"_meta":{"traceparent":"nope"}}"#.into()).expect("json");
        assert!(!parent_of(None, Some(&bad)).has_active_span());
        assert!(w3c_of(&parent_of(None, None)).is_none());
    }

    #[test]
    fn a_remote_context_is_carried_on_unchanged() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", TP.parse().expect("header"));
        headers.insert("tracestate", "vendor=x".parse().expect("header"));
        let cx = parent_of(Some(&Incoming::from_headers("mcp", "ep", &headers)), None);
        assert_eq!(
            w3c_of(&cx),
            Some((TP.to_owned(), Some("vendor=x".to_owned())))
        );
    }
}
