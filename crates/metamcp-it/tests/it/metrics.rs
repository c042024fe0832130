//! `GET /metrics`: the Prometheus text a real gateway serves after real calls, checked by
//! `promtool check metrics` (Debian package `prometheus`, installed by `scripts/test`); the
//! tool label bounded to listed names; who may read it (open on loopback, the token otherwise,
//! its own listener with `METAMCP_METRICS_BIND`, nothing with `METAMCP_METRICS=off`).

use std::io::Write as _;
use std::process::{Command, Stdio};

use metamcp_it::{Env, RawClient, fixture_stdio, free_port};
use serde_json::json;

/// `promtool check metrics` on `text`: `Ok` when it passes, `Err(report)` when not. Without
/// promtool the check is skipped, except in CI.
fn promtool(text: &str) -> Result<(), String> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is not installed in CI (scripts/test installs it): {e}"
            );
            eprintln!("note: promtool not installed; metrics not linted");
            return Ok(());
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn setup() -> (Env, String) {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    let key = env.key("laptop");
    (env, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_with_bounded_labels_and_pass_promtool() {
    let (env, key) = setup();
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;
    c.request("tools/list", json!({})).await;
    for (tool, n) in [
        ("alpha__echo", 3),
        ("alpha__fail", 1),
        ("alpha__made_up_1", 1),
        ("alpha__made_up_2", 1),
    ] {
        for _ in 0..n {
            c.request(
                "tools/call",
                json!({"name": tool, "arguments": {"message": "m"}}),
            )
            .await;
        }
    }
    c.request("nonsense/method", json!({})).await;

    let (status, text) = get(&format!("{}/metrics", gw.base), None).await;
    assert_eq!(status, 200, "{text}");
    println!("{text}");
    if let Err(report) = promtool(&text) {
        panic!("promtool check metrics failed:\n{report}\n{text}");
    }
    let has = |line: &str| {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    };
    has(r#"metamcp_requests_total{endpoint="ep",face="mcp",method="tools/call"} 6"#);
    has(r#"metamcp_requests_total{endpoint="ep",face="mcp",method="other"} 1"#);
    has(
        r#"metamcp_calls_total{endpoint="ep",server="alpha",kind="tool_call",tool="alpha__echo",outcome="ok"} 3"#,
    );
    has(
        r#"metamcp_calls_total{endpoint="ep",server="alpha",kind="tool_call",tool="alpha__fail",outcome="tool_error"} 1"#,
    );
    // Names the namespace does not list share one label value.
    has(
        r#"metamcp_calls_total{endpoint="ep",server="alpha",kind="tool_call",tool="other",outcome="tool_error"} 2"#,
    );
    assert!(!text.contains("made_up"), "{text}");
    has(r#"metamcp_call_duration_seconds_count{endpoint="ep",server="alpha"} 6"#);
    has(r#"metamcp_call_gateway_seconds_count{endpoint="ep",server="alpha"} 6"#);
    has(r#"metamcp_upstream_state{server="alpha",state="running"} 1"#);
    has("metamcp_upstream_processes 1");
    has(r#"metamcp_sessions{era="streamable"} 1"#);
    has("metamcp_build_info{version=");
    // No tool label on histograms.
    for line in text.lines().filter(|l| l.contains("_bucket{")) {
        assert!(!line.contains("tool="), "{line}");
    }
    // Nothing secret.
    assert!(!text.contains(&key[6..]), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_read_metrics() {
    let (env, _key) = setup();
    // Reachable from other machines: the token is needed.
    let gw = env
        .serve_at("0.0.0.0:0", &[("METAMCP_METRICS_TOKEN", "scrape-secret-1")])
        .await;
    let url = format!("http://127.0.0.1:{}/metrics", gw.addr.port());
    assert_eq!(get(&url, None).await.0, 401);
    assert_eq!(get(&url, Some("wrong")).await.0, 401);
    let (s, text) = get(&url, Some("scrape-secret-1")).await;
    assert_eq!(s, 200);
    assert!(text.contains("metamcp_build_info"), "{text}");
    assert!(
        !gw.log().contains("scrape-secret-1"),
        "the token is never logged"
    );
    drop(gw);
    // … and without a token configured it is refused, saying what to set.
    let gw = env.serve_at("0.0.0.0:0", &[]).await;
    let (s, body) = get(
        &format!("http://127.0.0.1:{}/metrics", gw.addr.port()),
        None,
    )
    .await;
    assert_eq!(s, 403);
    assert!(body.contains("METAMCP_METRICS_TOKEN"), "{body}");
    drop(gw);

    // Its own listener: served there, not on the gateway's port.
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let gw = env
        .serve_with(&[("METAMCP_METRICS_BIND", bind.as_str())])
        .await;
    assert!(
        gw.banner
            .iter()
            .any(|l| l.contains(&format!("{bind}/metrics"))),
        "{:?}",
        gw.banner
    );
    assert_eq!(get(&format!("http://{bind}/metrics"), None).await.0, 200);
    assert_eq!(get(&format!("{}/metrics", gw.base), None).await.0, 404);
    drop(gw);

    // Off.
    let gw = env.serve_with(&[("METAMCP_METRICS", "off")]).await;
    assert_eq!(get(&format!("{}/metrics", gw.base), None).await.0, 404);
}
