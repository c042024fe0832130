//! OpenTelemetry: spans exported over OTLP/HTTP to a real receiver (the official protobuf
//! types), W3C trace context taken from the client and passed on to an HTTP upstream, and
//! nothing of it — not a byte of `_meta` — while tracing is off.

use std::time::Duration;

use metamcp_it::otlp::{OtlpReceiver, ReceivedSpan, render_tree};
use metamcp_it::{Env, FixtureHttp, RawClient, eventually};
use serde_json::{Value, json};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const META_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const META_SPAN: &str = "b7ad6b7169203331";

/// A gateway in front of one HTTP fixture (`remote`), endpoint `ep` without auth.
async fn setup() -> (FixtureHttp, Env) {
    let fx = FixtureHttp::start("remote", &[])
        .await
        .expect("fixture http");
    let env = Env::new();
    env.import(json!({ "remote": {"type": "streamable_http", "url": fx.url} }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "remote"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    (fx, env)
}

/// What the fixture's `echo_meta` tool saw: the request's `_meta` and its W3C headers.
async fn echo_meta(client: &RawClient, meta: Option<Value>) -> Value {
    let mut params = json!({"name": "remote__echo_meta", "arguments": {}});
    if let Some(m) = meta {
        params["_meta"] = m;
    }
    let a = client.request("tools/call", params).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let text = a.body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {}", a.body));
    serde_json::from_str(text).expect("echo_meta JSON")
}

fn parts(traceparent: &str) -> (String, String) {
    let p: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(p.len(), 4, "traceparent {traceparent:?}");
    (p[1].to_owned(), p[2].to_owned())
}

/// Polls the receiver until `want` finds what it needs among the spans.
async fn spans_until(
    rx: &OtlpReceiver,
    want: impl Fn(&[ReceivedSpan]) -> bool,
) -> Vec<ReceivedSpan> {
    eventually(Duration::from_secs(20), || async {
        let s = rx.spans();
        want(&s).then_some(s)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the spans never arrived; got:\n{}",
            render_tree(&rx.spans())
        )
    })
}

fn one<'a>(spans: &'a [ReceivedSpan], trace: &str, name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {name} in trace {trace}:\n{}",
        render_tree(spans)
    );
    found[0]
}

#[tokio::test]
async fn spans_follow_the_client_trace_to_the_upstream() {
    let rx = OtlpReceiver::start().await.expect("receiver");
    let (_fx, env) = setup().await;
    let gw = env
        .serve_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint.as_str()),
            // why: a short batch delay, so spans arrive while the test polls for them.
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-otlp-test=sent"),
        ])
        .await;
    let client_tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let mut client = RawClient::new(&gw.mcp_url("ep")).header("traceparent", &client_tp);
    client = client.header("tracestate", "vendor=abc");
    client.initialize().await;

    // 1. The client's traceparent header: the request span is its child, the upstream call
    //    span the request span's, and the upstream sees the call span's context.
    let seen = echo_meta(&client, Some(json!({"x-keep": {"a": [1, 2]}}))).await;
    println!("the HTTP upstream saw: {seen}");
    let header_tp = seen["traceparent"].as_str().expect("a traceparent header");
    let meta_tp = seen["meta"]["traceparent"]
        .as_str()
        .expect("_meta.traceparent");
    assert_eq!(header_tp, meta_tp, "header and _meta carry one context");
    let (trace, upstream_span) = parts(header_tp);
    assert_eq!(trace, CLIENT_TRACE);
    assert_ne!(upstream_span, CLIENT_SPAN);
    assert_eq!(seen["tracestate"], "vendor=abc");
    assert_eq!(seen["meta"]["tracestate"], "vendor=abc");
    assert_eq!(
        seen["meta"]["x-keep"],
        json!({"a": [1, 2]}),
        "other _meta kept"
    );

    let spans = spans_until(&rx, |s| {
        s.iter()
            .any(|x| x.trace_id == CLIENT_TRACE && x.name == "upstream tools/call")
            && s.iter()
                .any(|x| x.trace_id == CLIENT_TRACE && x.name == "tools/call")
    })
    .await;
    println!(
        "spans of the header-propagated call:\n{}",
        render_tree(&spans)
    );
    let request = one(&spans, CLIENT_TRACE, "tools/call");
    let upstream = one(&spans, CLIENT_TRACE, "upstream tools/call");
    assert_eq!(
        request.parent_span_id, CLIENT_SPAN,
        "child of the client's span"
    );
    assert_eq!(request.kind, 2, "server span");
    assert_eq!(request.service, "metamcp");
    assert_eq!(request.attr("metamcp.face"), Some("mcp"));
    assert_eq!(request.attr("metamcp.endpoint"), Some("ep"));
    assert_eq!(request.attr("metamcp.namespace"), Some("ns"));
    assert_eq!(request.attr("mcp.method.name"), Some("tools/call"));
    assert_eq!(request.attr("gen_ai.tool.name"), Some("remote__echo_meta"));
    assert_eq!(request.attr("metamcp.server"), Some("remote"));
    assert_eq!(
        upstream.parent_span_id, request.span_id,
        "upstream call under the request"
    );
    assert_eq!(upstream.kind, 3, "client span");
    assert_eq!(upstream.attr("metamcp.server"), Some("remote"));
    assert_eq!(
        upstream.span_id, upstream_span,
        "the upstream got the call span's id"
    );
    assert!(
        rx.request_headers()
            .iter()
            .any(|h| h.get("x-otlp-test").is_some_and(|v| v == "sent")),
        "OTEL_EXPORTER_OTLP_HEADERS reach the receiver"
    );

    // 2. No header, `params._meta.traceparent` (SEP-414): the same, from the payload.
    let plain = RawClient {
        headers: Vec::new(),
        ..client.clone()
    };
    let meta_tp = format!("00-{META_TRACE}-{META_SPAN}-01");
    let seen = echo_meta(&plain, Some(json!({"traceparent": meta_tp}))).await;
    let (trace, upstream_span) = parts(seen["meta"]["traceparent"].as_str().expect("_meta"));
    assert_eq!(trace, META_TRACE);
    let spans = spans_until(&rx, |s| {
        s.iter()
            .any(|x| x.trace_id == META_TRACE && x.name == "upstream tools/call")
    })
    .await;
    let request = one(&spans, META_TRACE, "tools/call");
    let upstream = one(&spans, META_TRACE, "upstream tools/call");
    assert_eq!(request.parent_span_id, META_SPAN);
    assert_eq!(upstream.parent_span_id, request.span_id);
    assert_eq!(upstream.span_id, upstream_span);

    // 3. A list: the catalog build is a child of the request span.
    let a = plain.request("tools/list", json!({})).await;
    assert!(a.body["result"]["tools"].is_array(), "{}", a.body);
    let spans = spans_until(&rx, |s| {
        s.iter().any(|x| x.name == "catalog build") && s.iter().any(|x| x.name == "tools/list")
    })
    .await;
    let list = spans
        .iter()
        .find(|s| s.name == "tools/list")
        .expect("list span");
    let build = spans
        .iter()
        .find(|s| s.name == "catalog build")
        .expect("build span");
    assert_eq!(
        build.parent_span_id,
        list.span_id,
        "{}",
        render_tree(&spans)
    );
    assert_eq!(build.attr("metamcp.list"), Some("tools/list"));
    assert!(
        list.parent_span_id.is_empty(),
        "no client context: a root span"
    );
    println!("every span received:\n{}", render_tree(&spans));
    assert!(gw.stop().await.success());
}

#[tokio::test]
async fn spans_are_flushed_when_the_gateway_stops() {
    let rx = OtlpReceiver::start().await.expect("receiver");
    let (_fx, env) = setup().await;
    let gw = env
        .serve_with(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &format!("{}/v1/traces", rx.endpoint),
            ),
            // why: far beyond the test, so only the flush at the stop can deliver them.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("OTEL_SERVICE_NAME", "gw-under-test"),
        ])
        .await;
    let mut client = RawClient::new(&gw.mcp_url("ep"));
    client.initialize().await;
    echo_meta(&client, None).await;
    assert!(rx.spans().is_empty(), "nothing exported before the stop");
    assert!(gw.stop().await.success());
    let spans = rx.spans();
    println!("flushed at the stop:\n{}", render_tree(&spans));
    let call = spans
        .iter()
        .find(|s| s.name == "tools/call")
        .expect("the call's span was flushed");
    assert_eq!(call.service, "gw-under-test");
}

#[tokio::test]
async fn with_tracing_off_the_upstream_gets_meta_unchanged() {
    let (_fx, env) = setup().await;
    let gw = env.serve().await;
    let client_tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let mut client = RawClient::new(&gw.mcp_url("ep")).header("traceparent", &client_tp);
    client.initialize().await;
    let meta = json!({
        "traceparent": format!("00-{META_TRACE}-{META_SPAN}-01"),
        "tracestate": "k=v",
        "x-keep": {"a": [1, 2.5, "é"]},
    });
    let seen = echo_meta(&client, Some(meta.clone())).await;
    assert_eq!(
        seen["meta"], meta,
        "_meta passed through as the client sent it"
    );
    assert_eq!(
        seen["traceparent"],
        Value::Null,
        "no traceparent header added"
    );
    // Without any `_meta`, none appears.
    let seen = echo_meta(&client, None).await;
    assert!(
        seen["meta"]
            .as_object()
            .is_none_or(serde_json::Map::is_empty),
        "{seen}"
    );
    assert!(gw.stop().await.success());
}

/// A minimal Streamable HTTP upstream answering JSON, keeping the raw body of each
/// `tools/call` it receives (the fixture parses what it gets, so it cannot show bytes).
async fn raw_upstream() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = calls.clone();
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                let v: Value = serde_json::from_str(&body).unwrap();
                let id = v["id"].clone();
                let result = match v["method"].as_str().unwrap_or_default() {
                    "initialize" => json!({
                        "protocolVersion": "2025-06-18",
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "raw", "version": "1"},
                    }),
                    "tools/call" => {
                        kept.lock().unwrap().push(body.clone());
                        json!({"content": [{"type": "text", "text": "ok"}]})
                    }
                    "tools/list" => json!({"tools": []}),
                    _ if id.is_null() => return StatusCode::ACCEPTED.into_response(),
                    _ => json!({}),
                };
                axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
            }
        })
        .get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/mcp"), calls)
}

/// The raw JSON text of `params.<key>` in a JSON-RPC message.
fn raw_param(message: &str, key: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Msg {
        params: Box<serde_json::value::RawValue>,
    }
    let m: Msg = serde_json::from_str(message).unwrap();
    let p: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(m.params.get()).unwrap();
    p[key].get().to_owned()
}

#[tokio::test]
async fn the_relay_rewrites_meta_bytes_only_while_tracing_is_on() {
    const META: &str = r#"{ "z" :1,"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" , "x":"\u00e9" }"#;
    const ARGS: &str = r#"{ "b" : 1, "a":[1 ,2.50]}"#;
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"raw__t","arguments":{ARGS},"_meta":{META}}}}}"#
    );
    for tracing in [false, true] {
        let rx = OtlpReceiver::start().await.expect("receiver");
        let (url, calls) = raw_upstream().await;
        let env = Env::new();
        env.import(json!({ "raw": {"type": "streamable_http", "url": url} }));
        env.cli_ok(&["namespace", "create", "ns", "--server", "raw"]);
        env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
        let vars: Vec<(&str, &str)> = if tracing {
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint.as_str())]
        } else {
            Vec::new()
        };
        let gw = env.serve_with(&vars).await;
        let mut client = RawClient::new(&gw.mcp_url("ep"));
        client.initialize().await;
        let a = client.post_raw(body.clone()).await;
        assert_eq!(a.body["result"]["content"][0]["text"], "ok", "{}", a.body);
        let got = calls
            .lock()
            .unwrap()
            .pop()
            .expect("the upstream got the call");
        println!("tracing {tracing}: the upstream received {got}");
        assert_eq!(
            raw_param(&got, "arguments"),
            ARGS,
            "arguments byte for byte"
        );
        if tracing {
            let meta = raw_param(&got, "_meta");
            assert_ne!(meta, META, "tracing rewrites _meta");
            let v: Value = serde_json::from_str(&meta).unwrap();
            assert_eq!(v["z"], 1);
            assert_eq!(v["x"], "é");
            let tp = v["traceparent"].as_str().unwrap();
            assert_eq!(parts(tp).0, META_TRACE, "the client's trace goes on");
            assert_ne!(parts(tp).1, META_SPAN, "under the gateway's call span");
        } else {
            assert_eq!(raw_param(&got, "_meta"), META, "_meta byte for byte");
        }
        assert!(gw.stop().await.success());
    }
}

#[tokio::test]
async fn one_trace_through_two_gateways_over_legacy_sse() {
    // Client → gateway B (mcp) → gateway A's legacy SSE face → the HTTP fixture, both
    // gateways exporting to one receiver: A's request span is the child of B's upstream
    // call (from the SSE POST's traceparent header), and the fixture sees the same trace.
    let rx = OtlpReceiver::start().await.expect("receiver");
    let (_fx, env_a) = setup().await;
    let otel: &[(&str, &str)] = &[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ];
    let gw_a = env_a
        .serve_with(&[otel, &[("OTEL_SERVICE_NAME", "gateway-a")]].concat())
        .await;
    let env_b = Env::new();
    env_b.import(json!({ "inner": {"type": "sse", "url": gw_a.sse_url("ep")} }));
    env_b.cli_ok(&["namespace", "create", "outer", "--server", "inner"]);
    env_b.cli_ok(&[
        "endpoint",
        "create",
        "edge",
        "--namespace",
        "outer",
        "--no-auth",
    ]);
    let gw_b = env_b
        .serve_with(&[otel, &[("OTEL_SERVICE_NAME", "gateway-b")]].concat())
        .await;
    let client_tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let mut client = RawClient::new(&gw_b.mcp_url("edge")).header("traceparent", &client_tp);
    client.initialize().await;
    let a = client
        .request(
            "tools/call",
            json!({"name": "inner__remote__echo_meta", "arguments": {}}),
        )
        .await;
    let text = a.body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {}", a.body));
    let seen: Value = serde_json::from_str(text).unwrap();
    let (trace, fixture_parent) = parts(seen["traceparent"].as_str().expect("header"));
    assert_eq!(trace, CLIENT_TRACE);
    let spans = spans_until(&rx, |s| {
        s.iter()
            .filter(|x| x.trace_id == CLIENT_TRACE && x.name == "upstream tools/call")
            .count()
            == 2
    })
    .await;
    let trace_spans: Vec<ReceivedSpan> = spans
        .into_iter()
        .filter(|s| s.trace_id == CLIENT_TRACE)
        .collect();
    println!("one trace, two gateways:\n{}", render_tree(&trace_spans));
    let by = |service: &str, name: &str| {
        trace_spans
            .iter()
            .find(|s| s.service == service && s.name == name)
            .unwrap_or_else(|| panic!("{service} {name}:\n{}", render_tree(&trace_spans)))
            .clone()
    };
    let b_req = by("gateway-b", "tools/call");
    let b_up = by("gateway-b", "upstream tools/call");
    let a_req = by("gateway-a", "tools/call");
    let a_up = by("gateway-a", "upstream tools/call");
    assert_eq!(b_req.parent_span_id, CLIENT_SPAN);
    assert_eq!(b_up.parent_span_id, b_req.span_id);
    assert_eq!(a_req.parent_span_id, b_up.span_id, "B's call is A's parent");
    assert_eq!(a_req.attr("metamcp.face"), Some("sse"));
    assert_eq!(a_up.parent_span_id, a_req.span_id);
    assert_eq!(
        a_up.span_id, fixture_parent,
        "the fixture got A's call span"
    );
    assert!(gw_b.stop().await.success());
    assert!(gw_a.stop().await.success());
}

#[tokio::test]
async fn the_sampler_is_honoured_and_its_decision_passed_on() {
    // `always_off`: nothing is exported (the flush at the stop would deliver anything
    // queued), and the upstream still gets a context, marked not sampled (flags 00).
    let rx = OtlpReceiver::start().await.expect("receiver");
    let (_fx, env) = setup().await;
    let gw = env
        .serve_with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint.as_str()),
            ("OTEL_TRACES_SAMPLER", "always_off"),
        ])
        .await;
    let mut client = RawClient::new(&gw.mcp_url("ep"));
    client.initialize().await;
    let seen = echo_meta(&client, None).await;
    let tp = seen["meta"]["traceparent"]
        .as_str()
        .expect("_meta.traceparent");
    assert!(tp.ends_with("-00"), "not sampled: {tp}");
    assert!(gw.stop().await.success());
    let spans = rx.spans();
    assert!(spans.is_empty(), "{}", render_tree(&spans));
}
