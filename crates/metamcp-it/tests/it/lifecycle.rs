//! Processes: one per stdio server, whole process groups killed on stop, a crash mid-call
//! answered at once.

use std::time::{Duration, Instant};

use metamcp_it::{Env, RawClient, alive, descendants, eventually, fixture_stdio};
use serde_json::json;

use crate::first_text;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_process_survives_the_gateway() {
    let env = Env::new();
    env.import(json!({
        "alpha": fixture_stdio("alpha", &["--spawn-grandchild"]),
        "beta": fixture_stdio("beta", &[]),
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
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;

    // Many sessions, one process per server.
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut c = RawClient::new(&gw.mcp_url("ep"));
        c.initialize().await;
        let a = c
            .request(
                "tools/call",
                json!({"name": "alpha__echo", "arguments": {"message": "x"}}),
            )
            .await;
        assert_eq!(first_text(&a.body["result"]), "x");
        c.request(
            "tools/call",
            json!({"name": "beta__echo", "arguments": {"message": "y"}}),
        )
        .await;
        clients.push(c);
    }
    let gw_pid = gw.pid();
    let family = eventually(Duration::from_secs(5), || async move {
        let d = descendants(gw_pid);
        // fixture alpha + its grandchild + fixture beta
        (d.len() >= 3).then_some(d)
    })
    .await
    .expect("upstream processes");
    assert_eq!(
        family.len(),
        3,
        "expected alpha, its grandchild and beta: {family:?}"
    );

    let status = gw.stop().await;
    assert!(status.success(), "gateway exit status {status:?}");
    let all_gone = eventually(Duration::from_secs(5), || {
        let family = family.clone();
        async move { family.iter().all(|p| !alive(*p)).then_some(()) }
    })
    .await;
    let left: Vec<u32> = family.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        all_gone.is_some(),
        "processes left after the gateway stopped: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_call_is_answered_at_once_and_the_server_comes_back() {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]), "beta": fixture_stdio("beta", &[]) }));
    env.cli_ok(&[
        "namespace",
        "create",
        "ns",
        "--server",
        "alpha",
        "--server",
        "beta",
    ]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    c.request(
        "tools/call",
        json!({"name": "beta__echo", "arguments": {"message": "warm"}}),
    )
    .await;

    // A slow call with a progress token: its first progress shows it reached the upstream.
    let (status, mut slow) = c
        .post_stream(
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
                "name": "alpha__slow", "arguments": {"steps": 100, "delay_ms": 100},
                "_meta": {"progressToken": "p"}}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 200);
    let first = tokio::time::timeout(Duration::from_secs(10), slow.recv())
        .await
        .expect("no progress from the slow call")
        .unwrap();
    assert_eq!(first["method"], "notifications/progress", "{first}");
    // Now crash the same process.
    let crashed_at = Instant::now();
    let crash = c
        .request(
            "tools/call",
            json!({"name": "alpha__crash", "arguments": {}}),
        )
        .await;
    assert!(
        crash.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("alpha"),
        "{}",
        crash.body
    );
    let slow = loop {
        let m = tokio::time::timeout(Duration::from_secs(10), slow.recv())
            .await
            .expect("the in-flight call was not answered")
            .expect("the stream ended without an answer");
        if m["id"] == 7 {
            break m;
        }
    };
    assert!(
        crashed_at.elapsed() < Duration::from_secs(1),
        "in-flight call not failed within 1 s"
    );
    let msg = slow["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("alpha") && msg.contains("exited"), "{slow}");

    // Other servers are unaffected; the crashed one restarts on the next call.
    let a = c
        .request(
            "tools/call",
            json!({"name": "beta__echo", "arguments": {"message": "beta fine"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "beta fine");
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "alpha again"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "alpha again", "{}", a.body);
    // Logs are persisted about once a second; `metamcp logs` reads them from the store.
    let logs =
        eventually(Duration::from_secs(3), || {
            let o = env.cli(&["logs", "alpha"]);
            async move {
                (o.ok && o.stdout.contains("process exited (exit status: 3)")).then_some(o.stdout)
            }
        })
        .await;
    assert!(
        logs.is_some_and(|l| l.contains("fixture alpha starting")),
        "crash not in `metamcp logs alpha`"
    );
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_upstream_that_forgot_its_session_is_reinitialized_transparently() {
    let first = metamcp_it::FixtureHttp::start("remote", &[])
        .await
        .expect("fixture");
    let url = first.url.clone();
    let env = Env::new();
    env.import(json!({ "remote": {"type": "streamable_http", "url": url} }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "remote"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    let a = c
        .request(
            "tools/call",
            json!({"name": "remote__echo", "arguments": {"message": "one"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "one");

    // The upstream restarts on the same port: it knows nothing of the gateway's session.
    drop(first);
    let bind = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();
    let second = eventually(Duration::from_secs(5), || {
        let bind = bind.clone();
        async move {
            metamcp_it::FixtureHttp::start("remote", &["--bind", &bind])
                .await
                .ok()
        }
    })
    .await
    .expect("restart the fixture on the same port");
    assert_eq!(second.url, url);

    let a = c
        .request(
            "tools/call",
            json!({"name": "remote__echo", "arguments": {"message": "two"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "two", "{}", a.body);
    assert!(
        gw.log().contains("re-initializing"),
        "no re-initialization logged"
    );
}

async fn upstream_state(gw: &metamcp_it::Gateway, ep: &str, server: &str) -> serde_json::Value {
    let v = gw.session_health(ep, None).await;
    v["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["server"] == server)
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opens_after_repeated_failures_and_reset_closes_it() {
    let env = Env::new();
    let flag = env.dir.path().join("healthy");
    let fixture = metamcp_it::bin("metamcp-fixture");
    let script = format!(
        "test -f '{}' && exec '{}' stdio --name flaky || exit 7",
        flag.display(),
        fixture.display()
    );
    env.import(json!({ "flaky": {"command": "/bin/sh", "args": ["-c", script]} }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "flaky"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    env.cli_ok(&["settings", "set", "MCP_MAX_ATTEMPTS", "2"]);
    env.cli_ok(&["settings", "set", "MCP_BREAKER_COOLDOWN", "600000"]);
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    let echo = json!({"name": "flaky__echo", "arguments": {"message": "x"}});
    for _ in 0..2 {
        let a = c.request("tools/call", echo.clone()).await;
        assert!(
            a.body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("flaky"),
            "{}",
            a.body
        );
    }
    let state = upstream_state(&gw, "ep", "flaky").await;
    assert_eq!(state["state"], "open", "{state}");
    // While open, calls are refused at once without a new process.
    let started = Instant::now();
    let a = c.request("tools/call", echo.clone()).await;
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("next attempt"),
        "{}",
        a.body
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    // `server list` shows it, from the state the gateway reports.
    let listed = eventually(Duration::from_secs(5), || {
        let o = env.cli(&["server", "list"]);
        async move { o.stdout.contains("state: open").then_some(()) }
    })
    .await;
    assert!(
        listed.is_some(),
        "server list does not show the open circuit"
    );
    // The server is fixed; `server reset` closes the circuit without waiting for the cool-down.
    std::fs::write(&flag, "").unwrap();
    env.cli_ok(&["server", "reset", "flaky"]);
    let back = eventually(Duration::from_secs(3), || {
        let c = c.clone();
        let echo = echo.clone();
        async move {
            (first_text(&c.request("tools/call", echo).await.body["result"]) == "x").then_some(())
        }
    })
    .await;
    assert!(back.is_some(), "reset did not let the server start");
    assert_eq!(upstream_state(&gw, "ep", "flaky").await["state"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_settings_apply_live_and_progress_resets_the_timeout() {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    let slow = json!({"name": "alpha__slow", "arguments": {"steps": 8, "delay_ms": 150}});
    assert_eq!(
        first_text(&c.request("tools/call", slow.clone()).await.body["result"]),
        "done after 8 steps"
    );

    env.cli_ok(&["settings", "set", "MCP_TIMEOUT", "500"]);
    let timed_out = eventually(Duration::from_secs(5), || {
        let c = c.clone();
        let slow = slow.clone();
        async move {
            (c.request("tools/call", slow).await.body["error"]["code"] == -32001).then_some(())
        }
    })
    .await;
    assert!(timed_out.is_some(), "MCP_TIMEOUT was not applied");

    // With progress every 150 ms, a 1.2 s call outlives a 500 ms timeout…
    let with_progress = json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
        "params":{"name":"alpha__slow","arguments":{"steps":8,"delay_ms":150},"_meta":{"progressToken":"p"}}});
    let (_, _, events) = c.post_events(with_progress.to_string()).await;
    let last = events.last().unwrap();
    assert_eq!(first_text(&last["result"]), "done after 8 steps", "{last}");
    // …unless progress is told not to reset it.
    env.cli_ok(&["settings", "set", "MCP_RESET_TIMEOUT_ON_PROGRESS", "false"]);
    let stopped = eventually(Duration::from_secs(5), || {
        let c = c.clone();
        let body = with_progress.to_string();
        async move {
            let (_, _, events) = c.post_events(body).await;
            (events.last().is_some_and(|e| e["error"]["code"] == -32001)).then_some(())
        }
    })
    .await;
    assert!(
        stopped.is_some(),
        "MCP_RESET_TIMEOUT_ON_PROGRESS=false was not applied"
    );
    let listed = env.cli_ok(&["settings", "list"]);
    assert!(
        listed.contains("MCP_TIMEOUT=500") && listed.contains("MCP_MAX_ATTEMPTS=3"),
        "{listed}"
    );
    let bad = env.cli(&["settings", "set", "MCP_TIMEOUT", "soon"]);
    assert!(
        !bad.ok && bad.stderr.contains("MCP_TIMEOUT"),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_from_their_last_activity() {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    env.cli_ok(&["settings", "set", "SESSION_LIFETIME", "1500"]);
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    // Active for longer than the lifetime: a busy session never expires.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(c.request("ping", json!({})).await.status, 200);
    }
    // Idle: it ends (watched without touching it), and its id answers 404 so the client
    // re-initializes.
    let count = || async { gw.session_health("ep", None).await["sessions"].as_u64() };
    assert_eq!(count().await, Some(1));
    let gone = eventually(Duration::from_secs(5), || async {
        (count().await == Some(0)).then_some(())
    })
    .await;
    assert_eq!(c.request("ping", json!({})).await.status, 404);
    assert!(gone.is_some(), "an idle session did not expire");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_start_is_not_a_timeout() {
    let env = Env::new();
    let fixture = metamcp_it::bin("metamcp-fixture");
    // Like `npx` installing a package: 1.5 s before the server speaks.
    let script = format!("sleep 1.5; exec '{}' stdio --name lazy", fixture.display());
    env.import(json!({ "lazy": {"command": "/bin/sh", "args": ["-c", script]} }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "lazy"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    env.cli_ok(&["settings", "set", "MCP_TIMEOUT", "500"]);
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    let a = c
        .request(
            "tools/call",
            json!({"name": "lazy__echo", "arguments": {"message": "worth the wait"}}),
        )
        .await;
    assert_eq!(
        first_text(&a.body["result"]),
        "worth the wait",
        "{}",
        a.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_lets_calls_in_flight_finish() {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    c.request(
        "tools/call",
        json!({"name": "alpha__echo", "arguments": {"message": "warm"}}),
    )
    .await;
    let family = descendants(gw.pid());
    // A call in flight upstream (its first progress has arrived) when the stop comes.
    let (status, mut call) = c
        .post_stream(
            json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
                "name": "alpha__slow", "arguments": {"steps": 10, "delay_ms": 100},
                "_meta": {"progressToken": "p"}}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 200);
    let first = tokio::time::timeout(Duration::from_secs(10), call.recv())
        .await
        .expect("no progress from the slow call")
        .unwrap();
    assert_eq!(first["method"], "notifications/progress", "{first}");
    let status = gw.stop().await;
    assert!(status.success(), "{status:?}");
    let mut last = serde_json::Value::Null;
    while let Some(m) = call.recv().await {
        last = m;
    }
    assert_eq!(first_text(&last["result"]), "done after 10 steps", "{last}");
    assert!(
        family.iter().all(|p| !alive(*p)),
        "an upstream survived the stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_start_and_idle_stop() {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]), "beta": fixture_stdio("beta", &[]) }));
    env.cli_ok(&[
        "namespace",
        "create",
        "ns",
        "--server",
        "alpha",
        "--server",
        "beta",
    ]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    env.cli_ok(&["settings", "set", "MCP_EAGER_START", "true"]);
    let gw = env.serve().await;
    let pid = gw.pid();
    // Eager: both servers run before any client asked for them.
    let started = eventually(Duration::from_secs(10), || async move {
        (descendants(pid).len() == 2).then_some(())
    })
    .await;
    assert!(
        started.is_some(),
        "servers not started eagerly: {:?}",
        descendants(pid)
    );

    // Idle stop: unused servers stop, and the next call starts them again.
    env.cli_ok(&["settings", "set", "MCP_EAGER_START", "false"]);
    env.cli_ok(&["settings", "set", "MCP_IDLE_STOP", "800"]);
    let stopped = eventually(Duration::from_secs(10), || async move {
        descendants(pid).is_empty().then_some(())
    })
    .await;
    assert!(
        stopped.is_some(),
        "idle servers still running: {:?}",
        descendants(pid)
    );
    assert_eq!(upstream_state(&gw, "ep", "alpha").await["state"], "idle");
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "again"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "again");
    assert_eq!(upstream_state(&gw, "ep", "alpha").await["state"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_session_mode_isolates_sessions_keeps_a_warm_one_and_enforces_its_cap() {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let out = env.cli_ok(&[
        "server",
        "update",
        "alpha",
        "--mode",
        "per-session",
        "--warm",
        "1",
        "--cap",
        "2",
    ]);
    assert!(out.contains("per-session"), "{out}");
    let gw = env.serve().await;
    let pid = gw.pid();
    // The warm connection is started before any session asks.
    let warm = eventually(Duration::from_secs(10), || async move {
        (descendants(pid).len() == 1).then_some(())
    })
    .await;
    assert!(warm.is_some(), "no warm connection: {:?}", descendants(pid));

    let mut sessions = Vec::new();
    for i in 0..2 {
        let mut c = RawClient::new(&gw.mcp_url("ep"));
        c.initialize().await;
        let a = c
            .request(
                "tools/call",
                json!({"name": "alpha__env", "arguments": {"name": "PATH"}}),
            )
            .await;
        assert!(a.body["result"].is_object(), "session {i}: {}", a.body);
        sessions.push(c);
    }
    let state = upstream_state(&gw, "ep", "alpha").await;
    assert_eq!(state["mode"], "per-session");
    assert_eq!(state["session_connections"], 2, "{state}");
    // A third session is refused with an error naming the cap — tools do not silently vanish.
    let mut third = RawClient::new(&gw.mcp_url("ep"));
    third.initialize().await;
    let a = third
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "x"}}),
        )
        .await;
    let msg = a.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("cap") && msg.contains('2') && msg.contains("alpha"),
        "{}",
        a.body
    );
    // Ending a session stops its process and frees its place.
    assert_eq!(sessions[0].delete().await, 204);
    let freed = eventually(Duration::from_secs(5), || {
        let t = third.clone();
        async move {
            let a = t
                .request(
                    "tools/call",
                    json!({"name": "alpha__echo", "arguments": {"message": "now"}}),
                )
                .await;
            (first_text(&a.body["result"]) == "now").then_some(())
        }
    })
    .await;
    assert!(
        freed.is_some(),
        "the cap did not free up after a session ended"
    );
    // Never more processes than sessions (2) + warm (1) + the catalog's shared one.
    assert!(descendants(pid).len() <= 4, "{:?}", descendants(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_stream_closed_mid_call_is_resumed_with_last_event_id() {
    let fx = metamcp_it::FixtureHttp::start("remote", &["--conformance"])
        .await
        .expect("fixture");
    let env = Env::new();
    env.import(json!({ "remote": {"type": "streamable_http", "url": fx.url} }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "remote"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    // The fixture closes this call's SSE stream before answering (SEP-1699); the answer only
    // arrives to a client that resumes with Last-Event-ID.
    let a = c
        .request(
            "tools/call",
            json!({"name": "remote__test_reconnection", "arguments": {}}),
        )
        .await;
    assert!(
        first_text(&a.body["result"]).contains("properly reconnected"),
        "{}",
        a.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_cooldown_one_probe_closes_the_circuit() {
    let env = Env::new();
    let flag = env.dir.path().join("healthy");
    let fixture = metamcp_it::bin("metamcp-fixture");
    let script = format!(
        "test -f '{}' && exec '{}' stdio --name flaky || {{ echo 'flaky: missing config' >&2; exit 7; }}",
        flag.display(),
        fixture.display()
    );
    env.import(json!({ "flaky": {"command": "/bin/sh", "args": ["-c", script]} }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "flaky"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    env.cli_ok(&["settings", "set", "MCP_MAX_ATTEMPTS", "2"]);
    env.cli_ok(&["settings", "set", "MCP_BREAKER_COOLDOWN", "1000"]);
    let admin = env.admin_key("ops");
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    let echo = json!({"name": "flaky__echo", "arguments": {"message": "x"}});
    for _ in 0..2 {
        c.request("tools/call", echo.clone()).await;
    }
    let state = upstream_state(&gw, "ep", "flaky").await;
    assert_eq!(state["state"], "open", "{state}");
    // Why it fails is visible to the operator: the end of its stderr, in the health report
    // (for an admin key) and in `server list`.
    let health = gw.session_health("ep", Some(&admin)).await;
    assert!(
        health["upstreams"][0]["stderr_tail"]
            .to_string()
            .contains("missing config"),
        "{health}"
    );
    let listed = eventually(Duration::from_secs(5), || {
        let o = env.cli(&["server", "list"]);
        async move { o.stdout.contains("| flaky: missing config").then_some(()) }
    })
    .await;
    assert!(
        listed.is_some(),
        "server list does not show the stderr tail"
    );
    // Fixed meanwhile: once the cool-down is over, the probe succeeds and the circuit closes.
    std::fs::write(&flag, "").unwrap();
    let closed = eventually(Duration::from_secs(5), || {
        let c = c.clone();
        let echo = echo.clone();
        async move {
            (first_text(&c.request("tools/call", echo).await.body["result"]) == "x").then_some(())
        }
    })
    .await;
    assert!(
        closed.is_some(),
        "the half-open probe did not close the circuit"
    );
    let state = upstream_state(&gw, "ep", "flaky").await;
    assert_eq!(state["state"], "running", "{state}");
    assert_eq!(state["failures"], 0, "{state}");
}
