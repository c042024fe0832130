//! A server that is starting or hung never stalls a namespace's lists: the first list waits
//! at most `MCP_LIST_FIRST_TIMEOUT` for it, no later list waits for it at all while its list
//! is still running, and when a late list arrives clients are told `list_changed` and find
//! its items.

use std::time::{Duration, Instant};

use metamcp_it::{Env, RawClient, fixture_stdio};
use serde_json::{Value, json};

fn tool_names(body: &Value) -> Vec<String> {
    body["result"]["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_never_stalls_a_list() {
    let env = Env::new();
    let fixture = metamcp_it::bin("metamcp-fixture");
    env.import(json!({
        "alpha": fixture_stdio("alpha", &[]),
        // Starts after 1.5 s: late for the first list, then announced with list_changed.
        "slow": {
            "command": "sh",
            "args": ["-c", format!("sleep 1.5; exec '{}' stdio --name slow", fixture.display())],
        },
        // Never answers its handshake.
        "hung": { "command": "sleep", "args": ["600"] },
    }));
    env.cli_ok(&[
        "namespace",
        "create",
        "ns",
        "--server",
        "alpha",
        "--server",
        "slow",
        "--server",
        "hung",
    ]);
    env.cli_ok(&[
        "namespace",
        "create",
        "ns2",
        "--server",
        "alpha",
        "--server",
        "hung",
    ]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    env.cli_ok(&[
        "endpoint",
        "create",
        "ep2",
        "--namespace",
        "ns2",
        "--no-auth",
    ]);
    // A first wait of 1 s, then 5 s: a list that waited for the hung server again would take
    // five seconds, one that skips it a few milliseconds.
    env.cli_ok(&["settings", "set", "MCP_LIST_FIRST_TIMEOUT", "1000"]);
    env.cli_ok(&["settings", "set", "MCP_LIST_TIMEOUT", "5000"]);
    let gw = env.serve().await;

    let mut c = RawClient::new(&gw.mcp_url("ep"));
    assert_eq!(c.initialize().await.status, 200);
    let mut stream = c.open_stream().await;
    let t = Instant::now();
    let first = c.request("tools/list", json!({})).await;
    let took = t.elapsed();
    let names = tool_names(&first.body);
    println!(
        "first tools/list: {} ms, {} tools",
        took.as_millis(),
        names.len()
    );
    assert!(names.iter().any(|n| n == "alpha__echo"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("slow__")), "{names:?}");
    assert!(
        took < Duration::from_millis(3000),
        "the first list took {took:?}"
    );

    // Another namespace with the hung server: its list does not wait for it again.
    let mut c2 = RawClient::new(&gw.mcp_url("ep2"));
    assert_eq!(c2.initialize().await.status, 200);
    for round in 0..3 {
        let t = Instant::now();
        let l = c2.request("tools/list", json!({})).await;
        let took = t.elapsed();
        println!("ep2 tools/list #{round}: {} ms", took.as_millis());
        assert!(tool_names(&l.body).iter().any(|n| n == "alpha__echo"));
        assert!(
            took < Duration::from_millis(2000),
            "list #{round} waited: {took:?}"
        );
    }

    // The slow server's list arrives: clients hear list_changed, and list its tools.
    let mut heard = false;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(15), stream.recv()).await {
        if ev["method"] == "notifications/tools/list_changed" {
            heard = true;
            break;
        }
    }
    assert!(
        heard,
        "no list_changed after the slow server's list arrived"
    );
    let t = Instant::now();
    let again = c.request("tools/list", json!({})).await;
    let names = tool_names(&again.body);
    println!(
        "after list_changed: {} ms, {:?}",
        t.elapsed().as_millis(),
        names.iter().filter(|n| n.starts_with("slow__")).count()
    );
    assert!(names.iter().any(|n| n == "slow__echo"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("hung__")));
}
