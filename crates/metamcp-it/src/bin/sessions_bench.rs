//! `metamcp-sessions-bench`: what a thousand concurrent client sessions cost the gateway —
//! upstream processes, memory — and what they get from it — throughput and latency.
//!
//! The benchmark starts its own processes on loopback with an ephemeral port and a temporary
//! data directory: a gateway configured with the `metamcp` CLI (`import` of `--servers` stdio
//! servers `s00`, `s01`, … each a `metamcp-fixture stdio` process the gateway spawns;
//! `namespace create`; `endpoint create` with API-key auth; `key create`), then
//! `metamcp serve --bind 127.0.0.1:0`. Then:
//!
//! 1. **warm-up**: one session calls `echo` on every server once (the gateway starts each
//!    server's one shared process on first use), and ends with `DELETE`;
//! 2. **open**: `--sessions` client sessions are opened (`initialize` +
//!    `notifications/initialized`, `--open-concurrency` at a time), each its own MCP session;
//! 3. **load**: every session calls `sNN__echo` (`{"message":"hello"}`) back to back (or with
//!    `--think-ms` between calls) for `--seconds`, session *i*'s *k*-th call going to server
//!    (*i* + *k*) mod `--servers`, so the load is spread evenly over the servers;
//! 4. **end**: the sessions are abandoned (never `DELETE`d, as careless clients do), the
//!    health route's session count is read, and the gateway is stopped with SIGTERM; the
//!    bench checks that none of its upstream processes survive it.
//!
//! Connections: by default every session has its own keep-alive HTTP/1.1 connection (raw
//! `hyper::client::conn::http1`, TCP_NODELAY), i.e. 1,000 sockets for 1,000 sessions. With
//! `--connections N` (or when the open-files limit is too low for one socket per session) the
//! sessions are multiplexed over N connections: session *i* uses connection *i* mod N, one
//! request at a time per connection, and the time a call waits for its connection counts in
//! its latency. All client tasks run on one tokio current-thread runtime (one core at most).
//!
//! A call is a success when its status is 200 and its whole body holds a `"result"` echoing
//! `hello` without `"isError":true`; anything else, including no complete answer within 10 s,
//! is an error (a broken connection is re-opened for the next call).
//!
//! Sampled every `--sample-ms` from a thread: the gateway's descendant processes (`/proc`),
//! its VmRSS (`/proc/PID/status`) and its open descriptors. Reported: upstream process count
//! (peak and at end; target ≤ `--servers`, 10 by default), gateway RSS after start, after
//! warm-up, after opening the sessions, peak (the larger of the sampled peak and the kernel's
//! VmHWM) and at end (target ≤ 150 MB), throughput, p50/p99/max latency, errors, and the
//! gateway's CPU per call.
//!
//! ```text
//! metamcp-sessions-bench [--sessions 1000] [--servers 10] [--seconds 20] [--connections N]
//!                        [--think-ms 0] [--open-concurrency 64] [--sample-ms 100]
//!                        [--metamcp PATH] [--fixture PATH] [--check]
//! ```
//!
//! `--check` makes a missed target (or any error) exit with status 1.

use std::{
    collections::BTreeSet,
    fs::File,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use clap::Parser;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper::{
    Method, Request, StatusCode,
    body::Bytes,
    client::conn::http1,
    header::{self, HeaderValue},
};
use hyper_util::rt::TokioIo;
use metamcp_it::benchkit::{
    Answer, Binaries, BinaryArgs, cli as run_cli, clock_ticks_per_sec, contains, echo_failure,
    exchange, percentile_ms, stat_field, tail_file,
};
use metamcp_it::{alive, descendants, open_fds};

/// Protocol version the sessions negotiate.
const PROTOCOL_VERSION: &str = "2025-06-18";
/// Target: the gateway's resident memory, peak and at end (MB).
const TARGET_RSS_MB: f64 = 150.0;
/// A request (or session setup) taking longer than this is an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the gateway may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the gateway may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Descriptors kept free (per process) when deciding how many sockets the limit allows.
const FD_HEADROOM: u64 = 256;
/// The echo argument, and what a successful answer must contain.
const MESSAGE: &str = "hello";
const NAMESPACE: &str = "sessions";
const ENDPOINT: &str = "sessions";

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

#[derive(Debug, Parser)]
#[command(
    name = "metamcp-sessions-bench",
    about = "1,000 concurrent client sessions through the metamcp gateway to 10 shared stdio servers: processes, memory, throughput, latency"
)]
struct Cli {
    #[command(flatten)]
    bins: BinaryArgs,
    /// Concurrent client sessions.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Stdio servers in the namespace (one fixture process each); also the process target.
    #[arg(long, default_value_t = 10)]
    servers: usize,
    /// Duration of the load, in seconds.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// TCP connections the sessions share (default: one per session).
    #[arg(long)]
    connections: Option<usize>,
    /// Pause of each session between two calls, in milliseconds (0: back to back).
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// Sessions being opened at the same time.
    #[arg(long, default_value_t = 64)]
    open_concurrency: usize,
    /// Sampling period of processes, RSS and descriptors, in milliseconds.
    #[arg(long, default_value_t = 100)]
    sample_ms: u64,
    /// Exit with status 1 when a target is missed or any call failed.
    #[arg(long)]
    check: bool,
}

// ---------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in kB.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS")
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// utime + stime of a process, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let field = |n: usize| -> Result<u64> {
        stat_field(&stat, n)
            .with_context(|| format!("{path}: no field {n}"))?
            .parse::<u64>()
            .with_context(|| format!("{path}: field {n} is not a number"))
    };
    Ok(field(14)? + field(15)?)
}

/// The soft limit on open files of this process (inherited by the gateway).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What the sampling thread saw.
#[derive(Debug, Default)]
struct Samples {
    count: usize,
    max_processes: usize,
    processes_seen: BTreeSet<u32>,
    max_rss_kb: u64,
    max_fds: usize,
}

/// Samples the gateway every `period` until `stop` is set (and once more after).
fn sampler(pid: u32, period: Duration, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Samples> {
    std::thread::spawn(move || {
        let mut s = Samples::default();
        loop {
            let last = stop.load(Ordering::Acquire);
            let d = descendants(pid);
            s.count += 1;
            s.max_processes = s.max_processes.max(d.len());
            s.processes_seen.extend(d);
            s.max_rss_kb = s.max_rss_kb.max(rss_kb(pid).unwrap_or(0));
            s.max_fds = s.max_fds.max(open_fds(pid).unwrap_or(0));
            if last {
                return s;
            }
            std::thread::sleep(period);
        }
    })
}

// ---------------------------------------------------------------------------
// The gateway process
// ---------------------------------------------------------------------------

/// The gateway: SIGTERMed (then SIGKILLed) and reaped when dropped, also on error paths.
struct GatewayProcess {
    child: Child,
    stderr_log: PathBuf,
}

impl GatewayProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "the gateway exited ({status}); its stderr ends with:\n{}",
                tail_file(&self.stderr_log, 30)
            ),
            Err(e) => Err(e).context("check whether the gateway runs"),
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `STOP_TIMEOUT`); returns how long
    /// the exit took and whether it was graceful.
    fn stop(&mut self) -> Result<(Duration, bool)> {
        let start = Instant::now();
        if self.child.try_wait()?.is_some() {
            return Ok((Duration::ZERO, false));
        }
        let pid = nix::unistd::Pid::from_raw(
            i32::try_from(self.pid()).context("gateway pid out of range")?,
        );
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .context("SIGTERM the gateway")?;
        while start.elapsed() < STOP_TIMEOUT {
            if let Some(status) = self.child.try_wait()? {
                return Ok((start.elapsed(), status.success()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill().context("SIGKILL the gateway")?;
        self.child.wait().context("reap the gateway")?;
        Ok((start.elapsed(), false))
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("sessions-bench: stopping the gateway: {e:#}");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Configures `servers` stdio fixtures, a namespace, an endpoint and a key; returns the key.
fn configure(bins: &Binaries, dir: &Path, data_dir: &Path, servers: usize) -> Result<String> {
    let fixture = bins
        .fixture
        .to_str()
        .with_context(|| format!("non-UTF-8 path {}", bins.fixture.display()))?;
    let mut map = serde_json::Map::new();
    for name in server_names(servers) {
        map.insert(
            name.clone(),
            serde_json::json!({ "command": fixture, "args": ["stdio", "--name", name] }),
        );
    }
    let import = dir.join("servers.json");
    std::fs::write(
        &import,
        serde_json::json!({ "mcpServers": map }).to_string(),
    )
    .with_context(|| format!("write {}", import.display()))?;
    let import_arg = import
        .to_str()
        .with_context(|| format!("non-UTF-8 path {}", import.display()))?;
    run_cli(&bins.metamcp, data_dir, &["import", import_arg])?;
    let names = server_names(servers);
    let mut args = vec!["namespace", "create", NAMESPACE];
    for n in &names {
        args.extend(["--server", n.as_str()]);
    }
    run_cli(&bins.metamcp, data_dir, &args)?;
    run_cli(
        &bins.metamcp,
        data_dir,
        &["endpoint", "create", ENDPOINT, "--namespace", NAMESPACE],
    )?;
    let out = run_cli(
        &bins.metamcp,
        data_dir,
        &["key", "create", "sessions-bench"],
    )?;
    Ok(out
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .context("`metamcp key create` printed no key")?
        .to_owned())
}

/// `s00`, `s01`, …
fn server_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i:02}")).collect()
}

/// Starts `metamcp serve --bind 127.0.0.1:0`; returns the process and its address.
fn start_gateway(bins: &Binaries, dir: &Path, data_dir: &Path) -> Result<(GatewayProcess, String)> {
    let stderr_log = dir.join("gateway.stderr.log");
    let log = File::create(&stderr_log)
        .with_context(|| format!("create log file {}", stderr_log.display()))?;
    let mut cmd = Command::new(&bins.metamcp);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env_remove("DEBUG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    let stdout = child.stdout.take();
    let mut gateway = GatewayProcess { child, stderr_log };
    let stdout = stdout.context("gateway: no stdout pipe")?;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::Builder::new()
        .name("gateway-stdout".into())
        .spawn(move || {
            // Keeps draining stdout so the gateway never blocks on a full pipe.
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(rest) = line.strip_prefix("metamcp listening on ") {
                    sent = tx.send(rest.trim().to_owned()).is_ok();
                }
            }
        })
        .context("spawn the gateway's stdout reader")?;
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(url) => Ok((gateway, url)),
        Err(_) => {
            gateway.check_alive()?;
            bail!(
                "the gateway did not print its address within {} s; its stderr ends with:\n{}",
                START_TIMEOUT.as_secs(),
                tail_file(&gateway.stderr_log, 30)
            )
        }
    }
}

// ---------------------------------------------------------------------------
// Client side: shared connections, sessions
// ---------------------------------------------------------------------------

/// Where to send requests.
#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    path: String,
    auth: HeaderValue,
}

/// One keep-alive HTTP/1.1 connection, re-opened on demand after it broke.
struct Connection {
    target: Arc<Target>,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
    opened: u64,
}

type SharedConnection = Arc<tokio::sync::Mutex<Connection>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

impl Connection {
    fn new(target: Arc<Target>) -> Self {
        Connection {
            target,
            sender: None,
            opened: 0,
        }
    }

    async fn sender(&mut self) -> Result<&mut http1::SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.target.addr)
                .await
                .with_context(|| format!("connect {}", self.target.addr))?;
            stream.set_nodelay(true).context("set TCP_NODELAY")?;
            let (sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .context("HTTP/1.1 handshake")?;
            tokio::spawn(async move {
                // Ends when the sender is dropped or the peer closes the connection.
                let _ = conn.await;
            });
            self.opened += 1;
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or_else(|| anyhow!("no connection"))
    }

    /// Sends one message and reads the whole answer; a failure drops the connection.
    async fn exchange(
        &mut self,
        method: Method,
        session: Option<&HeaderValue>,
        body: String,
    ) -> Result<Answer> {
        let target = self.target.clone();
        let result = async {
            let sender = self.sender().await?;
            let mut req = Request::builder()
                .method(method)
                .uri(target.path.as_str())
                .header(header::HOST, target.host.clone())
                .header(header::AUTHORIZATION, target.auth.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, "application/json, text/event-stream");
            if let Some(sid) = session {
                req = req
                    .header("mcp-session-id", sid.clone())
                    .header("mcp-protocol-version", PROTOCOL_VERSION);
            }
            let req = req
                .body(Full::new(Bytes::from(body)))
                .context("build request")?;
            exchange(sender, req).await
        };
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, result).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(anyhow!(
                "no complete answer within {} s",
                REQUEST_TIMEOUT.as_secs()
            )),
        };
        if answer.is_err() {
            // The connection's state is unknown (a half-read answer): start afresh.
            self.sender = None;
        }
        answer
    }
}

/// One client session, on a (possibly shared) connection.
struct Session {
    index: usize,
    id: HeaderValue,
    conn: SharedConnection,
}

/// `initialize` + `notifications/initialized` on `conn`.
async fn open_session(index: usize, conn: SharedConnection) -> Result<Session> {
    let init = format!(
        r#"{{"jsonrpc":"2.0","id":{},"method":"initialize","params":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"metamcp-sessions-bench","version":"{}"}}}}}}"#,
        next_id(),
        env!("CARGO_PKG_VERSION")
    );
    let answer = conn.lock().await.exchange(Method::POST, None, init).await?;
    ensure!(
        answer.status == StatusCode::OK && contains(&answer.body, b"\"result\""),
        "initialize answered {}: {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    let id = answer
        .session_id
        .context("initialize answered without mcp-session-id")?;
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned();
    let answer = conn
        .lock()
        .await
        .exchange(Method::POST, Some(&id), note)
        .await?;
    ensure!(
        answer.status.is_success(),
        "notifications/initialized answered {}: {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    Ok(Session { index, id, conn })
}

/// One `tools/call` of `tool`; `Ok(Err(reason))` is a complete exchange with a wrong answer.
async fn call_echo(
    conn: &SharedConnection,
    session: &HeaderValue,
    tool: &str,
) -> Result<std::result::Result<(), String>> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"message":"{MESSAGE}"}}}}}}"#,
        next_id()
    );
    let answer = conn
        .lock()
        .await
        .exchange(Method::POST, Some(session), body)
        .await?;
    if let Some(failure) = echo_failure(answer.status.as_u16(), &answer.body, MESSAGE) {
        return Ok(Err(format!("{tool}: {failure}")));
    }
    Ok(Ok(()))
}

/// What one session's worker saw.
#[derive(Default)]
struct Outcome {
    latencies_ns: Vec<u64>,
    per_server: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Outcome {
    fn error(&mut self, reason: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(reason);
        }
    }
}

async fn worker(
    session: Arc<Session>,
    tools: Arc<Vec<String>>,
    deadline: Instant,
    think: Duration,
) -> Outcome {
    let mut out = Outcome {
        per_server: vec![0; tools.len()],
        ..Outcome::default()
    };
    let mut k = 0usize;
    loop {
        let start = Instant::now();
        if start >= deadline {
            return out;
        }
        let server = (session.index + k) % tools.len();
        k += 1;
        match call_echo(&session.conn, &session.id, &tools[server]).await {
            Ok(Ok(())) => {
                out.latencies_ns
                    .push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
                out.per_server[server] += 1;
            }
            Ok(Err(reason)) => out.error(reason),
            Err(e) => {
                out.error(format!("{e:#}"));
                // Do not spin on a broken connection.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if !think.is_zero() {
            tokio::time::sleep(think).await;
        }
    }
}

/// The health route's session count.
async fn health_sessions(target: &Target, conn: &SharedConnection) -> Result<u64> {
    let mut c = conn.lock().await;
    let sender = c.sender().await?;
    sender.ready().await.context("connection not ready")?;
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("{}/health/sessions", target.path))
        .header(header::HOST, target.host.clone())
        .header(header::AUTHORIZATION, target.auth.clone())
        .body(Full::new(Bytes::new()))
        .context("build request")?;
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req))
        .await
        .context("health: timeout")??;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    ensure!(
        status == StatusCode::OK,
        "health/sessions answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let v: serde_json::Value = serde_json::from_slice(&body).context("health: not JSON")?;
    v["sessions"].as_u64().context("health: no session count")
}

// ---------------------------------------------------------------------------
// Statistics and the report
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Report {
    sessions: usize,
    servers: usize,
    connections: usize,
    connection_note: Option<String>,
    seconds: f64,
    think_ms: u64,
    cpus: usize,
    gateway_pid: u32,
    warmup: Duration,
    open_time: Duration,
    open_errors: u64,
    open_first_error: Option<String>,
    sessions_reported: Option<u64>,
    connections_opened: u64,
    calls: u64,
    errors: u64,
    first_error: Option<String>,
    load_elapsed: Duration,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    per_server_min: u64,
    per_server_max: u64,
    gateway_cpu_ms: f64,
    processes_after_warmup: usize,
    processes_at_end: usize,
    samples: Samples,
    rss_start_kb: u64,
    rss_warm_kb: u64,
    rss_open_kb: u64,
    rss_end_kb: u64,
    hwm_kb: u64,
    upstream_rss_end_kb: u64,
    fds_warm: usize,
    fds_end: usize,
    stop_time: Duration,
    stopped_gracefully: bool,
    left_after_stop: Vec<u32>,
}

impl Report {
    fn peak_rss_kb(&self) -> u64 {
        self.samples
            .max_rss_kb
            .max(self.hwm_kb)
            .max(self.rss_end_kb)
    }

    fn processes_pass(&self) -> bool {
        self.samples.max_processes <= self.servers && self.processes_at_end <= self.servers
    }

    fn rss_pass(&self) -> bool {
        mb(self.peak_rss_kb()) <= TARGET_RSS_MB && mb(self.rss_end_kb) <= TARGET_RSS_MB
    }

    fn clean(&self) -> bool {
        self.errors == 0
            && self.open_errors == 0
            && self.left_after_stop.is_empty()
            && self.sessions_reported == Some(self.sessions as u64)
    }

    fn render(&self) -> String {
        use std::fmt::Write as _;
        let pass = |ok: bool| if ok { "PASS" } else { "MISS" };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "metamcp-sessions-bench: {} concurrent client sessions, {} stdio servers (metamcp-fixture, one shared process each), tools/call sNN__echo for {} s",
            self.sessions, self.servers, self.seconds
        );
        let _ = writeln!(
            s,
            "  load generator: tokio current-thread runtime (1 thread), hyper HTTP/1.1 keep-alive, TCP_NODELAY; {} connection(s) for {} sessions{}; think time {} ms",
            self.connections,
            self.sessions,
            if self.connections == self.sessions {
                " (one per session)".to_owned()
            } else {
                format!(
                    " (session i on connection i mod {}, one request at a time each)",
                    self.connections
                )
            },
            self.think_ms
        );
        if let Some(note) = &self.connection_note {
            let _ = writeln!(s, "  note: {note}");
        }
        let _ = writeln!(
            s,
            "  {} CPU(s); gateway pid {}, API-key auth, protocol {PROTOCOL_VERSION}",
            self.cpus, self.gateway_pid
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "setup");
        let _ = writeln!(
            s,
            "  warm-up (one call per server)   {:>9.1} ms",
            self.warmup.as_secs_f64() * 1e3
        );
        let open_s = self.open_time.as_secs_f64();
        let _ = writeln!(
            s,
            "  sessions opened                 {:>9} in {open_s:.2} s ({:.0}/s), {} error(s)",
            self.sessions,
            self.sessions as f64 / open_s,
            self.open_errors
        );
        let _ = writeln!(
            s,
            "  health/sessions after the load  {:>9}",
            self.sessions_reported
                .map_or_else(|| "?".to_owned(), |n| n.to_string())
        );
        let _ = writeln!(s);
        let secs = self.load_elapsed.as_secs_f64();
        let _ = writeln!(s, "load ({secs:.1} s)");
        let _ = writeln!(
            s,
            "  calls ok {:>10}   errors {}   throughput {:.0} calls/s",
            self.calls,
            self.errors,
            self.calls as f64 / secs
        );
        let _ = writeln!(
            s,
            "  latency  p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
            self.p50_ms, self.p99_ms, self.max_ms
        );
        let _ = writeln!(
            s,
            "  calls per server {}..{}; connections (re)opened {}",
            self.per_server_min, self.per_server_max, self.connections_opened
        );
        let _ = writeln!(
            s,
            "  gateway CPU {:.3} ms per call ({:.2} cores)",
            if self.calls == 0 {
                f64::NAN
            } else {
                self.gateway_cpu_ms / self.calls as f64
            },
            self.gateway_cpu_ms / 1e3 / secs
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "processes (descendants of the gateway)");
        let _ = writeln!(
            s,
            "  after warm-up {}   peak {} ({} samples)   at end {}   distinct pids seen {}   target ≤ {}  {}",
            self.processes_after_warmup,
            self.samples.max_processes,
            self.samples.count,
            self.processes_at_end,
            self.samples.processes_seen.len(),
            self.servers,
            pass(self.processes_pass())
        );
        let _ = writeln!(
            s,
            "  after SIGTERM: gateway exited in {:.2} s ({}), {} of {} upstream process(es) left",
            self.stop_time.as_secs_f64(),
            if self.stopped_gracefully {
                "status 0"
            } else {
                "NOT graceful"
            },
            self.left_after_stop.len(),
            self.samples.processes_seen.len()
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "gateway memory (VmRSS)");
        let _ = writeln!(
            s,
            "  after start {:.1} MB   after warm-up {:.1} MB   after opening the sessions {:.1} MB",
            mb(self.rss_start_kb),
            mb(self.rss_warm_kb),
            mb(self.rss_open_kb)
        );
        let _ = writeln!(
            s,
            "  peak {:.1} MB (sampled {:.1}, VmHWM {:.1})   at end {:.1} MB   target ≤ {TARGET_RSS_MB:.0} MB  {}",
            mb(self.peak_rss_kb()),
            mb(self.samples.max_rss_kb),
            mb(self.hwm_kb),
            mb(self.rss_end_kb),
            pass(self.rss_pass())
        );
        let per_session = (self.rss_open_kb as f64 - self.rss_warm_kb as f64) * 1024.0
            / self.sessions.max(1) as f64;
        let _ = writeln!(
            s,
            "  ≈ {per_session:.0} bytes per open session ((after opening − after warm-up) ÷ sessions{})",
            if self.connections == self.sessions {
                "; with a connection each, that includes the connection's HTTP state"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "  open fds: after warm-up {}, peak {}, at end {}; upstream processes' RSS at end {:.1} MB in total",
            self.fds_warm,
            self.samples.max_fds,
            self.fds_end,
            mb(self.upstream_rss_end_kb)
        );
        if let Some(e) = &self.open_first_error {
            let _ = writeln!(s, "\nfirst session-open error: {e}");
        }
        if let Some(e) = &self.first_error {
            let _ = writeln!(s, "\nfirst call error: {e}");
        }
        if !self.left_after_stop.is_empty() {
            let _ = writeln!(
                s,
                "\nprocesses left after the gateway stopped: {:?}",
                self.left_after_stop
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "summary: processes {} (peak {} ≤ {}), RSS {} (peak {:.1} MB, end {:.1} MB ≤ {TARGET_RSS_MB:.0} MB), {:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms, {} error(s)",
            pass(self.processes_pass()),
            self.samples.max_processes,
            self.servers,
            pass(self.rss_pass()),
            mb(self.peak_rss_kb()),
            mb(self.rss_end_kb),
            self.calls as f64 / secs,
            self.p50_ms,
            self.p99_ms,
            self.errors + self.open_errors
        );
        s
    }
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

/// `http://HOST:PORT` → socket address and `Host` header value.
fn split_url(url: &str) -> Result<(SocketAddr, String)> {
    let authority = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// URL: {url:?}"))?
        .trim_end_matches('/');
    let addr: SocketAddr = authority
        .parse()
        .with_context(|| format!("{url:?}: authority {authority:?} is not IP:PORT"))?;
    Ok((addr, authority.to_owned()))
}

/// How many connections to use, and why if fewer than asked.
fn plan_connections(cli: &Cli) -> (usize, Option<String>) {
    let wanted = cli
        .connections
        .unwrap_or(cli.sessions)
        .clamp(1, cli.sessions);
    match open_files_limit() {
        Some(limit) if (wanted as u64) + FD_HEADROOM > limit => {
            let allowed = usize::try_from(limit.saturating_sub(FD_HEADROOM).max(1))
                .unwrap_or(1)
                .min(wanted);
            (
                allowed,
                Some(format!(
                    "the open-files limit is {limit} (ulimit -n), too low for {wanted} sockets per process: the sessions share {allowed} connections"
                )),
            )
        }
        _ => (wanted, None),
    }
}

fn run(cli: &Cli, bins: &Binaries) -> Result<Report> {
    let (connections, connection_note) = plan_connections(cli);
    let dir = tempfile::Builder::new()
        .prefix("metamcp-sessions-bench-")
        .tempdir()
        .context("create a temporary directory")?;
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let key = configure(bins, dir.path(), &data_dir, cli.servers)?;
    let (mut gateway, url) = start_gateway(bins, dir.path(), &data_dir)?;
    let pid = gateway.pid();
    eprintln!("sessions-bench: gateway pid {pid} at {url}");
    let (addr, host) = split_url(&url)?;
    let mut auth = HeaderValue::from_str(&format!("Bearer {key}")).context("API key header")?;
    auth.set_sensitive(true);
    let target = Arc::new(Target {
        addr,
        host: HeaderValue::from_str(&host).context("Host header")?,
        path: format!("/metamcp/{ENDPOINT}/mcp"),
        auth,
    });
    let tools: Arc<Vec<String>> = Arc::new(
        server_names(cli.servers)
            .into_iter()
            .map(|n| format!("{n}__echo"))
            .collect(),
    );
    let mut report = Report {
        sessions: cli.sessions,
        servers: cli.servers,
        connections,
        connection_note,
        seconds: cli.seconds,
        think_ms: cli.think_ms,
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        gateway_pid: pid,
        rss_start_kb: rss_kb(pid).unwrap_or(0),
        ..Report::default()
    };
    let tick_ms = 1000.0 / clock_ticks_per_sec();

    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampling = sampler(
        pid,
        Duration::from_millis(cli.sample_ms.max(1)),
        stop_sampling.clone(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build the load generator's tokio runtime")?;
    let loaded = rt.block_on(async {
        // Warm-up: every server's process starts on its first call.
        let started = Instant::now();
        let control: SharedConnection =
            Arc::new(tokio::sync::Mutex::new(Connection::new(target.clone())));
        let warm = open_session(usize::MAX, control.clone())
            .await
            .context("warm-up session")?;
        for tool in tools.iter() {
            match call_echo(&control, &warm.id, tool).await? {
                Ok(()) => {}
                Err(reason) => bail!("warm-up call failed: {reason}"),
            }
        }
        let ended = control
            .lock()
            .await
            .exchange(Method::DELETE, Some(&warm.id), String::new())
            .await?;
        ensure!(
            ended.status.is_success(),
            "DELETE of the warm-up session answered {}",
            ended.status
        );
        report.warmup = started.elapsed();
        report.processes_after_warmup = descendants(pid).len();
        report.rss_warm_kb = rss_kb(pid).unwrap_or(0);
        report.fds_warm = open_fds(pid).unwrap_or(0);
        eprintln!(
            "sessions-bench: warm-up done in {:.0} ms, {} upstream processes",
            report.warmup.as_secs_f64() * 1e3,
            report.processes_after_warmup
        );

        // Open every session.
        let conns: Vec<SharedConnection> = (0..connections)
            .map(|_| Arc::new(tokio::sync::Mutex::new(Connection::new(target.clone()))))
            .collect();
        let started = Instant::now();
        let opened: Vec<Result<Session>> = futures::stream::iter(0..cli.sessions)
            .map(|i| open_session(i, conns[i % connections].clone()))
            .buffer_unordered(cli.open_concurrency.max(1))
            .collect()
            .await;
        report.open_time = started.elapsed();
        let mut sessions = Vec::with_capacity(cli.sessions);
        for r in opened {
            match r {
                Ok(s) => sessions.push(Arc::new(s)),
                Err(e) => {
                    report.open_errors += 1;
                    if report.open_first_error.is_none() {
                        report.open_first_error = Some(format!("{e:#}"));
                    }
                }
            }
        }
        ensure!(!sessions.is_empty(), "no session could be opened");
        report.rss_open_kb = rss_kb(pid).unwrap_or(0);
        eprintln!(
            "sessions-bench: {} sessions open in {:.2} s over {connections} connection(s); loading for {} s",
            sessions.len(),
            report.open_time.as_secs_f64(),
            cli.seconds
        );

        // The load.
        let cpu_before = cpu_ticks(pid)?;
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(cli.seconds);
        let think = Duration::from_millis(cli.think_ms);
        let handles: Vec<_> = sessions
            .iter()
            .map(|s| tokio::spawn(worker(s.clone(), tools.clone(), deadline, think)))
            .collect();
        let mut latencies = Vec::new();
        let mut per_server = vec![0u64; tools.len()];
        for h in handles {
            let out = h.await.context("a session's worker failed")?;
            latencies.extend(out.latencies_ns);
            for (total, n) in per_server.iter_mut().zip(out.per_server) {
                *total += n;
            }
            report.errors += out.errors;
            if report.first_error.is_none() {
                report.first_error = out.first_error;
            }
        }
        report.load_elapsed = started.elapsed();
        report.gateway_cpu_ms = cpu_ticks(pid)?.saturating_sub(cpu_before) as f64 * tick_ms;
        latencies.sort_unstable();
        report.calls = latencies.len() as u64;
        report.p50_ms = percentile_ms(&latencies, 0.50);
        report.p99_ms = percentile_ms(&latencies, 0.99);
        report.max_ms = latencies.last().map_or(f64::NAN, |&n| n as f64 / 1e6);
        report.per_server_min = per_server.iter().copied().min().unwrap_or(0);
        report.per_server_max = per_server.iter().copied().max().unwrap_or(0);
        for c in &conns {
            report.connections_opened += c.lock().await.opened;
        }

        // The sessions are abandoned, not DELETEd; the gateway still counts them.
        report.sessions_reported = Some(health_sessions(&target, &control).await?);
        let end = descendants(pid);
        report.processes_at_end = end.len();
        report.upstream_rss_end_kb = end.iter().filter_map(|&p| rss_kb(p)).sum();
        report.rss_end_kb = rss_kb(pid).unwrap_or(0);
        report.hwm_kb = status_kb(pid, "VmHWM").unwrap_or(0);
        report.fds_end = open_fds(pid).unwrap_or(0);
        // The client side goes away: connections close with the runtime's tasks.
        drop(sessions);
        drop(conns);
        anyhow::Ok(())
    });
    drop(rt);
    stop_sampling.store(true, Ordering::Release);
    report.samples = sampling
        .join()
        .map_err(|_| anyhow!("the sampling thread panicked"))?;
    gateway.check_alive()?;
    loaded?;

    let (took, graceful) = gateway.stop()?;
    report.stop_time = took;
    report.stopped_gracefully = graceful;
    // The gateway has exited; its process groups were killed before that. Give the kernel a
    // moment to reap what was already signalled.
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        report.left_after_stop = report
            .samples
            .processes_seen
            .iter()
            .copied()
            .filter(|&p| alive(p))
            .collect();
        if report.left_after_stop.is_empty() || Instant::now() >= give_up {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(report)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    ensure!(cli.sessions > 0, "--sessions must be positive");
    ensure!(cli.servers > 0, "--servers must be positive");
    ensure!(cli.seconds > 0.0, "--seconds must be positive");
    let bins = cli.bins.resolve()?;
    let report = run(&cli, &bins)?;
    print!("{}", report.render());
    if cli.check && !(report.processes_pass() && report.rss_pass() && report.clean()) {
        bail!("a target was missed or calls failed (--check)");
    }
    Ok(())
}
