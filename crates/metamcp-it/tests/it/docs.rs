//! Every `sh` block of docs/troubleshooting.md runs against a live gateway (on PostgreSQL,
//! so the database commands run too) and must succeed: the page never drifts from the product.

use metamcp_it::{Env, RawClient, bin, fixture_stdio};
use serde_json::json;

fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_troubleshooting_command_works() {
    let Some(env) = Env::new_pg().await else {
        return;
    };
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "main", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "main", "--namespace", "main"]);
    let key = env.key("docs");
    let gw = env.serve().await;
    // Start the upstream so process and log commands have something to show.
    let mut c = RawClient::new(&gw.mcp_url("main")).bearer(&key);
    c.initialize().await;
    c.request(
        "tools/call",
        json!({"name": "alpha__echo", "arguments": {"message": "x"}}),
    )
    .await;

    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/troubleshooting.md"
    ))
    .unwrap();
    let blocks = sh_blocks(&page);
    assert!(
        blocks.len() >= 8,
        "expected the page's command blocks, found {}",
        blocks.len()
    );
    let setup = &blocks[0];
    let bin_dir = bin("metamcp").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for block in &blocks {
        let script = format!(
            "set -euo pipefail\n{setup}\nEP=main\nKEY={key}\nSERVER=alpha\n{}",
            block.replace("http://localhost:12008", &gw.base)
        );
        let out = tokio::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env("PATH", &path)
            .env("METAMCP_DATA_DIR", env.data_dir())
            .env("DATABASE_URL", env.database_url.as_deref().unwrap())
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "block failed:\n{block}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !stdout.contains("\"error\":\"unauthorized\""),
            "block answered 401:\n{block}\n{stdout}"
        );
    }
}
