//! A stdio upstream: one child process speaking newline-delimited JSON-RPC.
//!
//! The child leads its own process group (so `npx`/`uvx` wrappers and anything they start
//! die with it), gets only the allow-listed environment plus its own, and has its stderr
//! captured into the server's [`LogBuffer`]. One writer task batches queued lines into one
//! flush; one reader task routes replies by id. When the child exits, every request in
//! flight fails at once and the rest of its process group is killed.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use metamcp_core::jsonrpc;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use process_wrap::tokio::{CommandWrap, KillOnDrop, ProcessGroup};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use super::bounded::{self, Line};
use super::one_line;
use crate::conn::{
    Pending, Reply, RequestGuard, UpstreamInfo, dispatch_shared, initialize_params,
    parse_initialize,
};
use crate::error::UpstreamError;
use crate::logs::LogBuffer;
use crate::pool::Events;

/// How long a child gets to exit after SIGTERM before its group is killed.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long an exited server's last output is read before its pending requests fail.
const DRAIN_ON_EXIT: Duration = Duration::from_millis(300);

/// A running stdio child.
#[derive(Debug)]
pub struct StdioConn {
    pending: Arc<Pending>,
    out: mpsc::Sender<String>,
    info: UpstreamInfo,
    pid: u32,
    exited: watch::Receiver<bool>,
}

/// What it takes to start a child.
#[derive(Debug)]
pub struct StdioParams<'a> {
    pub command: &'a str,
    pub args: &'a [String],
    pub env: BTreeMap<String, String>,
    /// Handshake with `server/discover` (the server refused `initialize` before).
    pub stateless: bool,
    /// Longest stdout line read; a longer one fails only the request it answers.
    pub max_message: usize,
}

impl StdioConn {
    /// Spawns the child and performs the MCP handshake within `start_timeout`.
    pub async fn spawn(
        server: Arc<str>,
        params: StdioParams<'_>,
        logs: Arc<LogBuffer>,
        events: Events,
        start_timeout: Duration,
    ) -> Result<Self, UpstreamError> {
        let start_err = |message: String| UpstreamError::Start {
            server: server.to_string(),
            message,
        };
        let mut cmd = CommandWrap::with_new(params.command, |c| {
            c.args(params.args)
                .env_clear()
                .envs(&params.env)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        });
        cmd.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
        let mut child = cmd
            .spawn()
            .map_err(|e| start_err(format!("cannot run {:?}: {e}", params.command)))?;
        let pid = child
            .id()
            .ok_or_else(|| start_err("child has no pid".into()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            child.stdin().take(),
            child.stdout().take(),
            child.stderr().take(),
        ) else {
            kill_group(pid, Signal::SIGKILL);
            return Err(start_err("child pipes unavailable".into()));
        };
        logs.push(&format!("[metamcp] started {} (pid {pid})", params.command));
        tracing::info!(server = %server, pid, "stdio upstream started");

        let pending = Arc::new(Pending::new(server.clone()));
        let (out_tx, out_rx) = mpsc::channel::<String>(1024);
        let (exit_tx, exit_rx) = watch::channel(false);

        // Dropped by the reader when stdout ends, so the exit watcher can let the last
        // replies through before failing what is still pending.
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(write_loop(stdin, out_rx, pending.clone()));
        tokio::spawn(read_loop(
            drained_tx,
            stdout,
            pending.clone(),
            out_tx.clone(),
            events,
            logs.clone(),
            exit_rx.clone(),
            params.max_message,
        ));
        tokio::spawn(stderr_loop(stderr, logs.clone()));
        {
            let pending = pending.clone();
            let logs = logs.clone();
            let server = server.clone();
            tokio::spawn(async move {
                let status = child.wait().await;
                let reason = match status {
                    Ok(s) => format!("process exited ({s})"),
                    Err(e) => format!("process wait failed: {e}"),
                };
                // why: the leader is gone, but anything it started may still hold the group.
                kill_group(pid, Signal::SIGKILL);
                // why: a server may answer and exit at once (e.g. refusing `initialize`);
                // its answer is still in the pipe. Read it before failing what is pending,
                // but never wait long for a pipe something else might hold open.
                let _ = tokio::time::timeout(DRAIN_ON_EXIT, drained_rx).await;
                logs.push(&format!("[metamcp] {reason}"));
                tracing::info!(server = %server, pid, %reason, "stdio upstream ended");
                pending.close(&reason);
                let _ = exit_tx.send(true);
                drop(child);
            });
        }

        let mut conn = StdioConn {
            pending,
            out: out_tx,
            info: UpstreamInfo::default(),
            pid,
            exited: exit_rx,
        };
        let stateless = params.stateless;
        let handshake = async {
            if stateless {
                let discover = crate::conn::with_stateless_meta(None);
                let reply = conn
                    .request("server/discover", Some(&discover), start_timeout)
                    .await?;
                return crate::conn::parse_discover(&server, &reply);
            }
            let reply = conn
                .request("initialize", Some(&initialize_params()), start_timeout)
                .await?;
            let info = parse_initialize(&server, &reply)?;
            conn.notify("notifications/initialized", None).await?;
            Ok::<_, UpstreamError>(info)
        };
        match handshake.await {
            Ok(info) => {
                conn.info = info;
                Ok(conn)
            }
            Err(e @ UpstreamError::StatelessOnly { .. }) => {
                conn.shutdown().await;
                Err(e)
            }
            Err(e) => {
                conn.shutdown().await;
                let tail: Vec<String> = logs.tail(5).into_iter().map(|l| l.line).collect();
                Err(start_err(format!(
                    "{e}; last log lines: {}",
                    tail.join(" | ")
                )))
            }
        }
    }

    pub async fn request(
        &self,
        method: &str,
        params: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        let id = self.pending.next_id();
        let rx = self.pending.register(id)?;
        let out = self.out.clone();
        let _guard = RequestGuard {
            pending: &self.pending,
            id,
            on_abandon: Some(Box::new(move |cancel| {
                let _ = out.try_send(cancel);
            })),
        };
        let stateless_params;
        let params = if self.info.stateless {
            stateless_params = crate::conn::with_stateless_meta(params);
            Some(stateless_params.as_str())
        } else {
            params
        };
        let line = one_line(jsonrpc::request(id, method, params));
        self.out.send(line).await.map_err(|_| self.closed_error())?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => Err(UpstreamError::Timeout {
                server: self.pending.server().to_string(),
                ms: timeout.as_millis() as u64,
            }),
        }
    }

    pub async fn notify(&self, method: &str, params: Option<&str>) -> Result<(), UpstreamError> {
        let line = one_line(jsonrpc::notification(method, params));
        self.out.send(line).await.map_err(|_| self.closed_error())
    }

    fn closed_error(&self) -> UpstreamError {
        UpstreamError::Closed {
            server: self.pending.server().to_string(),
            message: self
                .pending
                .closed_reason()
                .unwrap_or_else(|| "stdin closed".into()),
        }
    }

    pub fn info(&self) -> &UpstreamInfo {
        &self.info
    }

    pub fn closed_reason(&self) -> Option<String> {
        self.pending.closed_reason()
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Closes stdin, sends SIGTERM to the group, and SIGKILL after a grace period.
    pub async fn shutdown(&self) {
        self.pending.close("connection shut down by the gateway");
        let mut exited = self.exited.clone();
        if *exited.borrow() {
            kill_group(self.pid, Signal::SIGKILL);
            return;
        }
        kill_group(self.pid, Signal::SIGTERM);
        let waited = tokio::time::timeout(TERM_GRACE, exited.wait_for(|e| *e)).await;
        if waited.is_err() {
            tracing::warn!(
                pid = self.pid,
                "upstream ignored SIGTERM; killing its process group"
            );
        }
        kill_group(self.pid, Signal::SIGKILL);
    }
}

impl Drop for StdioConn {
    // why: a connection dropped without shutdown (a start abandoned mid-handshake) must not
    // leave its process behind.
    fn drop(&mut self) {
        if !*self.exited.borrow() {
            self.pending.close("connection dropped");
            kill_group(self.pid, Signal::SIGKILL);
        }
    }
}

/// Signals a whole process group; a group that is already gone is not an error.
pub(crate) fn kill_group(pgid: u32, sig: Signal) {
    let Ok(raw) = i32::try_from(pgid) else { return };
    if raw <= 1 {
        return;
    }
    match killpg(Pid::from_raw(raw), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, ?sig, error = %e, "killpg failed"),
    }
}

async fn write_loop(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::Receiver<String>,
    pending: Arc<Pending>,
) {
    let mut buf = Vec::with_capacity(8192);
    while let Some(first) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(first.as_bytes());
        buf.push(b'\n');
        // why: batch whatever else is queued into the same write and flush.
        while buf.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(more) => {
                    buf.extend_from_slice(more.as_bytes());
                    buf.push(b'\n');
                }
                Err(_) => break,
            }
        }
        if let Err(e) = async {
            stdin.write_all(&buf).await?;
            stdin.flush().await
        }
        .await
        {
            pending.close(&format!("writing to the process failed: {e}"));
            break;
        }
        if pending.closed_reason().is_some() {
            break;
        }
    }
    // dropping stdin closes the pipe: well-behaved servers exit on EOF.
}

#[allow(clippy::too_many_arguments)]
async fn read_loop(
    drained: tokio::sync::oneshot::Sender<()>,
    stdout: tokio::process::ChildStdout,
    pending: Arc<Pending>,
    out: mpsc::Sender<String>,
    events: Events,
    logs: Arc<LogBuffer>,
    mut exited: watch::Receiver<bool>,
    max_message: usize,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut buf = Vec::with_capacity(8192);
    loop {
        match bounded::read_line(&mut reader, &mut buf, max_message).await {
            Ok(Line::Eof) => break,
            Ok(Line::Complete) => {}
            Ok(Line::TooLong) => {
                logs.push(&format!(
                    "[metamcp] a stdout line longer than {max_message} bytes was dropped"
                ));
                pending.oversized(&buf, max_message);
                continue;
            }
            Err(e) => {
                pending.close(&format!("reading from the process failed: {e}"));
                break;
            }
        }
        let line = match std::str::from_utf8(&buf) {
            Ok(s) => s.trim(),
            Err(_) => {
                logs.push("[metamcp] non-UTF-8 output on stdout ignored");
                continue;
            }
        };
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('{') {
            // why: some servers print banners on stdout; keep them visible, do not die.
            logs.push(&format!("[stdout] {line}"));
            continue;
        }
        match Reply::from_message(line.to_owned()) {
            Ok((id, reply)) => {
                if !pending.complete(id, reply) {
                    tracing::debug!(server = %pending.server(), id, "reply for an abandoned request");
                }
            }
            Err(text) => {
                let out = out.clone();
                dispatch_shared(&pending, text, &events, move |answer| async move {
                    let _ = out.send(super::one_line(answer)).await;
                });
            }
        }
    }
    drop(drained);
    // why: stdout closes as the process dies; give the exit status a moment to arrive so
    // callers learn "process exited (exit status: 3)" rather than a bare EOF.
    let _ = tokio::time::timeout(Duration::from_millis(500), exited.wait_for(|e| *e)).await;
    pending.close("the process closed its stdout");
}

/// Copies the child's stderr into its log, line by line, whatever the bytes (invalid UTF-8
/// is replaced, overlong lines cut), until the pipe closes: a child is never left blocked
/// writing to a pipe nobody reads.
async fn stderr_loop(stderr: tokio::process::ChildStderr, logs: Arc<LogBuffer>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::with_capacity(1024);
    loop {
        match bounded::read_line(&mut reader, &mut buf, crate::logs::MAX_LINE).await {
            Ok(Line::Eof) | Err(_) => break,
            Ok(Line::Complete) => logs.push(String::from_utf8_lossy(&buf).trim_end()),
            Ok(Line::TooLong) => {
                const CUT: &str = " … (line cut)";
                buf.truncate(crate::logs::MAX_LINE - CUT.len());
                logs.push(&format!("{}{CUT}", String::from_utf8_lossy(&buf)));
            }
        }
    }
}
