//! The auth matrix, session binding, DNS-rebinding protection and key revocation.

use std::time::Duration;

use metamcp_it::{Env, RawClient, eventually, fixture_stdio};
use serde_json::json;

async fn setup() -> (Env, metamcp_it::Gateway, String, String) {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "plain", "--namespace", "ns"]);
    env.cli_ok(&[
        "endpoint",
        "create",
        "query",
        "--namespace",
        "ns",
        "--query-auth",
    ]);
    env.cli_ok(&[
        "endpoint",
        "create",
        "open",
        "--namespace",
        "ns",
        "--no-auth",
    ]);
    let k1 = env.key("one");
    let k2 = env.key("two");
    let gw = env.serve().await;
    (env, gw, k1, k2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_form_and_every_refusal() {
    let (env, gw, k1, _k2) = setup().await;
    let url = gw.mcp_url("plain");

    // No key, wrong key, wrong scheme: 401 with a JSON body.
    for c in [
        RawClient::new(&url),
        RawClient::new(&url)
            .bearer("sk_mt_wrongwrongwrongwrongwrongwrongwrongwrongwrongwrongwrongwrongwrong"),
        RawClient::new(&url).header("x-api-key", "nope"),
        RawClient::new(&url).header("authorization", &format!("Basic {k1}")),
    ] {
        let mut c = c;
        let a = c.initialize().await;
        assert_eq!(a.status, 401, "{:?}", c.headers);
        assert_eq!(a.body["error"], "unauthorized");
        assert!(a.body["message"].is_string());
    }
    // Bearer and X-API-Key both work.
    for c in [
        RawClient::new(&url).bearer(&k1),
        RawClient::new(&url).header("x-api-key", &k1),
    ] {
        let mut c = c;
        assert_eq!(c.initialize().await.status, 200);
        let a = c
            .request(
                "tools/call",
                json!({"name": "alpha__echo", "arguments": {"message": "ok"}}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    // Query auth only where enabled.
    let mut c = RawClient::new(&format!("{url}?api_key={k1}"));
    assert_eq!(c.initialize().await.status, 401);
    for q in ["api_key", "apikey"] {
        let mut c = RawClient::new(&format!("{}?{q}={k1}", gw.mcp_url("query")));
        assert_eq!(c.initialize().await.status, 200, "{q}");
        let a = c.request("ping", json!({})).await;
        assert_eq!(a.status, 200);
    }
    // An open endpoint needs no key, and says so in `endpoint list`.
    let mut c = RawClient::new(&gw.mcp_url("open"));
    assert_eq!(c.initialize().await.status, 200);
    let list = env.cli_ok(&["endpoint", "list"]);
    let open_line = list.lines().find(|l| l.starts_with("open")).unwrap();
    assert!(open_line.contains("NONE"), "{list}");
    // Unknown endpoint.
    let mut c = RawClient::new(&gw.mcp_url("missing")).bearer(&k1);
    assert_eq!(c.initialize().await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_bound_to_its_endpoint_and_key() {
    let (_env, gw, k1, k2) = setup().await;
    let mut c = RawClient::new(&gw.mcp_url("plain")).bearer(&k1);
    assert_eq!(c.initialize().await.status, 200);
    let sid = c.session.clone().unwrap();

    // The key must come with every request, not only initialize.
    let mut no_key = RawClient::new(&gw.mcp_url("plain"));
    no_key.session = Some(sid.clone());
    assert_eq!(no_key.request("ping", json!({})).await.status, 401);
    // Same session id, another valid key: refused.
    let mut other_key = RawClient::new(&gw.mcp_url("plain")).bearer(&k2);
    other_key.session = Some(sid.clone());
    assert_eq!(other_key.request("ping", json!({})).await.status, 404);
    // Same session id and key, another endpoint: refused.
    let mut other_ep = RawClient::new(&gw.mcp_url("query")).bearer(&k1);
    other_ep.session = Some(sid.clone());
    assert_eq!(other_ep.request("ping", json!({})).await.status, 404);
    // A request without a session id, and with an unknown one.
    let mut none = RawClient::new(&gw.mcp_url("plain")).bearer(&k1);
    assert_eq!(none.request("ping", json!({})).await.status, 400);
    none.session = Some("0".repeat(32));
    assert_eq!(none.request("ping", json!({})).await.status, 404);
    // The owner still works; DELETE ends the session.
    assert_eq!(c.request("ping", json!({})).await.status, 200);
    let del = reqwest::Client::new()
        .delete(gw.mcp_url("plain"))
        .bearer_auth(&k1)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(c.request("ping", json!({})).await.status, 404);

    // Session health: behind the endpoint's auth, with no session ids in it.
    let http = reqwest::Client::new();
    let h = http
        .get(format!("{}/health/sessions", gw.mcp_url("plain")))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 401);
    let mut c2 = RawClient::new(&gw.mcp_url("plain")).bearer(&k1);
    c2.initialize().await;
    let h = http
        .get(format!("{}/health/sessions", gw.mcp_url("plain")))
        .bearer_auth(&k1)
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let text = h.text().await.unwrap();
    assert!(!text.contains(c2.session.as_deref().unwrap()), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["sessions"], 1);
    assert_eq!(v["upstreams"][0]["server"], "alpha");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_and_origins_are_refused() {
    let (_env, gw, k1, _) = setup().await;
    let http = reqwest::Client::new();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}});
    let send = |host: Option<&'static str>, origin: Option<&'static str>| {
        let mut r = http
            .post(gw.mcp_url("plain"))
            .bearer_auth(&k1)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(init.to_string());
        if let Some(h) = host {
            r = r.header("host", h);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    assert_eq!(
        send(Some("evil.example.com"), None).await.unwrap().status(),
        403
    );
    assert_eq!(
        send(None, Some("http://evil.example.com"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        send(Some("localhost:12008"), None).await.unwrap().status(),
        200
    );
    // Origins match exactly: a page on another port of an allowed host is another program.
    let other_port = send(None, Some("http://localhost:6274")).await.unwrap();
    assert_eq!(other_port.status(), 403);
    assert!(
        other_port
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let own = format!("http://localhost:{}", gw.addr.port());
    let ok = http
        .post(gw.mcp_url("plain"))
        .bearer_auth(&k1)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("origin", &own)
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], own.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_within_two_seconds() {
    let (env, gw, k1, k2) = setup().await;
    let mut c = RawClient::new(&gw.mcp_url("plain")).bearer(&k1);
    assert_eq!(c.initialize().await.status, 200);
    env.cli_ok(&["key", "revoke", "one"]);
    let started = std::time::Instant::now();
    let refused = eventually(Duration::from_secs(2), || {
        let c = c.clone();
        async move { (c.request("ping", json!({})).await.status == 401).then_some(()) }
    })
    .await;
    assert!(refused.is_some(), "revoked key still accepted after 2 s");
    eprintln!("revocation effective after {:?}", started.elapsed());
    let mut other = RawClient::new(&gw.mcp_url("plain")).bearer(&k2);
    assert_eq!(other.initialize().await.status, 200);
}
