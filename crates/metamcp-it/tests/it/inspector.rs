//! The dashboard inspector's credential: tokens minted for one endpoint and one signed-in
//! user work on that endpoint as that user and nowhere else — not on another endpoint, not
//! for another user's session, not after the user is disabled, not forged — and the
//! dashboard's cookie alone opens no endpoint.

use metamcp_it::browser::Browser;
use metamcp_it::{Env, RawClient, fixture_stdio};
use serde_json::json;

const PW: &str = "correct horse battery";

fn csrf_of(page: &str) -> String {
    page.split("data-csrf=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the inspector's CSRF attribute")
        .to_owned()
}

/// Asks the dashboard for an inspector token for `endpoint`: (status, answer).
async fn mint(b: &mut Browser, csrf: &str, endpoint: &str) -> (u16, serde_json::Value) {
    let a = b
        .form(
            "/inspector/token",
            &[("csrf_token", csrf), ("endpoint", endpoint)],
        )
        .await;
    (a.status, a.json)
}

fn echo(msg: &str) -> serde_json::Value {
    json!({ "name": "alpha__echo", "arguments": { "message": msg } })
}

#[tokio::test]
async fn inspector_tokens_open_one_endpoint_for_one_user_only() {
    let env = Env::new();
    let gw = env.serve().await;
    let mut ada = Browser::new(&gw.base);
    assert_eq!(ada.sign_up("ada@example.com", PW).await.status, 200);
    let mut bo = Browser::new(&gw.base);
    assert_eq!(bo.sign_up("bo@example.com", PW).await.status, 200);

    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "pub", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "pub", "--namespace", "pub"]);
    env.cli_ok(&[
        "endpoint",
        "create",
        "open",
        "--namespace",
        "pub",
        "--no-auth",
    ]);
    env.cli_ok(&[
        "namespace",
        "create",
        "ada-ns",
        "--server",
        "alpha",
        "--owner",
        "ada@example.com",
    ]);
    env.cli_ok(&[
        "endpoint",
        "create",
        "ada-ep",
        "--namespace",
        "ada-ns",
        "--owner",
        "ada@example.com",
    ]);
    let key = env
        .cli_ok(&["key", "create", "k1"])
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("sk_mt_"))
                .map(str::to_owned)
        })
        .expect("a key");
    // Once the gateway has loaded all of it.
    metamcp_it::eventually(std::time::Duration::from_secs(10), || async {
        let mut c = RawClient::new(&gw.mcp_url("ada-ep")).bearer(&key);
        let st = c.initialize().await.status;
        // A public key on ada's private endpoint: refused as private once it is loaded.
        (st == 403).then_some(())
    })
    .await
    .expect("the configuration loaded");

    // The page lists what the user may inspect: a member does not see ada's endpoint.
    let page = ada.get("/inspector").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("ada-ep") && page.text.contains("\"pub\""));
    let ada_csrf = csrf_of(&page.text);
    let page = bo.get("/inspector").await;
    assert!(!page.text.contains("ada-ep"), "{}", page.text);
    let bo_csrf = csrf_of(&page.text);

    // Without the session's CSRF token, or for someone else's private endpoint: no token.
    assert_eq!(mint(&mut bo, "forged", "pub").await.0, 403);
    let (st, refused) = mint(&mut bo, &bo_csrf, "ada-ep").await;
    assert_eq!(st, 404, "{refused}");
    assert!(refused.get("token").is_none());

    // A token works on its endpoint, as a real MCP client would use it.
    let (st, t) = mint(&mut ada, &ada_csrf, "pub").await;
    assert_eq!(st, 200, "{t}");
    let ada_pub = t["token"].as_str().unwrap().to_owned();
    assert!(ada_pub.starts_with("mt_insp_"));
    assert_eq!(t["url"], "/metamcp/pub/mcp");
    let mut c = RawClient::new(&gw.mcp_url("pub")).bearer(&ada_pub);
    assert_eq!(c.initialize().await.status, 200);
    let call = c.request("tools/call", echo("via the inspector")).await;
    assert!(
        call.body.to_string().contains("via the inspector"),
        "{}",
        call.body
    );

    // …and nowhere else: another endpoint, even a public one, refuses it.
    let mut other = RawClient::new(&gw.mcp_url("ada-ep")).bearer(&ada_pub);
    let a = other.initialize().await;
    assert_eq!(a.status, 401, "{:?}", a.body);
    assert!(
        a.body.to_string().contains("another endpoint"),
        "{:?}",
        a.body
    );

    // Another user's token cannot take over ada's MCP session.
    let (_, t) = mint(&mut bo, &bo_csrf, "pub").await;
    let bo_pub = t["token"].as_str().unwrap().to_owned();
    let mut hijack = RawClient::new(&gw.mcp_url("pub")).bearer(&bo_pub);
    hijack.session = c.session.clone();
    let a = hijack.request("tools/call", echo("x")).await;
    assert_eq!(a.status, 404, "{:?}", a.body);
    // Nor can an API key, nor can the token take over a key's session.
    let mut by_key = RawClient::new(&gw.mcp_url("pub")).bearer(&key);
    by_key.session = c.session.clone();
    assert_eq!(by_key.request("tools/call", echo("x")).await.status, 404);
    let mut keyed = RawClient::new(&gw.mcp_url("pub")).bearer(&key);
    assert_eq!(keyed.initialize().await.status, 200);
    let mut token_on_key = RawClient::new(&gw.mcp_url("pub")).bearer(&ada_pub);
    token_on_key.session = keyed.session.clone();
    assert_eq!(
        token_on_key.request("tools/call", echo("x")).await.status,
        404
    );

    // A forged token (payload edited, or signed with another key) is refused.
    let mut forged = ada_pub.clone();
    forged.insert(
        12,
        if forged.as_bytes()[12] == b'A' {
            'B'
        } else {
            'A'
        },
    );
    let mut f = RawClient::new(&gw.mcp_url("pub")).bearer(&forged);
    assert_eq!(f.initialize().await.status, 401);
    // Tokens are taken only from headers, never from a URL.
    let mut q = RawClient::new(&format!("{}?api_key={ada_pub}", gw.mcp_url("pub")));
    assert_eq!(q.initialize().await.status, 401);

    // The dashboard's cookie opens no endpoint (only the token does).
    let by_cookie = ada
        .post(
            "/metamcp/pub/mcp",
            json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": { "name": "x", "version": "1" } } }),
        )
        .await;
    assert_eq!(by_cookie.status, 401, "{}", by_cookie.text);

    // On an endpoint without key auth the token is accepted too (the calls are the user's).
    let mut open = RawClient::new(&gw.mcp_url("open")).bearer(
        mint(&mut bo, &bo_csrf, "open").await.1["token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(open.initialize().await.status, 200);

    // One server on its own: an admin's inspector reaches it, names unprefixed; a member's
    // cannot, nor can any API key, nor a token made for another endpoint.
    let page = ada.get("/inspector").await;
    assert!(page.text.contains("value=\"~alpha\""), "{}", page.text);
    assert!(!bo.get("/inspector").await.text.contains("~alpha"));
    let (st, t) = mint(&mut ada, &ada_csrf, "~alpha").await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["url"], "/metamcp/%7Ealpha/mcp");
    let mut one = RawClient::new(&gw.mcp_url("~alpha")).bearer(t["token"].as_str().unwrap());
    assert_eq!(one.initialize().await.status, 200);
    let listed = one.request("tools/list", json!({})).await;
    let names: Vec<&str> = listed.body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"echo") && !names.contains(&"alpha__echo"),
        "{names:?}"
    );
    assert_eq!(mint(&mut bo, &bo_csrf, "~alpha").await.0, 403);
    assert_eq!(mint(&mut ada, &ada_csrf, "~nope").await.0, 404);
    let mut by_key = RawClient::new(&gw.mcp_url("~alpha")).bearer(&key);
    assert_eq!(by_key.initialize().await.status, 403);
    let mut other = RawClient::new(&gw.mcp_url("~alpha")).bearer(&bo_pub);
    assert_eq!(other.initialize().await.status, 401);

    // A disabled user's tokens stop working within a reload.
    env.cli_ok(&["user", "disable", "bo@example.com"]);
    let refused = metamcp_it::eventually(std::time::Duration::from_secs(10), || async {
        let mut c = RawClient::new(&gw.mcp_url("pub")).bearer(&bo_pub);
        let a = c.initialize().await;
        (a.status == 403).then_some(a)
    })
    .await
    .expect("the disabled user's token refused");
    assert!(
        refused.body.to_string().contains("disabled"),
        "{:?}",
        refused.body
    );
    // ada's keeps working.
    let mut c2 = RawClient::new(&gw.mcp_url("pub")).bearer(&ada_pub);
    assert_eq!(c2.initialize().await.status, 200);
}
