//! What the benchmark binaries share: the binaries built next to them, the `metamcp` CLI run
//! against a benchmark's own data directory, a gateway started and a session opened, an MCP
//! request sent and its answer read, `/proc/PID/stat` fields.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};

/// The binary `name` built next to the running benchmark (its `scripts/*-bench.sh` builds
/// both).
pub fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locate the bench executable")?;
    let dir = exe
        .parent()
        .with_context(|| format!("{} has no parent directory", exe.display()))?;
    let p = dir.join(name);
    if !p.exists() {
        bail!(
            "{} is not built (the benchmark's script in scripts/ builds it)",
            p.display()
        );
    }
    Ok(p)
}

/// The `--metamcp` and `--fixture` options of a benchmark that runs both.
#[derive(Debug, Clone, clap::Args)]
pub struct BinaryArgs {
    /// The `metamcp` binary (default: next to this executable).
    #[arg(long)]
    pub metamcp: Option<PathBuf>,
    /// The `metamcp-fixture` binary (default: next to this executable).
    #[arg(long)]
    pub fixture: Option<PathBuf>,
}

/// The gateway and fixture binaries a benchmark runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub metamcp: PathBuf,
    pub fixture: PathBuf,
}

impl BinaryArgs {
    /// The binaries given, else those next to this executable; an error saying how to build
    /// or name one that is missing.
    pub fn resolve(&self) -> Result<Binaries> {
        let pick = |given: &Option<PathBuf>, name: &str| match given {
            Some(p) => Ok(p.clone()),
            None => sibling(name),
        };
        let bins = Binaries {
            metamcp: pick(&self.metamcp, "metamcp")?,
            fixture: pick(&self.fixture, "metamcp-fixture")?,
        };
        for (name, path) in [("metamcp", &bins.metamcp), ("fixture", &bins.fixture)] {
            if !path.is_file() {
                bail!(
                    "{name} binary not found at {} (build with `cargo build --release -p metamcp \
                     -p metamcp-it --bins`, or pass --{name} PATH)",
                    path.display()
                );
            }
        }
        Ok(bins)
    }
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when getconf is missing).
pub fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// `metamcp --data-dir DATA ARGS…` (never a `DATABASE_URL` from the environment, no
/// standard input); its standard output, or an error with both its outputs.
pub fn cli(metamcp: &Path, data: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(metamcp)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("run {} {}", metamcp.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`metamcp {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`metamcp {}`: stdout", args.join(" ")))
}

/// Field `n` of a `/proc/PID/stat` line, numbered as in proc(5) (4 is the parent's pid, 14
/// utime, 15 stime); `n` ≥ 3. The command name (field 2) may hold spaces and parentheses,
/// so fields are counted from its closing parenthesis, the line's last.
pub fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n.checked_sub(3)?)
}

/// The command name of a `/proc/PID/stat` line (field 2, at most 15 bytes), without its
/// parentheses.
pub fn stat_comm(stat: &str) -> Option<&str> {
    let (_, rest) = stat.split_once('(')?;
    Some(rest.rsplit_once(')')?.0)
}

/// An MCP POST's (or DELETE's) answer, its body read to the end.
pub struct Answer {
    pub status: StatusCode,
    pub session_id: Option<HeaderValue>,
    pub body: Bytes,
}

/// Sends `req` on an HTTP/1.1 connection once it is ready and reads the whole answer (an SSE
/// answer to the end of its stream), keeping its `mcp-session-id`.
pub async fn exchange(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<Answer> {
    sender.ready().await.context("connection not ready")?;
    let resp = sender.send_request(req).await.context("send request")?;
    let status = resp.status();
    let session_id = resp.headers().get("mcp-session-id").cloned();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("read response body")?
        .to_bytes();
    Ok(Answer {
        status,
        session_id,
        body,
    })
}

/// The last `n` lines of a log file, for error messages.
pub fn tail_file(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(_) => format!("(cannot read {})", path.display()),
    }
}

/// The `q` quantile (nearest rank) of sorted nanoseconds, in milliseconds; NaN for none.
pub fn percentile_ms(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = (q * sorted_ns.len() as f64).ceil() as usize;
    sorted_ns[rank.clamp(1, sorted_ns.len()) - 1] as f64 / 1e6
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Why an answer to the fixture's `echo` of `message` is not a successful one (HTTP status
/// `status`, body `body`), or `None` when it is: 200, a `"result"` echoing `message`, no
/// `"isError":true`.
pub fn echo_failure(status: u16, body: &[u8], message: &str) -> Option<String> {
    if status != 200 {
        return Some(format!("HTTP {status}: {}", String::from_utf8_lossy(body)));
    }
    if !contains(body, b"\"result\"")
        || !contains(body, message.as_bytes())
        || contains(body, b"\"isError\":true")
    {
        return Some(format!(
            "not a successful echo result: {}",
            String::from_utf8_lossy(body)
        ));
    }
    None
}

/// Starts `metamcp --data-dir DATA serve` on an ephemeral loopback port with `RUST_LOG`
/// `log` (stderr discarded); the child (killed when dropped) and its `http://…` base URL.
/// Its standard output is drained in the background so it never blocks on a full pipe.
pub async fn serve(
    metamcp: &Path,
    data: &Path,
    log: &str,
) -> Result<(tokio::process::Child, String)> {
    let mut gw = tokio::process::Command::new(metamcp)
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("RUST_LOG", log)
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let base = listening(&mut gw, std::time::Duration::from_secs(60)).await?;
    Ok((gw, base))
}

/// The `http://…` base URL a starting gateway prints (`metamcp listening on …`), waited for
/// at most `within`; the rest of its standard output is drained in the background so it
/// never blocks on a full pipe.
pub async fn listening(
    gw: &mut tokio::process::Child,
    within: std::time::Duration,
) -> Result<String> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut lines = BufReader::new(gw.stdout.take().context("stdout")?).lines();
    let base = loop {
        let line = tokio::time::timeout(within, lines.next_line())
            .await
            .with_context(|| format!("the gateway did not start within {within:?}"))??
            .context("the gateway exited")?;
        if let Some(a) = line.trim().strip_prefix("metamcp listening on ") {
            break a.to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(base)
}

/// Opens a Streamable HTTP session at `url` (an `initialize` as `client`); its session id.
pub async fn open_session(http: &reqwest::Client, url: &str, client: &str) -> Result<String> {
    let resp = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": { "name": client, "version": "1" } }
        }))
        .send()
        .await?;
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .context("no session id")?
        .to_owned();
    resp.bytes().await?;
    Ok(sid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (a (b) c) S 77 4242 4242 0 -1 4194560 500 0 0 0 120 34 0 0";
        assert_eq!(stat_comm(line), Some("a (b) c"));
        assert_eq!(stat_field(line, 3), Some("S"));
        assert_eq!(stat_field(line, 4), Some("77"));
        assert_eq!(stat_field(line, 14), Some("120"));
        assert_eq!(stat_field(line, 15), Some("34"));
        assert_eq!(
            stat_field(line, 2),
            None,
            "fields 1 and 2 are not counted this way"
        );
        assert_eq!(stat_field(line, 40), None);
        assert_eq!(stat_comm("no name"), None);
    }
}
