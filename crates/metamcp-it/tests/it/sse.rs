//! The legacy HTTP+SSE transport (MCP 2024-11-05) on both sides of the gateway: a raw
//! legacy client on `/metamcp/EP/sse` + `/message`, with its auth and session binding; a
//! gateway used as the legacy SSE upstream of another; and the official
//! `@modelcontextprotocol/server-everything` in `sse` mode as an upstream (skipped where Node
//! or the package is missing, except in CI where that is a failure).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use metamcp_it::{Env, Gateway, eventually, fixture_stdio, free_port, mcp_client};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::first_text;
use crate::interop::everything;

/// How long a test waits for one event on a stream.
const EVENT_WAIT: Duration = Duration::from_secs(20);

/// A legacy SSE client written against the wire: one GET stream, messages POSTed to the
/// URL of its `endpoint` event, every answer read from the stream.
pub(crate) struct LegacyClient {
    http: reqwest::Client,
    headers: Vec<(String, String)>,
    stream: reqwest::Response,
    buf: Vec<u8>,
    /// The `endpoint` event's data, as sent.
    endpoint: String,
    /// The URL POSTs go to (the endpoint resolved against the gateway).
    message_url: String,
}

impl LegacyClient {
    /// Opens `sse_url` with `headers`; the refusal's status and body when it is not 200.
    pub(crate) async fn open(
        gw: &Gateway,
        sse_url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, (u16, Value)> {
        let http = reqwest::Client::new();
        let mut req = http.get(sse_url).header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let stream = req.send().await.expect("GET /sse");
        let status = stream.status().as_u16();
        if status != 200 {
            let body = stream.json().await.unwrap_or(Value::Null);
            return Err((status, body));
        }
        let ct = stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        let mut c = LegacyClient {
            http,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            stream,
            buf: Vec::new(),
            endpoint: String::new(),
            message_url: String::new(),
        };
        let (event, data) = c.next_event().await;
        assert_eq!(event, "endpoint", "the first event names the POST URL");
        c.message_url = format!("{}{data}", gw.base);
        c.endpoint = data;
        Ok(c)
    }

    /// The next event (type, data); comments (keep-alives) are skipped.
    pub(crate) async fn next_event(&mut self) -> (String, String) {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("UTF-8 event");
                let mut event = "message".to_owned();
                let mut data: Vec<&str> = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return (event, data.join("\n"));
            }
            let chunk = tokio::time::timeout(EVENT_WAIT, self.stream.chunk())
                .await
                .expect("an event within the wait")
                .expect("read the stream")
                .expect("the stream ended");
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// POSTs `body` to `url` with this client's headers; status and body.
    async fn post_to(&self, url: &str, body: &Value) -> (u16, Value) {
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let resp = req.body(body.to_string()).send().await.expect("POST");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub(crate) async fn post(&self, body: &Value) -> (u16, Value) {
        self.post_to(&self.message_url, body).await
    }

    /// POSTs requests `(id, method, params)`; each is accepted with an empty 202, and the
    /// answers, read from the stream, are returned by id.
    async fn requests(&mut self, calls: &[(u64, &str, Value)]) -> HashMap<u64, Value> {
        for (id, method, params) in calls {
            let (status, body) = self
                .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
                .await;
            assert_eq!(status, 202, "{method}: {body}");
            assert_eq!(body, Value::String(String::new()), "no answer in the POST");
        }
        let mut answers = HashMap::new();
        while answers.len() < calls.len() {
            let (event, data) = self.next_event().await;
            assert_eq!(event, "message", "{data}");
            let v: Value = serde_json::from_str(&data).expect("JSON-RPC message");
            if let Some(id) = v["id"].as_u64() {
                answers.insert(id, v);
            }
        }
        answers
    }

    pub(crate) async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.requests(&[(id, method, params)])
            .await
            .remove(&id)
            .expect("the answer")
    }

    pub(crate) async fn initialize(&mut self) -> Value {
        let init = self
            .request(
                1,
                "initialize",
                json!({"protocolVersion": "2024-11-05", "capabilities": {},
                       "clientInfo": {"name": "legacy", "version": "1"}}),
            )
            .await;
        let (status, _) = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(status, 202);
        init
    }
}

/// Endpoints `ep` (header keys only) and `q` (query auth) on namespace {alpha}, two keys.
async fn setup() -> (Env, Gateway, String, String) {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    env.cli_ok(&[
        "endpoint",
        "create",
        "q",
        "--namespace",
        "ns",
        "--query-auth",
    ]);
    let k1 = env.key("one");
    let k2 = env.key("two");
    let gw = env.serve().await;
    (env, gw, k1, k2)
}

fn bearer(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_sse_client_lists_and_calls_tools() {
    let (_env, gw, k1, _k2) = setup().await;
    let (h, v) = bearer(&k1);
    let mut c = LegacyClient::open(&gw, &gw.sse_url("ep"), &[(h, &v)])
        .await
        .expect("open");
    assert!(
        c.endpoint.starts_with("/metamcp/ep/message?sessionId="),
        "{}",
        c.endpoint
    );

    let init = c.initialize().await;
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "metamcp");
    assert!(init["result"]["capabilities"]["tools"].is_object());

    let list = c.request(2, "tools/list", json!({})).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"alpha__echo"), "{names:?}");

    let call = c
        .request(
            3,
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "over legacy sse"}}),
        )
        .await;
    assert_eq!(first_text(&call["result"]), "over legacy sse", "{call}");

    // Answers come as they are ready, not in POST order: a slow call does not hold up a
    // quick one sent after it.
    let answers = c
        .requests(&[
            (
                4,
                "tools/call",
                json!({"name": "alpha__slow", "arguments": {"steps": 3, "delay_ms": 300}}),
            ),
            (
                5,
                "tools/call",
                json!({"name": "alpha__echo", "arguments": {"message": "quick"}}),
            ),
            (6, "tools/call", json!({"name": "alpha__nope"})),
            (7, "ping", json!({})),
        ])
        .await;
    assert_eq!(first_text(&answers[&5]["result"]), "quick");
    assert!(
        first_text(&answers[&4]["result"]).contains("done after 3 steps"),
        "{}",
        answers[&4]
    );
    assert_eq!(answers[&6]["error"]["code"], -32602, "{}", answers[&6]);
    assert_eq!(answers[&7]["result"], json!({}));

    // Malformed messages are refused in the POST itself.
    let url = c.message_url.clone();
    let bad = c
        .http
        .post(&url)
        .bearer_auth(&k1)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let (status, _) = c
        .post(&json!([{"jsonrpc": "2.0", "id": 9, "method": "ping"}]))
        .await;
    assert_eq!(status, 400, "no batches on this transport");

    // When the stream closes (client gone), the session goes with it.
    let http = c.http.clone();
    drop(c);
    let gone = eventually(Duration::from_secs(10), || async {
        let r = http
            .post(&url)
            .bearer_auth(&k1)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string())
            .send()
            .await
            .ok()?;
        (r.status() == 404).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the session outlived its stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_auth_and_session_binding() {
    let (_env, gw, k1, k2) = setup().await;
    let sse = gw.sse_url("ep");

    // The GET needs a valid key, from a header (the query only where enabled).
    for headers in [vec![], vec![("x-api-key", "sk_mt_nope")]] {
        let (status, body) = LegacyClient::open(&gw, &sse, &headers)
            .await
            .err()
            .expect("refused");
        assert_eq!(status, 401, "{headers:?}");
        assert_eq!(body["error"], "unauthorized");
    }
    let refused = LegacyClient::open(&gw, &format!("{sse}?api_key={k1}"), &[])
        .await
        .err()
        .expect("no query auth on ep");
    assert_eq!(refused.0, 401);
    let missing = LegacyClient::open(&gw, &gw.sse_url("missing"), &[("x-api-key", &k1)])
        .await
        .err()
        .expect("no such endpoint");
    assert_eq!(missing.0, 404);

    let mut c = LegacyClient::open(&gw, &sse, &[("x-api-key", &k1)])
        .await
        .expect("open");
    c.initialize().await;
    let sid = c
        .endpoint
        .split_once("sessionId=")
        .map(|(_, s)| s.to_owned())
        .unwrap();
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let http = reqwest::Client::new();
    let post = |url: String, key: Option<String>| {
        let http = http.clone();
        let ping = ping.clone();
        async move {
            let mut req = http
                .post(url)
                .header("content-type", "application/json")
                .body(ping.to_string());
            if let Some(k) = key {
                req = req.header("x-api-key", k);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Every POST needs the key; the session id is no credential.
    let (status, body) = post(c.message_url.clone(), None).await;
    assert_eq!(status, 401, "{body}");
    // Same session id, another valid key: unknown.
    let (status, body) = post(c.message_url.clone(), Some(k2.clone())).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert!(body["id"].is_null());
    // Same session id and key on another endpoint: unknown.
    let other_ep = format!("{}/metamcp/q/message?sessionId={sid}", gw.base);
    assert_eq!(post(other_ep, Some(k1.clone())).await.0, 404);
    // The id means nothing to the Streamable HTTP face either.
    let mut streamable = metamcp_it::RawClient::new(&gw.mcp_url("ep")).bearer(&k1);
    streamable.session = Some(sid.clone());
    assert_eq!(streamable.request("ping", json!({})).await.status, 404);
    // No session id, and an unknown one.
    let base = format!("{}/metamcp/ep/message", gw.base);
    let (status, body) = post(base.clone(), Some(k1.clone())).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], -32600);
    let unknown = format!("{base}?sessionId={}", "0".repeat(32));
    assert_eq!(post(unknown, Some(k1.clone())).await.0, 404);
    // The session id is not read as a key.
    let as_key = format!("{base}?sessionId={sid}&api_key={sid}");
    assert_eq!(post(as_key, None).await.0, 401);
    // The owner still works, the answer on its stream.
    let (status, _) = post(c.message_url.clone(), Some(k1.clone())).await;
    assert_eq!(status, 202);
    let (event, data) = c.next_event().await;
    assert_eq!(event, "message");
    assert_eq!(serde_json::from_str::<Value>(&data).unwrap()["id"], 2);

    // Query auth where the endpoint enables it: on the GET and on every POST.
    let q_sse = format!("{}?api_key={k1}", gw.sse_url("q"));
    let mut q = LegacyClient::open(&gw, &q_sse, &[]).await.expect("open q");
    assert!(q.endpoint.starts_with("/metamcp/q/message?sessionId="));
    let (status, _) = post(q.message_url.clone(), None).await;
    assert_eq!(status, 401, "the key must come with every POST");
    let with_key = format!("{}&apikey={k1}", q.message_url);
    assert_eq!(post(with_key, None).await.0, 202);
    let (_, data) = q.next_event().await;
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap()["result"],
        json!({})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_is_the_legacy_sse_upstream_of_another() {
    // Gateway A serves the fixture on a keyed endpoint; gateway B reaches it over legacy SSE
    // with the key as a bearer token, as a custom header, and (wrongly) a bad token.
    let (env_a, mut gw_a, key_a, _) = setup().await;
    let env_b = Env::new();
    let url = gw_a.sse_url("ep");
    env_b.import(json!({
        "front": {"type": "sse", "url": url, "bearerToken": key_a},
        "side": {"type": "sse", "url": url, "headers": {"X-API-Key": key_a}},
        "bad": {"type": "sse", "url": url, "bearerToken": format!("sk_mt_{}", "x".repeat(64))},
    }));
    env_b.cli_ok(&[
        "namespace",
        "create",
        "outer",
        "--server",
        "front",
        "--server",
        "side",
        "--server",
        "bad",
    ]);
    env_b.cli_ok(&["endpoint", "create", "edge", "--namespace", "outer"]);
    let key_b = env_b.key("b");
    let gw_b = env_b.serve().await;
    let client = mcp_client(&gw_b.mcp_url("edge"), Some(&key_b))
        .await
        .expect("connect");
    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        tools.contains(&"front__alpha__echo".to_owned()),
        "{tools:?}"
    );
    assert!(tools.contains(&"side__alpha__echo".to_owned()), "{tools:?}");
    for server in ["front", "side"] {
        let mut args = serde_json::Map::new();
        args.insert("message".into(), json!(format!("via {server}")));
        let r = client
            .call_tool(
                CallToolRequestParams::new(format!("{server}__alpha__echo")).with_arguments(args),
            )
            .await
            .expect("call");
        assert_eq!(
            first_text(&serde_json::to_value(&r).unwrap()),
            format!("via {server}")
        );
    }
    let refused = client
        .call_tool(CallToolRequestParams::new("bad__alpha__echo"))
        .await
        .expect_err("a bad token is refused upstream");
    assert!(refused.to_string().contains("401"), "{refused}");

    // The upstream dies mid-call: the call fails at once, not at its timeout.
    let slow_client = client.peer().clone();
    let slow = tokio::spawn(async move {
        let mut args = serde_json::Map::new();
        args.insert("steps".into(), json!(100));
        args.insert("delay_ms".into(), json!(100));
        slow_client
            .call_tool(CallToolRequestParams::new("front__alpha__slow").with_arguments(args))
            .await
    });
    // The fixture says on stderr when the call reached it (gateway A's server log).
    let reached = eventually(Duration::from_secs(10), || {
        let logs = env_a.cli(&["logs", "alpha"]).stdout;
        async move { logs.contains("slow started (100 steps)").then_some(()) }
    })
    .await;
    assert!(reached.is_some(), "the call never reached the fixture");
    gw_a.child.kill().await.expect("kill gateway A");
    let started = tokio::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(5), slow)
        .await
        .expect("the call failed at once")
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    client.cancel().await.ok();
}

/// Forces every `listen` onto 127.0.0.1: server-everything listens on all interfaces.
const LOOPBACK_PRELOAD: &str = r#"
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    if (typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  } else if (first && typeof first === "object" && first.path === undefined) {
    args[0] = { ...first, host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};
"#;

/// server-everything in legacy SSE mode on 127.0.0.1:`port`, once it accepts connections.
async fn everything_sse(script: &Path, preload: &Path, port: u16) -> Child {
    let child = Command::new("node")
        .arg("--require")
        .arg(preload)
        .arg(script)
        .arg("sse")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node");
    let up = eventually(Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    assert!(up.is_some(), "server-everything did not listen on {port}");
    child
}

/// Whether something listens on `port` on all IPv4 or IPv6 interfaces.
fn listens_on_all_interfaces(port: u16) -> bool {
    let wildcard_v4 = format!("00000000:{port:04X}");
    let wildcard_v6 = format!("00000000000000000000000000000000:{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3
                    && (cols[1] == wildcard_v4 || cols[1] == wildcard_v6)
                    && cols[3] == "0A"
            })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_as_a_legacy_sse_upstream() {
    let Some(script) = everything() else { return };
    let env = Env::new();
    let preload = env.dir.path().join("loopback.cjs");
    std::fs::write(&preload, LOOPBACK_PRELOAD).unwrap();
    let port = free_port();
    let mut node = everything_sse(&script, &preload, port).await;
    assert!(
        !listens_on_all_interfaces(port),
        "server-everything must listen on loopback only"
    );

    env.import(json!({
        "everything": {"type": "sse", "url": format!("http://127.0.0.1:{port}/sse")}
    }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "everything"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    let key = env.key("k");
    let gw = env.serve().await;
    let client = mcp_client(&gw.mcp_url("ep"), Some(&key))
        .await
        .expect("connect");
    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(tools.contains(&"everything__echo".to_owned()), "{tools:?}");
    let echo = |message: &str| {
        let mut args = serde_json::Map::new();
        args.insert("message".into(), json!(message));
        CallToolRequestParams::new("everything__echo").with_arguments(args)
    };
    let r = client
        .call_tool(echo("hello legacy sse"))
        .await
        .expect("call");
    let text = first_text(&serde_json::to_value(&r).unwrap());
    assert!(text.contains("hello legacy sse"), "{text}");

    // The upstream goes away: calls fail; it comes back: the gateway reconnects on use.
    node.kill().await.expect("kill node");
    let failed = client.call_tool(echo("while down")).await;
    assert!(failed.is_err(), "{failed:?}");
    let _node = everything_sse(&script, &preload, port).await;
    let back = eventually(Duration::from_secs(30), || async {
        client.call_tool(echo("after restart")).await.ok()
    })
    .await
    .expect("the gateway reconnects to the restarted upstream");
    let text = first_text(&serde_json::to_value(&back).unwrap());
    assert!(text.contains("after restart"), "{text}");
    client.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_sse_client_gets_progress_on_its_stream() {
    let (_env, gw, k1, _k2) = setup().await;
    let (h, v) = bearer(&k1);
    let mut c = LegacyClient::open(&gw, &gw.sse_url("ep"), &[(h, &v)])
        .await
        .expect("open");
    c.initialize().await;
    let (status, _) = c
        .post(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                       "params": {"name": "alpha__slow", "arguments": {"steps": 3, "delay_ms": 20},
                                  "_meta": {"progressToken": "legacy-tok"}}}))
        .await;
    assert_eq!(status, 202);
    let mut progress = 0;
    loop {
        let (_, data) = c.next_event().await;
        let v: Value = serde_json::from_str(&data).expect("JSON-RPC message");
        if v["method"] == "notifications/progress" {
            assert_eq!(v["params"]["progressToken"], "legacy-tok", "{v}");
            progress += 1;
        } else if v["id"] == 9 {
            assert!(
                v["result"].to_string().contains("done after 3 steps"),
                "{v}"
            );
            break;
        }
    }
    assert_eq!(progress, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_sse_client_gets_notifications_and_answers_server_requests() {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &["--conformance"]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;
    let mut c = LegacyClient::open(&gw, &gw.sse_url("ep"), &[])
        .await
        .expect("open");
    c.initialize().await;

    // list_changed from the upstream arrives on the stream.
    let (status, _) = c
        .post(&json!({"jsonrpc": "2.0", "id": 20, "method": "tools/call",
                       "params": {"name": "alpha__grow", "arguments": {}}}))
        .await;
    assert_eq!(status, 202);
    let mut saw_changed = false;
    let mut saw_answer = false;
    while !(saw_changed && saw_answer) {
        let (_, data) = c.next_event().await;
        let v: Value = serde_json::from_str(&data).expect("JSON-RPC message");
        saw_changed |= v["method"] == "notifications/tools/list_changed";
        saw_answer |= v["id"] == 20;
    }

    // A sampling request caused by this client's call reaches it, and its answer goes back.
    let (status, _) = c
        .post(&json!({"jsonrpc": "2.0", "id": 21, "method": "tools/call",
                       "params": {"name": "alpha__test_sampling", "arguments": {"prompt": "hi"}}}))
        .await;
    assert_eq!(status, 202);
    let result = loop {
        let (_, data) = c.next_event().await;
        let v: Value = serde_json::from_str(&data).expect("JSON-RPC message");
        if v["method"] == "sampling/createMessage" {
            let answer = json!({"jsonrpc": "2.0", "id": v["id"], "result": {
                "role": "assistant", "content": {"type": "text", "text": "legacy-sampled"},
                "model": "m", "stopReason": "endTurn"}});
            assert_eq!(c.post(&answer).await.0, 202);
        } else if v["id"] == 21 {
            break v;
        }
    };
    assert!(
        result["result"].to_string().contains("legacy-sampled"),
        "{result}"
    );
}
