//! What the benchmark binaries share: the binaries built next to them, and the `metamcp`
//! CLI run against a benchmark's own data directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

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

/// `metamcp --data-dir DATA ARGS…` (never a `DATABASE_URL` from the environment); its
/// standard output, or its standard error as the error.
pub fn cli(metamcp: &Path, data: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(metamcp)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("DATABASE_URL")
        .output()?;
    if !out.status.success() {
        bail!("metamcp {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
