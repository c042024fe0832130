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

    let slow = {
        let c = c.clone();
        tokio::spawn(async move {
            c.request(
                "tools/call",
                json!({"name": "alpha__slow", "arguments": {"steps": 100, "delay_ms": 100}}),
            )
            .await
        })
    };
    // Let the slow call reach the upstream, then crash the same process.
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    let slow = slow.await.unwrap();
    assert!(
        crashed_at.elapsed() < Duration::from_secs(1),
        "in-flight call not failed within 1 s"
    );
    let msg = slow.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("alpha") && msg.contains("exited"),
        "{}",
        slow.body
    );

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
