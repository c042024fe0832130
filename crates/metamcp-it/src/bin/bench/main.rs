//! `metamcp-bench`: what the gateway costs per `tools/call`, measured against calling the
//! upstream directly.
//!
//! The benchmark starts its own processes on loopback with ephemeral ports and a temporary data
//! directory: one `metamcp-fixture http` server (the upstream), configured into a gateway with
//! the `metamcp` CLI (`import`, `namespace create`, `endpoint create` with API-key auth,
//! `key create`), then `metamcp serve`. It then measures `tools/call` of the fixture's `echo`
//! tool (`{"message":"hello"}`), for a fixed duration per run, in two ways:
//!
//! * **direct**: straight to the fixture's Streamable HTTP endpoint (`echo`);
//! * **gateway**: through `/metamcp/EP/mcp` with `Authorization: Bearer KEY` (`fx__echo`).
//!
//! Both talk to the same fixture process. After a warm-up of each target, the runs are
//! interleaved (direct c=1, gateway c=1, direct c=16, gateway c=16) and repeated `--rounds`
//! times, so drift of the shared 2-core machine hits both alike.
//!
//! Load generator: one worker task per unit of concurrency, each with its own keep-alive
//! HTTP/1.1 connection (raw `hyper::client::conn::http1`, TCP_NODELAY) and its own MCP session
//! (`initialize` + `notifications/initialized`, not timed), issuing requests back to back with
//! unique JSON-RPC ids. A call counts as a success only when its whole body was read (SSE bodies
//! to their end), the status is 200 and the body holds a `"result"` echoing `hello`; anything
//! else counts as an error. All workers run on a tokio current-thread runtime (one thread), so
//! the load generator uses at most one core.
//!
//! Reported per run: requests, errors, throughput, p50/p99 latency (from `Instant` around each
//! request), and CPU ms per successful call of the gateway, the fixture and the bench process
//! itself (each process's CPU clock, `clock_getcpuclockid`, read before and after the run: all
//! its threads, to the microsecond). The summary gives, per fixture mode and concurrency,
//! gateway ÷ direct throughput (target ≥ 0.7), the added p50 latency (target ≤ 0.4× the
//! direct p50) and the gateway's CPU per call ÷ the fixture's own in the direct runs (target
//! ≤ 0.5: the measure that does not depend on the machine's speed), with PASS/MISS, and the
//! kernel's part of the gateway's CPU (`stime` of `/proc/PID/stat`) in the same ratio: what
//! the gateway spends in system calls — its sockets on both sides, the wake-ups they cause
//! — is a floor under that ratio for any change that keeps those calls. The
//! machine's other load during each run is reported too (`/proc/stat` busy time minus the
//! three processes), and before each run the bench waits (up to `--quiet-wait` seconds) for
//! the machine to be quiet, since the figures mean little while anything else runs on the two
//! cores.
//!
//! `--observability both` starts a second gateway on the same store and upstream with the audit
//! log and metrics off (or, with `--second-env NAME=VALUE`, with other settings) and compares
//! the two gateways' CPU per call round by round. They run one after the other in each round
//! (swapping places every other round), or with `--alternate` in one run in which every caller
//! takes turns between them call by call — the better estimator of a difference of a few
//! percent: measured on 2026-12-05 at one caller, single runs of one gateway moved by up to
//! 2× within minutes (per-round on/off ratios 0.78–1.50 one after the other), while
//! alternating call by call put every round's ratio within ±2 % of the median.
//!
//! ```text
//! metamcp-bench [--mode json|sse|stdio|everything|both|all] [--everything SCRIPT]
//!               [--seconds 5] [--warmup 2] [--rounds 2]
//!               [--concurrency 1,16] [--quiet-wait 60] [--metamcp PATH] [--fixture PATH]
//!               [--observability on|off|both [--alternate] [--second-env NAME=VALUE]...]
//!               [--json]
//! ```
//!
//! `--mode json` (default) runs the fixture with `--json-response` (stateless, plain
//! `application/json` answers); `--mode sse` runs it in session mode (answers as
//! `text/event-stream`); `--mode stdio` configures the gateway's server as `metamcp-fixture
//! stdio`, a child the gateway starts (whose CPU is then the "fixture" of the gateway's rows,
//! found by its parent pid), while the direct runs call a JSON-answering HTTP fixture;
//! `--mode everything` replaces the fixture by the official `server-everything` (Node,
//! Streamable HTTP, SSE answers: a third-party upstream; `cd e2e && npm ci` installs it),
//! kept on loopback by a preloaded script.
//! `--json` prints machine-readable results on stdout (the table then
//! goes to stderr). Progress lines always go to stderr.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, mpsc},
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use hyper::header::HeaderValue;
use metamcp_it::benchkit::{
    Binaries, BinaryArgs, cli as run_cli, clock_ticks_per_sec, percentile_ms, tail_file,
};
use serde::Serialize;

mod load;
use load::{
    CpuSample, Pids, RunData, Target, child_process, run_alternating, run_load, wait_quiet,
    wait_ready,
};

/// Protocol version the bench negotiates with both targets.
const PROTOCOL_VERSION: &str = "2025-06-18";
/// Gateway throughput ÷ direct throughput must reach this (at 16 callers; reported at each
/// concurrency).
const TARGET_RATIO: f64 = 0.7;
/// Gateway p50 − direct p50 must not exceed this share of the direct p50 (at one caller;
/// reported at each concurrency).
const TARGET_ADDED_P50_SHARE: f64 = 0.4;
/// The gateway's CPU per call must not exceed this share of the fixture's own CPU per call
/// (direct, same run): the machine-independent measure of the relay's cost.
const TARGET_CPU_SHARE: f64 = 0.5;
/// A single request (or session setup) taking longer than this is an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a child process may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Busy cores below which the machine counts as quiet before a run.
const QUIET_CORES: f64 = 0.15;
/// Other load (in cores) during a run above which the output warns.
const OTHER_LOAD_WARN_CORES: f64 = 0.1;
/// The echo argument, and what a successful answer must contain.
const MESSAGE: &str = "hello";
/// Server name in the gateway, hence the tool prefix `fx__`.
const SERVER_NAME: &str = "fx";
const NAMESPACE: &str = "bench";
const ENDPOINT: &str = "bench";

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

#[derive(Debug, Parser)]
#[command(
    name = "metamcp-bench",
    about = "tools/call throughput and latency: fixture upstream direct vs through the metamcp gateway"
)]
struct Cli {
    #[command(flatten)]
    bins: BinaryArgs,
    /// Duration of each measured run, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Warm-up per target (direct, then gateway) before the first round, in seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Number of interleaved rounds.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Concurrency levels (comma-separated); each is run direct, then through the gateway.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16])]
    concurrency: Vec<usize>,
    /// How the fixture answers: `json` (--json-response, stateless), `sse` (sessions, SSE
    /// answers), `stdio` (the gateway's upstream is the fixture over stdio, its child),
    /// `everything` (the upstream is the official server-everything, Node, over Streamable
    /// HTTP: a third-party server), `both` (json then sse) or `all` (json, sse, stdio); each
    /// series with fresh processes.
    #[arg(long, value_enum, default_value_t = ModeArg::Json)]
    mode: ModeArg,
    /// server-everything's script, for `--mode everything` (run with `node`).
    #[arg(long, default_value = EVERYTHING_SCRIPT)]
    everything: PathBuf,
    /// Print machine-readable results (JSON) on stdout; the table goes to stderr.
    #[arg(long)]
    json: bool,
    /// Before each run, wait up to this many seconds for the machine to be quiet (less than
    /// 0.15 cores busy over 0.5 s); 0 disables the wait. Runs disturbed anyway are flagged in
    /// the `other` column.
    #[arg(long, default_value_t = 60.0)]
    quiet_wait: f64,
    /// The gateway's audit log and metrics: `on` (the defaults), `off` (`METAMCP_AUDIT=off`,
    /// `METAMCP_METRICS=off`), or `both`: a second gateway with them off, on the same store
    /// and upstream, measured in the same interleaved rounds (target `gw-off`), and their CPU
    /// per call compared round by round; the two gateways swap places every other round
    /// (ABBA), so the position in a round favours neither.
    #[arg(long, value_enum, default_value_t = Observability::On)]
    observability: Observability,
    /// With `--observability both`: the second gateway gets these variables
    /// (`NAME=VALUE`, repeatable) instead of the audit log and metrics switched off — an
    /// A/B of any setting, measured the same way (`gw-off` is then the variant).
    #[arg(long = "second-env", value_parser = parse_env_pair)]
    second_env: Vec<(String, String)>,
    /// With `--observability both`: each round is one run in which every caller takes
    /// turns between the two gateways call by call (not one gateway's run after the
    /// other's), so both are measured over the same moments of the machine. Only their CPU
    /// per call is compared (each gets half the calls, so their throughput is not the
    /// gateway's); the direct runs are skipped.
    #[arg(long)]
    alternate: bool,
}

fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, not {s:?}"))?;
    if k.is_empty() {
        return Err(format!("expected NAME=VALUE, not {s:?}"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Observability {
    On,
    Off,
    Both,
}

/// What switches the gateway's observability off.
const OBSERVABILITY_OFF: &[(&str, &str)] = &[("METAMCP_AUDIT", "off"), ("METAMCP_METRICS", "off")];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Json,
    Sse,
    Both,
    Stdio,
    Everything,
    All,
}

/// How the fixture upstream answers `POST`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FixtureMode {
    Json,
    Sse,
    /// The gateway reaches the fixture over stdio (a child it starts); direct calls go to an
    /// HTTP fixture answering in JSON, the same tool code.
    Stdio,
    /// The upstream is `@modelcontextprotocol/server-everything` (npm) over Streamable HTTP,
    /// direct and behind the gateway: its `echo` tool, sessions, SSE answers.
    Everything,
}

impl FixtureMode {
    fn label(self) -> &'static str {
        match self {
            FixtureMode::Json => "json",
            FixtureMode::Sse => "sse",
            FixtureMode::Stdio => "stdio",
            FixtureMode::Everything => "everything",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            FixtureMode::Json => {
                "fixture --json-response: stateless, no sessions, plain application/json answers"
            }
            FixtureMode::Sse => {
                "fixture session mode: mcp-session-id sessions, answers as text/event-stream"
            }
            FixtureMode::Stdio => {
                "gateway -> `metamcp-fixture stdio` (its child; cpu fx of gateway rows is that \
                 child's); direct -> fixture --json-response over HTTP"
            }
            FixtureMode::Everything => {
                "@modelcontextprotocol/server-everything (Node) streamableHttp: sessions, \
                 SSE answers; cpu fx is node's"
            }
        }
    }

    fn fixture_args(self) -> &'static [&'static str] {
        match self {
            FixtureMode::Json | FixtureMode::Stdio => &["--json-response"],
            FixtureMode::Sse | FixtureMode::Everything => &[],
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        f64::midpoint(v[mid - 1], v[mid])
    }
}

fn round3(v: &[f64]) -> Vec<f64> {
    v.iter()
        .map(|x| (x * 10_000.0).round() / 10_000.0)
        .collect()
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// A child process killed (SIGKILL) and reaped when dropped, also on error paths.
struct ChildGuard {
    name: &'static str,
    child: Child,
    stderr_log: PathBuf,
}

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the exit status and the end of its stderr if the process has exited.
    fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "{} (pid {}) exited ({status}); its stderr ends with:\n{}",
                self.name,
                self.child.id(),
                tail_file(&self.stderr_log, 30)
            ),
            Err(error) => Err(error).with_context(|| format!("check whether {} runs", self.name)),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Err(error) = self.child.kill() {
            eprintln!(
                "bench: kill {} (pid {}): {error}",
                self.name,
                self.child.id()
            );
        }
        let _ = self.child.wait();
    }
}

/// Where `scripts/bench.sh` (run from the repository) finds server-everything once
/// `scripts/test` (or `cd e2e && npm ci`) has installed it.
const EVERYTHING_SCRIPT: &str =
    "e2e/node_modules/@modelcontextprotocol/server-everything/dist/index.js";

/// Preloaded into server-everything: it listens on every interface (`app.listen(PORT)`, no
/// host), so its listen is moved onto loopback; and it prints its URL on stdout once
/// listening (`PORT=0`: an ephemeral port), the banner the bench waits for.
const EVERYTHING_PRELOAD: &str = r#"const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (/^\d+$/.test(String(args[0])) && typeof args[1] !== 'string') {
    args.splice(1, 0, '127.0.0.1');
    this.once('listening', () => {
      process.stdout.write('listening on http://127.0.0.1:' + this.address().port + '/mcp\n');
    });
  }
  return listen.apply(this, args);
};
"#;

/// `node --require PRELOAD server-everything streamableHttp` on an ephemeral loopback port.
fn everything_command(script: &std::path::Path, dir: &std::path::Path) -> Result<Command> {
    ensure!(
        script.is_file(),
        "server-everything not found at {} (install it: cd e2e && npm ci; or pass --everything)",
        script.display()
    );
    let preload = dir.join("loopback.cjs");
    std::fs::write(&preload, EVERYTHING_PRELOAD)
        .with_context(|| format!("write {}", preload.display()))?;
    let mut cmd = Command::new("node");
    cmd.arg("--require")
        .arg(&preload)
        .arg(script)
        .arg("streamableHttp")
        .env("PORT", "0");
    Ok(cmd)
}

/// Spawns `cmd` with stdout piped and stderr to `stderr_log`, and waits for a stdout line
/// starting with `prefix`; returns the guard and the rest of that line. Stdout keeps being
/// drained by a thread so the child never blocks on a full pipe.
fn spawn_until_banner(
    name: &'static str,
    mut cmd: Command,
    stderr_log: PathBuf,
    prefix: &'static str,
) -> Result<(ChildGuard, String)> {
    let log = File::create(&stderr_log)
        .with_context(|| format!("create log file {}", stderr_log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawn {name}: {cmd:?}"))?;
    let stdout = child.stdout.take();
    let mut guard = ChildGuard {
        name,
        child,
        stderr_log,
    };
    let stdout = stdout.with_context(|| format!("{name}: no stdout pipe"))?;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::Builder::new()
        .name(format!("{name}-stdout"))
        .spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(rest) = line.strip_prefix(prefix) {
                    sent = tx.send(rest.trim().to_owned()).is_ok();
                }
            }
        })
        .with_context(|| format!("spawn stdout reader thread for {name}"))?;
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(rest) => Ok((guard, rest)),
        Err(_) => {
            let status = guard.child.try_wait().ok().flatten();
            bail!(
                "{name} did not print {prefix:?} within {} s (exit status: {status:?}); its stderr ends with:\n{}",
                START_TIMEOUT.as_secs(),
                tail_file(&guard.stderr_log, 30)
            )
        }
    }
}

/// `http://HOST:PORT/PATH` → socket address, `Host` header value and path.
fn split_url(url: &str) -> Result<(SocketAddr, String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// URL: {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .with_context(|| format!("URL {url:?}: authority {authority:?} is not IP:PORT"))?;
    ensure!(
        addr.ip().is_loopback(),
        "URL {url:?} is not on loopback; the bench only talks to loopback"
    );
    Ok((addr, authority.to_owned(), path.to_owned()))
}

// ---------------------------------------------------------------------------
// Statistics and results
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Serialize)]
struct CpuPerCall {
    gateway: f64,
    /// Of `gateway`, the time spent in the kernel.
    gateway_kernel: f64,
    fixture: f64,
    bench: f64,
}

#[derive(Debug, Clone, Serialize)]
struct RunResult {
    mode: &'static str,
    /// Round number (1-based), or 0 for the aggregate over all rounds.
    round: usize,
    target: &'static str,
    concurrency: usize,
    seconds: f64,
    requests: u64,
    errors: u64,
    req_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    cpu_ms_per_call: CpuPerCall,
    /// Cores' worth of CPU used during the run by everything else on the machine (other
    /// processes, kernel threads, interrupts not charged to the three processes). Anything
    /// well above 0.05 means the figures are disturbed.
    other_cores: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
}

/// Milliseconds per unit of [`CpuSample`].
const US_MS: f64 = 0.001;

/// One run's figures; `unit_ms`: milliseconds per unit of its CPU sample.
fn summarize(
    mode: FixtureMode,
    round: usize,
    target: &'static str,
    concurrency: usize,
    data: &mut RunData,
    unit_ms: f64,
) -> RunResult {
    data.latencies_ns.sort_unstable();
    let requests = data.latencies_ns.len() as u64;
    let seconds = data.elapsed.as_secs_f64();
    let per_call = |units: u64| {
        if requests == 0 {
            f64::NAN
        } else {
            units as f64 * unit_ms / requests as f64
        }
    };
    let mean_ms = if requests == 0 {
        f64::NAN
    } else {
        data.latencies_ns.iter().map(|&n| n as f64).sum::<f64>() / requests as f64 / 1e6
    };
    RunResult {
        mode: mode.label(),
        round,
        target,
        concurrency,
        seconds,
        requests,
        errors: data.errors,
        req_per_sec: if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            f64::NAN
        },
        p50_ms: percentile_ms(&data.latencies_ns, 0.50),
        p99_ms: percentile_ms(&data.latencies_ns, 0.99),
        mean_ms,
        cpu_ms_per_call: CpuPerCall {
            gateway: per_call(data.cpu.gateway),
            gateway_kernel: per_call(data.cpu.gateway_kernel),
            fixture: per_call(data.cpu.fixture),
            bench: per_call(data.cpu.bench),
        },
        other_cores: if seconds > 0.0 {
            data.cpu.others() as f64 * unit_ms / 1000.0 / seconds
        } else {
            f64::NAN
        },
        first_error: data.first_error.clone(),
    }
}

#[derive(Debug, Clone, Serialize)]
struct Comparison {
    mode: &'static str,
    concurrency: usize,
    direct_req_per_sec: f64,
    gateway_req_per_sec: f64,
    throughput_ratio: f64,
    /// Gateway ÷ direct throughput of each round, to judge the noise.
    round_ratios: Vec<f64>,
    throughput_target: f64,
    throughput_pass: bool,
    direct_p50_ms: f64,
    gateway_p50_ms: f64,
    added_p50_ms: f64,
    added_p50_target_ms: f64,
    added_p50_pass: bool,
    /// Gateway CPU ms per call through the gateway.
    gateway_cpu_ms_per_call: f64,
    /// Fixture CPU ms per call, direct and through the gateway.
    fixture_cpu_ms_per_call_direct: f64,
    fixture_cpu_ms_per_call_gateway: f64,
    /// Gateway CPU per call ÷ the fixture's own (direct), and its target.
    gateway_cpu_share: f64,
    gateway_cpu_target: f64,
    gateway_cpu_pass: bool,
    /// The kernel's part of the gateway's CPU per call, and it ÷ the fixture's own (direct):
    /// a floor under `gateway_cpu_share` for any change that keeps the system calls.
    gateway_kernel_ms_per_call: f64,
    gateway_kernel_share: f64,
    errors: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    protocol_version: &'static str,
    seconds_per_run: f64,
    warmup_seconds: f64,
    rounds: usize,
    concurrency: Vec<usize>,
    cpus: usize,
    clock_ticks_per_sec: f64,
    load_generator: &'static str,
    modes: BTreeMap<&'static str, &'static str>,
    runs: Vec<RunResult>,
    comparisons: Vec<Comparison>,
}

const LOAD_GENERATOR: &str = "tokio current-thread runtime (1 thread); per worker one keep-alive \
HTTP/1.1 connection (hyper client::conn::http1, TCP_NODELAY) and one MCP session";

// ---------------------------------------------------------------------------
// One mode: processes, warm-up, interleaved rounds
// ---------------------------------------------------------------------------

/// Accumulates the runs of one (target, concurrency) over all rounds.
#[derive(Default)]
struct Aggregate {
    latencies_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    cpu: CpuSample,
}

impl Aggregate {
    fn add(&mut self, data: &RunData) {
        self.latencies_ns.extend_from_slice(&data.latencies_ns);
        self.errors += data.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&data.first_error);
        }
        self.elapsed += data.elapsed;
        self.cpu.gateway += data.cpu.gateway;
        self.cpu.gateway_kernel += data.cpu.gateway_kernel;
        self.cpu.fixture += data.cpu.fixture;
        self.cpu.bench += data.cpu.bench;
        self.cpu.machine += data.cpu.machine;
    }

    fn into_run_data(self) -> RunData {
        RunData {
            latencies_ns: self.latencies_ns,
            errors: self.errors,
            first_error: self.first_error,
            elapsed: self.elapsed,
            cpu: self.cpu,
        }
    }
}

fn run_mode(
    cli: &Cli,
    bins: &Binaries,
    mode: FixtureMode,
    rt: &tokio::runtime::Runtime,
    tick_ms: f64,
) -> Result<(Vec<RunResult>, Vec<Comparison>)> {
    // why: a tick is a whole number of microseconds (10,000 at 100 Hz).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let us_per_tick = (tick_ms * 1000.0).round() as u64;
    let dir = tempfile::Builder::new()
        .prefix("metamcp-bench-")
        .tempdir()
        .context("create a temporary directory")?;
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;

    // The upstream.
    let cmd = match mode {
        FixtureMode::Everything => everything_command(&cli.everything, dir.path())?,
        FixtureMode::Json | FixtureMode::Sse | FixtureMode::Stdio => {
            let mut cmd = Command::new(&bins.fixture);
            cmd.args(["http", "--bind", "127.0.0.1:0", "--name", SERVER_NAME])
                .args(mode.fixture_args());
            cmd
        }
    };
    let (mut fixture, fixture_url) = spawn_until_banner(
        "fixture",
        cmd,
        dir.path().join("fixture.stderr.log"),
        "listening on ",
    )?;
    eprintln!(
        "bench [{}]: fixture pid {} at {fixture_url}",
        mode.label(),
        fixture.pid()
    );

    // The gateway's configuration, through its CLI.
    let import = dir.path().join("servers.json");
    let server = match mode {
        FixtureMode::Json | FixtureMode::Sse | FixtureMode::Everything => {
            serde_json::json!({ "type": "streamable_http", "url": fixture_url })
        }
        FixtureMode::Stdio => serde_json::json!({
            "command": bins.fixture,
            "args": ["stdio", "--name", SERVER_NAME],
        }),
    };
    let servers = serde_json::json!({ "mcpServers": { SERVER_NAME: server } });
    std::fs::write(&import, servers.to_string())
        .with_context(|| format!("write {}", import.display()))?;
    let import_arg = import
        .to_str()
        .with_context(|| format!("non-UTF-8 path {}", import.display()))?;
    run_cli(&bins.metamcp, &data_dir, &["import", import_arg])?;
    run_cli(
        &bins.metamcp,
        &data_dir,
        &["namespace", "create", NAMESPACE, "--server", SERVER_NAME],
    )?;
    run_cli(
        &bins.metamcp,
        &data_dir,
        &["endpoint", "create", ENDPOINT, "--namespace", NAMESPACE],
    )?;
    let key_out = run_cli(&bins.metamcp, &data_dir, &["key", "create", "bench"])?;
    let key = key_out
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .context("`metamcp key create` printed no key")?
        .to_owned();

    let start_gateway = |name: &'static str, off: bool| {
        let mut cmd = Command::new(&bins.metamcp);
        cmd.arg("--data-dir")
            .arg(&data_dir)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env_remove("DATABASE_URL");
        if off && cli.second_env.is_empty() {
            cmd.envs(OBSERVABILITY_OFF.iter().copied());
        } else if off {
            cmd.envs(cli.second_env.iter().map(|(k, v)| (k, v)));
        }
        let (gateway, url) = spawn_until_banner(
            name,
            cmd,
            dir.path().join(format!("{name}.stderr.log")),
            "metamcp listening on ",
        )?;
        let what = match (off, cli.second_env.is_empty()) {
            (false, _) => "audit and metrics on".to_owned(),
            (true, true) => "audit and metrics off".to_owned(),
            (true, false) => {
                let vars: Vec<String> = cli
                    .second_env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("audit and metrics on, {}", vars.join(" "))
            }
        };
        eprintln!(
            "bench [{}]: {name} pid {} at {url} ({what})",
            mode.label(),
            gateway.pid(),
        );
        anyhow::Ok((gateway, url))
    };
    let (mut gateway, gateway_url) =
        start_gateway("gateway", cli.observability == Observability::Off)?;
    let mut gateway_off = match cli.observability {
        Observability::Both => Some(start_gateway("gw-off", true)?),
        Observability::On | Observability::Off => None,
    };

    let (addr, host, path) = split_url(&fixture_url)?;
    let direct = Arc::new(Target {
        name: "direct",
        addr,
        host: HeaderValue::from_str(&host).context("fixture Host header")?,
        path,
        auth: None,
        tool: "echo".to_owned(),
    });
    let (addr, host, _) = split_url(&gateway_url)?;
    let mut auth = HeaderValue::from_str(&format!("Bearer {key}")).context("API key header")?;
    auth.set_sensitive(true);
    let via_gateway = Arc::new(Target {
        name: "gateway",
        addr,
        host: HeaderValue::from_str(&host).context("gateway Host header")?,
        path: format!("/metamcp/{ENDPOINT}/mcp"),
        auth: Some(auth),
        tool: format!("{SERVER_NAME}__echo"),
    });
    // The second gateway (observability off): its target.
    let mut off_target = None;
    if let Some((_, url)) = &gateway_off {
        let (addr, host, _) = split_url(url)?;
        off_target = Some(Arc::new(Target {
            name: "gw-off",
            addr,
            host: HeaderValue::from_str(&host).context("gateway Host header")?,
            path: format!("/metamcp/{ENDPOINT}/mcp"),
            auth: via_gateway.auth.clone(),
            tool: via_gateway.tool.clone(),
        }));
    }
    // Every target answers before anything is measured (a gateway connects its upstream —
    // in stdio mode starts its child — and loads the catalog in the background).
    rt.block_on(async {
        wait_ready(&direct, Duration::from_secs(15)).await?;
        wait_ready(&via_gateway, Duration::from_secs(15))
            .await
            .with_context(|| {
                format!(
                    "gateway stderr ends with:\n{}",
                    tail_file(&gateway.stderr_log, 30)
                )
            })?;
        if let Some(t) = &off_target {
            wait_ready(t, Duration::from_secs(15)).await?;
        }
        anyhow::Ok(())
    })?;

    // Whose CPU each target's runs account for. The upstream behind a gateway is the HTTP
    // fixture, or in stdio mode the gateway's own child.
    let upstream_of = |gateway_pid: u32| -> Result<String> {
        match mode {
            FixtureMode::Json | FixtureMode::Sse | FixtureMode::Everything => {
                Ok(fixture.pid().to_string())
            }
            FixtureMode::Stdio => child_process(gateway_pid, "metamcp-fixture"),
        }
    };
    let pids = Pids {
        gateway: gateway.pid().to_string(),
        fixture: upstream_of(gateway.pid())?,
        bench: std::process::id().to_string(),
        us_per_tick,
    };
    let pids_direct = Pids {
        fixture: fixture.pid().to_string(),
        ..pids.clone()
    };
    let pids_off = match &gateway_off {
        Some((g, _)) => Some(Pids {
            gateway: g.pid().to_string(),
            fixture: upstream_of(g.pid())?,
            ..pids.clone()
        }),
        None => None,
    };
    let targets: Vec<&Arc<Target>> = [&direct, &via_gateway]
        .into_iter()
        .chain(off_target.as_ref())
        .collect();
    let pids_of = |t: &Target| match t.name {
        "gw-off" => pids_off.as_ref().unwrap_or(&pids),
        "direct" => &pids_direct,
        _ => &pids,
    };
    let mut check_gateways = |gateway: &mut ChildGuard| -> Result<()> {
        gateway.check_alive()?;
        if let Some((g, _)) = gateway_off.as_mut() {
            g.check_alive()?;
        }
        Ok(())
    };

    let result = rt.block_on(async {
        let warm_c = cli.concurrency.iter().copied().max().unwrap_or(1);
        if cli.warmup > 0.0 {
            for target in &targets {
                eprintln!(
                    "bench [{}]: warm-up {} c={warm_c} for {} s",
                    mode.label(),
                    target.name,
                    cli.warmup
                );
                let data = run_load(
                    target,
                    warm_c,
                    Duration::from_secs_f64(cli.warmup),
                    pids_of(target),
                )
                .await;
                fixture.check_alive()?;
                check_gateways(&mut gateway)?;
                data.context("warm-up")?;
            }
        }

        let mut runs = Vec::new();
        let mut totals: BTreeMap<(usize, &'static str), Aggregate> = BTreeMap::new();
        let mut round_rps: BTreeMap<(usize, &'static str), Vec<f64>> = BTreeMap::new();
        let mut round_cpu: BTreeMap<(usize, &'static str), Vec<f64>> = BTreeMap::new();
        for round in 1..=cli.rounds {
            for &c in &cli.concurrency {
                // With two gateways, every other round runs them in the other order (ABBA), so
                // that whatever favours the first (or second) run of a round cancels out of the
                // on/off ratio instead of leaning on one side.
                let mut order = targets.clone();
                if round % 2 == 0 && order.len() == 3 {
                    order.swap(1, 2);
                }
                // One run per target, or (`--alternate`) one run of both gateways.
                let groups: Vec<Vec<&Arc<Target>>> = match &off_target {
                    Some(_) if cli.alternate => vec![order[1..].to_vec()],
                    _ => order.into_iter().map(|t| vec![t]).collect(),
                };
                let mut measured = Vec::new();
                for group in groups {
                    if cli.quiet_wait > 0.0 {
                        wait_quiet(Duration::from_secs_f64(cli.quiet_wait), tick_ms).await?;
                    }
                    let with_pids: Vec<_> = group.iter().map(|t| (*t, pids_of(t))).collect();
                    let data =
                        run_alternating(&with_pids, c, Duration::from_secs_f64(cli.seconds)).await;
                    fixture.check_alive()?;
                    check_gateways(&mut gateway)?;
                    measured.extend(group.into_iter().zip(data?));
                }
                for (target, mut data) in measured {
                    totals.entry((c, target.name)).or_default().add(&data);
                    let r = summarize(mode, round, target.name, c, &mut data, US_MS);
                    eprintln!(
                        "bench [{}]: round {round} {:<7} c={c:<3} {:>9.0} req/s p50 {:.3} ms p99 {:.3} ms errors {}",
                        mode.label(),
                        target.name,
                        r.req_per_sec,
                        r.p50_ms,
                        r.p99_ms,
                        r.errors
                    );
                    if let Some(first) = &r.first_error {
                        eprintln!("bench [{}]:   first error: {first}", mode.label());
                    }
                    round_rps
                        .entry((c, target.name))
                        .or_default()
                        .push(r.req_per_sec);
                    round_cpu
                        .entry((c, target.name))
                        .or_default()
                        .push(r.cpu_ms_per_call.gateway);
                    runs.push(r);
                }
            }
        }

        let mut comparisons = Vec::new();
        for &c in &cli.concurrency {
            let mut all = |name: &'static str| {
                totals.remove(&(c, name)).map(|agg| {
                    let mut data = agg.into_run_data();
                    summarize(mode, 0, name, c, &mut data, US_MS)
                })
            };
            if let (Some(on), Some(off)) = (
                round_cpu.get(&(c, "gateway")),
                round_cpu.get(&(c, "gw-off")),
            ) {
                let ratios: Vec<f64> = on.iter().zip(off).map(|(a, b)| a / b).collect();
                eprintln!(
                    "bench [{}]: observability cost c={c}: gateway CPU ms/call on {:?}, off {:?}; \
                     on/off per round {:?}; median on {:.4} / off {:.4} = {:.3} (median of \
                     per-round ratios {:.3})",
                    mode.label(),
                    round3(on),
                    round3(off),
                    round3(&ratios),
                    median(on),
                    median(off),
                    median(on) / median(off),
                    median(&ratios)
                );
            }
            let (Some(d), Some(g)) = (all("direct"), all("gateway")) else {
                continue;
            };
            let ratio = g.req_per_sec / d.req_per_sec;
            let added = g.p50_ms - d.p50_ms;
            let round_ratios = match (
                round_rps.get(&(c, "direct")),
                round_rps.get(&(c, "gateway")),
            ) {
                (Some(ds), Some(gs)) => ds.iter().zip(gs).map(|(d, g)| g / d).collect(),
                _ => Vec::new(),
            };
            comparisons.push(Comparison {
                mode: mode.label(),
                concurrency: c,
                direct_req_per_sec: d.req_per_sec,
                gateway_req_per_sec: g.req_per_sec,
                throughput_ratio: ratio,
                round_ratios,
                throughput_target: TARGET_RATIO,
                throughput_pass: ratio >= TARGET_RATIO,
                direct_p50_ms: d.p50_ms,
                gateway_p50_ms: g.p50_ms,
                added_p50_ms: added,
                added_p50_target_ms: TARGET_ADDED_P50_SHARE * d.p50_ms,
                added_p50_pass: added <= TARGET_ADDED_P50_SHARE * d.p50_ms,
                gateway_cpu_ms_per_call: g.cpu_ms_per_call.gateway,
                fixture_cpu_ms_per_call_direct: d.cpu_ms_per_call.fixture,
                fixture_cpu_ms_per_call_gateway: g.cpu_ms_per_call.fixture,
                gateway_cpu_share: g.cpu_ms_per_call.gateway / d.cpu_ms_per_call.fixture,
                gateway_cpu_target: TARGET_CPU_SHARE,
                gateway_cpu_pass: g.cpu_ms_per_call.gateway
                    <= TARGET_CPU_SHARE * d.cpu_ms_per_call.fixture,
                gateway_kernel_ms_per_call: g.cpu_ms_per_call.gateway_kernel,
                gateway_kernel_share: g.cpu_ms_per_call.gateway_kernel
                    / d.cpu_ms_per_call.fixture,
                errors: d.errors + g.errors,
            });
            runs.push(d);
            runs.push(g);
            if let Some(off) = all("gw-off") {
                runs.push(off);
            }
        }
        anyhow::Ok((runs, comparisons))
    });

    // Children are killed here (and on every early return above) by their guards.
    drop(gateway_off);
    drop(gateway);
    drop(fixture);
    result
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

fn render(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "metamcp-bench: tools/call echo {{\"message\":\"{MESSAGE}\"}}, direct to the fixture vs through the gateway (API-key auth)"
    );
    let _ = writeln!(
        s,
        "  {} s per run, {} s warm-up per target, {} round(s) interleaved, {} CPU(s), protocol {}",
        report.seconds_per_run, report.warmup_seconds, report.rounds, report.cpus, PROTOCOL_VERSION
    );
    let _ = writeln!(s, "  load generator: {}", report.load_generator);
    for (mode, desc) in &report.modes {
        let _ = writeln!(s, "  mode {mode}: {desc}");
    }
    let _ = writeln!(
        s,
        "  cpu = ms of CPU per successful call, from each process's CPU clock (clock_getcpuclockid); round 'all' = all rounds pooled",
    );
    let _ = writeln!(
        s,
        "  other = cores used by everything else on the machine during the run (/proc/stat); should be ~0"
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<5} {:>5} {:<7} {:>4} {:>9} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6}",
        "mode",
        "round",
        "target",
        "c",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p99 ms",
        "cpu gw",
        "cpu fx",
        "cpu bench",
        "other"
    );
    let fmt_cpu = |v: f64| {
        if v.is_nan() {
            "-".to_owned()
        } else {
            format!("{v:.3}")
        }
    };
    let mut rows: Vec<&RunResult> = report.runs.iter().collect();
    // Per mode: the rounds in run order, then the pooled rows.
    rows.sort_by_key(|r| (r.mode, r.round == 0));
    for r in rows {
        let round = if r.round == 0 {
            "all".to_owned()
        } else {
            r.round.to_string()
        };
        let _ = writeln!(
            s,
            "{:<5} {:>5} {:<7} {:>4} {:>9} {:>6} {:>9.0} {:>8.3} {:>8.3} {:>8} {:>8} {:>9} {:>6.2}",
            r.mode,
            round,
            r.target,
            r.concurrency,
            r.requests,
            r.errors,
            r.req_per_sec,
            r.p50_ms,
            r.p99_ms,
            fmt_cpu(r.cpu_ms_per_call.gateway),
            fmt_cpu(r.cpu_ms_per_call.fixture),
            fmt_cpu(r.cpu_ms_per_call.bench),
            r.other_cores
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "summary (targets: gateway ≥ {TARGET_RATIO}× direct throughput, added p50 ≤ {TARGET_ADDED_P50_SHARE}× direct p50, gateway CPU per call ≤ {TARGET_CPU_SHARE}× the fixture's own)"
    );
    let pass = |ok: bool| if ok { "PASS" } else { "MISS" };
    for c in &report.comparisons {
        let rounds: Vec<String> = c.round_ratios.iter().map(|r| format!("{r:.2}")).collect();
        let _ = writeln!(
            s,
            "  {:<4} c={:<3} throughput {:>8.0} / {:>8.0} req/s = {:.2}× (≥ {:.1}) {}   rounds [{}]",
            c.mode,
            c.concurrency,
            c.gateway_req_per_sec,
            c.direct_req_per_sec,
            c.throughput_ratio,
            c.throughput_target,
            pass(c.throughput_pass),
            rounds.join(", ")
        );
        let _ = writeln!(
            s,
            "  {:<4} c={:<3} added p50   {:.3} − {:.3} ms = {:+.3} ms (≤ {:.3}) {}",
            c.mode,
            c.concurrency,
            c.gateway_p50_ms,
            c.direct_p50_ms,
            c.added_p50_ms,
            c.added_p50_target_ms,
            pass(c.added_p50_pass)
        );
        let _ = writeln!(
            s,
            "  {:<4} c={:<3} cpu ms/call gateway {} | fixture {} direct, {} via gateway: gateway = {:.2}× the fixture's own (≤ {:.1}) {}{}",
            c.mode,
            c.concurrency,
            fmt_cpu(c.gateway_cpu_ms_per_call),
            fmt_cpu(c.fixture_cpu_ms_per_call_direct),
            fmt_cpu(c.fixture_cpu_ms_per_call_gateway),
            c.gateway_cpu_share,
            c.gateway_cpu_target,
            pass(c.gateway_cpu_pass),
            if c.errors > 0 {
                format!("   ({} errors!)", c.errors)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            s,
            "  {:<4} c={:<3} of which kernel {} ms/call (sockets, wake-ups) = {:.2}× the fixture's own: the floor while the system calls stay",
            c.mode,
            c.concurrency,
            fmt_cpu(c.gateway_kernel_ms_per_call),
            c.gateway_kernel_share,
        );
    }
    let _ = writeln!(
        s,
        "  note: at c=1 one call is in flight, so the throughput ratio ≈ direct latency ÷ gateway latency;\n  \
         at high c the two cores are saturated, p50 ≈ c ÷ throughput (Little's law) and the added p50\n  \
         follows from the throughput ratio; gateway ÷ direct ≈ (fixture + bench CPU) ÷ (gateway + fixture + bench CPU)."
    );
    let busiest = report
        .runs
        .iter()
        .map(|r| r.other_cores)
        .filter(|v| !v.is_nan())
        .fold(0.0_f64, f64::max);
    if busiest > OTHER_LOAD_WARN_CORES {
        let _ = writeln!(
            s,
            "\nWARNING: other processes used up to {busiest:.2} cores during a run; the machine was not quiet, so these figures are disturbed"
        );
    }
    let errors: Vec<String> = report
        .runs
        .iter()
        .filter(|r| r.round == 0)
        .filter_map(|r| {
            r.first_error.as_ref().map(|e| {
                format!(
                    "  {} {} c={}: {} error(s), first: {e}",
                    r.mode, r.target, r.concurrency, r.errors
                )
            })
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(s, "\nerrors:");
        for e in errors {
            let _ = writeln!(s, "{e}");
        }
    }
    s
}

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

fn main() -> Result<()> {
    let cli = Cli::parse();
    ensure!(cli.seconds > 0.0, "--seconds must be positive");
    ensure!(cli.warmup >= 0.0, "--warmup must not be negative");
    ensure!(cli.rounds > 0, "--rounds must be at least 1");
    ensure!(cli.quiet_wait >= 0.0, "--quiet-wait must not be negative");
    ensure!(
        !cli.concurrency.is_empty() && cli.concurrency.iter().all(|&c| c > 0),
        "--concurrency needs positive values"
    );
    ensure!(
        cli.observability == Observability::Both || (!cli.alternate && cli.second_env.is_empty()),
        "--alternate and --second-env compare two gateways: they need --observability both"
    );
    let bins = cli.bins.resolve()?;
    let modes: &[FixtureMode] = match cli.mode {
        ModeArg::Json => &[FixtureMode::Json],
        ModeArg::Sse => &[FixtureMode::Sse],
        ModeArg::Both => &[FixtureMode::Json, FixtureMode::Sse],
        ModeArg::Stdio => &[FixtureMode::Stdio],
        ModeArg::Everything => &[FixtureMode::Everything],
        ModeArg::All => &[FixtureMode::Json, FixtureMode::Sse, FixtureMode::Stdio],
    };
    ensure!(
        !(cli.alternate && modes.contains(&FixtureMode::Stdio)),
        "--alternate splits one shared upstream's CPU between two gateways; in stdio mode each \
         gateway has its own child: use it with --mode json or sse"
    );
    let ticks = clock_ticks_per_sec();
    let tick_ms = 1000.0 / ticks;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build the load generator's tokio runtime")?;

    let mut report = Report {
        protocol_version: PROTOCOL_VERSION,
        seconds_per_run: cli.seconds,
        warmup_seconds: cli.warmup,
        rounds: cli.rounds,
        concurrency: cli.concurrency.clone(),
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        clock_ticks_per_sec: ticks,
        load_generator: LOAD_GENERATOR,
        modes: modes.iter().map(|m| (m.label(), m.describe())).collect(),
        runs: Vec::new(),
        comparisons: Vec::new(),
    };
    for &mode in modes {
        let (runs, comparisons) = run_mode(&cli, &bins, mode, &rt, tick_ms)
            .with_context(|| format!("mode {}", mode.label()))?;
        report.runs.extend(runs);
        report.comparisons.extend(comparisons);
    }

    let table = render(&report);
    if cli.json {
        eprint!("{table}");
        let json = serde_json::to_string_pretty(&report).context("serialize the report")?;
        println!("{json}");
    } else {
        print!("{table}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_everything_missing_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = everything_command(&dir.path().join("absent.js"), dir.path()).unwrap_err();
        assert!(err.to_string().contains("npm ci"), "{err}");
        let script = dir.path().join("index.js");
        std::fs::write(&script, "").unwrap();
        let cmd = everything_command(&script, dir.path()).unwrap();
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args.last().map(String::as_str), Some("streamableHttp"));
        let preload = std::fs::read_to_string(dir.path().join("loopback.cjs")).unwrap();
        assert!(preload.contains("'127.0.0.1'") && preload.contains("listening on "));
    }

    #[test]
    fn second_gateway_variables_are_name_value_pairs() {
        assert_eq!(
            parse_env_pair("METAMCP_AUDIT=off").unwrap(),
            ("METAMCP_AUDIT".to_owned(), "off".to_owned())
        );
        assert_eq!(parse_env_pair("A=b=c").unwrap().1, "b=c");
        assert_eq!(parse_env_pair("EMPTY=").unwrap().1, "");
        assert!(parse_env_pair("METAMCP_AUDIT").is_err());
        assert!(parse_env_pair("=off").is_err());
    }
}
