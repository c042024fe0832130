//! Upstream servers that need OAuth, reached through the gateway: a second metamcp (a real
//! OAuth 2.1 authorization server and MCP server: discovery from its 401, dynamic
//! registration, PKCE S256, RFC 8707 resource, RFC 9207 iss, rotating refresh tokens)
//! protects an endpoint; the gateway under test signs in to it with shared credentials and
//! with each user's own, refreshes, and shows "needs authorization" with the link when a
//! grant is missing or ends. The upstream's audit log says whose token each call carried.

use std::time::Duration;

use metamcp_it::browser::{Answer, Browser};
use metamcp_it::{Env, Gateway, RawClient, eventually, fixture_stdio};
use serde_json::{Value, json};

use crate::oauth::{PW, consent, location_params, param, serve};

/// The `Location` of a redirect.
fn location(a: &Answer) -> String {
    a.headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("a Location header: {} {}", a.status, a.text))
        .to_owned()
}

/// Begins an authorization of `server` in `a` (signed in to the gateway), consents in `b`
/// (signed in to the upstream), and follows the redirect back in `a`: the callback's answer.
async fn authorize(a: &mut Browser, b: &mut Browser, server: &str, for_: &str) -> Answer {
    let r = a
        .get(&format!("/oauth/upstream/{server}/authorize?for={for_}"))
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let to = location(&r);
    let (path, query) = to.split_once('?').expect("a query");
    assert_eq!(path, format!("{}/oauth/authorize", b.base));
    for k in [
        "code_challenge_method=S256",
        "resource=",
        "state=",
        "client_id=",
    ] {
        assert!(query.contains(k), "{k} in {query}");
    }
    let back = consent(b, query, "approve").await;
    assert_eq!(back.status, 303, "{}", back.text);
    let (cb, params) = location_params(&back);
    assert!(
        cb.starts_with(&format!("{}/oauth/upstream/callback?", a.base)),
        "{cb}"
    );
    assert_eq!(param(&params, "iss"), Some(b.base.as_str()));
    a.get(&cb[a.base.len()..]).await
}

/// Calls `tool` through endpoint `ep` of `gw` with `key`: the JSON-RPC answer.
async fn call(gw: &Gateway, ep: &str, key: &str, tool: &str) -> Value {
    let mut c = RawClient::new(&gw.mcp_url(ep));
    if !key.is_empty() {
        c = c.bearer(key);
    }
    let init = c.initialize().await;
    if init.status != 200 {
        return json!({ "init": init.status, "body": init.body });
    }
    c.request(
        "tools/call",
        json!({ "name": tool, "arguments": { "message": "hello" } }),
    )
    .await
    .body
}

fn ok_text(answer: &Value) -> String {
    assert!(answer.get("error").is_none(), "{answer}");
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn error_text(answer: &Value) -> String {
    answer.to_string()
}

/// The upstream's audit records of calls to `alpha__echo`, as (principal) strings.
fn upstream_callers(env: &Env) -> Vec<String> {
    env.cli_ok(&["audit", "--json", "--limit", "0", "--tool", "alpha__echo"])
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|r| r["principal"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Starts the protected upstream in `env_b`: a metamcp (gateway environment `extra`) whose
/// endpoint `up` (the fixture `alpha`) is an OAuth protected resource, with
/// `svc@upstream.test` signed up as its first account and `settings` set; the gateway and
/// svc's browser.
async fn upstream(
    env_b: &Env,
    extra: &[(&str, &str)],
    settings: &[(&str, &str)],
) -> (Gateway, Browser) {
    let up = serve(env_b, extra).await;
    let mut svc_b = Browser::new(&up.base);
    assert_eq!(svc_b.sign_up("svc@upstream.test", PW).await.status, 200);
    env_b.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env_b.cli_ok(&["namespace", "create", "pub", "--server", "alpha"]);
    env_b.cli_ok(&["endpoint", "create", "up", "--namespace", "pub", "--oauth"]);
    for (k, v) in settings {
        env_b.cli_ok(&["settings", "set", k, v]);
    }
    crate::oauth::wait_for_oauth_endpoint(&up, "up").await;
    (up, svc_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_that_need_oauth_are_reached_with_shared_and_per_user_grants() {
    // The upstream: a metamcp whose endpoint `up` is an OAuth protected resource, with
    // short access tokens so every use refreshes.
    let env_b = Env::new();
    let (up, mut svc_b) = upstream(&env_b, &[], &[("OAUTH_ACCESS_TOKEN_LIFETIME", "20000")]).await;
    for email in ["alice@upstream.test", "bob@upstream.test"] {
        let out = env_b.cli_stdin(
            &["user", "create", email, "--password-stdin"],
            &format!("{PW}\n"),
        );
        assert!(out.ok, "{out:?}");
    }
    let up_url = up.mcp_url("up");

    // The gateway under test: server `b` with one shared grant, `bu` with per-user ones.
    let env = Env::new();
    let gw = serve(&env, &[]).await;
    let mut alice = Browser::new(&gw.base);
    assert_eq!(alice.sign_up("alice@example.com", PW).await.status, 200);
    let out = env.cli_stdin(
        &["user", "create", "bob@example.com", "--password-stdin"],
        &format!("{PW}\n"),
    );
    assert!(out.ok, "{out:?}");
    let mut bob = Browser::new(&gw.base);
    assert_eq!(bob.sign_in("bob@example.com", PW).await.status, 200);
    env.import(json!({
        "b": { "type": "streamable-http", "url": up_url },
        "bu": { "type": "streamable-http", "url": up_url },
    }));
    env.cli_ok(&["server", "update", "b", "--oauth", "shared"]);
    // One user's connection at a time: the least recently used idle one makes room.
    env.cli_ok(&[
        "server", "update", "bu", "--oauth", "per-user", "--cap", "1",
    ]);
    env.cli_ok(&[
        "namespace",
        "create",
        "ns",
        "--server",
        "b",
        "--server",
        "bu",
    ]);
    env.cli_ok(&["endpoint", "create", "ea", "--namespace", "ns"]);
    let alice_key = env
        .cli_ok(&["key", "create", "ak", "--owner", "alice@example.com"])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let bob_key = env
        .cli_ok(&["key", "create", "bk", "--owner", "bob@example.com"])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let public_key = env.key("pk");

    // No grant yet: a clear error with the link, and the server says so.
    let first = eventually(Duration::from_secs(10), || async {
        let a = call(&gw, "ea", &alice_key, "b__alpha__echo").await;
        error_text(&a).contains("needs authorization").then_some(a)
    })
    .await
    .expect("a needs-authorization error");
    let text = error_text(&first);
    assert!(
        text.contains(&format!(
            "{}/oauth/upstream/b/authorize?for=server",
            gw.base
        )),
        "{text}"
    );
    eventually(Duration::from_secs(15), || async {
        env.cli_ok(&["server", "list"])
            .lines()
            .any(|l| l.starts_with("b") && l.contains("needs_authorization"))
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{}", env.cli_ok(&["server", "list"])));

    // The dashboard says so too, with the link.
    let page = alice.get("/servers").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("needs_authorization"), "{}", page.text);
    assert!(
        page.text.contains("/oauth/upstream/b/authorize?for=server"),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("/oauth/upstream/bu/authorize?for=me"),
        "{}",
        page.text
    );

    // Only an admin (or the owner) gives the server's own grant.
    let r = bob.get("/oauth/upstream/b/authorize?for=server").await;
    assert_eq!(r.status, 403, "{}", r.text);
    // A shared server takes no per-user grant.
    let r = bob.get("/oauth/upstream/b/authorize?for=me").await;
    assert_eq!(r.status, 400, "{}", r.text);

    // The admin authorizes `b` as the upstream's service account.
    let done = authorize(&mut alice, &mut svc_b, "b", "server").await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert!(done.text.contains("for everyone"), "{}", done.text);
    let out = ok_text(&call(&gw, "ea", &alice_key, "b__alpha__echo").await);
    assert!(out.contains("hello"), "{out}");
    let audited = eventually(Duration::from_secs(10), || async {
        env.cli_ok(&["audit", "--json", "--limit", "0", "--server", "b"])
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["kind"] == "upstream_authorized")
    })
    .await
    .expect("the authorization is audited");
    assert_eq!(audited["principal"], "alice@example.com", "{audited}");
    assert_eq!(audited["tool"], "server", "{audited}");
    let out = ok_text(&call(&gw, "ea", &public_key, "b__alpha__echo").await);
    assert!(out.contains("hello"), "{out}");
    // Tokens are sealed at rest: no token text in the database file.
    let grants = env.cli_ok(&["server", "grants", "b"]);
    assert!(grants.contains("(server)"), "{grants}");
    assert!(grants.contains("by: alice@example.com"), "{grants}");
    // The upstream's tokens live 20 s, under the 30 s margin: each use refreshed one.
    let refreshed: u64 = grants
        .split("refreshed ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{grants}"));
    assert!(refreshed >= 1, "{grants}");

    // Per-user: the server's own grant reads its lists; calls need the caller's own.
    let done = authorize(&mut alice, &mut svc_b, "bu", "server").await;
    assert_eq!(done.status, 200, "{}", done.text);
    let a = call(&gw, "ea", &bob_key, "bu__alpha__echo").await;
    let text = error_text(&a);
    assert!(text.contains("needs authorization"), "{text}");
    assert!(
        text.contains(&format!("{}/oauth/upstream/bu/authorize", gw.base)),
        "{text}"
    );
    let a = call(&gw, "ea", &public_key, "bu__alpha__echo").await;
    assert!(error_text(&a).contains("no user"), "{a}");

    let mut bob_b = Browser::new(&up.base);
    assert_eq!(bob_b.sign_in("bob@upstream.test", PW).await.status, 200);
    let mut alice_b = Browser::new(&up.base);
    assert_eq!(alice_b.sign_in("alice@upstream.test", PW).await.status, 200);
    // A flow begun by one user cannot be finished in another user's browser.
    let r = bob.get("/oauth/upstream/bu/authorize").await;
    assert_eq!(r.status, 303, "{}", r.text);
    let to = location(&r);
    let back = consent(&mut bob_b, to.split_once('?').unwrap().1, "approve").await;
    let (cb, _) = location_params(&back);
    let stolen = alice.get(&cb[gw.base.len()..]).await;
    assert_eq!(stolen.status, 403, "{}", stolen.text);
    // …and a state is used once.
    let again = bob.get(&cb[gw.base.len()..]).await;
    assert_eq!(again.status, 400, "{}", again.text);
    // An unknown state and a wrong issuer are refused.
    let r = bob.get("/oauth/upstream/callback?code=x&state=nope").await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = bob.get("/oauth/upstream/bu/authorize").await;
    let to = location(&r);
    let back = consent(&mut bob_b, to.split_once('?').unwrap().1, "approve").await;
    let (cb, _) = location_params(&back);
    let forged = cb.replace("iss=", "iss=https%3A%2F%2Fevil.example&was=");
    let r = bob.get(&forged[gw.base.len()..]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("iss"), "{}", r.text);

    // Each user authorizes for themself; each call carries its caller's own token.
    let done = authorize(&mut bob, &mut bob_b, "bu", "me").await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert!(done.text.contains("your own credentials"), "{}", done.text);
    let done = authorize(&mut alice, &mut alice_b, "bu", "me").await;
    assert_eq!(done.status, 200, "{}", done.text);
    let before = upstream_callers(&env_b).len();
    ok_text(&call(&gw, "ea", &bob_key, "bu__alpha__echo").await);
    ok_text(&call(&gw, "ea", &alice_key, "bu__alpha__echo").await);
    ok_text(&call(&gw, "ea", &bob_key, "bu__alpha__echo").await);
    let callers = eventually(Duration::from_secs(10), || async {
        let c = upstream_callers(&env_b);
        (c.len() >= before + 3).then_some(c)
    })
    .await
    .expect("the upstream audited three calls");
    // Newest first: bob, alice, bob.
    assert!(callers[0].contains("bob@upstream.test"), "{callers:?}");
    assert!(callers[1].contains("alice@upstream.test"), "{callers:?}");
    assert!(callers[2].contains("bob@upstream.test"), "{callers:?}");
    let grants = env.cli_ok(&["server", "grants", "bu"]);
    assert!(grants.contains("for: bob@example.com"), "{grants}");
    assert!(grants.contains("for: alice@example.com"), "{grants}");

    // The upstream revokes the shared grant: the gateway's refresh is refused, the grant
    // is dropped, and calls say who must authorize where.
    let svc_grants = env_b.cli_ok(&["oauth", "grants", "--user", "svc@upstream.test"]);
    for line in svc_grants.lines() {
        let id = line.split('\t').next().unwrap();
        env_b.cli_ok(&["oauth", "revoke", id]);
    }
    let a = eventually(Duration::from_secs(10), || async {
        let a = call(&gw, "ea", &alice_key, "b__alpha__echo").await;
        error_text(&a).contains("needs authorization").then_some(a)
    })
    .await
    .expect("needs authorization after the upstream revoked the grant");
    assert!(
        error_text(&a).contains("/oauth/upstream/b/authorize?for=server"),
        "{a}"
    );
    let grants = env.cli_ok(&["server", "grants", "b"]);
    assert_eq!(grants.trim(), "no grants", "{grants}");
    // Bob's own grant on the other server is untouched.
    ok_text(&call(&gw, "ea", &bob_key, "bu__alpha__echo").await);

    // Forgetting bob's grant locally: his calls ask for authorization again.
    env.cli_ok(&["server", "deauthorize", "bu", "--user", "bob@example.com"]);
    let a = eventually(Duration::from_secs(10), || async {
        let a = call(&gw, "ea", &bob_key, "bu__alpha__echo").await;
        error_text(&a).contains("needs authorization").then_some(a)
    })
    .await;
    assert!(a.is_some(), "bob's call still worked after deauthorize");
}

/// Whether any file of `env`'s data directory holds `needle` (the database, its WAL).
fn data_dir_holds(env: &Env, needle: &[u8]) -> bool {
    std::fs::read_dir(env.data_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .any(|e| {
            std::fs::read(e.path())
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_upstream_refuses_is_refreshed_once_and_the_call_retried() {
    let env_b = Env::new();
    let (up, mut svc_b) = upstream(&env_b, &[], &[]).await;

    let env = Env::new();
    let gw = serve(&env, &[]).await;
    let mut admin = Browser::new(&gw.base);
    assert_eq!(admin.sign_up("admin@example.com", PW).await.status, 200);
    // The same upstream endpoint over Streamable HTTP and over legacy SSE.
    env.import(json!({
        "b": { "type": "streamable-http", "url": up.mcp_url("up") },
        "bs": { "type": "sse", "url": up.sse_url("up") },
    }));
    env.cli_ok(&["server", "update", "b", "--oauth", "shared"]);
    env.cli_ok(&["server", "update", "bs", "--oauth", "shared"]);
    env.cli_ok(&[
        "namespace",
        "create",
        "ns",
        "--server",
        "b",
        "--server",
        "bs",
    ]);
    env.cli_ok(&["endpoint", "create", "ea", "--namespace", "ns", "--no-auth"]);
    for server in ["b", "bs"] {
        let done = authorize(&mut admin, &mut svc_b, server, "server").await;
        assert_eq!(done.status, 200, "{}", done.text);
    }
    for tool in ["b__alpha__echo", "bs__alpha__echo"] {
        let answer = eventually(Duration::from_secs(10), || async {
            let a = call(&gw, "ea", "", tool).await;
            a.get("result").is_some().then_some(a)
        })
        .await
        .unwrap_or_else(|| panic!("a call of {tool} through the authorized server"));
        assert!(ok_text(&answer).contains("hello"));
    }
    let grants = env.cli_ok(&["server", "grants", "b"]);
    assert!(grants.contains("refreshed 0 times"), "{grants}");
    // The upstream's access tokens (`mt_at_…`) are stored sealed, never as text.
    assert!(
        !data_dir_holds(&env, b"mt_at_"),
        "an access token in plain text"
    );

    // The upstream restarts with a new signing key: the token the gateway holds (valid for
    // minutes yet) is refused with 401; the refresh token still works.
    let addr = up.addr.to_string();
    let base = up.base.clone();
    let old_key = std::fs::read_to_string(env_b.data_dir().join("secret.key")).unwrap();
    up.stop().await;
    let new_key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
    let up = env_b
        .serve_at(
            &addr,
            &[
                ("APP_URL", base.as_str()),
                ("METAMCP_SECRET_KEY", new_key.as_str()),
                ("METAMCP_SECRET_KEY_PREVIOUS", old_key.trim()),
            ],
        )
        .await;
    crate::oauth::wait_for_oauth_endpoint(&up, "up").await;
    let answer = call(&gw, "ea", "", "b__alpha__echo").await;
    assert!(ok_text(&answer).contains("hello"), "{answer}");
    let grants = env.cli_ok(&["server", "grants", "b"]);
    assert!(grants.contains("refreshed 1 times"), "{grants}");
    // Over SSE the stream broke with the restart; the new one's GET is refused once, then
    // opened with a refreshed token.
    let answer = eventually(Duration::from_secs(10), || async {
        let a = call(&gw, "ea", "", "bs__alpha__echo").await;
        a.get("result").is_some().then_some(a)
    })
    .await
    .unwrap_or_else(|| panic!("the SSE server after the restart\n{}", gw.log()));
    assert!(ok_text(&answer).contains("hello"), "{answer}");
    let grants = env.cli_ok(&["server", "grants", "bs"]);
    assert!(grants.contains("refreshed 1 times"), "{grants}");
    assert!(
        !data_dir_holds(&env, b"mt_at_"),
        "an access token in plain text"
    );

    // Forgetting the grant reaches the running gateway (it drops the token it holds, valid
    // for minutes yet): the next calls ask for authorization.
    env.cli_ok(&["server", "deauthorize", "b"]);
    let a = eventually(Duration::from_secs(10), || async {
        let a = call(&gw, "ea", "", "b__alpha__echo").await;
        error_text(&a).contains("needs authorization").then_some(a)
    })
    .await;
    assert!(a.is_some(), "the call still worked after deauthorize");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_postgresql_refresh_a_shared_grant_one_at_a_time() {
    let Some(env) = Env::new_pg().await else {
        return;
    };
    // The upstream rotates refresh tokens and treats a reused one as theft (it revokes the
    // grant); its access tokens live 20 s, so every use needs a refresh.
    let env_b = Env::new();
    let (up, mut svc_b) = upstream(&env_b, &[], &[("OAUTH_ACCESS_TOKEN_LIFETIME", "20000")]).await;

    let port = metamcp_it::free_port();
    let app = format!("http://127.0.0.1:{port}");
    let one = env
        .serve_at(&format!("127.0.0.1:{port}"), &[("APP_URL", app.as_str())])
        .await;
    let two = env.serve_with(&[("APP_URL", app.as_str())]).await;
    let mut admin = Browser::new(&one.base);
    assert_eq!(admin.sign_up("admin@example.com", PW).await.status, 200);
    env.import(json!({ "b": { "type": "streamable-http", "url": up.mcp_url("up") } }));
    env.cli_ok(&["server", "update", "b", "--oauth", "shared"]);
    env.cli_ok(&["namespace", "create", "ns", "--server", "b"]);
    env.cli_ok(&["endpoint", "create", "ea", "--namespace", "ns", "--no-auth"]);
    let done = authorize(&mut admin, &mut svc_b, "b", "server").await;
    assert_eq!(done.status, 200, "{}", done.text);
    for gw in [&one, &two] {
        eventually(Duration::from_secs(10), || async {
            call(gw, "ea", "", "b__alpha__echo")
                .await
                .get("result")
                .map(drop)
        })
        .await
        .expect("both replicas reach the upstream");
    }

    // Both replicas at once, several calls each: every call needs a refresh; the lease
    // makes them take turns, so no refresh token is redeemed twice.
    let calls = (0..6)
        .flat_map(|_| [&one, &two])
        .map(|gw| call(gw, "ea", "", "b__alpha__echo"));
    for answer in futures::future::join_all(calls).await {
        assert!(ok_text(&answer).contains("hello"), "{answer}");
    }
    let grants = env.cli_ok(&["server", "grants", "b"]);
    let refreshed: u64 = grants
        .split("refreshed ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{grants}"));
    assert!(refreshed >= 2, "{grants}");
    // The upstream saw no reuse: its grant is alive and the next calls still work.
    let theirs = env_b.cli_ok(&["oauth", "grants", "--user", "svc@upstream.test"]);
    assert!(theirs.contains("active"), "{theirs}");
    for gw in [&one, &two] {
        assert!(ok_text(&call(gw, "ea", "", "b__alpha__echo").await).contains("hello"));
    }
}

/// An account at the OpenID Provider.
fn account(sub: &str) -> metamcp_it::oidc::OidcAccount {
    metamcp_it::oidc::OidcAccount {
        sub: sub.into(),
        email: format!("{sub}@idp.test"),
        email_verified: true,
        name: sub.into(),
        password: format!("{sub}-pw"),
    }
}

/// Begins an authorization of `server` in `a`, signs in at the provider as `sub` (its own
/// login and consent), and follows the redirect back in `a`.
async fn authorize_at_provider(a: &mut Browser, server: &str, for_: &str, sub: &str) -> Answer {
    let r = a
        .get(&format!("/oauth/upstream/{server}/authorize?for={for_}"))
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let back = metamcp_it::oidc::sign_in(
        &location(&r),
        sub,
        &format!("{sub}-pw"),
        metamcp_it::oidc::Decision::Approve,
    )
    .await
    .unwrap();
    assert!(
        back.starts_with(&format!("{}/oauth/upstream/callback?", a.base)),
        "{back}"
    );
    assert!(back.contains("iss="), "{back}");
    a.get(&back[a.base.len()..]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_behind_a_third_party_authorization_server_is_reached_per_user() {
    // The certified `oidc-provider` as authorization server (dynamic registration, RFC 8707
    // JWT access tokens living 20 s, rotating refresh tokens, RFC 9207 iss) in front of a
    // small MCP server that checks its tokens and says whose they are.
    let config = metamcp_it::oidc::OidcProviderConfig {
        clients: Vec::new(),
        accounts: vec![account("svc"), account("alice"), account("bob")],
        pkce_required: true,
        id_token_claims: false,
        id_token_audience: None,
        mcp: Some(metamcp_it::oidc::McpResource {
            access_token_ttl: 20,
        }),
    };
    let Some(idp) = metamcp_it::oidc::OidcProvider::start(&config)
        .await
        .unwrap()
    else {
        return;
    };
    let mcp_url = idp.mcp_url.clone().expect("the protected MCP server's URL");

    let env = Env::new();
    let gw = serve(&env, &[]).await;
    let mut admin = Browser::new(&gw.base);
    assert_eq!(admin.sign_up("admin@example.com", PW).await.status, 200);
    for email in ["alice@example.com", "bob@example.com"] {
        let out = env.cli_stdin(
            &["user", "create", email, "--password-stdin"],
            &format!("{PW}\n"),
        );
        assert!(out.ok, "{out:?}");
    }
    env.import(json!({
        "p": { "type": "streamable-http", "url": mcp_url },
        "pu": { "type": "streamable-http", "url": mcp_url },
    }));
    env.cli_ok(&["server", "update", "p", "--oauth", "shared"]);
    env.cli_ok(&["server", "update", "pu", "--oauth", "per-user"]);
    env.cli_ok(&[
        "namespace",
        "create",
        "ns",
        "--server",
        "p",
        "--server",
        "pu",
    ]);
    env.cli_ok(&["endpoint", "create", "ea", "--namespace", "ns"]);
    let key_of = |email: &str, name: &str| {
        env.cli_ok(&["key", "create", name, "--owner", email])
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_owned()
    };
    let (alice_key, bob_key) = (
        key_of("alice@example.com", "ak"),
        key_of("bob@example.com", "bk"),
    );
    let text = |a: &Value| {
        a["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    // Shared: the admin signs in at the provider as the service account.
    let done = authorize_at_provider(&mut admin, "p", "server", "svc").await;
    assert_eq!(done.status, 200, "{}", done.text);
    let first = eventually(Duration::from_secs(10), || async {
        let a = call(&gw, "ea", &alice_key, "p__whoami").await;
        a.get("result").is_some().then_some(a)
    })
    .await
    .expect("a call through the provider-protected server");
    assert_eq!(text(&first), "sub=svc", "{first}");
    // (Once the gateway has loaded bob's key, created just now.)
    let a = eventually(Duration::from_secs(10), || async {
        let a = call(&gw, "ea", &bob_key, "p__whoami").await;
        (a["init"] != 401).then_some(a)
    })
    .await
    .expect("bob's key is loaded");
    assert_eq!(text(&a), "sub=svc", "{a}\n{}", gw.log());
    // Its 20 s tokens are refreshed (rotating refresh tokens) on every use.
    let grants = env.cli_ok(&["server", "grants", "p"]);
    assert!(!grants.contains("refreshed 0 times"), "{grants}");
    assert!(grants.contains("(server)"), "{grants}");

    // Per user: each call carries its caller's own token. Its lists need the server's grant:
    // without it they lack its tools, and once it is given the stale list is dropped
    // (list_changed) well before such an incomplete list would expire (5 s).
    let list = || async {
        let mut c = RawClient::new(&gw.mcp_url("ea")).bearer(&bob_key);
        c.initialize().await;
        c.request("tools/list", json!({})).await.body.to_string()
    };
    let before = list().await;
    assert!(
        before.contains("p__whoami") && !before.contains("pu__whoami"),
        "{before}"
    );
    let done = authorize_at_provider(&mut admin, "pu", "server", "svc").await;
    assert_eq!(done.status, 200, "{}", done.text);
    let started = std::time::Instant::now();
    eventually(Duration::from_secs(10), || async {
        list().await.contains("pu__whoami").then_some(())
    })
    .await
    .expect("the per-user server's tools are listed once it is authorized");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let mut alice = Browser::new(&gw.base);
    assert_eq!(alice.sign_in("alice@example.com", PW).await.status, 200);
    let mut bob = Browser::new(&gw.base);
    assert_eq!(bob.sign_in("bob@example.com", PW).await.status, 200);
    let a = call(&gw, "ea", &alice_key, "pu__whoami").await;
    assert!(error_text(&a).contains("needs authorization"), "{a}");
    assert_eq!(
        authorize_at_provider(&mut alice, "pu", "me", "alice")
            .await
            .status,
        200
    );
    assert_eq!(
        authorize_at_provider(&mut bob, "pu", "me", "bob")
            .await
            .status,
        200
    );
    for _ in 0..2 {
        assert_eq!(
            text(&call(&gw, "ea", &alice_key, "pu__whoami").await),
            "sub=alice"
        );
        assert_eq!(
            text(&call(&gw, "ea", &bob_key, "pu__whoami").await),
            "sub=bob"
        );
    }
    // The lists of the per-user server come through the server's grant; a list built while
    // a server waited for authorization was dropped when it was authorized (list_changed),
    // so its tools show at once, not when that incomplete list expires.
    let mut c = RawClient::new(&gw.mcp_url("ea")).bearer(&bob_key);
    c.initialize().await;
    let tools = c.request("tools/list", json!({})).await.body;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        names.contains(&"pu__whoami") && names.contains(&"p__whoami"),
        "{tools}\n{}",
        gw.log()
    );

    // Both directions at once: an MCP client that knows only an endpoint's URL (the official
    // Python SDK) signs in through the gateway's consent page as alice, and calls the
    // per-user server with alice's own upstream account.
    env.cli_ok(&["endpoint", "create", "eo", "--namespace", "ns", "--oauth"]);
    crate::oauth::wait_for_oauth_endpoint(&gw, "eo").await;
    let url = gw.mcp_url("eo");
    let lines = crate::oauth::python_client(&[
        "--url",
        &url,
        "--email",
        "alice@example.com",
        "--password",
        PW,
        "--tool",
        "pu__whoami",
    ])
    .await;
    assert_eq!(
        crate::oauth::step(&lines, "call")["text"],
        "sub=alice",
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_names_itself_by_a_client_id_metadata_document() {
    // The gateway's APP_URL is https (a TLS face relaying to its plain listener, as a proxy
    // would); the upstream's authorization server (a metamcp) takes client ids that are
    // document URLs, fetching them over TLS from a test CA it trusts.
    let env_b = Env::new();
    let certs = env_b.data_dir().join("test-ca");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = crate::oauth::test_ca(&certs);
    let (up, mut svc_b) = upstream(
        &env_b,
        &[("METAMCP_EXTRA_CA_FILE", ca.as_str())],
        &[("OAUTH_CIMD_ALLOW_PRIVATE_NETWORKS", "true")],
    )
    .await;

    let port = metamcp_it::free_port();
    let plain = format!("http://127.0.0.1:{port}");
    let (_tls, tls_port) = crate::oauth::cimd_server_relaying(&cert, &key, Some(&plain)).await;
    let app = format!("https://127.0.0.1:{tls_port}");
    let env = Env::new();
    let gw = env
        .serve_at(&format!("127.0.0.1:{port}"), &[("APP_URL", app.as_str())])
        .await;
    let mut admin = Browser::new(&gw.base);
    assert_eq!(admin.sign_up("admin@example.com", PW).await.status, 200);
    env.import(json!({ "b": { "type": "streamable-http", "url": up.mcp_url("up") } }));
    env.cli_ok(&["server", "update", "b", "--oauth", "shared"]);
    env.cli_ok(&["namespace", "create", "ns", "--server", "b"]);
    env.cli_ok(&["endpoint", "create", "ea", "--namespace", "ns", "--no-auth"]);

    // The document, as the authorization server reads it through the https face.
    let doc_url = format!("{app}/oauth/upstream/client.json");
    let doc: Value = reqwest::get(format!("{plain}/oauth/upstream/client.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["client_id"], doc_url.as_str(), "{doc}");
    assert_eq!(
        doc["redirect_uris"],
        json!([format!("{app}/oauth/upstream/callback")])
    );

    let r = admin.get("/oauth/upstream/b/authorize?for=server").await;
    assert_eq!(r.status, 303, "{}", r.text);
    let to = location(&r);
    let query = to.split_once('?').unwrap().1;
    let params: Vec<(String, String)> = reqwest::Url::parse(&to)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(param(&params, "client_id"), Some(doc_url.as_str()));
    let back = consent(&mut svc_b, query, "approve").await;
    assert_eq!(back.status, 303, "{}", back.text);
    let (cb, _) = location_params(&back);
    let path = cb
        .strip_prefix(&app)
        .unwrap_or_else(|| panic!("{cb} is under {app}"));
    let done = admin.get(path).await;
    assert_eq!(done.status, 200, "{}", done.text);
    // No dynamic registration happened at the upstream.
    let clients = env_b.cli_ok(&["oauth", "clients"]);
    assert!(!clients.contains("mcp_client_"), "{clients}");
    let answer = eventually(Duration::from_secs(10), || async {
        let a = call(&gw, "ea", "", "b__alpha__echo").await;
        a.get("result").is_some().then_some(a)
    })
    .await
    .expect("a call with a grant issued to the metadata-document client");
    assert!(ok_text(&answer).contains("hello"));
}
