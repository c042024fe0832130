//! Single sign-on through the real gateway and a real OpenID Provider (`oidc-provider`, run
//! by `metamcp_it::oidc`): an account made on first sign-in, linking by verified email only,
//! `DISABLE_SSO_SIGNUP`, tampered and replayed callbacks, and misconfigurations that must end
//! on an error page naming the variable to fix, never in a redirect loop.

use metamcp_it::browser::Browser;
use metamcp_it::oidc::{
    Decision, OidcAccount, OidcClient, OidcProvider, OidcProviderConfig, sign_in,
};
use metamcp_it::{Env, Gateway, free_port};

const SECRET: &str = "metamcp-test-client-secret";
const PW: &str = "correct horse battery";

fn account(sub: &str, email: &str, verified: bool) -> OidcAccount {
    OidcAccount {
        sub: sub.into(),
        email: email.into(),
        email_verified: verified,
        name: format!("{sub} from SSO"),
        password: format!("{sub}-password"),
    }
}

/// A provider with a client registered for a gateway at `app`, and its accounts.
async fn provider(app: &str) -> Option<OidcProvider> {
    let client = OidcClient {
        client_id: "metamcp".into(),
        client_secret: SECRET.into(),
        redirect_uris: vec![format!("{app}/api/auth/oauth2/callback/oidc")],
        token_endpoint_auth_method: None,
    };
    let accounts = vec![
        account("alice", "alice@example.com", true),
        account("bob", "bob@example.com", false),
        account("carol", "Carol@Example.com", true),
        account("dave", "dave@example.com", true),
    ];
    OidcProvider::start(&OidcProviderConfig::new(client, accounts))
        .await
        .expect("start the OpenID Provider")
}

async fn gateway(env: &Env, port: u16, op: &OidcProvider, extra: &[(&str, &str)]) -> Gateway {
    let app = format!("http://127.0.0.1:{port}");
    let mut vars = vec![
        ("APP_URL", app.as_str()),
        ("OIDC_CLIENT_ID", "metamcp"),
        ("OIDC_CLIENT_SECRET", SECRET),
        ("OIDC_DISCOVERY_URL", op.discovery_url.as_str()),
    ];
    vars.extend_from_slice(extra);
    env.serve_at(&format!("127.0.0.1:{port}"), &vars).await
}

/// Starts single sign-on in `b` and signs in at the provider as `who`; returns the path and
/// query the provider sends the browser back to.
async fn through_provider(b: &mut Browser, who: &str) -> String {
    let start = b
        .form("/api/auth/sign-in/oauth2", &[("providerId", "oidc")])
        .await;
    assert_eq!(start.status, 303, "{}", start.text);
    let to = start.headers["location"].to_str().unwrap().to_owned();
    assert!(
        b.other_cookies.contains_key("metamcp_oidc"),
        "browser binding cookie"
    );
    let back = sign_in(&to, who, &format!("{who}-password"), Decision::Approve)
        .await
        .expect("sign in at the provider");
    let url = reqwest::Url::parse(&back).unwrap();
    assert_eq!(url.path(), "/api/auth/oauth2/callback/oidc");
    format!("{}?{}", url.path(), url.query().unwrap_or(""))
}

#[tokio::test]
async fn members_sign_in_through_the_provider() {
    let port = free_port();
    let app = format!("http://127.0.0.1:{port}");
    let Some(op) = provider(&app).await else {
        return;
    };
    let env = Env::new();
    env.cli_stdin(
        &[
            "user",
            "create",
            "root@example.com",
            "--admin",
            "--password-stdin",
        ],
        &format!("{PW}\n"),
    );
    env.cli_stdin(
        &["user", "create", "carol@example.com", "--password-stdin"],
        &format!("{PW}\n"),
    );
    env.cli_stdin(
        &["user", "create", "bob@example.com", "--password-stdin"],
        &format!("{PW}\n"),
    );
    let gw = gateway(&env, port, &op, &[]).await;

    // The sign-in page offers single sign-on.
    let mut alice = Browser::new(&gw.base);
    assert!(alice.get("/login").await.text.contains("sign-in/oauth2"));

    // A new verified identity gets a member account and a session.
    let cb = through_provider(&mut alice, "alice").await;
    let done = alice.get(&cb).await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert_eq!(done.headers["location"], "/account");
    assert_eq!(alice.who().await.as_deref(), Some("alice@example.com"));
    let s = alice.get("/api/auth/get-session").await;
    assert_eq!(s.json["user"]["role"], "member");
    assert_eq!(s.json["user"]["name"], "alice from SSO");
    assert!(
        !alice.other_cookies.contains_key("metamcp_oidc"),
        "binding cookie cleared"
    );

    // The same callback again is refused with a page, and signs nobody in.
    let mut replay = Browser::new(&gw.base);
    replay.other_cookies = alice.other_cookies.clone();
    let r = replay.get(&cb).await;
    assert!((400..500).contains(&r.status), "{}: {}", r.status, r.text);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(replay.who().await, None);

    // Signing in again finds the linked account (no second one).
    let mut again = Browser::new(&gw.base);
    let cb = through_provider(&mut again, "alice").await;
    assert_eq!(again.get(&cb).await.status, 303);
    assert_eq!(again.who().await.as_deref(), Some("alice@example.com"));

    // An existing password account is linked by verified email…
    let mut carol = Browser::new(&gw.base);
    let cb = through_provider(&mut carol, "carol").await;
    assert_eq!(carol.get(&cb).await.status, 303);
    assert_eq!(carol.who().await.as_deref(), Some("carol@example.com"));
    // …but not by an unverified one.
    let mut bob = Browser::new(&gw.base);
    let cb = through_provider(&mut bob, "bob").await;
    let refused = bob.get(&cb).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.text.contains("verified"), "{}", refused.text);
    assert_eq!(bob.who().await, None);

    let users = env.cli_ok(&["user", "list"]);
    assert_eq!(users.lines().count(), 4, "{users}");
    assert!(
        users.contains("alice@example.com\tmember\talice from SSO\tactive\tsso-only"),
        "{users}"
    );

    // A tampered state: an error page, not a redirect.
    let mut t = Browser::new(&gw.base);
    let cb = through_provider(&mut t, "dave").await;
    let tampered = cb.replace("state=", "state=x");
    let page = t.get(&tampered).await;
    assert!(
        (400..500).contains(&page.status),
        "{}: {}",
        page.status,
        page.text
    );
    assert!(page.headers.get("location").is_none());
    assert_eq!(t.who().await, None);

    // Sign-ins through the provider and the refused ones are in the audit log.
    let audit = metamcp_it::eventually(std::time::Duration::from_secs(5), || async {
        let out = env.cli_ok(&["audit", "--json"]);
        let rows: Vec<serde_json::Value> = out
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let signed_in = rows
            .iter()
            .any(|r| r["kind"] == "sign_in" && r["principal"] == "carol@example.com");
        let refused = rows
            .iter()
            .any(|r| r["kind"] == "auth_failed" && r["error"] == "sso_refused");
        let failed = rows
            .iter()
            .any(|r| r["kind"] == "auth_failed" && r["error"] == "sso_failed");
        (signed_in && refused && failed).then_some(())
    })
    .await;
    assert!(audit.is_some(), "{}", env.cli_ok(&["audit", "--json"]));

    // A sign-in started on another origin than APP_URL names APP_URL.
    let mut elsewhere = Browser::new(&format!("http://localhost:{port}"));
    let e = elsewhere
        .form("/api/auth/sign-in/oauth2", &[("providerId", "oidc")])
        .await;
    assert_eq!(e.status, 400, "{}", e.text);
    assert!(e.text.contains("<code>APP_URL</code>"), "{}", e.text);
    // A provider id that is not this gateway's names OIDC_PROVIDER_ID.
    let p = alice
        .form("/api/auth/sign-in/oauth2", &[("providerId", "google")])
        .await;
    assert_eq!(p.status, 400);
    assert!(
        p.text.contains("<code>OIDC_PROVIDER_ID</code>"),
        "{}",
        p.text
    );
    let wrong_path = alice
        .get("/api/auth/oauth2/callback/google?code=x&state=y")
        .await;
    assert!(
        wrong_path.text.contains("OIDC_PROVIDER_ID"),
        "{}",
        wrong_path.text
    );
}

#[tokio::test]
async fn sso_signup_can_be_switched_off_and_misconfiguration_is_named() {
    let port = free_port();
    let app = format!("http://127.0.0.1:{port}");
    let Some(op) = provider(&app).await else {
        return;
    };
    let env = Env::new();
    env.cli_stdin(
        &["user", "create", "alice@example.com", "--password-stdin"],
        &format!("{PW}\n"),
    );
    let gw = gateway(&env, port, &op, &[("DISABLE_SSO_SIGNUP", "true")]).await;
    // No new account…
    let mut dave = Browser::new(&gw.base);
    let cb = through_provider(&mut dave, "dave").await;
    let page = dave.get(&cb).await;
    assert_eq!(page.status, 403, "{}", page.text);
    assert!(
        page.text.contains("<code>DISABLE_SSO_SIGNUP</code>"),
        "{}",
        page.text
    );
    assert_eq!(dave.who().await, None);
    // …but existing accounts still sign in (and are linked).
    let mut alice = Browser::new(&gw.base);
    let cb = through_provider(&mut alice, "alice").await;
    assert_eq!(alice.get(&cb).await.status, 303);
    assert_eq!(alice.who().await.as_deref(), Some("alice@example.com"));
    drop(gw);

    // Discovery unreachable: the page names OIDC_DISCOVERY_URL.
    let dead = format!(
        "http://127.0.0.1:{}/.well-known/openid-configuration",
        free_port()
    );
    let gw = env
        .serve_at(
            &format!("127.0.0.1:{port}"),
            &[
                ("APP_URL", app.as_str()),
                ("OIDC_CLIENT_ID", "metamcp"),
                ("OIDC_CLIENT_SECRET", SECRET),
                ("OIDC_DISCOVERY_URL", dead.as_str()),
            ],
        )
        .await;
    let mut b = Browser::new(&gw.base);
    let p = b
        .form("/api/auth/sign-in/oauth2", &[("providerId", "oidc")])
        .await;
    assert!(p.status >= 400, "{}", p.text);
    assert!(p.text.contains("OIDC_DISCOVERY_URL"), "{}", p.text);
    drop(gw);

    // Half a configuration refuses to start, naming what is missing.
    let mut cmd = std::process::Command::new(metamcp_it::bin("metamcp"));
    cmd.arg("--data-dir")
        .arg(env.data_dir())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("OIDC_CLIENT_ID", "metamcp")
        .env_remove("DATABASE_URL");
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OIDC_CLIENT_SECRET") && err.contains("OIDC_DISCOVERY_URL"),
        "{err}"
    );
    assert!(!err.contains(SECRET));
}

/// The whole story: the first sign-up becomes admin; the admin makes private objects
/// and a member account; the member signs in through the real OpenID Provider and can neither
/// see nor use the admin's private objects through any route, while both use the public
/// endpoint with their own keys.
#[tokio::test]
async fn a_member_signed_in_through_sso_sees_only_public_and_own_objects() {
    use metamcp_it::{RawClient, fixture_stdio};
    use serde_json::{Value, json};

    let port = free_port();
    let app = format!("http://127.0.0.1:{port}");
    let Some(op) = provider(&app).await else {
        return;
    };
    let env = Env::new();
    let gw = gateway(&env, port, &op, &[]).await;
    let mut admin = Browser::new(&gw.base);
    let s = admin.sign_up("root@example.com", PW).await;
    assert_eq!(s.json["user"]["role"], "admin", "{}", s.text);

    // Public: a server, namespace and endpoint. Private to the admin: the same again, and a key.
    let post = async |b: &mut Browser, path: &str, body: Value| {
        let a = b.post(path, body).await;
        assert!((200..300).contains(&a.status), "{path}: {}", a.text);
        a
    };
    post(
        &mut admin,
        "/api/v1/servers",
        json!({ "mcpServers": { "pubsrv": fixture_stdio("pubsrv", &[]) } }),
    )
    .await;
    post(
        &mut admin,
        "/api/v1/namespaces",
        json!({ "name": "pubns", "servers": ["pubsrv"] }),
    )
    .await;
    post(
        &mut admin,
        "/api/v1/endpoints",
        json!({ "name": "pub", "namespace": "pubns" }),
    )
    .await;
    post(
        &mut admin,
        "/api/v1/servers?owner=root@example.com",
        json!({ "mcpServers": { "secret": fixture_stdio("secret", &[]) } }),
    )
    .await;
    post(
        &mut admin,
        "/api/v1/namespaces",
        json!({ "name": "rootns", "servers": ["secret"], "owner": "root@example.com" }),
    )
    .await;
    post(
        &mut admin,
        "/api/v1/endpoints",
        json!({ "name": "rootep", "namespace": "rootns", "owner": "root@example.com" }),
    )
    .await;
    let root_key = post(
        &mut admin,
        "/api/v1/keys",
        json!({ "name": "rootkey", "owner": "root@example.com" }),
    )
    .await
    .json["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // The member's account, without a password: she signs in through the provider.
    post(
        &mut admin,
        "/api/v1/users",
        json!({ "email": "alice@example.com" }),
    )
    .await;

    let mut alice = Browser::new(&gw.base);
    let cb = through_provider(&mut alice, "alice").await;
    assert_eq!(alice.get(&cb).await.status, 303);
    let me = alice.get("/api/auth/get-session").await;
    assert_eq!(me.json["user"]["role"], "member", "{}", me.text);
    let alice_key = post(&mut alice, "/api/v1/keys", json!({ "name": "alicekey" }))
        .await
        .json["key"]
        .as_str()
        .unwrap()
        .to_owned();

    // Nothing of the admin's private objects, through the API or the dashboard.
    for path in [
        "/api/v1/servers",
        "/api/v1/namespaces",
        "/api/v1/endpoints",
        "/api/v1/keys",
        "/servers",
        "/namespaces",
        "/endpoints",
        "/keys",
    ] {
        let a = alice.get(path).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text);
        for name in ["secret", "rootns", "rootep", "rootkey"] {
            assert!(!a.text.contains(name), "{path} shows {name}");
        }
    }
    for path in [
        "/api/v1/servers/secret",
        "/api/v1/namespaces/rootns",
        "/api/v1/endpoints/rootep",
        "/namespaces/rootns",
        "/servers/secret/edit",
    ] {
        assert_eq!(alice.get(path).await.status, 404, "{path}");
    }
    let del = alice
        .send("DELETE", "/api/v1/servers/secret", None, true)
        .await;
    assert_eq!(del.status, 404, "{}", del.text);

    // Keys: hers opens the public endpoint, not the admin's private one; the admin's opens both.
    let call = async |ep: &str, key: &str| {
        let mut c = RawClient::new(&gw.mcp_url(ep)).bearer(key);
        c.initialize().await.status
    };
    assert_eq!(call("pub", &alice_key).await, 200);
    assert_eq!(call("pub", &root_key).await, 200);
    assert_ne!(call("rootep", &alice_key).await, 200);
    assert_eq!(call("rootep", &root_key).await, 200);
    // And the admin still has everything.
    assert!(admin.get("/api/v1/servers").await.text.contains("secret"));
}
