//! Changes made with the CLI while the gateway serves reach it within 2 seconds, on SQLite
//! and on PostgreSQL (LISTEN/NOTIFY).

use std::time::Duration;

use metamcp_it::{Env, RawClient, alive, eventually, fixture_stdio};
use serde_json::json;

use crate::first_text;

async fn tool_names(c: &RawClient) -> Vec<String> {
    let a = c.request("tools/list", json!({})).await;
    a.body["result"]["tools"]
        .as_array()
        .map_or_else(Vec::new, |t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
}

async fn live_changes(env: Env) {
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]), "beta": fixture_stdio("beta", &[]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    let key = env.key("k");
    // Upstream pids are in the session health for admin keys only.
    let admin = env.admin_key("ops");
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;
    assert!(!tool_names(&c).await.iter().any(|t| t.starts_with("beta__")));

    // A server added to the namespace: its tools appear within 2 s.
    env.cli_ok(&["namespace", "add-server", "ns", "--server", "beta"]);
    let seen = eventually(Duration::from_secs(2), || {
        let c = c.clone();
        async move {
            tool_names(&c)
                .await
                .iter()
                .any(|t| t == "beta__echo")
                .then_some(())
        }
    })
    .await;
    assert!(seen.is_some(), "beta's tools did not appear within 2 s");

    // A new endpoint answers within 2 s.
    env.cli_ok(&["endpoint", "create", "ep2", "--namespace", "ns"]);
    let answered = eventually(Duration::from_secs(2), || {
        let mut c2 = RawClient::new(&gw.mcp_url("ep2")).bearer(&key);
        async move { (c2.initialize().await.status == 200).then_some(()) }
    })
    .await;
    assert!(answered.is_some(), "new endpoint not served within 2 s");

    // Removing a server stops its process and drops its tools.
    let a = c
        .request(
            "tools/call",
            json!({"name": "beta__echo", "arguments": {"message": "x"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "x");
    let health = gw.session_health("ep", Some(&admin)).await;
    let beta_pid = health["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["server"] == "beta")
        .unwrap()["pid"]
        .as_u64()
        .unwrap() as u32;
    assert!(alive(beta_pid));
    env.cli_ok(&["server", "remove", "beta"]);
    let gone = eventually(Duration::from_secs(5), || async move {
        (!alive(beta_pid)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "beta's process survived its removal");
    let dropped = eventually(Duration::from_secs(2), || {
        let c = c.clone();
        async move { (!tool_names(&c).await.iter().any(|t| t.starts_with("beta__"))).then_some(()) }
    })
    .await;
    assert!(dropped.is_some(), "beta's tools still listed");
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "alpha lives"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "alpha lives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_changes_reach_a_running_gateway_on_sqlite() {
    live_changes(Env::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_changes_reach_a_running_gateway_on_postgres() {
    let Some(env) = Env::new_pg().await else {
        return;
    };
    live_changes(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_get_only_their_env_and_the_allow_list() {
    // On PostgreSQL the gateway has DATABASE_URL in its environment: it must not leak.
    let Some(env) = Env::new_pg().await else {
        return;
    };
    let mut spec = fixture_stdio("alpha", &[]);
    spec["env"] = json!({"GREETING": "greet-7f3a", "FROM_GATEWAY": "${IT_GATEWAY_SOURCE}"});
    env.import(json!({ "alpha": spec }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env
        .serve_with(&[
            ("IT_GATEWAY_SOURCE", "resolved-from-gateway"),
            ("METAMCP_IT_PRIVATE", "must-not-leak"),
        ])
        .await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    let env_of = |name: &'static str| crate::fixture_env(&c, "alpha__env", name);
    assert_eq!(env_of("GREETING").await, "greet-7f3a");
    assert_eq!(env_of("FROM_GATEWAY").await, "resolved-from-gateway");
    assert_eq!(env_of("DATABASE_URL").await, "<unset>");
    assert_eq!(env_of("METAMCP_IT_PRIVATE").await, "<unset>");
    assert_ne!(env_of("PATH").await, "<unset>");
    // The configured values never reach the logs.
    assert!(!gw.log().contains("resolved-from-gateway") && !gw.log().contains("greet-7f3a"));
}
