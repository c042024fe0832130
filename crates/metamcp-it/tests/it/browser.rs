//! The dashboard in real headless Chromium (e2e/dashboard/flow.mjs, playwright-core): the
//! whole setup as a new user (the fixture and server-everything imported, a tool disabled,
//! another renamed and run in the inspector with its progress, logs, a member who finds the
//! admin's private objects absent), axe-core on every page, a screenshot of every page in
//! both themes (under target/dashboard-screenshots). Skipped only where Chromium or Node is
//! missing outside CI; in CI (`scripts/test` installs Debian's chromium) it must run.

use std::path::{Path, PathBuf};

use metamcp_it::{Env, RawClient, fixture_stdio};
use serde_json::{Value, json};

fn chromium() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/chromium");
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have Chromium (scripts/test installs Debian's chromium)"
    );
    eprintln!("skipping: /usr/bin/chromium is not installed");
    None
}

#[tokio::test]
async fn a_new_user_sets_up_the_gateway_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let Some(node) = metamcp_it::oidc::node() else {
        return;
    };
    let env = Env::new();
    // APP_URL is the gateway's own address: it is the OAuth issuer the consent checks.
    let port = metamcp_it::free_port();
    let app = format!("http://127.0.0.1:{port}");
    let gw = env
        .serve_at(&format!("127.0.0.1:{port}"), &[("APP_URL", app.as_str())])
        .await;
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e");
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    // why: a stale screenshot of an earlier run must not pass for this one's.
    let _ = std::fs::remove_dir_all(&shots);
    let Some(everything) = crate::interop::everything() else {
        return;
    };
    let import = json!({ "mcpServers": {
        "alpha": fixture_stdio("alpha", &[]),
        "everything": { "command": "node", "args": [everything.to_string_lossy(), "stdio"] },
    } })
    .to_string();
    let out = tokio::process::Command::new(node)
        .arg(e2e.join("dashboard/flow.mjs"))
        .current_dir(&e2e)
        .env("METAMCP_URL", &gw.base)
        .env("IMPORT_JSON", &import)
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no report; stdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(out.status.success() && report["ok"] == true, "{report:#}");
    // The screenshots are there.
    for page in [
        "login",
        "register",
        "account",
        "servers",
        "namespaces",
        "endpoints",
        "keys",
        "oauth-consent",
        "apps",
        "settings",
        "logs",
        "live-logs",
        "namespace",
        "namespace-shaped",
        "inspector",
        "inspector-prompts",
        "server-edit",
        "namespace-zh",
        "inspector-ko",
    ] {
        for theme in ["light", "dark"] {
            assert!(
                shots.join(format!("{page}-{theme}.png")).exists(),
                "{page}-{theme}"
            );
        }
    }
    // What the browser made works for an MCP client; the key it revoked does not.
    let revoked = report["revokedKey"].as_str().unwrap();
    let mut c = RawClient::new(&gw.mcp_url("main")).bearer(revoked);
    assert_eq!(c.initialize().await.status, 401);
    // The renamed tool ran to its end: the fixture's slow tool reports its steps.
    let result = report["result"].as_str().unwrap_or_default();
    assert!(result.contains("done after 4 steps"), "{result}");
}
