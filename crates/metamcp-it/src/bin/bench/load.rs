//! The load generator of `metamcp-bench`: the CPU clocks it reads, its MCP client (one
//! keep-alive HTTP/1.1 connection and one MCP session per caller), and the timed runs —
//! one target at a time, or several taking turns call by call (`--alternate`).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use http_body_util::Full;
use hyper::{
    Method, Request, StatusCode,
    body::Bytes,
    client::conn::http1,
    header::{self, HeaderValue},
};
use hyper_util::rt::TokioIo;

use metamcp_it::benchkit::{Answer, contains, echo_failure, exchange, stat_comm, stat_field};

use super::{MESSAGE, PROTOCOL_VERSION, QUIET_CORES, REQUEST_TIMEOUT};

// ---------------------------------------------------------------------------
// CPU accounting
// ---------------------------------------------------------------------------

/// CPU time a process has used so far (all its threads, including those that ended), in
/// microseconds: the kernel's per-process CPU clock (`clock_getcpuclockid`).
///
/// why not `/proc/PID/stat`: its utime + stime come in 10 ms ticks, which made a 3-second
/// run of a gateway at one caller (about 70 ticks) a ratio in steps of 1.4 %.
pub(super) fn cpu_us(pid: &str) -> Result<u64> {
    let pid: i32 = pid.parse().with_context(|| format!("pid {pid:?}"))?;
    let clock = nix::time::clock_getcpuclockid(nix::unistd::Pid::from_raw(pid))
        .with_context(|| format!("CPU clock of pid {pid}"))?;
    let t = clock
        .now()
        .with_context(|| format!("read the CPU clock of pid {pid}"))?;
    let us = i128::from(t.tv_sec()) * 1_000_000 + i128::from(t.tv_nsec()) / 1_000;
    u64::try_from(us).with_context(|| format!("CPU clock of pid {pid} reads {us} µs"))
}

/// Kernel (system) CPU time a process has used so far, all its threads, in microseconds:
/// `stime` of `/proc/PID/stat` (field 15), in clock ticks of `us_per_tick` each.
///
/// why: the part of the gateway's CPU spent in the kernel — reading and writing its sockets
/// on both sides, and the wake-ups they cause — is a floor under its CPU per call that no
/// change to its own code lowers short of fewer system calls; the summary compares it with
/// the fixture's whole CPU per call. Ticks are coarse (10 ms), but a run's kernel time is
/// hundreds of them.
pub(super) fn kernel_us(pid: &str, us_per_tick: u64) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    let ticks = stime_ticks(&stat).with_context(|| format!("/proc/{pid}/stat: no stime"))?;
    Ok(ticks * us_per_tick)
}

/// Field 15 (`stime`) of a `/proc/PID/stat` line.
fn stime_ticks(stat: &str) -> Option<u64> {
    stat_field(stat, 15)?.parse().ok()
}

/// The one child process of `parent` running `name` (a gateway's stdio upstream), by its
/// parent pid in `/proc/PID/stat` (field 4) and its command name or line.
pub(super) fn child_process(parent: u32, name: &str) -> Result<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").context("read /proc")? {
        let Ok(entry) = entry else { continue };
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process may end between the listing and the read: skip it.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat_field(&stat, 4).and_then(|v| v.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        // The command name as the kernel keeps it (at most 15 bytes), set as the exec starts;
        // the command line only once it has ended (a child spawned a moment ago may show
        // none yet).
        let short: String = name.chars().take(15).collect();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if stat_comm(&stat) == Some(short.as_str())
            || String::from_utf8_lossy(&cmdline).contains(name)
        {
            found.push(pid);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("process {parent} has no child running {name}"),
        many => bail!(
            "process {parent} has {} children running {name}: {many:?}",
            many.len()
        ),
    }
}

/// Busy ticks of the whole machine, all CPUs (`/proc/stat` line `cpu`: user, nice, system,
/// irq, softirq, steal; guest time is already part of user).
pub(super) fn machine_busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat: no `cpu` line")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse::<u64>)
        .collect::<std::result::Result<_, _>>()
        .context("/proc/stat: `cpu` line is not numbers")?;
    let at = |i: usize| values.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    Ok(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// Waits (at most `max`) until the whole machine uses less than `QUIET_CORES` over a 0.5 s
/// window; returns the busy cores of the last window.
pub(super) async fn wait_quiet(max: Duration, tick_ms: f64) -> Result<f64> {
    const WINDOW: Duration = Duration::from_millis(500);
    let give_up = Instant::now() + max;
    let mut warned = false;
    loop {
        let before = machine_busy_ticks()?;
        let start = Instant::now();
        tokio::time::sleep(WINDOW).await;
        let busy = machine_busy_ticks()?.saturating_sub(before);
        let cores = busy as f64 * tick_ms / 1000.0 / start.elapsed().as_secs_f64();
        if cores < QUIET_CORES || Instant::now() >= give_up {
            if cores >= QUIET_CORES {
                eprintln!(
                    "bench: the machine is still busy ({cores:.2} cores) after {} s; measuring anyway",
                    max.as_secs()
                );
            }
            return Ok(cores);
        }
        if !warned {
            eprintln!("bench: the machine is busy ({cores:.2} cores); waiting for it to be quiet");
            warned = true;
        }
    }
}

/// The processes whose CPU each run accounts for.
#[derive(Debug, Clone)]
pub(super) struct Pids {
    pub(super) gateway: String,
    pub(super) fixture: String,
    pub(super) bench: String,
    /// Microseconds per clock tick of `/proc/stat` (the machine's busy time).
    pub(super) us_per_tick: u64,
}

/// CPU time used, in microseconds (the machine's counted in ticks, so coarser).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CpuSample {
    pub(super) gateway: u64,
    /// The part of `gateway` spent in the kernel (counted in ticks, so coarser).
    pub(super) gateway_kernel: u64,
    pub(super) fixture: u64,
    pub(super) bench: u64,
    /// All CPU time spent on the machine, by any process (and the kernel).
    pub(super) machine: u64,
}

impl CpuSample {
    /// CPU time spent by processes other than the three measured ones.
    pub(super) fn others(&self) -> u64 {
        self.machine
            .saturating_sub(self.gateway + self.fixture + self.bench)
    }

    /// What was used between `before` and this sample.
    pub(super) fn since(&self, before: &CpuSample) -> CpuSample {
        CpuSample {
            gateway: self.gateway.saturating_sub(before.gateway),
            gateway_kernel: self.gateway_kernel.saturating_sub(before.gateway_kernel),
            fixture: self.fixture.saturating_sub(before.fixture),
            bench: self.bench.saturating_sub(before.bench),
            machine: self.machine.saturating_sub(before.machine),
        }
    }
}

impl Pids {
    pub(super) fn sample(&self) -> Result<CpuSample> {
        Ok(CpuSample {
            gateway: cpu_us(&self.gateway).context("gateway CPU")?,
            gateway_kernel: kernel_us(&self.gateway, self.us_per_tick)
                .context("gateway kernel CPU")?,
            fixture: cpu_us(&self.fixture).context("fixture CPU")?,
            bench: cpu_us(&self.bench).context("bench CPU")?,
            machine: machine_busy_ticks()? * self.us_per_tick,
        })
    }
}

// ---------------------------------------------------------------------------
// The MCP client side of the load generator
// ---------------------------------------------------------------------------

/// Where and how to call `echo`.
#[derive(Debug)]
pub(super) struct Target {
    /// `direct` or `gateway`.
    pub(super) name: &'static str,
    pub(super) addr: SocketAddr,
    pub(super) host: HeaderValue,
    pub(super) path: String,
    pub(super) auth: Option<HeaderValue>,
    pub(super) tool: String,
}

/// Unique JSON-RPC ids across all workers and runs.
pub(super) static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(super) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// One worker's keep-alive connection and MCP session.
pub(super) struct McpSession {
    pub(super) target: Arc<Target>,
    pub(super) sender: http1::SendRequest<Full<Bytes>>,
    pub(super) session_id: Option<HeaderValue>,
    pub(super) initialized: bool,
}

impl McpSession {
    /// Connects and performs `initialize` + `notifications/initialized`.
    pub(super) async fn open(target: Arc<Target>) -> Result<Self> {
        let stream = tokio::net::TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("{}: connect {}", target.name, target.addr))?;
        stream
            .set_nodelay(true)
            .with_context(|| format!("{}: set TCP_NODELAY", target.name))?;
        let (sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .with_context(|| format!("{}: HTTP/1.1 handshake", target.name))?;
        tokio::spawn(async move {
            // The connection ends when the sender is dropped or the peer closes it.
            let _ = conn.await;
        });
        let mut session = McpSession {
            target,
            sender,
            session_id: None,
            initialized: false,
        };
        let id = next_id();
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"metamcp-bench","version":"{}"}}}}}}"#,
            env!("CARGO_PKG_VERSION")
        );
        let answer = session.post(Method::POST, init).await?;
        let name = session.target.name;
        ensure!(
            answer.status == StatusCode::OK && contains(&answer.body, b"\"result\""),
            "{name}: initialize answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        session.session_id = answer.session_id;
        session.initialized = true;
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned();
        let answer = session.post(Method::POST, note).await?;
        ensure!(
            answer.status.is_success(),
            "{name}: notifications/initialized answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        Ok(session)
    }

    /// Sends one message and reads the whole answer (an SSE answer to the end of its stream).
    pub(super) async fn post(&mut self, method: Method, body: String) -> Result<Answer> {
        let name = self.target.name;
        let exchange = async {
            let mut req = Request::builder()
                .method(method)
                .uri(self.target.path.as_str())
                .header(header::HOST, self.target.host.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, "application/json, text/event-stream");
            if let Some(auth) = &self.target.auth {
                req = req.header(header::AUTHORIZATION, auth.clone());
            }
            if self.initialized {
                req = req.header("mcp-protocol-version", PROTOCOL_VERSION);
            }
            if let Some(sid) = &self.session_id {
                req = req.header("mcp-session-id", sid.clone());
            }
            let req = req
                .body(Full::new(Bytes::from(body)))
                .with_context(|| format!("{name}: build request"))?;
            exchange(&mut self.sender, req).await.context(name)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                anyhow!(
                    "{name}: no complete answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                )
            })?
    }

    /// One timed-or-not `tools/call` of echo; `Ok(Err(reason))` is a well-formed HTTP
    /// exchange with a wrong answer (the connection stays usable), `Err` a broken connection.
    pub(super) async fn call_echo(&mut self) -> Result<std::result::Result<(), String>> {
        let id = next_id();
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{}","arguments":{{"message":"{MESSAGE}"}}}}}}"#,
            self.target.tool
        );
        let answer = self.post(Method::POST, body).await?;
        if let Some(failure) = echo_failure(answer.status.as_u16(), &answer.body, MESSAGE) {
            return Ok(Err(failure));
        }
        Ok(Ok(()))
    }

    /// Ends the session (best effort).
    pub(super) async fn close(mut self) {
        if self.session_id.is_some() {
            let _ = self.post(Method::DELETE, String::new()).await;
        }
    }
}

// ---------------------------------------------------------------------------
// Load runs
// ---------------------------------------------------------------------------

/// What one worker saw.
#[derive(Default)]
pub(super) struct WorkerOutcome {
    pub(super) latencies_ns: Vec<u64>,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
}

pub(super) fn note_error(out: &mut WorkerOutcome, reason: String) {
    out.errors += 1;
    if out.first_error.is_none() {
        out.first_error = Some(reason);
    }
}

/// One caller taking turns: call `sessions[0]`, then `sessions[1]`, … and around again,
/// until `deadline`; one outcome per session, in their order. A broken connection is
/// reopened (a new session) and its turn taken again.
pub(super) async fn alternating_worker(
    sessions: Vec<McpSession>,
    deadline: Instant,
) -> Vec<(Option<McpSession>, WorkerOutcome)> {
    let mut outs: Vec<(Option<McpSession>, WorkerOutcome)> = sessions
        .into_iter()
        .map(|s| {
            let out = WorkerOutcome {
                latencies_ns: Vec::with_capacity(64 * 1024),
                ..WorkerOutcome::default()
            };
            (Some(s), out)
        })
        .collect();
    let n = outs.len();
    let mut turn = 0;
    loop {
        let start = Instant::now();
        if start >= deadline || n == 0 {
            return outs;
        }
        let (slot, out) = &mut outs[turn % n];
        turn += 1;
        let Some(session) = slot.as_mut() else {
            continue;
        };
        match session.call_echo().await {
            Ok(Ok(())) => {
                let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                out.latencies_ns.push(ns);
            }
            Ok(Err(reason)) => note_error(out, reason),
            Err(error) => {
                note_error(out, format!("{error:#}"));
                // The connection is broken: open a new one (and a new session).
                let target = session.target.clone();
                *slot = None;
                loop {
                    if Instant::now() >= deadline {
                        return outs;
                    }
                    match McpSession::open(target.clone()).await {
                        Ok(s) => {
                            *slot = Some(s);
                            break;
                        }
                        Err(error) => {
                            note_error(out, format!("reconnect: {error:#}"));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        }
    }
}

/// The raw outcome of one run.
pub(super) struct RunData {
    pub(super) latencies_ns: Vec<u64>,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    pub(super) elapsed: Duration,
    pub(super) cpu: CpuSample,
}

/// Runs `concurrency` workers against `target` for `duration` (sessions are opened before,
/// and closed after, the timed window and its CPU sample).
pub(super) async fn run_load(
    target: &Arc<Target>,
    concurrency: usize,
    duration: Duration,
    pids: &Pids,
) -> Result<RunData> {
    let mut runs = run_alternating(&[(target, pids)], concurrency, duration).await?;
    runs.pop().context("no run")
}

/// Runs `concurrency` workers for `duration`, each taking turns between `targets` call by
/// call (one session to each), so every target is measured over the same moments of the
/// machine; one run's data per target. The gateway's CPU of each comes from its own
/// `Pids`; the fixture, bench and machine CPU (shared) are split by calls.
///
/// why: measured 2026-12-05 at one caller, the gateway's CPU per call moved by up to 2×
/// between 3-second runs a few seconds apart (0.053–0.119 ms), which drowns a few percent
/// of difference between two gateways run one after the other; taking turns call by call,
/// what disturbs one disturbs the other.
pub(super) async fn run_alternating(
    targets: &[(&Arc<Target>, &Pids)],
    concurrency: usize,
    duration: Duration,
) -> Result<Vec<RunData>> {
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let mut sessions = Vec::with_capacity(targets.len());
        // Workers start on different targets, so that at any moment the load is spread.
        for i in 0..targets.len() {
            let (target, _) = targets[(w + i) % targets.len()];
            sessions.push(
                McpSession::open((*target).clone())
                    .await
                    .with_context(|| format!("{}: open a session", target.name))?,
            );
        }
        workers.push(sessions);
    }
    let sample = || -> Result<Vec<CpuSample>> { targets.iter().map(|(_, p)| p.sample()).collect() };
    let before = sample()?;
    let start = Instant::now();
    let deadline = start + duration;
    let handles: Vec<_> = workers
        .into_iter()
        .map(|s| tokio::spawn(alternating_worker(s, deadline)))
        .collect();
    let mut outcomes = Vec::with_capacity(concurrency);
    for handle in handles {
        outcomes.push(handle.await.context("worker task failed")?);
    }
    let elapsed = start.elapsed();
    let after = sample()?;
    let mut runs: Vec<RunData> = before
        .iter()
        .zip(&after)
        .map(|(before, after)| RunData {
            latencies_ns: Vec::new(),
            errors: 0,
            first_error: None,
            elapsed,
            cpu: after.since(before),
        })
        .collect();
    let mut to_close = Vec::new();
    for (w, outs) in outcomes.into_iter().enumerate() {
        for (i, (session, outcome)) in outs.into_iter().enumerate() {
            let data = &mut runs[(w + i) % targets.len()];
            data.latencies_ns.extend(outcome.latencies_ns);
            data.errors += outcome.errors;
            if data.first_error.is_none() {
                data.first_error = outcome.first_error;
            }
            to_close.extend(session);
        }
    }
    for session in to_close {
        session.close().await;
    }
    split_shared_cpu(&mut runs);
    Ok(runs)
}

/// Runs of several targets measured together share the fixture's, the bench's and the
/// machine's CPU: each gets the share its calls took (the gateways' own CPU stays theirs).
pub(super) fn split_shared_cpu(runs: &mut [RunData]) {
    if runs.len() < 2 {
        return;
    }
    let calls: Vec<u64> = runs.iter().map(|r| r.latencies_ns.len() as u64).collect();
    let total = calls.iter().sum::<u64>().max(1);
    let gateways: u64 = runs.iter().map(|r| r.cpu.gateway).sum();
    // Everything else on the machine (what `others` counts), once.
    let others = runs[0]
        .cpu
        .machine
        .saturating_sub(gateways + runs[0].cpu.fixture + runs[0].cpu.bench);
    for (r, n) in runs.iter_mut().zip(calls) {
        let share = |t: u64| t * n / total;
        r.cpu.fixture = share(r.cpu.fixture);
        r.cpu.bench = share(r.cpu.bench);
        r.cpu.machine = r.cpu.gateway + r.cpu.fixture + r.cpu.bench + share(others);
    }
}

/// Waits until a `tools/call` through `target` succeeds (the gateway connects its upstream
/// and loads the catalog in the background).
pub(super) async fn wait_ready(target: &Arc<Target>, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        match McpSession::open(target.clone()).await {
            Ok(mut session) => match session.call_echo().await {
                Ok(Ok(())) => {
                    session.close().await;
                    return Ok(());
                }
                Ok(Err(reason)) => last = reason,
                Err(error) => last = format!("{error:#}"),
            },
            Err(error) => last = format!("{error:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{}: echo did not succeed within {} s; last error: {last}",
        target.name,
        within.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_cpu_clock_is_read_by_pid_in_microseconds() {
        let own = || {
            let t = nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID.now().unwrap();
            u64::try_from(t.tv_sec() * 1_000_000 + t.tv_nsec() / 1_000).unwrap()
        };
        let me = std::process::id().to_string();
        // Spin until this process's own CPU clock has moved by 15 ms, so the readings differ.
        let start = own();
        let mut x = 0u64;
        while own() < start + 15_000 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        // Read by pid, it is the same clock as this process reads for itself: between two
        // of its own readings, to the microsecond (not in 10 ms ticks).
        let before = own();
        let by_pid = cpu_us(&me).unwrap();
        let after = own();
        assert!(
            before <= by_pid && by_pid <= after,
            "{before} ≤ {by_pid} ≤ {after}"
        );
        assert!(by_pid >= start + 15_000);
        assert!(cpu_us("999999999").is_err(), "no such process");
        assert!(cpu_us("not a pid").is_err());
    }

    #[test]
    fn kernel_time_is_read_from_stat_after_the_command_name() {
        // A name with spaces and parentheses; utime 120, stime 34 (fields 14 and 15).
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 500 0 0 0 120 34 0 0 20 0 3 0 \
                    99 1000 200 18446744073709551615";
        assert_eq!(stime_ticks(line), Some(34));
        assert_eq!(stime_ticks("4242 (x) S 1 2"), None, "too few fields");
        assert_eq!(stime_ticks("no name at all"), None);
        // This process: its kernel time never exceeds its whole CPU time (one tick of slack:
        // the two are read at different moments and rounded differently).
        let me = std::process::id().to_string();
        let tick = (1e6 / metamcp_it::benchkit::clock_ticks_per_sec()) as u64;
        for _ in 0..2_000 {
            let _ = std::hint::black_box(std::fs::metadata("/proc/self/stat"));
        }
        let kernel = kernel_us(&me, tick).unwrap();
        assert!(kernel <= cpu_us(&me).unwrap() + tick);
        assert!(kernel_us("999999999", tick).is_err(), "no such process");
    }

    #[test]
    fn a_child_is_found_by_its_parent_and_command() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let found = child_process(std::process::id(), "sleep");
        let missing = child_process(std::process::id(), "no-such-program-here");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.unwrap(), child.id().to_string());
        assert!(missing.is_err());
    }

    #[test]
    fn runs_measured_together_split_the_shared_cpu_by_calls() {
        let run = |calls: usize, gateway: u64| RunData {
            latencies_ns: vec![1; calls],
            errors: 0,
            first_error: None,
            elapsed: Duration::from_secs(1),
            // Each run sampled the same shared processes: fixture 900, bench 300, machine
            // 3,000 in all (both gateways' 1,000 and 500 included, 300 of others).
            cpu: CpuSample {
                gateway,
                gateway_kernel: gateway / 2,
                fixture: 900,
                bench: 300,
                machine: 3_000,
            },
        };
        let mut runs = vec![run(200, 1_000), run(100, 500)];
        split_shared_cpu(&mut runs);
        let (a, b) = (runs[0].cpu, runs[1].cpu);
        assert_eq!(
            (a.gateway, a.fixture, a.bench, a.others()),
            (1_000, 600, 200, 200)
        );
        assert_eq!(
            (b.gateway, b.fixture, b.bench, b.others()),
            (500, 300, 100, 100)
        );
        let mut alone = vec![run(5, 7)];
        split_shared_cpu(&mut alone);
        assert_eq!(
            alone[0].cpu.fixture, 900,
            "a run alone keeps what it sampled"
        );
    }
}
