//! Crossing between tenants, tried as an attacker would: two endpoints with their own keys
//! whose namespaces share one stdio server process, and a `--no-auth` endpoint whose
//! namespace holds another server the attacker controls. Every message that travels
//! outside a request/response pair — answers to sampling and elicitation, progress, log
//! messages, resource updates — must reach only whom it belongs to.

use std::time::Duration;

use metamcp_it::{Env, Gateway, RawClient, eventually, fixture_stdio};
use serde_json::{Value, json};

use crate::first_text;
use crate::sse::LegacyClient;

/// Endpoint `a` (key A) and `b` (key B) on namespaces holding the shared stdio server
/// `shared`; endpoint `open` (no auth) on a namespace holding only `other`.
struct Tenants {
    env: Env,
    gw: Gateway,
    key_a: String,
    key_b: String,
}

async fn tenants() -> Tenants {
    let env = Env::new();
    env.import(json!({
        "shared": fixture_stdio("shared", &["--conformance"]),
        "other": fixture_stdio("other", &["--conformance"]),
    }));
    for (ns, server) in [("ns-a", "shared"), ("ns-b", "shared"), ("ns-open", "other")] {
        env.cli_ok(&["namespace", "create", ns, "--server", server]);
    }
    env.cli_ok(&["endpoint", "create", "a", "--namespace", "ns-a"]);
    env.cli_ok(&["endpoint", "create", "b", "--namespace", "ns-b"]);
    env.cli_ok(&[
        "endpoint",
        "create",
        "open",
        "--namespace",
        "ns-open",
        "--no-auth",
    ]);
    let key_a = env.key("tenant-a");
    let key_b = env.key("tenant-b");
    let gw = env.serve().await;
    Tenants {
        env,
        gw,
        key_a,
        key_b,
    }
}

/// An initialized session-era client.
async fn session(gw: &Gateway, ep: &str, key: Option<&str>) -> RawClient {
    let mut c = RawClient::new(&gw.mcp_url(ep));
    if let Some(k) = key {
        c = c.bearer(k);
    }
    c.initialize().await;
    c
}

fn is_unguessable_request_id(id: &Value) -> bool {
    id.as_str()
        .and_then(|s| s.strip_prefix("metamcp-req-"))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What an attacker posts: an answer to request `id` saying it is someone else.
fn injected(id: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": {
        "action": "accept", "content": {"username": "mallory", "email": "m@evil.example"}}})
    .to_string()
}

/// Answers to `id` from every kind of stranger: a client of another key, an anonymous
/// client of the `--no-auth` endpoint, and another session of the victim's own key; plus
/// guesses at the ids the gateway used to hand out in sequence.
async fn inject_everywhere(t: &Tenants, id: &Value) {
    let strangers = [
        session(&t.gw, "b", Some(&t.key_b)).await,
        session(&t.gw, "open", None).await,
        session(&t.gw, "a", Some(&t.key_a)).await,
    ];
    for s in &strangers {
        let a = s.post_raw(injected(id)).await;
        assert_eq!(a.status, 202, "{}", a.body);
        for n in 0..8 {
            s.post_raw(injected(&json!(format!("metamcp-req-{n}"))))
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_asked_session_can_answer_an_elicitation() {
    let t = tenants().await;
    let victim = session(&t.gw, "a", Some(&t.key_a)).await;
    let mut stream = victim.open_stream().await;
    let call = {
        let v = victim.clone();
        tokio::spawn(async move {
            v.request(
                "tools/call",
                json!({"name": "shared__test_elicitation", "arguments": {"message": "who?"}}),
            )
            .await
        })
    };
    let asked = tokio::time::timeout(Duration::from_secs(10), stream.recv())
        .await
        .expect("no elicitation reached the victim")
        .expect("stream ended");
    assert_eq!(asked["method"], "elicitation/create", "{asked}");
    assert!(is_unguessable_request_id(&asked["id"]), "{asked}");

    // Even knowing the id, nobody else's answer is taken.
    inject_everywhere(&t, &asked["id"]).await;
    let own = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "action": "accept", "content": {"username": "victim-9", "email": "v@a.example"}}});
    assert_eq!(victim.post_raw(own.to_string()).await.status, 202);
    let answer = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the victim's call hung")
        .unwrap();
    let text = first_text(&answer.body["result"]);
    assert!(
        text.contains("victim-9") && !text.contains("mallory"),
        "{}",
        answer.body
    );
    assert!(
        t.gw.log().contains("was ignored"),
        "the refused answers were not logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_asked_legacy_sse_session_can_answer_a_sampling_request() {
    let t = tenants().await;
    let auth = format!("Bearer {}", t.key_a);
    let mut victim = LegacyClient::open(&t.gw, &t.gw.sse_url("a"), &[("authorization", &auth)])
        .await
        .expect("open");
    victim.initialize().await;
    let (status, _) = victim
        .post(&json!({"jsonrpc": "2.0", "id": 30, "method": "tools/call",
                       "params": {"name": "shared__test_sampling", "arguments": {"prompt": "hi"}}}))
        .await;
    assert_eq!(status, 202);
    let asked = loop {
        let (_, data) = victim.next_event().await;
        let v: Value = serde_json::from_str(&data).unwrap();
        if v["method"] == "sampling/createMessage" {
            break v;
        }
    };
    assert!(is_unguessable_request_id(&asked["id"]), "{asked}");
    let forged = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "mallory-sampled"},
        "model": "m", "stopReason": "endTurn"}});
    // From a legacy SSE session of the other key, and from the session-era strangers.
    let auth_b = format!("Bearer {}", t.key_b);
    let stranger = LegacyClient::open(&t.gw, &t.gw.sse_url("b"), &[("authorization", &auth_b)])
        .await
        .expect("open");
    assert_eq!(stranger.post(&forged).await.0, 202);
    inject_everywhere(&t, &asked["id"]).await;
    let own = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "victim-sampled"},
        "model": "m", "stopReason": "endTurn"}});
    assert_eq!(victim.post(&own).await.0, 202);
    let result = loop {
        let (_, data) = victim.next_event().await;
        let v: Value = serde_json::from_str(&data).unwrap();
        if v["id"] == 30 {
            break v;
        }
    };
    let text = result["result"].to_string();
    assert!(
        text.contains("victim-sampled") && !text.contains("mallory"),
        "{result}"
    );
}

/// The per-request protocol context of a 2026-07-28 request.
fn meta(version: &str) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}, "sampling": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_input_request_is_answered_only_by_its_own_retry() {
    let t = tenants().await;
    let victim = RawClient::new(&t.gw.mcp_url("a"))
        .bearer(&t.key_a)
        .header("mcp-protocol-version", "2026-07-28");
    let call = json!({"name": "shared__test_elicitation", "arguments": {"message": "who?"},
                      "_meta": meta("2026-07-28")});
    let first = victim.request("tools/call", call.clone()).await;
    let r = &first.body["result"];
    assert_eq!(r["resultType"], "input_required", "{}", first.body);
    let (input_key, _) = r["inputRequests"]
        .as_object()
        .and_then(|m| m.iter().next())
        .expect("one input request");
    let input_key = input_key.clone();
    assert!(is_unguessable_request_id(&json!(input_key)), "{input_key}");
    // Session-era answers with the input request's key, from every stranger.
    inject_everywhere(&t, &json!(input_key)).await;
    let mut retry = call.clone();
    retry["requestState"] = r["requestState"].clone();
    retry["inputResponses"] = json!({ &input_key: {"action": "accept",
        "content": {"username": "victim-2026", "email": "v@a.example"}} });
    let answer = victim.request("tools/call", retry).await;
    assert_eq!(
        answer.body["result"]["resultType"], "complete",
        "{}",
        answer.body
    );
    let text = first_text(&answer.body["result"]);
    assert!(
        text.contains("victim-2026") && !text.contains("mallory"),
        "{}",
        answer.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_upstream_cannot_inject_progress_into_a_call() {
    let t = tenants().await;
    let victim = session(&t.gw, "a", Some(&t.key_a)).await;
    let steps = 10;
    let call = {
        let v = victim.clone();
        tokio::spawn(async move {
            let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
                "name": "shared__slow", "arguments": {"steps": steps, "delay_ms": 300},
                "_meta": {"progressToken": "victim-token"}}});
            v.post_events(body.to_string()).await
        })
    };
    // The token the shared server was handed (the fixture logs it), read by the operator's
    // CLI: the attacker is given it, which is more than it could ever learn.
    let token = eventually(Duration::from_secs(10), || {
        let logs = t.env.cli(&["logs", "shared"]).stdout;
        async move {
            let line = logs.lines().find(|l| l.contains("slow progress token"))?;
            serde_json::from_str::<String>(line.rsplit(' ').next()?).ok()
        }
    })
    .await
    .expect("the fixture never logged its progress token");
    assert!(
        token.starts_with("metamcp-") && token.len() == "metamcp-".len() + 32,
        "{token}"
    );
    // The attacker's own upstream sends progress under that token, and under the tokens
    // the gateway used to hand out in sequence.
    let attacker = session(&t.gw, "open", None).await;
    let mut guesses: Vec<String> = (0..8).map(|n| format!("metamcp-{n}")).collect();
    guesses.push(token);
    for g in guesses {
        let a = attacker
            .request(
                "tools/call",
                json!({"name": "other__spoof_progress", "arguments": {"message": g}}),
            )
            .await;
        assert_eq!(first_text(&a.body["result"]), "sent", "{}", a.body);
    }
    assert!(
        !call.is_finished(),
        "the victim's call ended before the attempt"
    );
    let (status, _, events) = call.await.unwrap();
    assert_eq!(status, 200);
    let progress: Vec<&Value> = events
        .iter()
        .filter(|e| e["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), steps, "{progress:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "victim-token"
                && p["params"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("step "))),
        "{progress:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_no_client_to_ask_never_reaches_another_client() {
    let t = tenants().await;
    // A's client listens on its stream and has a long call in flight on the shared process.
    let victim = session(&t.gw, "a", Some(&t.key_a)).await;
    let mut stream = victim.open_stream().await;
    let long = {
        let v = victim.clone();
        tokio::spawn(async move {
            v.request(
                "tools/call",
                json!({"name": "shared__slow", "arguments": {"steps": 40, "delay_ms": 100}}),
            )
            .await
        })
    };
    // B's REST call makes the shared server ask for input: nobody can be asked.
    let rest = tokio::time::timeout(
        Duration::from_secs(15),
        reqwest::Client::new()
            .post(format!(
                "{}/metamcp/b/api/shared__test_elicitation",
                t.gw.base
            ))
            .bearer_auth(&t.key_b)
            .json(&json!({"message": "REST asks"}))
            .send(),
    )
    .await
    .expect("the REST call hung: its question went to another client")
    .unwrap();
    let body: Value = rest.json().await.unwrap();
    assert!(
        body.to_string().contains("metamcp cannot relay it"),
        "{body}"
    );
    // A plain stateless call (an older version on the per-request lifecycle) likewise.
    let plain = RawClient::new(&t.gw.mcp_url("b"))
        .bearer(&t.key_b)
        .header("mcp-protocol-version", "2025-11-25");
    let a = tokio::time::timeout(
        Duration::from_secs(15),
        plain.request(
            "tools/call",
            json!({"name": "shared__test_elicitation", "arguments": {"message": "plain asks"},
                   "_meta": meta("2025-11-25")}),
        ),
    )
    .await
    .expect("the plain stateless call hung: its question went to another client");
    assert!(
        a.body.to_string().contains("metamcp cannot relay it"),
        "{}",
        a.body
    );
    assert!(
        !long.is_finished(),
        "the victim's call ended too soon to tell"
    );
    while let Ok(ev) = stream.try_recv() {
        assert_ne!(
            ev["method"], "elicitation/create",
            "another tenant's question reached the victim: {ev}"
        );
    }
    long.abort();
}

/// Reads `stream` until the `resources/updated` of `marker`; returns what came before.
async fn until_marker(stream: &mut tokio::sync::mpsc::Receiver<Value>, marker: &str) -> Vec<Value> {
    let mut before = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.recv())
            .await
            .expect("the marker never arrived")
            .expect("stream ended");
        if ev["method"] == "notifications/resources/updated" && ev["params"]["uri"] == marker {
            return before;
        }
        before.push(ev);
    }
}

/// Subscribes `c` to `uri` (one of the fixture's resources).
async fn subscribe(c: &RawClient, uri: &str) {
    let a = c.request("resources/subscribe", json!({"uri": uri})).await;
    assert_eq!(a.body["result"], json!({}), "{}", a.body);
}

/// Has `server` (called through client `via`) send `resources/updated` for `uri`.
async fn touch(via: &RawClient, server: &str, uri: &str) {
    let a = via
        .request(
            "tools/call",
            json!({"name": format!("{server}__touch"), "arguments": {"message": uri}}),
        )
        .await;
    assert!(
        first_text(&a.body["result"]).contains("touched"),
        "{}",
        a.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_levels_are_per_session_and_logs_stay_in_their_namespaces() {
    let t = tenants().await;
    let b = session(&t.gw, "b", Some(&t.key_b)).await;
    let a = session(&t.gw, "a", Some(&t.key_a)).await;
    let outsider = session(&t.gw, "open", None).await;
    for (c, level) in [(&b, "info"), (&a, "error")] {
        let r = c.request("logging/setLevel", json!({"level": level})).await;
        assert_eq!(r.body["result"], json!({}), "{}", r.body);
    }
    subscribe(&a, "test://static-text").await;
    subscribe(&outsider, "test://static-binary").await;
    let mut b_stream = b.open_stream().await;
    let mut a_stream = a.open_stream().await;
    let mut outsider_stream = outsider.open_stream().await;
    // A asked for errors only; that must not silence B's info messages.
    let r = b
        .request(
            "tools/call",
            json!({"name": "shared__test_tool_with_logging", "arguments": {}}),
        )
        .await;
    assert!(
        first_text(&r.body["result"]).contains("executed successfully"),
        "{}",
        r.body
    );
    let mut got = Vec::new();
    while got.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), b_stream.recv())
            .await
            .expect("B's info messages did not arrive")
            .unwrap();
        if ev["method"] == "notifications/message" {
            got.push(ev["params"]["level"].clone());
        }
    }
    assert!(got.iter().all(|l| l == "info"), "{got:?}");
    // Upstream notifications are fanned out in the order they arrive: once a later marker
    // reaches A and the outsider, any log message meant for them would have come first.
    touch(&a, "shared", "test://static-text").await;
    touch(&outsider, "other", "test://static-binary").await;
    for (who, s, marker) in [
        ("A", &mut a_stream, "test://static-text"),
        ("the outsider", &mut outsider_stream, "test://static-binary"),
    ] {
        let before = until_marker(s, marker).await;
        assert!(
            before
                .iter()
                .all(|e| e["method"] != "notifications/message"),
            "{who} got log messages: {before:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_updates_come_only_from_servers_the_session_can_see() {
    let t = tenants().await;
    let uri = "test://watched-resource";
    let subscriber = session(&t.gw, "open", None).await;
    subscribe(&subscriber, uri).await;
    subscribe(&subscriber, "test://static-text").await;
    let mut stream = subscriber.open_stream().await;
    // The shared server, which the subscriber's namespace does not hold, touches the URI;
    // then the subscriber's own server does, then sends the marker.
    let victim = session(&t.gw, "a", Some(&t.key_a)).await;
    touch(&victim, "shared", uri).await;
    touch(&subscriber, "other", uri).await;
    touch(&subscriber, "other", "test://static-text").await;
    let updates: Vec<Value> = until_marker(&mut stream, "test://static-text")
        .await
        .into_iter()
        .filter(|e| e["method"] == "notifications/resources/updated")
        .collect();
    assert_eq!(
        updates.len(),
        1,
        "updates from a server of another namespace arrived: {updates:?}"
    );
}
