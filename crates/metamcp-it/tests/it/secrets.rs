//! Secrets that stay secret, end to end: references to the gateway's own secrets are refused
//! by configuration and never resolved for an upstream; credentials in upstream URLs are
//! sealed at rest and redacted wherever a URL is shown or logged.

use std::collections::BTreeMap;

use metamcp_core::{ServerSpec, Transport};
use metamcp_it::{Env, FixtureHttp, RawClient, bin, fixture_stdio};
use metamcp_store::{Store, StoreOptions, Tx};
use serde_json::json;

use crate::first_text;

/// A `metamcp` admin API call with `key`.
async fn api(
    gw: &metamcp_it::Gateway,
    key: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1{path}", gw.base);
    let mut req = match method {
        "POST" => http.post(url),
        _ => http.get(url),
    }
    .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// `metamcp logs SERVER` once it holds `needle` (at most 10 s).
async fn logs_with(env: &Env, server: &str, needle: &str) -> String {
    let found = metamcp_it::eventually(std::time::Duration::from_secs(10), || {
        let out = env.cli_ok(&["logs", server]);
        async move { out.contains(needle).then_some(out) }
    })
    .await;
    found.unwrap_or_else(|| panic!("no {needle:?} in: {}", env.cli_ok(&["logs", server])))
}

fn file(env: &Env, name: &str, text: &str) -> String {
    let path = env.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Every file of the data directory, as text (database, WAL, key file).
fn data_files(env: &Env) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(env.data_dir()).unwrap().flatten() {
        all.push_str(&String::from_utf8_lossy(
            &std::fs::read(entry.path()).unwrap_or_default(),
        ));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_to_gateway_secrets_are_refused_and_never_resolved() {
    let env = Env::new();
    // Configuration refuses them: import, apply — one line, naming the variable.
    let mut spec = fixture_stdio("leaky", &[]);
    spec["env"] = json!({"STOLEN": "${METAMCP_SECRET_KEY}"});
    let path = env.dir.path().join("leaky.json");
    std::fs::write(&path, json!({"mcpServers": {"leaky": spec}}).to_string()).unwrap();
    let o = env.cli(&["import", path.to_str().unwrap()]);
    assert!(!o.ok, "import stored a reference to the gateway's key");
    assert_eq!(o.stderr.trim().lines().count(), 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("${METAMCP_SECRET_KEY}") && o.stderr.contains("secret of the gateway"),
        "{}",
        o.stderr
    );
    let f = file(
        &env,
        "leaky.toml",
        "[servers.r]\ntype = \"streamable_http\"\nurl = \"http://127.0.0.1:9/mcp?db=${DATABASE_URL}\"\n",
    );
    let o = env.cli(&["apply", &f]);
    assert!(
        !o.ok && o.stderr.trim().lines().count() == 1 && o.stderr.contains("${DATABASE_URL}"),
        "{}",
        o.stderr
    );
    assert!(env.cli_ok(&["server", "list"]).contains("no servers"));

    // A store written before the rule (here: straight through the store) may still hold
    // such references: the gateway does not resolve them.
    let store = Store::open(StoreOptions {
        database_url: env.database_url.clone(),
        data_dir: env.data_dir(),
        secret_key: None,
        previous_keys: Vec::new(),
    })
    .await
    .unwrap();
    let leaky = ServerSpec {
        name: "leaky".into(),
        description: None,
        transport: Transport::Stdio {
            command: bin("metamcp-fixture").to_string_lossy().into_owned(),
            args: vec!["stdio".into(), "--name".into(), "leaky".into()],
            env: BTreeMap::from([
                ("STOLEN".into(), "${METAMCP_SECRET_KEY}".into()),
                ("ALLOWED".into(), "${IT_ALLOWED_SOURCE}".into()),
            ]),
        },
    };
    store
        .write(async |tx: &mut Tx| tx.create_server(&leaky).await)
        .await
        .unwrap();
    store.close().await;
    env.cli_ok(&["namespace", "create", "ns", "--server", "leaky"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let out = env.cli_ok(&["key", "create", "root", "--admin"]);
    let admin_key = out.lines().last().unwrap().trim().to_owned();
    // The gateway runs with its key in METAMCP_SECRET_KEY (the same key as the file).
    let key = std::fs::read_to_string(env.data_dir().join("secret.key")).unwrap();
    let key = key.trim();
    let gw = env
        .serve_with(&[
            ("METAMCP_SECRET_KEY", key),
            ("IT_ALLOWED_SOURCE", "allowed-value"),
        ])
        .await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    let env_of = |name: &'static str| crate::fixture_env(&c, "leaky__env", name);
    assert_eq!(env_of("ALLOWED").await, "allowed-value");
    assert_eq!(env_of("STOLEN").await, "<unset>");
    assert_eq!(env_of("METAMCP_SECRET_KEY").await, "<unset>");
    // The server's log says which variable was refused and why; nothing prints the key.
    // (Running gateways flush server logs to the store every few seconds.)
    let logs = logs_with(&env, "leaky", "env STOLEN refers to ${METAMCP_SECRET_KEY}").await;
    assert!(logs.contains("secret of the gateway"), "{logs}");
    assert!(!logs.contains(key) && !gw.log().contains(key));

    // The admin API refuses the reference too: 422 with the same message.
    let doc = json!({"mcpServers": {"other": {"command": "x", "env": {"K": "${PGPASSWORD}"}}}});
    let (status, body) = api(&gw, &admin_key, "POST", "/servers", Some(doc)).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("${PGPASSWORD}"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_credentials_are_sealed_and_redacted() {
    let fx = FixtureHttp::start("remote", &[]).await.unwrap();
    let (user, pass, key) = ("svc-user", "url-pass-7e1", "url-key-9c4");
    let full = fx
        .url
        .replacen("http://", &format!("http://{user}:{pass}@"), 1)
        + &format!("?api_key={key}&region=eu");
    let env = Env::new();
    env.import(json!({"remote": {"type": "streamable_http", "url": full}}));
    env.cli_ok(&["namespace", "create", "ns", "--server", "remote"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let out = env.cli_ok(&["key", "create", "root", "--admin"]);
    let admin_key = out.lines().last().unwrap().trim().to_owned();
    let secret_free = |what: &str, text: &str| {
        for s in [pass, key] {
            assert!(!text.contains(s), "{what} shows {s}: {text}");
        }
    };

    // At rest: sealed, not in any file of the data directory.
    secret_free("the data directory", &data_files(&env));
    // Shown: redacted in `server list`, `export`, `export --full`.
    let list = env.cli_ok(&["server", "list"]);
    secret_free("server list", &list);
    assert!(
        list.contains("http://<redacted>@127.0.0.1")
            && list.contains("api_key=<redacted>&region=eu"),
        "{list}"
    );
    let export = env.cli_ok(&["export"]);
    secret_free("export", &export);
    let full_export = env.cli_ok(&["export", "--full"]);
    secret_free("export --full", &full_export);
    assert!(env.cli_ok(&["export", "--include-secrets"]).contains(&full));
    assert!(
        env.cli_ok(&["export", "--full", "--include-secrets"])
            .contains(&full)
    );
    // The redacted export applies back to the store unchanged (the secrets are kept), and
    // is refused by a store that has nothing to keep.
    let back = file(&env, "back.toml", &full_export);
    assert_eq!(env.cli_ok(&["apply", &back]), "no changes\n");
    assert!(env.cli_ok(&["export", "--include-secrets"]).contains(&full));
    let empty = Env::new();
    let o = empty.cli(&["apply", &back]);
    assert!(
        !o.ok && o.stderr.contains("url credentials") && o.stderr.contains("no value is stored"),
        "{}",
        o.stderr
    );

    // Used: the gateway connects with the full URL; logs and the API show it redacted.
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;
    let a = c
        .request(
            "tools/call",
            json!({"name": "remote__echo", "arguments": {"message": "via url"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "via url", "{}", a.body);
    let (status, servers) = api(&gw, &admin_key, "GET", "/servers", None).await;
    assert_eq!(status, 200);
    secret_free("GET /api/v1/servers", &servers.to_string());
    assert!(servers.to_string().contains("<redacted>"), "{servers}");
    let logs = logs_with(&env, "remote", "connected to http://<redacted>@127.0.0.1").await;
    secret_free("metamcp logs", &logs);
    secret_free("the gateway's log", &gw.log());
}

/// `metamcp secrets rotate --new-key` while `serve` runs: a new key file, the old key kept in
/// `secret.key.previous` (0600), every secret re-sealed under the new key — then the old key
/// can go, and the running gateway still serves the server with its secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_rotate_to_a_new_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.import(json!({ "alpha": {
        "command": metamcp_it::bin("metamcp-fixture").to_string_lossy(),
        "args": ["stdio", "--name", "alpha"],
        "env": { "ROTATED_SECRET": "s3cr3t-value-42" }
    }}));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    let key = env.key("k");
    let gw = env.serve().await;
    let old_key = std::fs::read_to_string(env.data_dir().join("secret.key")).unwrap();

    let out = env.cli_ok(&["secrets", "rotate", "--new-key"]);
    assert!(out.contains("re-sealed 1 secret values"), "{out}");
    let new_key = std::fs::read_to_string(env.data_dir().join("secret.key")).unwrap();
    assert_ne!(old_key.trim(), new_key.trim());
    let previous = env.data_dir().join("secret.key.previous");
    assert_eq!(
        std::fs::read_to_string(&previous).unwrap().trim(),
        old_key.trim()
    );
    let mode = std::fs::metadata(&previous).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Nothing is left under the old key: it can go.
    let again = env.cli_ok(&["secrets", "rotate"]);
    assert!(again.contains("re-sealed 0 secret values"), "{again}");
    std::fs::remove_file(&previous).unwrap();
    let export = env.cli_ok(&["export", "--include-secrets"]);
    assert!(export.contains("s3cr3t-value-42"), "{export}");

    // The running gateway still starts the server with its secret.
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;
    assert_eq!(
        crate::fixture_env(&c, "alpha__env", "ROTATED_SECRET").await,
        "s3cr3t-value-42"
    );
    // The old key alone no longer opens the store's secrets, and a rotation with it
    // changes nothing.
    let bad = std::process::Command::new(metamcp_it::bin("metamcp"))
        .args(["--data-dir"])
        .arg(env.data_dir())
        .args(["secrets", "rotate"])
        .env("METAMCP_SECRET_KEY", old_key.trim())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("nothing was changed"), "{err}");
}
