//! The bench's child processes: the upstream (the fixture, or the official server-everything
//! kept on loopback) and the gateways, each killed and reaped when its guard drops, and the
//! banner line each prints once it listens.

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
};

use anyhow::{Context as _, Result, bail, ensure};
use metamcp_it::benchkit::tail_file;

use super::START_TIMEOUT;

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// A child process killed (SIGKILL) and reaped when dropped, also on error paths.
pub(super) struct ChildGuard {
    name: &'static str,
    child: Child,
    pub(super) stderr_log: PathBuf,
}

impl ChildGuard {
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the exit status and the end of its stderr if the process has exited.
    pub(super) fn check_alive(&mut self) -> Result<()> {
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
pub(super) const EVERYTHING_SCRIPT: &str =
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
pub(super) fn everything_command(script: &Path, dir: &Path) -> Result<Command> {
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
pub(super) fn spawn_until_banner(
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
pub(super) fn split_url(url: &str) -> Result<(SocketAddr, String, String)> {
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
        // Node parses it (where Node is installed, as scripts/test installs it).
        if let Ok(out) = Command::new("node")
            .arg("--check")
            .arg(dir.path().join("loopback.cjs"))
            .output()
        {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
