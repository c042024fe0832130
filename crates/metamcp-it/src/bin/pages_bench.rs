//! `metamcp-pages-bench`: how long the dashboard takes to serve each page, to its last byte,
//! with a large configuration.
//!
//! It builds, in a temporary data directory and with the `metamcp` CLI: `--servers` stdio
//! fixture servers (default 100), each with `--tools-per-server` extra tools (default 20, so
//! about 2,700 tools in all with the fixture's own), one namespace `all` holding every server
//! (so its tool table lists every tool), `--namespaces` − 1 more namespaces of two servers
//! each (default 50 in all), an endpoint and a key per namespace. It starts `metamcp serve`
//! lists the tools of `all` once as a client would, waits until the gateway has discovered every tool, signs up (the
//! first account, an admin), then fetches every dashboard page `--rounds` times (default 20)
//! one after another and reports per page the bytes, the median and the slowest time to the
//! last byte, against the target of 100 ms. Run it on a release build (`scripts/pages-bench.sh`).
//!
//! ```text
//! metamcp-pages-bench [--servers 100] [--tools-per-server 20] [--namespaces 50] [--rounds 20] [--check]
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use metamcp_it::benchkit::{cli, serve, sibling};
use metamcp_it::browser::Browser;
use serde_json::{Map, Value, json};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 100)]
    servers: usize,
    #[arg(long, default_value_t = 20)]
    tools_per_server: usize,
    #[arg(long, default_value_t = 50)]
    namespaces: usize,
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Exit 1 when a page misses the target.
    #[arg(long)]
    check: bool,
}

const TARGET: Duration = Duration::from_millis(100);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let metamcp = sibling("metamcp")?;
    let fixture = sibling("metamcp-fixture")?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");

    eprintln!(
        "pages-bench: {} servers × {} extra tools, {} namespaces",
        args.servers, args.tools_per_server, args.namespaces
    );
    let mut servers = Map::new();
    let names: Vec<String> = (0..args.servers).map(|i| format!("s{i:03}")).collect();
    for n in &names {
        servers.insert(
            n.clone(),
            json!({
                "command": fixture.to_string_lossy(),
                "args": ["stdio", "--name", n, "--extra-tools", args.tools_per_server.to_string()],
            }),
        );
    }
    let import = dir.path().join("servers.json");
    std::fs::write(&import, json!({ "mcpServers": servers }).to_string())?;
    cli(
        &metamcp,
        &data,
        &["import", import.to_str().context("path")?],
    )?;
    let mut all = vec!["namespace", "create", "all"];
    for n in &names {
        all.extend(["--server", n.as_str()]);
    }
    cli(&metamcp, &data, &all)?;
    cli(
        &metamcp,
        &data,
        &["endpoint", "create", "all", "--namespace", "all"],
    )?;
    for i in 1..args.namespaces {
        let (a, b) = (&names[i % names.len()], &names[(i + 1) % names.len()]);
        let ns = format!("ns{i:02}");
        cli(
            &metamcp,
            &data,
            &["namespace", "create", &ns, "--server", a, "--server", b],
        )?;
        cli(
            &metamcp,
            &data,
            &["endpoint", "create", &ns, "--namespace", &ns],
        )?;
        cli(&metamcp, &data, &["key", "create", &format!("key{i:02}")])?;
    }
    let key_out = cli(&metamcp, &data, &["key", "create", "bench"])?;
    let key = key_out.lines().last().context("key")?.trim().to_owned();

    let (mut gw, base) = serve(&metamcp, &data, "warn").await?;

    let mut b = Browser::new(&base);
    let up = b.sign_up("bench@example.com", "bench password 1").await;
    if up.status != 200 {
        bail!("sign-up: {} {}", up.status, up.text);
    }
    // Every server started and its tools discovered: a client lists the tools once.
    let mut c = metamcp_it::RawClient::new(&format!("{base}/metamcp/all/mcp")).bearer(&key);
    c.initialize().await;
    c.request("tools/list", json!({})).await;
    let want_tools = args.servers * args.tools_per_server;
    let started = Instant::now();
    loop {
        let t = b.get("/api/v1/namespaces/all/tools").await;
        let n = t.json["tools"].as_array().map_or(0, Vec::len);
        if t.status != 200 {
            bail!("tools: {} {}", t.status, t.text);
        }
        if n >= want_tools {
            eprintln!(
                "pages-bench: {n} tools known after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        if started.elapsed() > Duration::from_secs(180) {
            bail!("only {n} of at least {want_tools} tools discovered after 180 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let pages = [
        "/servers",
        "/namespaces",
        "/namespaces/all",
        "/namespaces/ns01",
        "/endpoints",
        "/keys",
        "/inspector",
        "/logs",
        "/settings",
        "/account",
        "/servers/s000/edit",
        "/servers/s000/logs",
    ];
    let http = reqwest::Client::new();
    let cookie = b.cookie.clone().unwrap_or_default();
    println!(
        "page                      bytes   p50 ms   max ms   (target < {} ms)",
        TARGET.as_millis()
    );
    let mut missed = Vec::new();
    let mut report = Vec::new();
    for page in pages {
        let mut times = Vec::with_capacity(args.rounds);
        let mut bytes = 0;
        for _ in 0..args.rounds {
            let t0 = Instant::now();
            let resp = http
                .get(format!("{base}{page}"))
                .header("cookie", &cookie)
                .send()
                .await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            times.push(t0.elapsed());
            if !status.is_success() {
                bail!("{page}: {status}");
            }
            bytes = body.len();
        }
        times.sort();
        let p50 = times[times.len() / 2];
        let max = times[times.len() - 1];
        let verdict = if max < TARGET { "PASS" } else { "MISS" };
        if max >= TARGET {
            missed.push(page);
        }
        println!(
            "{page:<24} {bytes:>8} {:>8.2} {:>8.2}   {verdict}",
            p50.as_secs_f64() * 1000.0,
            max.as_secs_f64() * 1000.0
        );
        report.push(json!({ "page": page, "bytes": bytes, "p50_ms": p50.as_secs_f64() * 1000.0, "max_ms": max.as_secs_f64() * 1000.0 }));
    }
    let _ = gw.kill().await;
    eprintln!("{}", Value::Array(report));
    if args.check && !missed.is_empty() {
        bail!("pages over {} ms: {missed:?}", TARGET.as_millis());
    }
    Ok(())
}
