//! What travels outside one request/response pair: progress with the client's own token,
//! client cancellation reaching the upstream, and list_changed reaching connected clients.

use std::time::{Duration, Instant};

use metamcp_it::{RawClient, eventually};
use serde_json::{Value, json};

use crate::{first_text, two_server_gateway};

fn call(id: Value, name: &str, args: Value, token: Option<Value>) -> String {
    let mut params = json!({"name": name, "arguments": args});
    if let Some(t) = token {
        params["_meta"] = json!({"progressToken": t});
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_the_caller_with_its_own_token() {
    let (_env, gw, key) = two_server_gateway().await;
    let mut a = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    a.initialize().await;
    let mut b = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    b.initialize().await;
    // Two clients, one shared upstream process, the same progress token: each sees its own.
    let args = json!({"steps": 3, "delay_ms": 30});
    let (ra, rb) = tokio::join!(
        a.post_events(call(
            json!(1),
            "alpha__slow",
            args.clone(),
            Some(json!("tok"))
        )),
        b.post_events(call(
            json!(1),
            "alpha__slow",
            json!({"steps": 2, "delay_ms": 30}),
            Some(json!("tok"))
        )),
    );
    for ((status, ct, events), steps) in [(ra, 3), (rb, 2)] {
        assert_eq!(status, 200);
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        let progress: Vec<&Value> = events
            .iter()
            .filter(|e| e["method"] == "notifications/progress")
            .collect();
        assert_eq!(progress.len(), steps, "{events:?}");
        assert!(
            progress
                .iter()
                .all(|p| p["params"]["progressToken"] == "tok"),
            "{progress:?}"
        );
        assert_eq!(
            progress.last().unwrap()["params"]["progress"].as_f64(),
            Some(f64::from(steps as u32))
        );
        let last = events.last().unwrap();
        assert_eq!(last["id"], 1);
        assert_eq!(
            first_text(&last["result"]),
            format!("done after {steps} steps")
        );
    }
    // A call without a token is still a plain JSON answer.
    let (_, ct, events) = a
        .post_events(call(json!(2), "alpha__echo", json!({"message": "x"}), None))
        .await;
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!(first_text(&events[0]["result"]), "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cancellation_stops_the_upstream_call() {
    let (env, gw, key) = two_server_gateway().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;
    let started = Instant::now();
    // Its first progress shows the call is running upstream.
    let (_, mut slow) = c
        .post_stream(call(
            json!(41),
            "alpha__slow",
            json!({"steps": 100, "delay_ms": 100}),
            Some(json!("p")),
        ))
        .await;
    let first = tokio::time::timeout(Duration::from_secs(10), slow.recv())
        .await
        .expect("no progress")
        .unwrap();
    assert_eq!(first["method"], "notifications/progress", "{first}");
    let n = c.post_raw(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":41,"reason":"user"}}).to_string()).await;
    assert_eq!(n.status, 202);
    let answer = loop {
        let m = tokio::time::timeout(Duration::from_secs(10), slow.recv())
            .await
            .expect("the cancelled call was not answered")
            .expect("stream ended");
        if m["id"] == 41 {
            break m;
        }
    };
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cancelled call kept running"
    );
    assert_eq!(answer["error"]["code"], -32800, "{answer}");
    // The fixture says on stderr when its slow tool was cancelled.
    let seen = eventually(Duration::from_secs(5), || {
        let o = env.cli(&["logs", "alpha"]);
        async move { o.stdout.contains("slow cancelled").then_some(()) }
    })
    .await;
    assert!(
        seen.is_some(),
        "the upstream never saw notifications/cancelled"
    );
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "after"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_changed_reaches_connected_clients() {
    let (env, gw, key) = two_server_gateway().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;
    let mut stream = c.open_stream().await;
    // From an upstream…
    c.request(
        "tools/call",
        json!({"name": "alpha__grow", "arguments": {}}),
    )
    .await;
    let got = tokio::time::timeout(Duration::from_secs(3), stream.recv())
        .await
        .expect("no list_changed")
        .unwrap();
    assert_eq!(got["method"], "notifications/tools/list_changed");
    // …and from a configuration change.
    env.cli_ok(&["namespace", "remove-server", "ns", "--server", "beta"]);
    let mut methods = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(3), stream.recv()).await {
        methods.push(ev["method"].as_str().unwrap_or_default().to_owned());
        if methods.len() == 3 {
            break;
        }
    }
    for kind in ["tools", "prompts", "resources"] {
        assert!(
            methods.contains(&format!("notifications/{kind}/list_changed")),
            "{methods:?}"
        );
    }
    let names = c.request("tools/list", json!({})).await.body;
    assert!(!names.to_string().contains("beta__"), "{names}");
    let caps = c.request("ping", json!({})).await;
    assert_eq!(caps.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_and_elicitation_reach_the_calling_client_and_come_back() {
    let env = metamcp_it::Env::new();
    env.import(json!({
        "alpha": metamcp_it::fixture_stdio("alpha", &["--conformance"]),
        "beta": metamcp_it::fixture_stdio("beta", &["--conformance"]),
    }));
    env.cli_ok(&[
        "namespace",
        "create",
        "ns",
        "--server",
        "alpha",
        "--server",
        "beta",
    ]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    let key = env.key("k");
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;

    // Without a stream to the client, the upstream gets a clear error (no hang).
    let a = tokio::time::timeout(
        Duration::from_secs(10),
        c.request(
            "tools/call",
            json!({"name": "alpha__test_sampling", "arguments": {"prompt": "hi"}}),
        ),
    )
    .await
    .expect("sampling without a client stream hung");
    assert!(a.body.to_string().contains("no open stream"), "{}", a.body);

    let mut stream = c.open_stream().await;
    for (tool, args, answer, expect) in [
        (
            "alpha__test_sampling",
            json!({"prompt": "hi"}),
            json!({"role": "assistant", "content": {"type": "text", "text": "sampled-7c1"}, "model": "m", "stopReason": "endTurn"}),
            "sampled-7c1",
        ),
        (
            "beta__test_elicitation",
            json!({"message": "who are you?"}),
            json!({"action": "accept", "content": {"username": "ada-3f", "email": "a@b.c"}}),
            "ada-3f",
        ),
    ] {
        let call = {
            let c = c.clone();
            let tool = tool.to_owned();
            tokio::spawn(async move {
                c.request("tools/call", json!({"name": tool, "arguments": args}))
                    .await
            })
        };
        let req = tokio::time::timeout(Duration::from_secs(5), stream.recv())
            .await
            .expect("no request reached the client")
            .unwrap();
        let method = req["method"].as_str().unwrap_or_default();
        assert!(
            method == "sampling/createMessage" || method == "elicitation/create",
            "{req}"
        );
        let id = req["id"].clone();
        assert!(
            id.as_str().is_some_and(|s| s.starts_with("metamcp-req-")),
            "{req}"
        );
        let posted = c
            .post_raw(json!({"jsonrpc": "2.0", "id": id, "result": answer}).to_string())
            .await;
        assert_eq!(posted.status, 202);
        let result = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("call hung")
            .unwrap();
        assert!(
            result.body["result"].to_string().contains(expect),
            "{tool}: {}",
            result.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_log_messages_reach_the_namespace_clients() {
    let env = metamcp_it::Env::new();
    env.import(json!({ "alpha": metamcp_it::fixture_stdio("alpha", &["--conformance"]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    let a = c
        .request("logging/setLevel", json!({"level": "debug"}))
        .await;
    assert_eq!(a.body["result"], json!({}), "{}", a.body);
    let mut stream = c.open_stream().await;
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__test_tool_with_logging", "arguments": {}}),
        )
        .await;
    assert!(
        a.body["result"]
            .to_string()
            .contains("executed successfully"),
        "{}",
        a.body
    );
    let mut messages = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(2), stream.recv()).await {
        if ev["method"] == "notifications/message" {
            messages.push(ev["params"]["data"].to_string());
        }
        if messages.len() == 3 {
            break;
        }
    }
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages[0].contains("started") && messages[2].contains("completed"),
        "{messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_withdrawing_its_request_is_reported_to_the_client() {
    let (_env, gw, key) = two_server_gateway().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;
    let mut stream = c.open_stream().await;
    let call = {
        let c = c.clone();
        tokio::spawn(async move {
            c.request(
                "tools/call",
                json!({"name": "alpha__withdraw", "arguments": {}}),
            )
            .await
        })
    };
    let req = tokio::time::timeout(Duration::from_secs(5), stream.recv())
        .await
        .expect("no elicitation")
        .unwrap();
    assert_eq!(req["method"], "elicitation/create", "{req}");
    // The client does not answer; the upstream gives up and says so.
    let cancel = tokio::time::timeout(Duration::from_secs(5), stream.recv())
        .await
        .expect("no cancellation")
        .unwrap();
    assert_eq!(cancel["method"], "notifications/cancelled", "{cancel}");
    assert_eq!(cancel["params"]["requestId"], req["id"], "{cancel}");
    let result = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("call hung")
        .unwrap();
    assert_eq!(
        first_text(&result.body["result"]),
        "withdrawn",
        "{}",
        result.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_updates_reach_only_the_subscribed_session() {
    let env = metamcp_it::Env::new();
    env.import(json!({ "alpha": metamcp_it::fixture_stdio("alpha", &["--conformance"]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;
    let uri = "test://watched-resource";
    let mut subscriber = RawClient::new(&gw.mcp_url("ep"));
    subscriber.initialize().await;
    let mut other = RawClient::new(&gw.mcp_url("ep"));
    other.initialize().await;
    let a = subscriber
        .request("resources/subscribe", json!({"uri": uri}))
        .await;
    assert_eq!(a.body["result"], json!({}), "{}", a.body);
    let mut sub_stream = subscriber.open_stream().await;
    let mut other_stream = other.open_stream().await;

    other
        .request(
            "tools/call",
            json!({"name": "alpha__touch", "arguments": {"message": uri}}),
        )
        .await;
    let got = tokio::time::timeout(Duration::from_secs(3), sub_stream.recv())
        .await
        .expect("no update")
        .unwrap();
    assert_eq!(got["method"], "notifications/resources/updated", "{got}");
    assert_eq!(got["params"]["uri"], uri);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other_stream.recv())
            .await
            .is_err(),
        "an unsubscribed session got the update"
    );

    // After unsubscribing, no more updates.
    let a = subscriber
        .request("resources/unsubscribe", json!({"uri": uri}))
        .await;
    assert_eq!(a.body["result"], json!({}), "{}", a.body);
    other
        .request(
            "tools/call",
            json!({"name": "alpha__touch", "arguments": {"message": uri}}),
        )
        .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub_stream.recv())
            .await
            .is_err(),
        "update after unsubscribe"
    );
}
