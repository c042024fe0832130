//! Aggregation and routing through a namespace.

use std::time::Duration;

use metamcp_it::{Env, FixtureHttp, RawClient, fixture_stdio, mcp_client};
use rmcp::model::{CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams};
use serde_json::{Value, json};

use crate::{first_text, two_server_gateway};

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_calls_through_prefixes_with_a_real_client() {
    let (_env, gw, key) = two_server_gateway().await;
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
    for want in [
        "alpha__echo",
        "beta__echo",
        "alpha__add",
        "beta__slow",
        "alpha__rich",
    ] {
        assert!(
            tools.contains(&want.to_owned()),
            "{want} missing from {tools:?}"
        );
    }
    assert_eq!(tools.iter().filter(|t| *t == "alpha__echo").count(), 1);

    let r = client
        .call_tool(
            CallToolRequestParams::new("beta__echo")
                .with_arguments(args(json!({"message": "through the gateway"}))),
        )
        .await
        .expect("call");
    let r = serde_json::to_value(&r).unwrap();
    assert_eq!(first_text(&r), "through the gateway");

    let r = client
        .call_tool(
            CallToolRequestParams::new("alpha__add").with_arguments(args(json!({"a": 2, "b": 3}))),
        )
        .await
        .expect("add");
    let r = serde_json::to_value(&r).unwrap();
    assert_eq!(r["structuredContent"]["sum"], 5);

    let r = serde_json::to_value(
        client
            .call_tool(CallToolRequestParams::new("alpha__rich"))
            .await
            .expect("rich"),
    )
    .unwrap();
    let kinds: Vec<&str> = r["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert!(kinds.contains(&"image") && kinds.contains(&"text"), "{r}");
    assert_eq!(r["structuredContent"], json!({"kind": "rich", "ok": true}));

    let prompts: Vec<String> = client
        .list_all_prompts()
        .await
        .expect("prompts")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(
        prompts.contains(&"alpha__greeting".to_owned())
            && prompts.contains(&"beta__plain".to_owned()),
        "{prompts:?}"
    );
    let mut gp = GetPromptRequestParams::new("beta__greeting");
    gp.arguments = Some(args(json!({"name": "Ada"})));
    let p = serde_json::to_value(client.get_prompt(gp).await.expect("prompt")).unwrap();
    assert!(p.to_string().contains("Hello, Ada!"), "{p}");

    let resources = client.list_all_resources().await.expect("resources");
    assert!(resources.iter().any(|r| r.uri == "fixture://static/readme"));
    let read = serde_json::to_value(
        client
            .read_resource(ReadResourceRequestParams::new("fixture://items/42"))
            .await
            .expect("read"),
    )
    .unwrap();
    assert_eq!(read["contents"][0]["text"], "item 42");
    let templates = client
        .list_all_resource_templates()
        .await
        .expect("templates");
    assert!(
        templates
            .iter()
            .any(|t| t.uri_template == "fixture://items/{id}")
    );
    client.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_route_without_listing_first_and_unknown_names_fail_clearly() {
    let (_env, gw, key) = two_server_gateway().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200);

    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "cold"}}),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(first_text(&a.body["result"]), "cold");
    let a = c
        .request("prompts/get", json!({"name": "alpha__plain"}))
        .await;
    assert!(
        a.body["result"].to_string().contains("A plain prompt."),
        "{}",
        a.body
    );

    for name in ["nope__echo", "echo", "__echo", "alpha__"] {
        let a = c
            .request("tools/call", json!({"name": name, "arguments": {}}))
            .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body["error"]["code"], -32602, "{name}: {}", a.body);
        assert!(
            a.body["error"]["message"].as_str().unwrap().contains(name),
            "{}",
            a.body
        );
        assert_eq!(a.body["id"], 1);
    }
    // A tool the upstream does not have: the upstream's own error comes back.
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__missing", "arguments": {}}),
        )
        .await;
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{}",
        a.body
    );

    let a = c.request("no/such/method", json!({})).await;
    assert_eq!(a.body["error"]["code"], -32601);
    let a = c.post_raw("{not json".into()).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"]["code"], -32700);
    let a = c.post_raw(r#"{"jsonrpc":"2.0","id":5}"#.into()).await;
    assert_eq!(a.body["error"]["code"], -32600);
    let a = c.request("ping", json!({})).await;
    assert_eq!(a.body["result"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_never_breaks_the_others() {
    let env = Env::new();
    env.import(json!({
        "alpha": fixture_stdio("alpha", &[]),
        "broken": {"command": "/nonexistent/metamcp-no-such-server"},
        "exits": {"command": "/bin/sh", "args": ["-c", "echo starting >&2; exit 7"]},
    }));
    env.cli_ok(&[
        "namespace",
        "create",
        "ns",
        "--server",
        "alpha",
        "--server",
        "broken",
        "--server",
        "exits",
    ]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;

    let started = std::time::Instant::now();
    let a = c.request("tools/list", json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "list waited on dead servers"
    );
    let names: Vec<&str> = a.body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"alpha__echo"), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("broken__") || n.starts_with("exits__"))
    );

    for server in ["broken", "exits"] {
        let a = c
            .request(
                "tools/call",
                json!({"name": format!("{server}__echo"), "arguments": {"message": "x"}}),
            )
            .await;
        let msg = a.body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(server), "{server}: {}", a.body);
        assert_eq!(a.body["error"]["data"]["server"], server);
    }
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "still here"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "still here");
    assert!(
        gw.log().contains("skipped this server"),
        "no log line for the skipped server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_upstream_and_paged_upstream_lists() {
    let fx = FixtureHttp::start(
        "remote",
        &[
            "--page-size",
            "2",
            "--extra-tools",
            "5",
            "--require-header",
            "authorization:Bearer tok-5f1e",
            "--require-header",
            "x-test:hdr-9a2b",
        ],
    )
    .await
    .expect("fixture http");
    let env = Env::new();
    env.import(json!({
        "remote": {"type": "streamable_http", "url": fx.url, "bearerToken": "tok-5f1e", "headers": {"X-Test": "hdr-9a2b"}},
        "wrongtoken": {"type": "http", "url": fx.url, "bearerToken": "not-the-token", "headers": {"X-Test": "hdr-9a2b"}},
        "paged": fixture_stdio("paged", &["--page-size", "3", "--extra-tools", "4"]),
    }));
    env.cli_ok(&[
        "namespace",
        "create",
        "ns",
        "--server",
        "remote",
        "--server",
        "wrongtoken",
        "--server",
        "paged",
    ]);
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
    for i in 0..5 {
        assert_eq!(
            tools
                .iter()
                .filter(|t| **t == format!("remote__extra_{i}"))
                .count(),
            1,
            "{tools:?}"
        );
    }
    for i in 0..4 {
        assert_eq!(
            tools
                .iter()
                .filter(|t| **t == format!("paged__extra_{i}"))
                .count(),
            1,
            "{tools:?}"
        );
    }
    let r = client
        .call_tool(
            CallToolRequestParams::new("remote__echo")
                .with_arguments(args(json!({"message": "over http"}))),
        )
        .await
        .expect("call");
    assert_eq!(first_text(&serde_json::to_value(&r).unwrap()), "over http");
    // The server whose token the upstream refuses is skipped, and its calls say why.
    assert!(!tools.iter().any(|t| t.starts_with("wrongtoken__")));
    let err = client
        .call_tool(
            CallToolRequestParams::new("wrongtoken__echo")
                .with_arguments(args(json!({"message": "x"}))),
        )
        .await
        .expect_err("refused upstream");
    assert!(
        err.to_string().contains("wrongtoken") && err.to_string().contains("401"),
        "{err}"
    );
    client.cancel().await.ok();
    let log = gw.log();
    assert!(
        !log.contains("tok-5f1e") && !log.contains("hdr-9a2b") && !log.contains("not-the-token"),
        "a secret reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_list_changed_refreshes_the_catalog() {
    let (_env, gw, key) = two_server_gateway().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;
    let names = |a: &Value| -> Vec<String> {
        a["result"]["tools"].as_array().map_or_else(Vec::new, |t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
    };
    assert!(
        !names(&c.request("tools/list", json!({})).await.body)
            .contains(&"alpha__grown_0".to_owned())
    );
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__grow", "arguments": {}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "grown_0");
    let seen = metamcp_it::eventually(Duration::from_secs(2), || {
        let c = c.clone();
        async move {
            names(&c.request("tools/list", json!({})).await.body)
                .contains(&"alpha__grown_0".to_owned())
                .then_some(())
        }
    })
    .await;
    assert!(
        seen.is_some(),
        "list_changed did not refresh the cached catalog"
    );
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__grown_0", "arguments": {"message": "new"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_tools_list_does_not_touch_upstreams() {
    let (env, gw, key) = two_server_gateway().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;
    let first = c.request("tools/list", json!({})).await.body;
    // Kill both upstream processes: a list served from the cache does not notice. (Pids
    // are shown to admin keys only; a new key is known within a second.)
    let admin = env.admin_key("ops");
    let health = metamcp_it::eventually(Duration::from_secs(5), || {
        let gw = &gw;
        let admin = &admin;
        async move {
            let h = gw.session_health("ep", Some(admin)).await;
            h["upstreams"][0].get("pid").is_some().then_some(h)
        }
    })
    .await
    .expect("session health for the admin key");
    for u in health["upstreams"].as_array().unwrap() {
        let pid = u["pid"].as_i64().expect("running upstream has a pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    let second = c.request("tools/list", json!({})).await.body;
    assert_eq!(first["result"], second["result"]);
    // …and a call restarts the killed upstream (a call racing with the kill may still see
    // the old process die, which is an error by design).
    let back = metamcp_it::eventually(Duration::from_secs(5), || {
        let c = c.clone();
        async move {
            let a = c
                .request(
                    "tools/call",
                    json!({"name": "alpha__echo", "arguments": {"message": "back"}}),
                )
                .await;
            (first_text(&a.body["result"]) == "back").then_some(())
        }
    })
    .await;
    assert!(back.is_some(), "the killed upstream was not restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_answered_in_one_array() {
    let (_env, gw, key) = two_server_gateway().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;
    let body = json!([
        {"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"alpha__echo","arguments":{"message":"1"}}},
        {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"zz"}},
        {"jsonrpc":"2.0","id":"b","method":"ping"}
    ]);
    let a = c.post_raw(body.to_string()).await;
    let arr = a.body.as_array().expect("array");
    assert_eq!(arr.len(), 2);
    assert!(
        arr.iter()
            .any(|r| r["id"] == "a" && first_text(&r["result"]) == "1")
    );
    assert!(arr.iter().any(|r| r["id"] == "b"));
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_modes_never_conditional_and_collisions() {
    let env = Env::new();
    env.import(json!({
        "alpha": fixture_stdio("alpha", &["--extra-tools", "1"]),
        "beta": fixture_stdio("beta", &[]),
    }));
    env.cli_ok(&[
        "namespace",
        "create",
        "solo",
        "--server",
        "alpha",
        "--prefix",
        "never",
    ]);
    env.cli_ok(&[
        "namespace",
        "create",
        "cond",
        "--server",
        "alpha",
        "--prefix",
        "conditional",
    ]);
    let out = env.cli_ok(&[
        "namespace",
        "create",
        "both",
        "--server",
        "alpha",
        "--server",
        "beta",
        "--prefix",
        "never",
    ]);
    assert!(out.contains("not known yet"), "{out}");
    for ep in ["solo", "cond", "both"] {
        env.cli_ok(&["endpoint", "create", ep, "--namespace", ep, "--no-auth"]);
    }
    let gw = env.serve().await;

    // never: names unchanged, calls route by the bare name.
    let mut solo = RawClient::new(&gw.mcp_url("solo"));
    solo.initialize().await;
    let names = tool_names(&solo).await;
    assert!(
        names.contains(&"echo".to_owned()) && !names.iter().any(|n| n.contains("__")),
        "{names:?}"
    );
    let a = solo
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "bare"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "bare");
    let a = solo
        .request(
            "prompts/get",
            json!({"name": "greeting", "arguments": {"name": "Bo"}}),
        )
        .await;
    assert!(
        a.body["result"].to_string().contains("Hello, Bo!"),
        "{}",
        a.body
    );

    // conditional: unprefixed with one server, prefixed once a second joins.
    let mut cond = RawClient::new(&gw.mcp_url("cond"));
    cond.initialize().await;
    assert!(tool_names(&cond).await.contains(&"echo".to_owned()));
    env.cli_ok(&["namespace", "add-server", "cond", "--server", "beta"]);
    let prefixed = metamcp_it::eventually(Duration::from_secs(3), || {
        let c = cond.clone();
        async move {
            tool_names(&c)
                .await
                .contains(&"beta__echo".to_owned())
                .then_some(())
        }
    })
    .await;
    assert!(
        prefixed.is_some(),
        "conditional namespace not prefixed after a second server joined"
    );

    // never with clashing names: clashing tools are left out and refused, never picked.
    let mut both = RawClient::new(&gw.mcp_url("both"));
    both.initialize().await;
    let names = tool_names(&both).await;
    assert!(
        names.contains(&"extra_0".to_owned()) && !names.contains(&"echo".to_owned()),
        "{names:?}"
    );
    let a = both
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "x"}}),
        )
        .await;
    let msg = a.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("Ambiguous") && msg.contains("alpha") && msg.contains("beta"),
        "{}",
        a.body
    );
    let a = both
        .request(
            "tools/call",
            json!({"name": "extra_0", "arguments": {"message": "unique"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "unique");

    // Once the tools are known, `namespace list` reports the clash and configuration refuses it.
    let listed = metamcp_it::eventually(Duration::from_secs(5), || {
        let o = env.cli(&["namespace", "list"]);
        async move {
            o.stdout
                .contains("COLLISION: tool \"echo\"")
                .then_some(o.stdout)
        }
    })
    .await;
    assert!(listed.is_some(), "namespace list shows no collision");
    let refused = env.cli(&[
        "namespace",
        "create",
        "again",
        "--server",
        "alpha",
        "--server",
        "beta",
        "--prefix",
        "never",
    ]);
    assert!(
        !refused.ok && refused.stderr.contains("clash") && refused.stderr.contains("echo"),
        "{}",
        refused.stderr
    );
    let ok = env.cli(&[
        "namespace",
        "create",
        "again",
        "--server",
        "alpha",
        "--server",
        "beta",
        "--prefix",
        "conditional",
    ]);
    assert!(ok.ok, "{}", ok.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_that_speak_only_the_stateless_era_are_served() {
    let fx = FixtureHttp::start("remote", &["--modern-only"])
        .await
        .expect("fixture http");
    let env = Env::new();
    env.import(json!({
        "local": fixture_stdio("local", &["--modern-only"]),
        "remote": {"type": "streamable_http", "url": fx.url},
    }));
    env.cli_ok(&[
        "namespace",
        "create",
        "ns",
        "--server",
        "local",
        "--server",
        "remote",
    ]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;
    // A session-era client, two upstreams that refuse `initialize` (2026-07-28 only).
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    let names = tool_names(&c).await;
    assert!(
        names.contains(&"local__echo".to_owned()) && names.contains(&"remote__echo".to_owned()),
        "{names:?}\n{}",
        gw.log()
    );
    for tool in ["local__echo", "remote__echo"] {
        let a = c
            .request(
                "tools/call",
                json!({"name": tool, "arguments": {"message": "across eras"}}),
            )
            .await;
        assert_eq!(
            first_text(&a.body["result"]),
            "across eras",
            "{tool}: {}",
            a.body
        );
    }
    let a = c
        .request(
            "prompts/get",
            json!({"name": "local__greeting", "arguments": {"name": "Eve"}}),
        )
        .await;
    assert!(
        a.body["result"].to_string().contains("Hello, Eve!"),
        "{}",
        a.body
    );
    assert!(
        gw.log().contains("stateless era"),
        "the switch was not logged"
    );
}
