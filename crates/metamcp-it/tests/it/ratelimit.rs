//! Rate limits per endpoint and per client (`endpoint create|update --rate/--client-rate`),
//! end to end: a refused JSON-RPC request gets an error carrying its id, delivered like its
//! answer would be (HTTP 200 JSON on `/mcp`, the stream for legacy `/message`); limits
//! follow `endpoint update` on a running gateway; `X-Forwarded-For` counts only from a
//! trusted proxy. Every request counts one unit, `initialize` (and a legacy `GET /sse`)
//! included; notifications do not.

use std::time::{Duration, Instant};

use metamcp_it::{Env, Gateway, RawAnswer, RawClient, eventually, fixture_stdio, mcp_client};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use crate::sse::LegacyClient;

/// The JSON-RPC code of a rate-limited request.
const RATE_LIMITED: i64 = -32000;

/// Namespace `ns` = {alpha}; the endpoints are created by `endpoints`.
fn env_with(endpoints: &[&[&str]]) -> Env {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    for args in endpoints {
        let mut all = vec!["endpoint", "create"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--namespace", "ns"]);
        env.cli_ok(&all);
    }
    env
}

fn echo(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "alpha__echo", "arguments": {"message": "hi"}}})
    .to_string()
}

fn initialize_body() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
           "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                      "clientInfo": {"name": "raw", "version": "1"}}})
    .to_string()
}

/// Asserts a rate-limit refusal of request `id` (HTTP 200, JSON-RPC error with that id) and
/// returns its message.
fn assert_limited(a: &RawAnswer, id: u64) -> String {
    assert_eq!(a.status, 200, "{}", a.body);
    assert_limited_message(&a.body, id)
}

fn assert_limited_message(v: &Value, id: u64) -> String {
    assert_eq!(v["id"], id, "{v}");
    assert_eq!(v["error"]["code"], RATE_LIMITED, "{v}");
    assert!(
        v["error"]["data"]["retryAfterSeconds"].as_u64().unwrap() >= 1,
        "{v}"
    );
    v["error"]["message"].as_str().unwrap().to_owned()
}

fn assert_answered(a: &RawAnswer, id: u64) {
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["id"], id, "{}", a.body);
    assert!(a.body.get("result").is_some(), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_limit_refuses_with_the_request_id_on_every_era() {
    let env = env_with(&[
        &["ep", "--rate", "4/60"],
        &["sdk", "--rate", "2/60"],
        &["batch", "--rate", "3/60"],
        &["modern", "--rate", "1/60"],
    ]);
    let key = env.key("k");
    let list = env.cli_ok(&["endpoint", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("ep\t") && l.contains("rate: 4/60, per client: off")),
        "{list}"
    );
    let gw = env.serve().await;

    // initialize + 3 calls fit in 4/60; the 4th call is refused with its own id, as JSON 200.
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200);
    for id in 2..=4 {
        assert_answered(&c.post_raw(echo(id)).await, id);
    }
    let refused = c.post_raw(echo(42)).await;
    let msg = assert_limited(&refused, 42);
    assert!(
        msg.starts_with("Rate limit exceeded on endpoint ep: 4 requests per 60 s; retry in "),
        "{msg}"
    );
    assert!(
        refused.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(refused.body["error"]["data"]["scope"], "endpoint");
    // Notifications are not limited and get their usual 202.
    let n = c
        .post_raw(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
        .await;
    assert_eq!(n.status, 202);
    // A new session on the exhausted endpoint: initialize is refused the same way.
    let mut other = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    assert_limited(&other.initialize().await, 1);

    // An SDK client sees an error, not a hang.
    let sdk = tokio::time::timeout(
        Duration::from_secs(20),
        mcp_client(&gw.mcp_url("sdk"), Some(&key)),
    )
    .await
    .expect("connect within 20 s")
    .expect("connect");
    let params = || {
        CallToolRequestParams::new("alpha__echo")
            .with_arguments(json!({"message": "x"}).as_object().unwrap().clone())
    };
    sdk.call_tool(params()).await.expect("first call fits");
    let err = tokio::time::timeout(Duration::from_secs(20), sdk.call_tool(params()))
        .await
        .expect("the refused call returns instead of hanging")
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("Rate limit exceeded on endpoint sdk"),
        "{text}"
    );
    match err {
        rmcp::ServiceError::McpError(e) => assert_eq!(i64::from(e.code.0), RATE_LIMITED),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
    // Its connect also fails promptly once the budget is gone.
    let again = tokio::time::timeout(
        Duration::from_secs(20),
        mcp_client(&gw.mcp_url("sdk"), Some(&key)),
    )
    .await
    .expect("connect attempt ends within 20 s");
    assert!(again.is_err());

    // A batch counts each request: initialize + 2 fit in 3/60, the third is refused in place.
    let mut b = RawClient::new(&gw.mcp_url("batch")).bearer(&key);
    assert_eq!(b.initialize().await.status, 200);
    let batch = format!("[{},{},{}]", echo(10), echo(11), echo(12));
    let a = b.post_raw(batch).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let items = a.body.as_array().unwrap();
    assert_eq!(items.len(), 3, "{}", a.body);
    let refused: Vec<&Value> = items.iter().filter(|v| v.get("error").is_some()).collect();
    assert_eq!(refused.len(), 1, "{}", a.body);
    let refused_id = refused[0]["id"].as_u64().unwrap();
    assert!((10..=12).contains(&refused_id));
    assert_limited_message(refused[0], refused_id);

    // The stateless era (2026-07-28, no session): same error, same id, JSON 200.
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}
    });
    let modern = RawClient::new(&gw.mcp_url("modern"))
        .bearer(&key)
        .header("mcp-protocol-version", "2026-07-28");
    let call = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "alpha__echo", "arguments": {"message": "x"}, "_meta": meta}})
        .to_string()
    };
    assert_answered(&modern.post_raw(call(5)).await, 5);
    assert_limited(&modern.post_raw(call(6)).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_has_its_own_client_budget() {
    let env = env_with(&[&["ep", "--client-rate", "2/60"]]);
    let k1 = env.key("one");
    let k2 = env.key("two");
    let gw = env.serve().await;
    let mut a = RawClient::new(&gw.mcp_url("ep")).bearer(&k1);
    let mut b = RawClient::new(&gw.mcp_url("ep")).bearer(&k2);
    assert_eq!(a.initialize().await.status, 200);
    assert_answered(&a.post_raw(echo(2)).await, 2);
    let refused = a.post_raw(echo(3)).await;
    let msg = assert_limited(&refused, 3);
    assert!(msg.contains("for this client"), "{msg}");
    assert_eq!(refused.body["error"]["data"]["scope"], "client");
    // Key two is untouched by key one's exhaustion, and is then limited on its own.
    assert_eq!(b.initialize().await.status, 200);
    assert_answered(&b.post_raw(echo(2)).await, 2);
    assert_limited(&b.post_raw(echo(3)).await, 3);
    assert_limited(&a.post_raw(echo(4)).await, 4);
}

/// Sends pings with fresh ids until `done` says the answer is what we wait for.
async fn poll_until(c: &RawClient, within: Duration, done: impl Fn(&Value) -> bool) -> bool {
    let next = std::sync::atomic::AtomicU64::new(100);
    eventually(within, || async {
        let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let a = c
            .post_raw(json!({"jsonrpc": "2.0", "id": id, "method": "ping"}).to_string())
            .await;
        (a.status == 200 && done(&a.body)).then_some(())
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_changed_with_the_cli_apply_to_a_running_gateway() {
    let env = env_with(&[&["ep"]]);
    let key = env.key("k");
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200);
    for id in 2..12 {
        assert_answered(&c.post_raw(echo(id)).await, id);
    }
    let limited = |v: &Value| v["error"]["code"] == RATE_LIMITED;

    // Set: refusals start within 2 s (the budget of 2 is spent by the polling itself).
    let out = env.cli_ok(&["endpoint", "update", "ep", "--rate", "2/60"]);
    assert!(out.contains("rate: 2/60"), "{out}");
    let t = Instant::now();
    assert!(
        poll_until(&c, Duration::from_secs(2), limited).await,
        "the new limit did not apply within 2 s"
    );
    eprintln!("limit applied after {:?}", t.elapsed());

    // Raised: the new limit takes over at once (a changed limit starts a fresh bucket).
    env.cli_ok(&["endpoint", "update", "ep", "--rate", "1000/60"]);
    assert!(
        poll_until(&c, Duration::from_secs(2), |v| v.get("result").is_some()).await,
        "the raised limit did not apply within 2 s"
    );
    // Removed: never refused again.
    env.cli_ok(&["endpoint", "update", "ep", "--rate", "5/60"]);
    assert!(poll_until(&c, Duration::from_secs(2), limited).await);
    env.cli_ok(&["endpoint", "update", "ep", "--rate", "off"]);
    assert!(
        poll_until(&c, Duration::from_secs(2), |v| v.get("result").is_some()).await,
        "removing the limit did not apply within 2 s"
    );
    for id in 500..520 {
        assert_answered(&c.post_raw(echo(id)).await, id);
    }
    let list = env.cli_ok(&["endpoint", "list"]);
    assert!(list.contains("rate: off, per client: off"), "{list}");
}

/// An `initialize` on `url` with `X-Forwarded-For: xff` (or none).
async fn init_from(url: &str, xff: Option<&str>) -> RawAnswer {
    let mut c = RawClient::new(url);
    if let Some(x) = xff {
        c = c.header("x-forwarded-for", x);
    }
    c.post_raw(initialize_body()).await
}

async fn serve_open(env: &Env, trusted: Option<&str>) -> Gateway {
    match trusted {
        Some(t) => env.serve_with(&[("METAMCP_TRUSTED_PROXIES", t)]).await,
        None => env.serve().await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let env = env_with(&[&["open", "--no-auth", "--client-rate", "2/60"]]);

    // Untrusted peer: X-Forwarded-For is ignored, every request is the peer's.
    let gw = serve_open(&env, None).await;
    let url = gw.mcp_url("open");
    assert_answered(&init_from(&url, Some("1.1.1.1")).await, 1);
    assert_answered(&init_from(&url, Some("2.2.2.2")).await, 1);
    assert_limited(&init_from(&url, Some("3.3.3.3")).await, 1);
    assert_limited(&init_from(&url, None).await, 1);
    gw.stop().await;

    // 127.0.0.1 trusted: the forwarded address is the client.
    let gw = serve_open(&env, Some("127.0.0.1")).await;
    let url = gw.mcp_url("open");
    assert_answered(&init_from(&url, Some("1.1.1.1")).await, 1);
    assert_answered(&init_from(&url, Some("1.1.1.1")).await, 1);
    assert_limited(&init_from(&url, Some("1.1.1.1")).await, 1);
    assert_answered(&init_from(&url, Some("2.2.2.2")).await, 1);
    // The proxy's own requests (no header) are the proxy's.
    assert_answered(&init_from(&url, None).await, 1);
    // A client cannot escape by prepending addresses: the rightmost untrusted one counts.
    assert_limited(&init_from(&url, Some("9.9.9.9, 1.1.1.1")).await, 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_refusals_arrive_on_the_stream_with_the_id() {
    let env = env_with(&[&["ep", "--rate", "4/60"]]);
    let key = env.key("k");
    let gw = env.serve().await;
    let auth = format!("Bearer {key}");
    // GET /sse (1) + initialize (2) + two calls (3, 4) fit; the third call is refused.
    let mut c = LegacyClient::open(&gw, &gw.sse_url("ep"), &[("authorization", &auth)])
        .await
        .expect("open the stream");
    assert!(c.initialize().await.get("result").is_some());
    for id in [7, 8] {
        let a = c
            .request(
                id,
                "tools/call",
                json!({"name": "alpha__echo", "arguments": {"message": "x"}}),
            )
            .await;
        assert!(a.get("result").is_some(), "{a}");
    }
    // `request` checks the POST got an empty 202 and reads the answer from the stream.
    let refused = c
        .request(
            9,
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "x"}}),
        )
        .await;
    let msg = assert_limited_message(&refused, 9);
    assert!(msg.contains("endpoint ep"), "{msg}");
    // Opening another stream is refused with HTTP 429 and Retry-After (no id to answer).
    let resp = reqwest::Client::new()
        .get(gw.sse_url("ep"))
        .header("accept", "text/event-stream")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_limits_are_one_line_errors() {
    let env = env_with(&[&["ep", "--rate", "10/60"]]);
    for args in [
        &[
            "endpoint",
            "create",
            "x",
            "--namespace",
            "ns",
            "--rate",
            "0/10",
        ][..],
        &[
            "endpoint",
            "create",
            "x",
            "--namespace",
            "ns",
            "--rate",
            "abc",
        ],
        &[
            "endpoint",
            "create",
            "x",
            "--namespace",
            "ns",
            "--client-rate",
            "5/0",
        ],
        &["endpoint", "update", "ep", "--rate", "off/3"],
        &["endpoint", "update", "ep", "--client-rate", "-1/60"],
        &["endpoint", "update", "ep"],
        &["endpoint", "update", "missing", "--rate", "1/1"],
    ] {
        let o = env.cli(args);
        assert!(!o.ok, "{args:?} succeeded: {}", o.stdout);
        assert_eq!(o.stderr.trim().lines().count(), 1, "{args:?}: {}", o.stderr);
        assert!(o.stderr.starts_with("error: "), "{args:?}: {}", o.stderr);
    }
    // Nothing was created or changed.
    let list = env.cli_ok(&["endpoint", "list"]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.contains("rate: 10/60, per client: off"), "{list}");
    let out = env.cli_ok(&["endpoint", "update", "ep", "--client-rate", "3/1"]);
    assert_eq!(
        out.trim(),
        "updated endpoint ep: rate: 10/60, per client: 3/1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_face_answers_429_with_retry_after() {
    let env = env_with(&[&["rest", "--no-auth", "--rate", "2/60"]]);
    let gw = env.serve().await;
    let url = gw.mcp_url("rest").replace("/mcp", "/api/alpha__echo");
    let http = reqwest::Client::new();
    let post = || async {
        http.post(&url)
            .json(&json!({"message": "hi"}))
            .send()
            .await
            .unwrap()
    };
    for _ in 0..2 {
        let r = post().await;
        assert_eq!(r.status().as_u16(), 200);
    }
    let r = post().await;
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    // The MCP face of the same endpoint shares the budget.
    let c = RawClient::new(&gw.mcp_url("rest"));
    let a = c.post_raw(initialize_body()).await;
    assert_limited(&a, 1);
}
