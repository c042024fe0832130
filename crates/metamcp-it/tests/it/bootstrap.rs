//! `BOOTSTRAP_*`: a gateway that starts fully configured from its environment — servers,
//! users, namespace, endpoint, key, registration switch — and usable at once by a real MCP
//! client; restarts that change nothing, the password-change warning and reset,
//! `ONLY_FIRST_RUN`, and bad values with and without `BOOTSTRAP_FAIL_HARD`.

use metamcp_it::browser::Browser;
use metamcp_it::{Env, RawClient, fixture_stdio};
use serde_json::json;

const PW: &str = "bootstrap password 1";

fn vars(servers: &str, users: &str) -> Vec<(String, String)> {
    vec![
        ("BOOTSTRAP_SERVERS".into(), servers.into()),
        ("BOOTSTRAP_USERS".into(), users.into()),
        (
            "BOOTSTRAP_NAMESPACES".into(),
            json!([{ "name": "main", "description": "from the environment", "servers": ["echo"] }])
                .to_string(),
        ),
        (
            "BOOTSTRAP_ENDPOINTS".into(),
            json!([{ "name": "pub", "namespace": "main" }]).to_string(),
        ),
        (
            "BOOTSTRAP_API_KEYS".into(),
            json!([{ "name": "ci" }]).to_string(),
        ),
        ("BOOTSTRAP_DISABLE_REGISTRATION_UI".into(), "true".into()),
    ]
}

fn refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

#[tokio::test]
async fn a_container_starts_fully_configured() {
    let env = Env::new();
    let servers = json!({ "mcpServers": { "echo": fixture_stdio("echo", &[]) } }).to_string();
    let users = json!([
        { "email": "ops@example.com", "password": PW, "name": "Ops" },
        { "email": "dev@example.com", "password": PW, "role": "member" }
    ])
    .to_string();
    let v = vars(&servers, &users);
    let gw = env.serve_with(&refs(&v)).await;
    let key_line = gw
        .banner
        .iter()
        .find(|l| l.starts_with("metamcp bootstrap: API key ci (shown once"))
        .unwrap_or_else(|| panic!("{:?}", gw.banner));
    let key = key_line.rsplit(' ').next().unwrap().to_owned();
    assert!(key.starts_with("sk_mt_"), "{key_line}");
    assert!(
        gw.setup_token().is_none(),
        "an admin exists: no setup token"
    );
    assert!(
        !std::fs::read_to_string(&gw.log_path)
            .unwrap()
            .contains(&key),
        "key never logged"
    );
    assert!(
        !std::fs::read_to_string(&gw.log_path).unwrap().contains(PW),
        "password never logged"
    );

    // The endpoint works with the key, through the namespace, at once.
    let mut c = RawClient::new(&gw.mcp_url("pub")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200);
    let tools = c.request("tools/list", json!({})).await;
    assert!(tools.body.to_string().contains("echo__"), "{}", tools.body);

    // Users: the first is admin, the other a member; sign-up is off.
    let mut ops = Browser::new(&gw.base);
    let s = ops.sign_in("ops@example.com", PW).await;
    assert_eq!(s.json["user"]["role"], "admin", "{}", s.text);
    let mut dev = Browser::new(&gw.base);
    assert_eq!(
        dev.sign_in("dev@example.com", PW).await.json["user"]["role"],
        "member"
    );
    assert_eq!(
        Browser::new(&gw.base)
            .sign_up("new@example.com", PW)
            .await
            .status,
        403
    );
    drop(gw);

    // A restart with the same environment changes nothing and prints no new key.
    let gw = env.serve_with(&refs(&v)).await;
    assert!(
        !gw.banner
            .iter()
            .any(|l| l.contains(" created (") || l.ends_with(" created") || l.contains("API key")),
        "{:?}",
        gw.banner
    );
    let mut c = RawClient::new(&gw.mcp_url("pub")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200, "the key was preserved");
    drop(gw);

    // The environment's password changed: warned, not applied…
    let users2 = users.replace(PW, "bootstrap password 2");
    let v2 = vars(&servers, &users2);
    let gw = env.serve_with(&refs(&v2)).await;
    assert!(
        gw.banner
            .iter()
            .any(|l| l.contains("warning: user ops@example.com")),
        "{:?}",
        gw.banner
    );
    assert_eq!(
        Browser::new(&gw.base)
            .sign_in("ops@example.com", PW)
            .await
            .status,
        200
    );
    drop(gw);
    // …unless BOOTSTRAP_RECREATE_USER.
    let mut v3 = v2.clone();
    v3.push(("BOOTSTRAP_RECREATE_USER".into(), "true".into()));
    let gw = env.serve_with(&refs(&v3)).await;
    let mut b = Browser::new(&gw.base);
    assert_eq!(b.sign_in("ops@example.com", PW).await.status, 401);
    assert_eq!(
        b.sign_in("ops@example.com", "bootstrap password 2")
            .await
            .status,
        200
    );
    drop(gw);

    // ONLY_FIRST_RUN: it ran before, so nothing at all happens.
    let mut v4 = v.clone();
    v4.push(("BOOTSTRAP_ONLY_FIRST_RUN".into(), "true".into()));
    v4.push(("BOOTSTRAP_RECREATE_USER".into(), "true".into()));
    let gw = env.serve_with(&refs(&v4)).await;
    assert!(
        gw.banner.iter().any(|l| l.contains("skipped")),
        "{:?}",
        gw.banner
    );
    assert_eq!(
        Browser::new(&gw.base)
            .sign_in("ops@example.com", PW)
            .await
            .status,
        401
    );
}

fn serve_refused(env: &Env, vars: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(metamcp_it::bin("metamcp"));
    cmd.arg("--data-dir")
        .arg(env.data_dir())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .envs(vars.iter().copied());
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "serve should have refused to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn bad_bootstrap_values_are_named_and_fail_hard_refuses() {
    let env = Env::new();
    let bad_users = r#"[{"email":"not-an-email","password":"long enough"}]"#;
    let err = serve_refused(
        &env,
        &[
            ("BOOTSTRAP_USERS", bad_users),
            ("BOOTSTRAP_FAIL_HARD", "true"),
        ],
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(line.contains("BOOTSTRAP_USERS: entry 1: email"), "{err}");

    // Without FAIL_HARD the gateway starts, says why, and applies nothing.
    let gw = env.serve_with(&[("BOOTSTRAP_USERS", bad_users)]).await;
    let log = std::fs::read_to_string(&gw.log_path).unwrap();
    assert!(log.contains("BOOTSTRAP_USERS: entry 1"), "{log}");
    drop(gw);

    // A plan that fails while applying (a namespace with an unknown server) is all or
    // nothing: the user listed with it is not created either.
    let users = json!([{ "email": "ops@example.com", "password": PW }]).to_string();
    let ns = json!([{ "name": "main", "servers": ["nope"] }]).to_string();
    let err = serve_refused(
        &env,
        &[
            ("BOOTSTRAP_USERS", users.as_str()),
            ("BOOTSTRAP_NAMESPACES", ns.as_str()),
            ("BOOTSTRAP_FAIL_HARD", "true"),
        ],
    );
    assert!(err.contains("BOOTSTRAP_NAMESPACES main"), "{err}");
    assert!(env.cli_ok(&["user", "list"]).contains("no users"));
    let gw = env
        .serve_with(&[
            ("BOOTSTRAP_USERS", users.as_str()),
            ("BOOTSTRAP_NAMESPACES", ns.as_str()),
        ])
        .await;
    assert!(
        std::fs::read_to_string(&gw.log_path)
            .unwrap()
            .contains("bootstrap failed")
    );
    assert!(env.cli_ok(&["user", "list"]).contains("no users"));
}
