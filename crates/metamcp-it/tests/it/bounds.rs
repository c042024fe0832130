//! Every bound on what a client or an upstream can make the gateway hold, hit on purpose
//! (set low through its `METAMCP_*` variable): the refusal is clear, it costs only the
//! client that hit it, and the gateway keeps serving everyone else.

use std::time::Duration;

use metamcp_it::{Env, FixtureHttp, Gateway, RawClient, eventually, fixture_stdio};
use serde_json::{Value, json};

use crate::first_text;
use crate::sse::LegacyClient;

/// A gateway with namespace {alpha} (stdio, conformance tools) on endpoint `ep` (keyed) and
/// `open` (no auth); two keys.
async fn gateway(limits: &[(&str, &str)]) -> (Env, Gateway, String, String) {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &["--conformance"]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    env.cli_ok(&[
        "endpoint",
        "create",
        "open",
        "--namespace",
        "ns",
        "--no-auth",
    ]);
    let k1 = env.key("k1");
    let k2 = env.key("k2");
    let gw = env.serve_with(limits).await;
    (env, gw, k1, k2)
}

/// The bound named in a refusal (`error.data.limit`), if the answer is one.
fn refused_by(body: &Value) -> Option<&str> {
    body["error"]["data"]["limit"].as_str()
}

async fn initialize(c: &mut RawClient) -> Value {
    c.initialize().await.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_bounded_per_client_and_per_endpoint() {
    let (_env, gw, k1, k2) = gateway(&[
        ("METAMCP_MAX_SESSIONS_PER_CLIENT", "3"),
        ("METAMCP_MAX_SESSIONS_PER_ENDPOINT", "5"),
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&k1);
        let init = initialize(&mut c).await;
        assert!(c.session.is_some(), "{init}");
        held.push(c);
    }
    let mut fourth = RawClient::new(&gw.mcp_url("ep")).bearer(&k1);
    let refused = initialize(&mut fourth).await;
    assert_eq!(
        refused_by(&refused),
        Some("METAMCP_MAX_SESSIONS_PER_CLIENT"),
        "{refused}"
    );
    assert_eq!(
        refused["id"], 1,
        "the refusal answers the request: {refused}"
    );
    assert!(fourth.session.is_none());
    // Another key is not affected by k1's bound — only by the endpoint's.
    for _ in 0..2 {
        let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&k2);
        initialize(&mut c).await;
        assert!(c.session.is_some());
        held.push(c);
    }
    let mut sixth = RawClient::new(&gw.mcp_url("ep")).bearer(&k2);
    let refused = initialize(&mut sixth).await;
    assert_eq!(
        refused_by(&refused),
        Some("METAMCP_MAX_SESSIONS_PER_ENDPOINT"),
        "{refused}"
    );
    // Sessions still work, and an ended one frees its place.
    let a = held[0]
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "ok"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "ok");
    assert_eq!(held[0].delete().await, 204);
    initialize(&mut sixth).await;
    assert!(sixth.session.is_some());
    // A legacy SSE session counts too, refused with 429 (no JSON-RPC request to answer).
    let auth = format!("Bearer {k1}");
    let denied = LegacyClient::open(&gw, &gw.sse_url("ep"), &[("authorization", &auth)]).await;
    let Err((status, body)) = denied else {
        panic!("a legacy session beyond the bound was opened");
    };
    assert_eq!(status, 429, "{body}");
    assert!(
        body.to_string().contains("METAMCP_MAX_SESSIONS_PER_"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_are_bounded_per_ip() {
    let (_env, gw, _, _) = gateway(&[("METAMCP_MAX_SESSIONS_PER_CLIENT", "2")]).await;
    let from = |ip: [u8; 4]| {
        let http = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap();
        RawClient::with_http(http, &gw.mcp_url("open"))
    };
    for _ in 0..2 {
        let mut c = from([127, 0, 0, 1]);
        initialize(&mut c).await;
        assert!(c.session.is_some());
    }
    let mut third = from([127, 0, 0, 1]);
    let refused = initialize(&mut third).await;
    assert_eq!(
        refused_by(&refused),
        Some("METAMCP_MAX_SESSIONS_PER_CLIENT"),
        "{refused}"
    );
    // Another address is another client.
    let mut elsewhere = from([127, 0, 0, 2]);
    initialize(&mut elsewhere).await;
    assert!(elsewhere.session.is_some(), "127.0.0.2 was refused");
}

fn slow_with_progress(id: u64, steps: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "alpha__slow", "arguments": {"steps": steps, "delay_ms": 100},
        "_meta": {"progressToken": id}}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_holds_a_bounded_number_of_streams() {
    let (_env, gw, k1, _) = gateway(&[("METAMCP_MAX_STREAMS_PER_SESSION", "2")]).await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&k1);
    initialize(&mut c).await;
    let _get = c.open_stream().await;
    // The long call holds the second slot from its first progress on; waiting for that
    // event (not for time to pass) makes the probe below meet it holding the slot.
    let (st, mut long) = c.post_stream(slow_with_progress(7, 60)).await;
    assert_eq!(st, 200);
    let first = tokio::time::timeout(Duration::from_secs(30), long.recv())
        .await
        .expect("the long call's first progress")
        .expect("an event");
    assert_eq!(first["method"], "notifications/progress", "{first}");
    let (_, _, events) = c.post_events(slow_with_progress(8, 1)).await;
    let refused = events.last().cloned().expect("an answer");
    assert_eq!(
        refused_by(&refused),
        Some("METAMCP_MAX_STREAMS_PER_SESSION")
    );
    assert_eq!(refused["id"], 8, "{refused}");
    // A plain call is not a stream: still served.
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "plain"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "plain");
    let mut last = first;
    while let Some(ev) = long.recv().await {
        last = ev;
    }
    assert_eq!(last["id"], 7, "{last}");
    // The finished stream gave its slot back.
    let (_, ct, events) = c.post_events(slow_with_progress(9, 1)).await;
    assert!(ct.starts_with("text/event-stream"), "{ct}: {events:?}");
    assert_eq!(events.last().unwrap()["id"], 9, "{events:?}");
}

/// The per-request protocol context of a 2026-07-28 request.
fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}
    })
}

fn stateless(gw: &Gateway, key: &str) -> RawClient {
    RawClient::new(&gw.mcp_url("ep"))
        .bearer(key)
        .header("mcp-protocol-version", "2026-07-28")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_stateless_calls_are_bounded_per_client() {
    // A Streamable HTTP upstream: its questions travel on each call's own stream, so
    // several calls can wait for their clients at once (on a shared stdio process only a
    // sole call can be asked).
    let web = FixtureHttp::start("alpha", &["--conformance"])
        .await
        .unwrap();
    let env = Env::new();
    env.import(json!({ "alpha": {"type": "streamable_http", "url": web.url} }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    let k1 = env.key("k1");
    let k2 = env.key("k2");
    let gw = env
        .serve_with(&[("METAMCP_MAX_PARKED_PER_CLIENT", "1")])
        .await;
    let ask = json!({"name": "alpha__test_elicitation", "arguments": {"message": "?"},
                     "_meta": meta()});
    let a = stateless(&gw, &k1).request("tools/call", ask.clone()).await;
    assert_eq!(
        a.body["result"]["resultType"], "input_required",
        "{}",
        a.body
    );
    let b = stateless(&gw, &k1).request("tools/call", ask.clone()).await;
    assert_eq!(
        refused_by(&b.body),
        Some("METAMCP_MAX_PARKED_PER_CLIENT"),
        "{}",
        b.body
    );
    // Another client parks its own.
    let c = stateless(&gw, &k2).request("tools/call", ask.clone()).await;
    assert_eq!(
        c.body["result"]["resultType"], "input_required",
        "{}",
        c.body
    );
    // Answering the parked call frees the place.
    let r = &a.body["result"];
    let (input_key, _) = r["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let mut retry = ask.clone();
    retry["requestState"] = r["requestState"].clone();
    retry["inputResponses"] =
        json!({ input_key: {"action": "accept", "content": {"username": "u", "email": "e@x.y"}} });
    let done = stateless(&gw, &k1).request("tools/call", retry).await;
    assert_eq!(
        done.body["result"]["resultType"], "complete",
        "{}",
        done.body
    );
    let again = stateless(&gw, &k1).request("tools/call", ask).await;
    assert_eq!(
        again.body["result"]["resultType"], "input_required",
        "{}",
        again.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_bounded_per_session() {
    let (_env, gw, k1, _) = gateway(&[("METAMCP_MAX_SUBSCRIPTIONS_PER_SESSION", "2")]).await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&k1);
    initialize(&mut c).await;
    for uri in [
        "test://static-text",
        "test://static-binary",
        "test://static-text",
    ] {
        let a = c.request("resources/subscribe", json!({"uri": uri})).await;
        assert_eq!(a.body["result"], json!({}), "{uri}: {}", a.body);
    }
    let a = c
        .request(
            "resources/subscribe",
            json!({"uri": "test://watched-resource"}),
        )
        .await;
    assert_eq!(
        refused_by(&a.body),
        Some("METAMCP_MAX_SUBSCRIPTIONS_PER_SESSION"),
        "{}",
        a.body
    );
    // A listen stream asking for more than the bound is refused before anything is held.
    let listen = stateless(&gw, &k1)
        .request(
            "subscriptions/listen",
            json!({"notifications": {"resourceSubscriptions":
                ["test://static-text", "test://static-binary", "test://watched-resource"]},
                "_meta": meta()}),
        )
        .await;
    assert_eq!(
        refused_by(&listen.body),
        Some("METAMCP_MAX_SUBSCRIPTIONS_PER_SESSION"),
        "{}",
        listen.body
    );
}

/// `depth` nested arrays around a value, as JSON text.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_nesting_is_bounded_on_every_face() {
    let (_env, gw, k1, _) = gateway(&[("METAMCP_MAX_JSON_DEPTH", "16")]).await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&k1);
    initialize(&mut c).await;
    // The envelope, params and arguments are 3 levels: 13 more fit, 14 do not.
    let call = |depth: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"alpha__echo","arguments":{{"message":"deep","extra":{}}}}}}}"#,
            nested(depth)
        )
    };
    let ok = c.post_raw(call(13)).await;
    assert_eq!(first_text(&ok.body["result"]), "deep", "{}", ok.body);
    let deep = c.post_raw(call(14)).await;
    assert_eq!(deep.status, 400, "{}", deep.body);
    assert!(
        deep.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("METAMCP_MAX_JSON_DEPTH")),
        "{}",
        deep.body
    );
    // 100,000 levels (what the relay used to forward) are refused the same way.
    let huge = c.post_raw(call(100_000)).await;
    assert_eq!(huge.status, 400);
    // The stateless face and the legacy SSE face too.
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{{"_meta":{},"x":{}}}}}"#,
        meta(),
        nested(20)
    );
    let a = stateless(&gw, &k1).post_raw(body).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let auth = format!("Bearer {k1}");
    let legacy = LegacyClient::open(&gw, &gw.sse_url("ep"), &[("authorization", &auth)])
        .await
        .expect("open");
    let v: Value = serde_json::from_str(&format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"ping","params":{{"x":{}}}}}"#,
        nested(20)
    ))
    .unwrap_or(Value::Null);
    assert_ne!(v, Value::Null);
    let (status, _) = legacy.post(&v).await;
    assert_eq!(status, 400);
    // The gateway still serves.
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "after"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upstream_message_fails_only_its_own_call() {
    let limit = 64 * 1024;
    let limit_s = limit.to_string();
    let http = FixtureHttp::start("web", &[]).await.unwrap();
    let env = Env::new();
    env.import(json!({
        "alpha": fixture_stdio("alpha", &[]),
        "web": {"type": "streamable_http", "url": http.url},
    }));
    env.cli_ok(&[
        "namespace",
        "create",
        "ns",
        "--server",
        "alpha",
        "--server",
        "web",
    ]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env
        .serve_with(&[
            ("METAMCP_MAX_UPSTREAM_MESSAGE_BYTES", &limit_s),
            ("METAMCP_MAX_BODY_BYTES", &limit_s),
        ])
        .await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    initialize(&mut c).await;
    for server in ["alpha", "web"] {
        // A call in flight on the same upstream while the oversized answer arrives.
        let slow = {
            let c = c.clone();
            let name = format!("{server}__slow");
            tokio::spawn(async move {
                c.request(
                    "tools/call",
                    json!({"name": name, "arguments": {"steps": 3, "delay_ms": 100}}),
                )
                .await
            })
        };
        let big = c
            .request(
                "tools/call",
                json!({"name": format!("{server}__blob"), "arguments": {"size": limit * 2}}),
            )
            .await;
        assert!(
            big.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("METAMCP_MAX_UPSTREAM_MESSAGE_BYTES")),
            "{server}: {}",
            big.body
        );
        let slow = tokio::time::timeout(Duration::from_secs(10), slow)
            .await
            .expect("the other call hung")
            .unwrap();
        assert_eq!(
            first_text(&slow.body["result"]),
            "done after 3 steps",
            "{server}"
        );
        let fits = c
            .request(
                "tools/call",
                json!({"name": format!("{server}__blob"), "arguments": {"size": limit / 2}}),
            )
            .await;
        assert_eq!(
            first_text(&fits.body["result"]).len(),
            limit / 2,
            "{server}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_of_any_bytes_is_captured_and_keeps_draining() {
    let (env, gw, k1, _) = gateway(&[]).await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&k1);
    initialize(&mut c).await;
    let write = |hex: String| {
        let c = c.clone();
        async move {
            let a = c
                .request(
                    "tools/call",
                    json!({"name": "alpha__stderr_bytes", "arguments": {"message": hex}}),
                )
                .await;
            first_text(&a.body["result"])
        }
    };
    let hex = |s: &[u8]| s.iter().map(|b| format!("{b:02x}")).collect::<String>();
    // Invalid UTF-8, then a 1 MiB line, then a marker: every write succeeds (the pipe is
    // still read) and the marker reaches the server's log.
    assert_eq!(write(hex(b"bad \xff\xfe bytes")).await, "wrote 12 bytes");
    assert_eq!(
        write("41".repeat(1 << 20)).await,
        format!("wrote {} bytes", 1 << 20)
    );
    assert_eq!(write(hex(b"after-marker")).await, "wrote 12 bytes");
    let logs = eventually(Duration::from_secs(10), || {
        let out = env.cli(&["logs", "alpha", "--lines", "200"]).stdout;
        async move { out.contains("after-marker").then_some(out) }
    })
    .await
    .expect("stderr after invalid bytes never reached the log");
    assert!(logs.contains("bad \u{fffd}\u{fffd} bytes"), "{logs}");
    assert!(logs.contains("(line cut)"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_at_the_body_limit_fails_no_other_client() {
    let limit: usize = 4 * 1024 * 1024;
    let (_env, gw, k1, k2) = gateway(&[("METAMCP_MAX_BODY_BYTES", &limit.to_string())]).await;
    let mut big = RawClient::new(&gw.mcp_url("ep")).bearer(&k1);
    initialize(&mut big).await;
    let envelope = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"message":""}}}"#;
    let message = "m".repeat(limit - envelope.len());
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "alpha__echo", "arguments": {"message": message}}})
    .to_string();
    assert_eq!(body.len(), limit);
    let mut others = Vec::new();
    for i in 0..20 {
        let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&k2);
        initialize(&mut c).await;
        others.push(tokio::spawn(async move {
            let a = c
                .request(
                    "tools/call",
                    json!({"name": "alpha__echo", "arguments": {"message": format!("small-{i}")}}),
                )
                .await;
            first_text(&a.body["result"])
        }));
    }
    let answer = big.post_raw(body).await;
    assert_eq!(
        first_text(&answer.body["result"]).len(),
        message.len(),
        "the call at the limit failed: {}",
        answer
            .body
            .to_string()
            .chars()
            .take(300)
            .collect::<String>()
    );
    for (i, o) in others.into_iter().enumerate() {
        assert_eq!(o.await.unwrap(), format!("small-{i}"));
    }
}
