//! Interop with the official `@modelcontextprotocol/server-everything` (npm) as a stdio
//! upstream. `.ci/run` installs it under `e2e/node_modules`; where Node or the package is
//! missing the test is skipped, except in CI where that is a failure.

use std::path::PathBuf;

use metamcp_it::{Env, mcp_client};
use rmcp::model::CallToolRequestParams;
use serde_json::json;

pub(crate) fn everything() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../e2e/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if root.exists() && node_ok {
        return Some(root);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have Node and {} (run `npm ci` in e2e/)",
        root.display()
    );
    eprintln!(
        "skipping: server-everything or node not installed ({})",
        root.display()
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_through_the_gateway() {
    let Some(script) = everything() else { return };
    let env = Env::new();
    env.import(
        json!({ "everything": {"command": "node", "args": [script.to_string_lossy(), "stdio"]} }),
    );
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
    let mut args = serde_json::Map::new();
    args.insert("message".into(), json!("hello everything"));
    let r = client
        .call_tool(CallToolRequestParams::new("everything__echo").with_arguments(args))
        .await
        .expect("call");
    let r = serde_json::to_value(&r).unwrap();
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("hello everything"),
        "{r}"
    );
    let prompts = client.list_all_prompts().await.expect("prompts");
    assert!(prompts.iter().all(|p| p.name.starts_with("everything__")));
    let resources = client.list_all_resources().await.expect("resources");
    if let Some(r) = resources.first() {
        let read = client
            .read_resource(rmcp::model::ReadResourceRequestParams::new(r.uri.clone()))
            .await
            .expect("read");
        assert!(!read.contents.is_empty());
    }
    client.cancel().await.ok();
}
