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

use std::{collections::BTreeMap, path::PathBuf, process::Command, sync::Arc, time::Duration};

use anyhow::{Context as _, Result, ensure};
use clap::{Parser, ValueEnum};
use hyper::header::HeaderValue;
use metamcp_it::benchkit::{Binaries, BinaryArgs, cli as run_cli, clock_ticks_per_sec, tail_file};

mod load;
mod procs;
mod report;
use load::{
    CpuSample, Pids, RunData, Target, child_process, run_alternating, run_load, wait_quiet,
    wait_ready,
};
use procs::{ChildGuard, EVERYTHING_SCRIPT, everything_command, spawn_until_banner, split_url};
use report::{Comparison, LOAD_GENERATOR, Report, RunResult, US_MS, render, summarize};

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
