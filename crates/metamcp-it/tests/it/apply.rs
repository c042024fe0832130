//! Configuration as code: `metamcp apply FILE` and `metamcp export --full`, on SQLite and
//! PostgreSQL, with the real binary; the applied configuration served to a real client.

use metamcp_it::{Env, RawClient, bin};
use serde_json::json;

use crate::first_text;

/// A configuration touching every declared feature; secrets only as `${VAR}` references.
fn sample() -> String {
    let fixture = bin("metamcp-fixture").to_string_lossy().into_owned();
    format!(
        r#"
[settings]
MCP_TIMEOUT = "30000"

[servers.alpha]
command = "{fixture}"
args = ["stdio", "--name", "alpha"]
env = {{ ALPHA_TOKEN = "${{ALPHA_TOKEN}}" }}
description = "the first fixture"

[servers.beta]
command = "{fixture}"
args = ["stdio", "--name", "beta"]
mode = "per-session"
cap = 4

[servers.remote]
type = "streamable_http"
url = "http://127.0.0.1:9/mcp"
bearerToken = "${{REMOTE_TOKEN}}"
headers = {{ X-Team = "${{TEAM_HEADER}}" }}

[namespaces.main]
servers = ["alpha", "beta", "remote"]
inactive = ["remote"]
max_name_length = 64

[namespaces.main.tools.alpha__echo]
name = "say"
description = "Says it back"
annotations = {{ readOnlyHint = true }}

[namespaces.main.tools.alpha__add]
enabled = false

[namespaces.strict]
servers = ["beta"]
prefix = "never"
new_tools = "disabled"
audit_payloads = true

[namespaces.strict.tools.beta__echo]
enabled = true

[endpoints.main]
namespace = "main"
rate = "100/60"
client_rate = "10/1"

[endpoints.open]
namespace = "strict"
auth = false

[endpoints.signed]
namespace = "strict"
auth = false
oauth = true
"#
    )
}

fn write(env: &Env, name: &str, text: &str) -> String {
    let path = env.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

async fn round_trip(env: &Env, fresh: &Env) {
    let file = write(env, "metamcp.toml", &sample());

    // Dry run: the diff, nothing written.
    let out = env.cli_ok(&["apply", &file, "--dry-run"]);
    for line in [
        "+ server alpha",
        "+ namespace main",
        "+ endpoint open",
        "+ setting MCP_TIMEOUT",
    ] {
        assert!(out.contains(line), "{line:?} missing from {out}");
    }
    assert!(out.contains("dry run"), "{out}");
    assert!(env.cli_ok(&["server", "list"]).contains("no servers"));

    let out = env.cli_ok(&["apply", &file]);
    assert!(out.contains("applied"), "{out}");
    assert_eq!(
        env.cli_ok(&["apply", &file]),
        "no changes\n",
        "twice changes nothing"
    );

    let first = env.cli_ok(&["export", "--full"]);
    assert!(
        first.contains("${ALPHA_TOKEN}"),
        "references are exported: {first}"
    );
    assert!(!first.contains("<redacted>"), "{first}");
    let tools = env.cli_ok(&["tool", "list", "strict"]);
    assert!(tools.contains("new tools disabled"), "{tools}");
    let endpoints = env.cli_ok(&["endpoint", "list"]);
    assert!(endpoints.contains("100/60"), "{endpoints}");
    assert!(
        endpoints
            .lines()
            .any(|l| l.starts_with("signed\t") && l.contains("auth: OAuth\t")),
        "{endpoints}"
    );
    assert!(first.contains("audit_payloads = true"), "{first}");
    assert!(first.contains("oauth = true"), "{first}");

    // Export → apply to an empty store → export: the same file, in TOML and through YAML.
    let exported = write(fresh, "exported.toml", &first);
    fresh.cli_ok(&["apply", &exported]);
    assert_eq!(fresh.cli_ok(&["export", "--full"]), first);
    let yaml = env.cli_ok(&["export", "--full", "--format", "yaml"]);
    let yaml_file = write(fresh, "exported.yaml", &yaml);
    assert_eq!(fresh.cli_ok(&["apply", &yaml_file]), "no changes\n");
    // The applied sample and its export are the same configuration.
    assert_eq!(env.cli_ok(&["apply", &exported]), "no changes\n");

    // A change shows as one line and applies; --prune removes what the file leaves out.
    // Turning OAuth off changes the endpoint in place (it keeps its id, so grants stay).
    let changed = sample()
        .replace("rate = \"100/60\"", "rate = \"50/60\"")
        .replace("oauth = true", "oauth = false")
        .replace(
            "[endpoints.open]\nnamespace = \"strict\"\nauth = false\n",
            "",
        );
    let file2 = write(env, "changed.toml", &changed);
    let out = env.cli_ok(&["apply", &file2]);
    assert!(out.contains("~ endpoint main: rate"), "{out}");
    assert!(out.contains("~ endpoint signed: oauth"), "{out}");
    assert!(
        !out.contains("- endpoint open"),
        "no prune, no removal: {out}"
    );
    let out = env.cli_ok(&["apply", &file2, "--prune"]);
    assert!(out.contains("- endpoint open"), "{out}");
    let left = env.cli_ok(&["endpoint", "list"]);
    assert!(!left.lines().any(|l| l.starts_with("open\t")), "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_export_round_trip_on_sqlite() {
    round_trip(&Env::new(), &Env::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_export_round_trip_on_postgres() {
    let (Some(env), Some(fresh)) = (Env::new_pg().await, Env::new_pg().await) else {
        return;
    };
    round_trip(&env, &fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_configuration_is_served() {
    let env = Env::new();
    let file = write(&env, "metamcp.toml", &sample());
    env.cli_ok(&["apply", &file]);
    let key = env.key("k");
    let gw = env.serve().await;
    // `open` serves namespace `strict`: default-deny, only beta's echo, unprefixed.
    let mut c = RawClient::new(&gw.mcp_url("open"));
    c.initialize().await;
    let list = c.request("tools/list", json!({})).await.body;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["echo"], "{list}");
    let a = c
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "declared"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "declared");
    // `main` needs a key and renames alpha's echo.
    let mut c = RawClient::new(&gw.mcp_url("main")).bearer(&key);
    c.initialize().await;
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__say", "arguments": {"message": "renamed"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "renamed", "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_change_nothing() {
    let env = Env::new();
    let bad = [
        ("[servers.a]\ncommand = \"x\"\ncomand = \"y\"\n", "line 3"),
        (
            "[namespaces.n]\nservers = [\"ghost\"]\n",
            "no server named \"ghost\"",
        ),
        (
            "[servers.a]\ncommand = \"x\"\n[namespaces.n]\nservers = [\"a\"]\nprefix = \"sometimes\"\n",
            "unknown prefix",
        ),
        (
            "[servers.a]\ncommand = \"x\"\n[endpoints.e]\nnamespace = \"nope\"\n",
            "no namespace named",
        ),
        (
            "[servers.a]\ncommand = \"x\"\n[namespaces.n]\nservers = [\"a\"]\n[namespaces.n.tools.echo]\nenabled = false\n",
            "server__tool",
        ),
        ("[settings]\nMCP_TIMEOUT = \"soon\"\n", "MCP_TIMEOUT"),
    ];
    for (i, (text, want)) in bad.iter().enumerate() {
        let f = write(&env, &format!("bad{i}.toml"), text);
        let o = env.cli(&["apply", &f]);
        assert!(!o.ok, "{text} was accepted");
        assert!(
            o.stderr.contains(want) && o.stderr.trim().lines().count() == 1,
            "{text}: {}",
            o.stderr
        );
    }
    assert!(env.cli_ok(&["server", "list"]).contains("no servers"));

    // A literal secret is exported redacted; applying that keeps the stored value, and an
    // empty store refuses it rather than storing "<redacted>".
    let f = write(
        &env,
        "secret.toml",
        "[servers.r]\ntype = \"streamable_http\"\nurl = \"http://127.0.0.1:9/mcp\"\nbearerToken = \"tok-very-secret\"\n",
    );
    env.cli_ok(&["apply", &f]);
    let redacted = env.cli_ok(&["export", "--full"]);
    assert!(
        redacted.contains("<redacted>") && !redacted.contains("tok-very-secret"),
        "{redacted}"
    );
    let back = write(&env, "redacted.toml", &redacted);
    assert_eq!(env.cli_ok(&["apply", &back]), "no changes\n");
    let full = env.cli_ok(&["export", "--full", "--include-secrets"]);
    assert!(full.contains("tok-very-secret"), "{full}");
    let empty = Env::new();
    let o = empty.cli(&["apply", &back]);
    assert!(
        !o.ok && o.stderr.contains("no value is stored"),
        "{}",
        o.stderr
    );
}

/// The tool names a client sees on its session.
async fn tool_set(c: &RawClient) -> std::collections::BTreeSet<String> {
    let a = c.request("tools/list", json!({})).await;
    a.body["result"]["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Servers s0..s3; namespace `all` holds all four (and keeps them started), namespace `ns`
/// holds `members`; `extra` more namespaces and endpoints make the change big.
fn membership_config(members: &[&str], extra: usize) -> String {
    let fixture = bin("metamcp-fixture").to_string_lossy().into_owned();
    let mut out = String::new();
    for s in ["s0", "s1", "s2", "s3"] {
        out.push_str(&format!(
            "[servers.{s}]\ncommand = \"{fixture}\"\nargs = [\"stdio\", \"--name\", \"{s}\"]\n\n"
        ));
    }
    out.push_str("[namespaces.all]\nservers = [\"s0\", \"s1\", \"s2\", \"s3\"]\n\n");
    let list: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
    out.push_str(&format!(
        "[namespaces.ns]\nservers = [{}]\n\n",
        list.join(", ")
    ));
    for i in 0..extra {
        out.push_str(&format!(
            "[namespaces.x{i}]\nservers = [\"s{}\"]\n\n[endpoints.x{i}]\nnamespace = \"x{i}\"\n\n",
            i % 4
        ));
    }
    out.push_str("[endpoints.all]\nnamespace = \"all\"\nauth = false\n\n");
    out.push_str("[endpoints.ep]\nnamespace = \"ns\"\nauth = false\n");
    out
}

/// A client listing tools in a loop while `apply` moves a namespace from {s0, s1} to
/// {s2, s3} and back (with dozens of other objects created and pruned in the same apply)
/// sees the old set or the new set every time: never an empty namespace, never a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_never_sees_half_an_apply() {
    use std::collections::BTreeSet;
    use std::time::Duration;

    let env = Env::new();
    let old_file = write(&env, "old.toml", &membership_config(&["s0", "s1"], 0));
    let new_file = write(&env, "new.toml", &membership_config(&["s2", "s3"], 24));
    env.cli_ok(&["apply", &old_file]);
    let gw = env.serve().await;

    // Every server started once (through `all`), so a rebuilt catalog waits for no start.
    let mut all = RawClient::new(&gw.mcp_url("all"));
    all.initialize().await;
    let every = tool_set(&all).await;
    for s in ["s0", "s1", "s2", "s3"] {
        assert!(every.contains(&format!("{s}__echo")), "{every:?}");
    }
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    let old = tool_set(&c).await;
    let of = |servers: &[&str]| -> BTreeSet<String> {
        every
            .iter()
            .filter(|n| servers.iter().any(|s| n.starts_with(&format!("{s}__"))))
            .cloned()
            .collect()
    };
    assert_eq!(old, of(&["s0", "s1"]));
    let new = of(&["s2", "s3"]);

    let (latest_tx, mut latest) = tokio::sync::watch::channel(old.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let lister = tokio::spawn({
        let (c, stop) = (c.clone(), stop.clone());
        async move {
            let mut seen = Vec::new();
            while !stop.is_cancelled() {
                let set = tool_set(&c).await;
                latest_tx.send_replace(set.clone());
                seen.push(set);
            }
            seen
        }
    });
    let env = std::sync::Arc::new(env);
    for round in 0..6 {
        let (file, want) = if round % 2 == 0 {
            (&new_file, &new)
        } else {
            (&old_file, &old)
        };
        let (e, f) = (env.clone(), file.clone());
        let out = tokio::task::spawn_blocking(move || e.cli_ok(&["apply", &f, "--prune"]))
            .await
            .unwrap();
        assert!(out.contains("applied"), "{out}");
        let reached =
            tokio::time::timeout(Duration::from_secs(10), latest.wait_for(|set| set == want)).await;
        assert!(
            reached.is_ok(),
            "round {round}: the gateway never served the applied members; log: {}",
            gw.log()
        );
    }
    stop.cancel();
    let seen = lister.await.unwrap();
    assert!(
        seen.len() > 6,
        "the client listed only {} times",
        seen.len()
    );
    for set in &seen {
        assert!(
            *set == old || *set == new,
            "a client saw {} tools, neither the old nor the new namespace: {set:?}",
            set.len()
        );
    }
}
