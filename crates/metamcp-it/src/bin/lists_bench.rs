//! `metamcp-lists-bench`: how fast a namespace's `tools/list` answers, warm, for a large
//! namespace, and how a namespace holding one hung server lists.
//!
//! It builds, in a temporary data directory and with the `metamcp` CLI: `--servers` stdio
//! fixture servers (default 50) with `--extra-tools` extra tools each (default 29, i.e. 42
//! tools per server with the fixture's own), a namespace `big` holding all of them, and a
//! namespace `hung` holding one fixture server and one "server" that never answers its
//! handshake (`sleep 600`). It starts `metamcp serve` and then:
//!
//! - `big`: lists once cold (every server starts), then `--rounds` times warm (default 200),
//!   one after another, and reports the bytes and the time to the last byte (p50, p90, max);
//! - `hung`: lists for `--hung-seconds` (default 12: longer than the 5 s an incomplete list
//!   is reused, so lists are rebuilt meanwhile), one every 100 ms, and reports the first
//!   list's time (bounded by `MCP_LIST_FIRST_TIMEOUT`) and the slowest of the others
//!   (bounded by `MCP_LIST_TIMEOUT`, and in fact not waiting for the hung server at all).
//!
//! Run it on a release build (`scripts/lists-bench.sh`).
//!
//! ```text
//! metamcp-lists-bench [--servers 50] [--extra-tools 29] [--rounds 200] [--hung-seconds 12]
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use metamcp_it::benchkit::{cli, open_session, serve, sibling};
use serde_json::{Map, Value, json};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 50)]
    servers: usize,
    #[arg(long, default_value_t = 29)]
    extra_tools: usize,
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    #[arg(long, default_value_t = 12)]
    hung_seconds: u64,
}

/// One `tools/list` on a fresh HTTP request: (time to the last byte, bytes, tools).
async fn list(http: &reqwest::Client, url: &str, sid: &str) -> Result<(Duration, usize, usize)> {
    let t = Instant::now();
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-06-18")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await?;
    let body = resp.bytes().await?;
    let took = t.elapsed();
    let text = std::str::from_utf8(&body).context("utf-8")?;
    // An SSE answer carries the JSON in its data line.
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(text);
    let v: Value = serde_json::from_str(json).context("tools/list answer")?;
    let n = v["result"]["tools"].as_array().map_or(0, Vec::len);
    Ok((took, body.len(), n))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let metamcp = sibling("metamcp")?;
    let fixture = sibling("metamcp-fixture")?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");

    let mut servers = Map::new();
    let names: Vec<String> = (0..args.servers).map(|i| format!("s{i:03}")).collect();
    for n in &names {
        servers.insert(
            n.clone(),
            json!({
                "command": fixture.to_string_lossy(),
                "args": ["stdio", "--name", n, "--extra-tools", args.extra_tools.to_string()],
            }),
        );
    }
    servers.insert(
        "hung".into(),
        json!({ "command": "sleep", "args": ["600"] }),
    );
    let import = dir.path().join("servers.json");
    std::fs::write(&import, json!({ "mcpServers": servers }).to_string())?;
    cli(
        &metamcp,
        &data,
        &["import", import.to_str().context("path")?],
    )?;
    let mut big = vec!["namespace", "create", "big"];
    for n in &names {
        big.extend(["--server", n.as_str()]);
    }
    cli(&metamcp, &data, &big)?;
    cli(
        &metamcp,
        &data,
        &[
            "namespace",
            "create",
            "hung",
            "--server",
            "s000",
            "--server",
            "hung",
        ],
    )?;
    for ep in ["big", "hung"] {
        cli(
            &metamcp,
            &data,
            &["endpoint", "create", ep, "--namespace", ep, "--no-auth"],
        )?;
    }

    let (mut gw, base) = serve(&metamcp, &data, "error").await?;
    let http = reqwest::Client::new();

    // A big namespace, cold then warm.
    let url = format!("{base}/metamcp/big/mcp");
    let sid = open_session(&http, &url, "lists-bench").await?;
    let (cold, bytes, tools) = list(&http, &url, &sid).await?;
    let mut warm = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        warm.push(list(&http, &url, &sid).await?.0);
    }
    warm.sort();
    let pct = |p: f64| warm[((warm.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "big namespace: {} servers, {tools} tools, {bytes} bytes; cold {:.1} ms; warm ({} lists) p50 {:.3} ms, p90 {:.3} ms, max {:.3} ms",
        args.servers,
        ms(cold),
        warm.len(),
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(pct(1.0))
    );

    // A namespace with one hung server.
    let url = format!("{base}/metamcp/hung/mcp");
    let sid = open_session(&http, &url, "lists-bench").await?;
    let started = Instant::now();
    let (first, _, first_tools) = list(&http, &url, &sid).await?;
    let mut later = Vec::new();
    while started.elapsed() < Duration::from_secs(args.hung_seconds) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        later.push(list(&http, &url, &sid).await?.0);
    }
    later.sort();
    let slowest = later.last().copied().unwrap_or_default();
    println!(
        "hung namespace: first list {:.1} ms ({first_tools} tools, without the hung server); {} later lists over {} s: p50 {:.3} ms, slowest {:.3} ms",
        ms(first),
        later.len(),
        args.hung_seconds,
        ms(later.get(later.len() / 2).copied().unwrap_or_default()),
        ms(slowest)
    );
    gw.kill().await.ok();
    Ok(())
}
