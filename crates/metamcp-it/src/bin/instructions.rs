//! Instructions per relayed call and per cached `tools/list`, counted by valgrind's
//! callgrind on the gateway alone: the regression guard of `.ci/run` (`scripts/instructions.sh`).
//!
//! Times are useless on a shared 2-core machine; instruction counts repeat. The gateway runs
//! under `valgrind --tool=callgrind` with one tokio worker (`TOKIO_WORKER_THREADS=1`), the
//! defaults on (audit, metrics), in front of the fixture over plain HTTP (not counted: its own
//! process). One caller sends a warm-up, then `N` requests one after another; the gateway is
//! stopped and callgrind's total read. The same run with `2N` requests: the difference,
//! divided by `N`, is the cost of one request — start-up, warm-up, shutdown and most
//! background ticks cancel out. Both workloads (a `tools/call` relayed to the fixture's
//! `echo`, and `tools/list` of a 200-tool namespace served from the catalog cache) run twice,
//! the two rounds side by side on copies of one data directory, and the lower figure counts
//! (a stray tick only ever adds).
//!
//! `--baseline FILE` compares with the committed figures (`name value` lines): more than
//! `--tolerance` (10 %) over a baseline fails (exit 1). `--write FILE` records the figures
//! (updating the baseline is a deliberate commit that says why).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use metamcp_it::benchkit::{cli as run_cli, listening, open_session, sibling};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Parser, Debug)]
#[command(about = "Instructions per relayed call and per cached tools/list, under callgrind")]
struct Cli {
    /// Requests in the shorter run (the longer one sends twice as many).
    #[arg(long, default_value_t = 400)]
    calls: u64,
    /// Committed figures to compare with (`name value` per line).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Growth over a baseline figure that fails, in percent.
    #[arg(long, default_value_t = 10.0)]
    tolerance: f64,
    /// Write the figures to this file (a new baseline).
    #[arg(long)]
    write: Option<PathBuf>,
    /// Also count the relayed call with the audit log and metrics off
    /// (`relay_tools_call_quiet`): the difference is what they cost per call.
    #[arg(long)]
    quiet_too: bool,
    /// Keep callgrind's output files in this directory (for `callgrind_annotate`).
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// One workload: what each request is.
#[derive(Clone, Copy, Debug)]
enum Workload {
    Call,
    List,
    /// [`Workload::Call`] with `METAMCP_AUDIT=off` and `METAMCP_METRICS=off`.
    QuietCall,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Call => "relay_tools_call",
            Workload::List => "cached_tools_list",
            Workload::QuietCall => "relay_tools_call_quiet",
        }
    }

    fn request(self, id: u64) -> Value {
        match self {
            Workload::Call | Workload::QuietCall => json!({
                "jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": { "name": "fx__echo", "arguments": { "message": "instructions" } }
            }),
            Workload::List => json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" }),
        }
    }
}

/// A plain MCP session over Streamable HTTP: JSON answers, one request at a time.
struct Session {
    http: reqwest::Client,
    url: String,
    sid: String,
}

impl Session {
    async fn open(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(120))
            .build()?;
        let url = format!("{base}/metamcp/bench/mcp");
        let sid = open_session(&http, &url, "instructions").await?;
        let s = Session { http, url, sid };
        s.post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await?;
        Ok(s)
    }

    async fn post(&self, body: Value) -> Result<String> {
        let resp = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.sid)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("HTTP {status}: {text}");
        }
        Ok(text)
    }

    async fn send(&self, w: Workload, id: u64) -> Result<()> {
        let text = self.post(w.request(id)).await?;
        if !text.contains("\"result\"") || text.contains("\"isError\":true") {
            bail!(
                "{} answered {}",
                w.name(),
                text.chars().take(300).collect::<String>()
            );
        }
        Ok(())
    }
}

/// Starts the gateway under callgrind; waits for its listening line.
async fn gateway(metamcp: &Path, data: &Path, out: &Path, w: Workload) -> Result<(Child, String)> {
    let quiet = if matches!(w, Workload::QuietCall) {
        "off"
    } else {
        "on"
    };
    let mut child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(metamcp)
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("TOKIO_WORKER_THREADS", "1")
        .env("METAMCP_AUDIT", quiet)
        .env("METAMCP_METRICS", quiet)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("valgrind (Debian package valgrind)")?;
    let base = listening(&mut child, Duration::from_secs(180)).await?;
    Ok((child, base))
}

/// Callgrind's total instruction count from its output file.
fn total(out: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(out).with_context(|| format!("read {}", out.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no totals in {}", out.display()))
}

/// Instructions of one gateway run: warm-up, then `n` requests of `w`.
async fn run(metamcp: &Path, data: &Path, dir: &Path, w: Workload, n: u64) -> Result<u64> {
    let out = dir.join(format!("callgrind.{}.{n}.out", w.name()));
    let (mut child, base) = gateway(metamcp, data, &out, w).await?;
    let session = Session::open(&base).await?;
    for id in 1..=20 {
        session.send(w, id).await?;
    }
    for id in 0..n {
        session.send(w, 100 + id).await?;
    }
    drop(session);
    let pid = child.id().context("gateway pid")?;
    // why: SIGTERM is a graceful stop; callgrind writes its file as the process exits.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .context("the gateway did not stop within 120 s of SIGTERM")??;
    if !status.success() {
        bail!("the gateway under callgrind exited with {status}");
    }
    total(&out)
}

/// One round of workload `w` in `dir` (its `data` directory and callgrind's files): `n`
/// requests, then `2n`; instructions per request.
async fn round(metamcp: &Path, dir: &Path, w: Workload, n: u64, number: u32) -> Result<u64> {
    let data = dir.join("data");
    let one = run(metamcp, &data, dir, w, n).await?;
    let two = run(metamcp, &data, dir, w, 2 * n).await?;
    let per = two.saturating_sub(one) / n;
    eprintln!(
        "instructions [{}] round {number}: {one} for {n}, {two} for {}: {per} per request",
        w.name(),
        2 * n
    );
    Ok(per)
}

fn read_baseline(path: &Path) -> Result<Vec<(String, u64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once(char::is_whitespace)
                .with_context(|| format!("bad baseline line {l:?}"))?;
            Ok((k.to_owned(), v.trim().parse()?))
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let metamcp = sibling("metamcp")?;
    let fixture_bin = sibling("metamcp-fixture")?;
    let dir = tempfile::Builder::new()
        .prefix("metamcp-instructions-")
        .tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;

    // The upstream: the fixture over plain HTTP, with a 200-tool list.
    let mut fixture = Command::new(&fixture_bin)
        .args(["http", "--bind", "127.0.0.1:0", "--name", "fx"])
        .args(["--extra-tools", "200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(fixture.stdout.take().context("fixture stdout")?).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await??
        .context("the fixture exited")?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected fixture line {line:?}"))?
        .to_owned();
    let import = dir.path().join("servers.json");
    std::fs::write(
        &import,
        json!({ "mcpServers": { "fx": { "type": "streamable_http", "url": url } } }).to_string(),
    )?;
    let import = import.to_str().context("non-UTF-8 temp path")?;
    run_cli(&metamcp, &data, &["import", import])?;
    run_cli(
        &metamcp,
        &data,
        &["namespace", "create", "bench", "--server", "fx"],
    )?;
    run_cli(
        &metamcp,
        &data,
        &[
            "endpoint",
            "create",
            "bench",
            "--namespace",
            "bench",
            "--no-auth",
        ],
    )?;

    let n = cli.calls;
    let mut figures = Vec::new();
    let mut workloads = vec![Workload::Call, Workload::List];
    if cli.quiet_too {
        workloads.push(Workload::QuietCall);
    }
    // why two rounds at once: each gateway runs on one core under callgrind, and the machine
    // has two; the rounds have their own data directories (copies made before either starts)
    // so that neither waits on the other's database. Running them side by side halved the
    // wall time (75 s to about 40 s) and left the figures within their round-to-round spread.
    let rounds = [dir.path().join("round-1"), dir.path().join("round-2")];
    for r in &rounds {
        std::fs::create_dir_all(r.join("data"))?;
        for entry in std::fs::read_dir(&data)? {
            let entry = entry?;
            // The database's files and the secret key file; it holds no directories.
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), r.join("data").join(entry.file_name()))?;
            }
        }
    }
    for w in workloads {
        let (first, second) = tokio::try_join!(
            round(&metamcp, &rounds[0], w, n, 1),
            round(&metamcp, &rounds[1], w, n, 2),
        )?;
        let (best, from) = if first <= second {
            (first, &rounds[0])
        } else {
            (second, &rounds[1])
        };
        println!("{} {best}", w.name());
        if let Some(keep) = &cli.keep {
            std::fs::create_dir_all(keep)?;
            for n in [n, 2 * n] {
                let f = format!("callgrind.{}.{n}.out", w.name());
                std::fs::copy(from.join(&f), keep.join(&f))?;
            }
        }
        figures.push((w.name().to_owned(), best));
    }
    drop(fixture);
    let figure = |name: &str| figures.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    if let (Some(on), Some(off)) = (figure("relay_tools_call"), figure("relay_tools_call_quiet")) {
        println!(
            "audit and metrics: {} instructions per relayed call ({:+.1} % over both off)",
            on as i64 - off as i64,
            (on as f64 / off as f64 - 1.0) * 100.0
        );
    }

    if let Some(path) = &cli.write {
        let mut text = String::from(
            "# Instructions per request counted by scripts/instructions.sh (callgrind, one worker).\n",
        );
        for (k, v) in &figures {
            text.push_str(&format!("{k} {v}\n"));
        }
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &cli.baseline {
        let baseline = read_baseline(path)?;
        let mut failed = false;
        for (k, v) in &figures {
            let Some((_, base)) = baseline.iter().find(|(b, _)| b == k) else {
                bail!("{} has no {k}", path.display());
            };
            let change = (*v as f64 / *base as f64 - 1.0) * 100.0;
            let verdict = if change > cli.tolerance {
                failed = true;
                "FAIL"
            } else {
                "ok"
            };
            println!(
                "{verdict}: {k} {v} vs baseline {base} ({change:+.1} %, limit +{:.0} %)",
                cli.tolerance
            );
        }
        if failed {
            bail!(
                "instructions per request grew more than {} % over {} (if deliberate, update it \
                 with scripts/instructions.sh --write {} and say why in the commit)",
                cli.tolerance,
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}
