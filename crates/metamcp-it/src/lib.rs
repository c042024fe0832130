//! Black-box test harness for metamcp: a temporary data directory (SQLite, or a fresh
//! PostgreSQL database), the real `metamcp` binary driven through its CLI and started with
//! `serve` on an ephemeral port, the real fixture MCP server over stdio or HTTP, and real MCP
//! clients (rmcp's Streamable HTTP client, or raw JSON-RPC over reqwest for protocol-level
//! checks). Nothing here sleeps and hopes: waits poll a condition until a deadline.

pub mod benchkit;
pub mod oidc;
pub mod otlp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use rmcp::ServiceExt;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A built binary of this workspace (`metamcp`, `metamcp-fixture`), next to the test binary.
pub mod browser;

pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// The PostgreSQL server tests use (a fresh database per test is created on it).
pub fn pg_admin_url() -> String {
    std::env::var("METAMCP_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Output of one CLI run.
#[derive(Debug)]
pub struct CliOut {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// One isolated metamcp installation: its data directory (and database).
#[derive(Debug)]
pub struct Env {
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
    pg_db: Option<String>,
}

impl Env {
    /// A new installation on SQLite in a temporary directory.
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            database_url: None,
            pg_db: None,
        }
    }

    /// A new installation on a fresh PostgreSQL database; `None` when PostgreSQL does not
    /// answer and we are not in CI (in CI that is a failure).
    pub async fn new_pg() -> Option<Self> {
        use sqlx::Connection;
        let admin = pg_admin_url();
        let mut conn = match sqlx::postgres::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "PostgreSQL at {admin} does not answer in CI: {e}"
                );
                eprintln!("skipping the PostgreSQL half: {e}");
                return None;
            }
        };
        let db = format!("metamcp_it_{}", uuid_simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(b, _)| b)
            .to_owned();
        Some(Env {
            dir: tempfile::tempdir().expect("tempdir"),
            database_url: Some(format!("{base}/{db}")),
            pg_db: Some(db),
        })
    }

    /// The gateway's data directory (database, secret key); other test files live beside it.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &Path) -> std::process::Command {
        let mut c = std::process::Command::new(program);
        c.arg("--data-dir").arg(self.data_dir());
        c.env_remove("DATABASE_URL")
            .env_remove("RUST_LOG")
            .env_remove("DEBUG");
        if let Some(u) = &self.database_url {
            c.env("DATABASE_URL", u);
        }
        c
    }

    /// Runs `metamcp ARGS…` to completion.
    pub fn cli(&self, args: &[&str]) -> CliOut {
        let out = self
            .command(&bin("metamcp"))
            .args(args)
            .output()
            .expect("run metamcp");
        CliOut {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `metamcp ARGS…` with `input` on stdin.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> CliOut {
        use std::io::Write as _;
        let mut child = self
            .command(&bin("metamcp"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run metamcp");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes());
        }
        let out = child.wait_with_output().expect("wait for metamcp");
        CliOut {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `metamcp ARGS…` and returns stdout; panics with stderr on failure.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.ok,
            "metamcp {args:?} failed ({:?}): {}{}",
            o.code, o.stderr, o.stdout
        );
        o.stdout
    }

    /// Imports a `{"mcpServers": …}` document.
    pub fn import(&self, servers: Value) -> String {
        let path = self
            .dir
            .path()
            .join(format!("import-{}.json", uuid_simple()));
        std::fs::write(&path, json!({ "mcpServers": servers }).to_string())
            .expect("write import file");
        self.cli_ok(&["import", path.to_str().expect("utf8 path")])
    }

    /// Creates an API key and returns its value (the last line of stdout).
    pub fn key(&self, name: &str) -> String {
        let out = self.cli_ok(&["key", "create", name]);
        out.lines().last().expect("key line").trim().to_owned()
    }

    /// Creates an admin key (`key create NAME --admin`) and returns its value.
    pub fn admin_key(&self, name: &str) -> String {
        let out = self.cli_ok(&["key", "create", name, "--admin"]);
        out.lines().last().expect("key line").trim().to_owned()
    }

    /// Starts `metamcp serve` on an ephemeral loopback port.
    pub async fn serve(&self) -> Gateway {
        self.serve_with(&[]).await
    }

    /// Starts `metamcp serve` with extra environment variables.
    pub async fn serve_with(&self, env: &[(&str, &str)]) -> Gateway {
        self.serve_at("127.0.0.1:0", env).await
    }

    /// Starts `metamcp serve --bind BIND` with extra environment variables.
    pub async fn serve_at(&self, bind: &str, env: &[(&str, &str)]) -> Gateway {
        let log_path = self
            .dir
            .path()
            .join(format!("gateway-{}.log", uuid_simple()));
        let log = std::fs::File::create(&log_path).expect("gateway log file");
        let mut cmd = Command::from(self.command(&bin("metamcp")));
        cmd.args(["serve", "--bind", bind])
            .envs(env.iter().copied());
        cmd.env(
            "RUST_LOG",
            "info,metamcp_server=debug,metamcp_upstream=debug",
        );
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn metamcp serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // The public address comes last; lines before it name further listeners.
        let mut banner = Vec::new();
        let addr: SocketAddr = loop {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("gateway did not start; log: {}", read(&log_path)))
                .expect("read stdout")
                .unwrap_or_else(|| panic!("gateway exited; log: {}", read(&log_path)));
            match line.trim().strip_prefix("metamcp listening on http://") {
                Some(a) => {
                    break a
                        .parse()
                        .unwrap_or_else(|_| panic!("bad address in {line:?}"));
                }
                None if line.starts_with("metamcp ") => banner.push(line),
                None => panic!("unexpected line {line:?}"),
            }
        };
        // Keep draining stdout so the gateway never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Gateway {
            child,
            addr,
            base: format!("http://{addr}"),
            log_path,
            banner,
        }
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let Some(db) = self.pg_db.take() else { return };
        // why: Drop cannot await; a short blocking runtime drops the test database.
        let admin = pg_admin_url();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::postgres::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A short random identifier.
pub fn uuid_simple() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// A running `metamcp serve`.
#[derive(Debug)]
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub base: String,
    pub log_path: PathBuf,
    /// Lines `serve` printed before its public address (e.g. the admin API's listener).
    pub banner: Vec<String>,
}

impl Gateway {
    /// The MCP URL of endpoint `ep`.
    pub fn mcp_url(&self, ep: &str) -> String {
        format!("{}/metamcp/{ep}/mcp", self.base)
    }

    /// The legacy HTTP+SSE URL (the GET that opens a session) of endpoint `ep`.
    pub fn sse_url(&self, ep: &str) -> String {
        format!("{}/metamcp/{ep}/sse", self.base)
    }

    /// The one-time setup token `serve` printed (a fresh instance without an admin).
    pub fn setup_token(&self) -> Option<String> {
        self.banner.iter().find_map(|l| {
            l.split_once("setup token: ")
                .map(|(_, t)| t.trim().to_owned())
        })
    }

    /// `http://ADDR` of the admin API's own listener (`METAMCP_ADMIN_BIND`), if it has one.
    pub fn admin_base(&self) -> Option<String> {
        self.banner.iter().find_map(|l| {
            l.strip_prefix("metamcp admin API listening on ")
                .map(|b| b.trim().to_owned())
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("gateway pid")
    }

    /// `GET /metamcp/EP/mcp/health/sessions` (with `key` as a bearer token when given).
    pub async fn session_health(&self, ep: &str, key: Option<&str>) -> Value {
        let mut req = reqwest::Client::new().get(format!("{}/health/sessions", self.mcp_url(ep)));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
            .await
            .expect("health/sessions")
            .json()
            .await
            .expect("health JSON")
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        read(&self.log_path)
    }

    /// SIGTERM, then waits for the exit (at most 30 s).
    pub async fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM gateway");
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("gateway did not stop within 30 s")
            .expect("wait gateway")
    }
}

/// A `{"command": …}` entry for the fixture over stdio.
pub fn fixture_stdio(name: &str, extra: &[&str]) -> Value {
    let mut args = vec!["stdio".to_owned(), "--name".to_owned(), name.to_owned()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    json!({ "command": bin("metamcp-fixture").to_string_lossy(), "args": args })
}

/// The fixture serving Streamable HTTP on an ephemeral port.
#[derive(Debug)]
pub struct FixtureHttp {
    pub child: Child,
    pub url: String,
}

impl FixtureHttp {
    pub async fn start(name: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin("metamcp-fixture"));
        cmd.args(["http", "--name", name]);
        if !extra.contains(&"--bind") {
            cmd.args(["--bind", "127.0.0.1:0"]);
        }
        cmd.args(extra);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("spawn fixture")?;
        let stdout = child.stdout.take().context("fixture stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await??
            .context("fixture exited")?;
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            bail!("unexpected fixture line {line:?}")
        };
        Ok(FixtureHttp {
            url: url.to_owned(),
            child,
        })
    }
}

/// A real MCP client (rmcp) connected to `url`, sending `key` as a bearer token.
pub async fn mcp_client(
    url: &str,
    key: Option<&str>,
) -> anyhow::Result<RunningService<rmcp::RoleClient, ClientConfig>> {
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(k) = key {
        cfg = cfg.auth_header(k.to_owned());
    }
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), cfg);
    let mut info = ClientConfig::default();
    info.protocol_version = ProtocolVersion::V_2025_06_18;
    info.capabilities = ClientCapabilities::default();
    info.client_info = Implementation::new("metamcp-it", "0.1.0");
    Ok(info.serve(transport).await?)
}

/// A raw JSON-RPC client over HTTP, for protocol-level assertions.
#[derive(Debug, Clone)]
pub struct RawClient {
    pub http: reqwest::Client,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub session: Option<String>,
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl RawClient {
    pub fn new(url: &str) -> Self {
        RawClient {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            headers: Vec::new(),
            session: None,
        }
    }

    /// A client on an existing `reqwest::Client`, sharing its connection pool (many
    /// sessions over few keep-alive connections).
    pub fn with_http(http: reqwest::Client, url: &str) -> Self {
        RawClient {
            http,
            url: url.to_owned(),
            headers: Vec::new(),
            session: None,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn bearer(self, key: &str) -> Self {
        self.header("authorization", &format!("Bearer {key}"))
    }

    /// POSTs a raw body.
    pub async fn post_raw(&self, body: String) -> RawAnswer {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        let resp = req.body(body).send().await.expect("POST");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        RawAnswer {
            status,
            headers,
            body,
        }
    }

    fn post_builder(&self, body: String) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        req.body(body)
    }

    /// POSTs a body and reads every SSE `data` event of the answer until the stream ends
    /// (a plain JSON answer comes back as one event).
    pub async fn post_events(&self, body: String) -> (u16, String, Vec<Value>) {
        let resp = self.post_builder(body).send().await.expect("POST");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = resp.text().await.expect("body");
        let events = if ct.starts_with("text/event-stream") {
            sse_data(&text)
        } else {
            serde_json::from_str(&text).into_iter().collect()
        };
        (status, ct, events)
    }

    /// POSTs a body and hands each message of the answer over as it arrives (an SSE answer
    /// event by event; a plain JSON answer as one message), with the HTTP status.
    pub async fn post_stream(&self, body: String) -> (u16, tokio::sync::mpsc::Receiver<Value>) {
        let resp = self.post_builder(body).send().await.expect("POST");
        let status = resp.status().as_u16();
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        (status, forward_events(resp, sse))
    }

    /// Opens the session's GET stream; its events arrive on the returned channel.
    pub async fn open_stream(&self) -> tokio::sync::mpsc::Receiver<Value> {
        let mut req = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        let resp = req.send().await.expect("GET stream");
        assert_eq!(resp.status().as_u16(), 200, "GET stream refused");
        forward_events(resp, true)
    }

    /// Ends the session with `DELETE`; returns the HTTP status.
    pub async fn delete(&self) -> u16 {
        let mut req = self.http.delete(&self.url);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        req.send().await.expect("DELETE").status().as_u16()
    }

    /// Sends a request with id 1.
    pub async fn request(&self, method: &str, params: Value) -> RawAnswer {
        self.post_raw(json!({"jsonrpc":"2.0","id":1,"method":method,"params":params}).to_string())
            .await
    }

    /// Initializes a session and keeps its id.
    pub async fn initialize(&mut self) -> RawAnswer {
        let a = self
            .request(
                "initialize",
                json!({"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}),
            )
            .await;
        if let Some(s) = a
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.session = Some(s.to_owned());
            self.post_raw(
                json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string(),
            )
            .await;
        }
        a
    }
}

/// The messages of an HTTP answer, on a channel: SSE `data` events as they arrive, or the
/// whole body as one JSON message.
fn forward_events(resp: reqwest::Response, sse: bool) -> tokio::sync::mpsc::Receiver<Value> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        use futures::StreamExt;
        if !sse {
            if let Ok(v) = resp.json::<Value>().await {
                let _ = tx.send(v).await;
            }
            return;
        }
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                for v in sse_data(&block) {
                    if tx.send(v).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// A loopback TCP port that was free a moment ago (for servers that take a fixed port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The JSON of every `data:` field in an SSE text.
pub fn sse_data(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|block| {
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if data.is_empty() {
                None
            } else {
                serde_json::from_str(&data.join("\n")).ok()
            }
        })
        .collect()
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every live process descended from `root` (from /proc).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = ppid(pid) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may contain spaces: fields after the last ')'
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    f.next()?.parse().ok()
}

/// Whether process `pid` is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    ppid(pid).is_some()
}

/// How many file descriptors process `pid` has open (entries of `/proc/PID/fd`); `None`
/// when that directory cannot be read.
pub fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|rd| rd.flatten().count())
}

/// What each open file descriptor of `pid` points to (`socket:[…]`, `pipe:[…]`, paths), for
/// failure messages.
pub fn fd_targets(pid: u32) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}
