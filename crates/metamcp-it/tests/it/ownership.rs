//! Ownership end to end: an admin's private objects stay invisible and unusable to a member
//! through every route, two members use a public endpoint with their own keys, members'
//! servers are refused what would reach the host, and a disabled owner's key and private
//! endpoint stop working — on SQLite and PostgreSQL.

use metamcp_it::browser::Browser;
use metamcp_it::{Env, RawClient, fixture_stdio};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

#[tokio::test]
async fn members_cannot_reach_private_objects_and_share_public_ones_sqlite() {
    members_cannot_reach_private_objects_and_share_public_ones(Env::new()).await;
}

#[tokio::test]
async fn members_cannot_reach_private_objects_and_share_public_ones_postgres() {
    if let Some(env) = Env::new_pg().await {
        members_cannot_reach_private_objects_and_share_public_ones(env).await;
    }
}

fn key_of(a: &metamcp_it::browser::Answer) -> String {
    assert_eq!(a.status, 201, "{}", a.text);
    a.json["key"].as_str().unwrap().to_owned()
}

async fn call_echo(url: &str, key: &str) -> (u16, Value) {
    let mut c = RawClient::new(url).bearer(key);
    let init = c.initialize().await;
    if init.status != 200 {
        return (init.status, init.body);
    }
    let a = c
        .request(
            "tools/call",
            json!({ "name": "shared__echo", "arguments": { "message": "hi" } }),
        )
        .await;
    (a.status, a.body)
}

async fn members_cannot_reach_private_objects_and_share_public_ones(env: Env) {
    // Public configuration made on the CLI, as before accounts existed.
    env.import(json!({ "shared": fixture_stdio("shared", &[]) }));
    env.cli_ok(&["namespace", "create", "pub", "--server", "shared"]);
    env.cli_ok(&["endpoint", "create", "pub", "--namespace", "pub"]);
    let gw = env.serve().await;
    let mut admin = Browser::new(&gw.base);
    assert_eq!(admin.sign_up("root@example.com", PW).await.status, 200);
    let mut ada = Browser::new(&gw.base);
    assert_eq!(ada.sign_up("ada@example.com", PW).await.status, 200);
    let mut bob = Browser::new(&gw.base);
    assert_eq!(bob.sign_up("bob@example.com", PW).await.status, 200);

    // The admin's own private objects (an admin may own objects like anyone).
    let imp = admin
        .post(
            "/api/v1/servers?owner=root@example.com",
            json!({ "mcpServers": { "secret": fixture_stdio("secret", &[]) } }),
        )
        .await;
    assert_eq!(imp.status, 200, "{}", imp.text);
    let ns = admin
        .post(
            "/api/v1/namespaces",
            json!({ "name": "root-ns", "servers": ["secret", "shared"], "owner": "root@example.com" }),
        )
        .await;
    assert_eq!(ns.status, 201, "{}", ns.text);
    let ep = admin
        .post(
            "/api/v1/endpoints",
            json!({ "name": "root-ep", "namespace": "root-ns", "owner": "root@example.com" }),
        )
        .await;
    assert_eq!(ep.status, 201, "{}", ep.text);
    let root_key = key_of(
        &admin
            .post(
                "/api/v1/keys",
                json!({ "name": "root-key", "owner": "root@example.com" }),
            )
            .await,
    );
    // Each member makes a key of their own (owned by them without asking).
    let ada_key_answer = ada.post("/api/v1/keys", json!({ "name": "ada-key" })).await;
    assert_eq!(ada_key_answer.json["owner"], "ada@example.com");
    let ada_key = key_of(&ada_key_answer);
    let bob_key = key_of(&bob.post("/api/v1/keys", json!({ "name": "bob-key" })).await);
    // The admin API applies a change on the gateway that answered before answering.

    // Nothing of the admin's shows to Ada, through any route.
    for path in [
        "/api/v1/servers",
        "/api/v1/namespaces",
        "/api/v1/endpoints",
        "/api/v1/keys",
    ] {
        let a = ada.get(path).await;
        assert_eq!(a.status, 200, "{}", a.text);
        for name in ["secret", "root-ns", "root-ep", "root-key", "bob-key"] {
            assert!(!a.text.contains(name), "{path} shows {name}: {}", a.text);
        }
    }
    for path in [
        "/api/v1/servers/secret",
        "/api/v1/servers/secret/logs",
        "/api/v1/namespaces/root-ns",
        "/api/v1/namespaces/root-ns/tools",
        "/api/v1/endpoints/root-ep",
    ] {
        assert_eq!(ada.get(path).await.status, 404, "{path}");
    }
    for (method, path) in [
        ("DELETE", "/api/v1/servers/secret"),
        ("DELETE", "/api/v1/namespaces/root-ns"),
        ("DELETE", "/api/v1/endpoints/root-ep"),
        ("DELETE", "/api/v1/keys/root-key"),
        ("POST", "/api/v1/servers/secret/reset"),
    ] {
        let a = ada.send(method, path, None, true).await;
        assert_eq!(a.status, 404, "{method} {path}: {}", a.text);
    }
    // Nor can she build on it, or use it with her key.
    let a = ada
        .post(
            "/api/v1/namespaces",
            json!({ "name": "mine", "servers": ["secret"] }),
        )
        .await;
    assert_eq!(a.status, 404, "{}", a.text);
    let (st, _) = call_echo(&gw.mcp_url("root-ep"), &ada_key).await;
    assert_eq!(st, 403);
    // The admin's own key opens it; a member's key cannot use the admin API.
    let (st, _) = call_echo(&gw.mcp_url("root-ep"), &root_key).await;
    assert_eq!(st, 200);
    let api = reqwest::Client::new()
        .get(format!("{}/api/v1/servers", gw.base))
        .bearer_auth(&ada_key)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 403);

    // Both members use the public endpoint with their own keys.
    for key in [&ada_key, &bob_key] {
        let (st, v) = call_echo(&gw.mcp_url("pub"), key).await;
        assert_eq!(st, 200, "{v}");
        assert!(v.to_string().contains("hi"), "{v}");
    }

    // Members' servers: no stdio, no ${NAME}, no private networks (until an admin allows).
    for (body, why) in [
        (
            json!({ "mcpServers": { "cmd": fixture_stdio("cmd", &[]) } }),
            "stdio",
        ),
        (
            json!({ "mcpServers": { "local": { "type": "streamable_http", "url": "http://127.0.0.1:9/mcp" } } }),
            "loopback",
        ),
        (
            json!({ "mcpServers": { "meta": { "type": "sse", "url": "http://169.254.169.254/latest" } } }),
            "link-local",
        ),
        (
            json!({ "mcpServers": { "leak": { "type": "streamable_http", "url": "https://93.184.215.14/mcp", "headers": { "X-T": "${HOME}" } } } }),
            "reference",
        ),
    ] {
        let a = ada.post("/api/v1/servers", body).await;
        assert_eq!(a.status, 403, "{why}: {}", a.text);
    }
    let a = admin
        .json(
            "PUT",
            "/api/v1/settings/MEMBERS_MAY_USE_PRIVATE_NETWORKS",
            json!({ "value": "true" }),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = ada
        .post(
            "/api/v1/servers",
            json!({ "mcpServers": { "local": { "type": "streamable_http", "url": "http://127.0.0.1:9/mcp" } } }),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(ada.get("/api/v1/settings").await.status, 403);

    // A disabled owner: their key opens nothing, their private endpoint answers 403.
    let a = ada
        .post(
            "/api/v1/namespaces",
            json!({ "name": "ada-ns", "servers": ["shared"] }),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let a = ada
        .post(
            "/api/v1/endpoints",
            json!({ "name": "ada-ep", "namespace": "ada-ns" }),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(call_echo(&gw.mcp_url("ada-ep"), &ada_key).await.0, 200);
    assert_eq!(call_echo(&gw.mcp_url("ada-ep"), &bob_key).await.0, 403);
    let a = admin
        .json(
            "PATCH",
            "/api/v1/users/ada@example.com",
            json!({ "disabled": true }),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(call_echo(&gw.mcp_url("pub"), &ada_key).await.0, 403);
    assert_eq!(call_echo(&gw.mcp_url("ada-ep"), &root_key).await.0, 403);
    assert_eq!(call_echo(&gw.mcp_url("pub"), &bob_key).await.0, 200);

    // Removing Ada removes what she owned, and says so.
    let a = admin
        .send("DELETE", "/api/v1/users/ada@example.com", None, true)
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["removed"]["endpoints"], json!(["ada-ep"]));
    assert_eq!(a.json["removed"]["namespaces"], json!(["ada-ns"]));
    assert_eq!(a.json["removed"]["servers"], json!(["local"]));
    assert_eq!(a.json["removed"]["api_keys"], json!(["ada-key"]));
    gw.stop().await;
}
