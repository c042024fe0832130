//! The dashboard over real HTTP (the browser-driven flow lives in e2e/dashboard): sign-in
//! redirects, a whole setup made with its forms — import, namespace, endpoint, key — and the
//! key then working on the endpoint; CSRF on every form; assets compiled in, cached and
//! pinned by SRI; the origin banner.

use metamcp_it::browser::Browser;
use metamcp_it::{Env, RawClient, fixture_stdio};
use serde_json::json;

const PW: &str = "correct horse battery";

fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF field")
        .to_owned()
}

#[tokio::test]
async fn a_new_user_sets_everything_up_in_the_dashboard() {
    let env = Env::new();
    let gw = env.serve().await;
    let mut b = Browser::new(&gw.base);
    let home = b.get("/").await;
    assert_eq!(home.status, 303);
    assert_eq!(home.headers["location"], "/login?return_to=%2F");
    let s = b.get("/servers").await;
    assert_eq!(s.headers["location"], "/login?return_to=%2Fservers");
    assert_eq!(b.sign_up("ada@example.com", PW).await.status, 200);
    assert_eq!(b.get("/").await.headers["location"], "/servers");

    let page = b.get("/servers").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("No servers yet"), "{}", page.text);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let csrf = csrf_of(&page.text);

    // A form without its CSRF token changes nothing.
    let import = json!({ "mcpServers": { "alpha": fixture_stdio("alpha", &[]) } }).to_string();
    let refused = b.form("/servers/import", &[("json", &import)]).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    // A malformed import comes back with the input kept and the reason.
    let bad = b
        .form(
            "/servers/import",
            &[("csrf_token", &csrf), ("json", "{\"mcpServers\": 7}")],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert!(
        bad.text.contains("{&#34;mcpServers&#34;: 7}")
            || bad.text.contains("{&quot;mcpServers&quot;: 7}"),
        "{}",
        bad.text
    );

    let ok = b
        .form(
            "/servers/import",
            &[("csrf_token", &csrf), ("json", &import)],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    assert_eq!(ok.headers["location"], "/servers?done=imported");
    let page = b.get("/servers?done=imported").await;
    assert!(
        page.text.contains("Servers imported.") && page.text.contains("<strong>alpha</strong>")
    );

    let ns = b
        .form(
            "/namespaces",
            &[("csrf_token", &csrf), ("name", "main"), ("server", "alpha")],
        )
        .await;
    assert_eq!(ns.status, 303, "{}", ns.text);
    let dup = b
        .form(
            "/namespaces",
            &[("csrf_token", &csrf), ("name", "main"), ("server", "alpha")],
        )
        .await;
    assert_eq!(dup.status, 409, "{}", dup.text);
    // The refusal stands next to the field it is about, with the input kept.
    assert!(
        dup.text.contains("id=\"ns-name-err\"") && dup.text.contains("aria-invalid=\"true\""),
        "{}",
        dup.text
    );
    assert!(dup.text.contains("value=\"main\""), "{}", dup.text);
    assert!(
        dup.text.contains("value=\"alpha\" checked"),
        "the chosen server stays chosen: {}",
        dup.text
    );
    let ep = b
        .form(
            "/endpoints",
            &[
                ("csrf_token", &csrf),
                ("name", "main"),
                ("namespace", "main"),
            ],
        )
        .await;
    assert_eq!(ep.status, 303, "{}", ep.text);
    let eps = b.get("/endpoints").await;
    let mcp_url = format!("{}/metamcp/main/mcp", "http://localhost:12008");
    assert!(
        eps.text.contains(&format!("data-copy=\"{mcp_url}\"")),
        "{}",
        eps.text
    );

    let made = b
        .form("/keys", &[("csrf_token", &csrf), ("name", "laptop")])
        .await;
    assert_eq!(made.status, 200, "{}", made.text);
    assert_eq!(made.headers["cache-control"], "no-store");
    let key = made
        .text
        .split("<code id=\"new-key\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_owned();
    assert!(key.starts_with("sk_mt_"), "{key}");
    assert!(!b.get("/keys").await.text.contains(&key), "shown once only");

    // What the dashboard made works for a real MCP client.
    let mut c = RawClient::new(&gw.mcp_url("main")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200);
    let call = c
        .request(
            "tools/call",
            json!({ "name": "alpha__echo", "arguments": { "message": "hi" } }),
        )
        .await;
    assert!(call.body.to_string().contains("hi"), "{}", call.body);

    // Auth toggles: query keys need key auth; with key auth off, no key is needed.
    let bad = b
        .form(
            "/endpoints/main/auth",
            &[("csrf_token", &csrf), ("query_auth", "1")],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert!(
        bad.text.contains("query auth needs API-key auth"),
        "{}",
        bad.text
    );
    let mut anon = RawClient::new(&gw.mcp_url("main"));
    assert_eq!(
        anon.initialize().await.status,
        401,
        "still closed after a refused change"
    );
    let off = b
        .form("/endpoints/main/auth", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(off.headers["location"], "/endpoints?done=saved");
    let mut anon = RawClient::new(&gw.mcp_url("main"));
    assert_eq!(anon.initialize().await.status, 200);
    // The CLI turns it back on (the same rule set).
    let out = env.cli_ok(&["endpoint", "update", "main", "--auth", "on"]);
    assert!(out.contains("auth: API key"), "{out}");
    let closed = metamcp_it::eventually(std::time::Duration::from_secs(10), || async {
        let mut c = RawClient::new(&gw.mcp_url("main"));
        (c.initialize().await.status == 401).then_some(())
    })
    .await;
    assert!(closed.is_some(), "key auth back on");
    // The export download carries no secret and is a Claude-Desktop document.
    let export = b.get("/servers/export").await;
    assert_eq!(export.status, 200);
    assert!(
        export.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
    );
    assert!(
        export.json["mcpServers"]["alpha"].is_object(),
        "{}",
        export.text
    );

    let revoke = b
        .form("/keys/laptop/revoke", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(revoke.headers["location"], "/keys?done=revoked");
    let gone = b
        .form("/endpoints/nope/delete", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(gone.status, 404);
}

#[tokio::test]
async fn assets_are_compiled_in_cached_and_pinned() {
    let env = Env::new();
    let gw = env.serve().await;
    let mut b = Browser::new(&gw.base);
    b.sign_up("ada@example.com", PW).await;
    let page = b.get("/servers").await;
    for (tag, attr) in [
        ("<link rel=\"stylesheet\" href=\"", "css"),
        ("<script src=\"", "js"),
    ] {
        let rest = page
            .text
            .split(tag)
            .nth(1)
            .unwrap_or_else(|| panic!("{attr}"));
        let url = rest
            .split('"')
            .next()
            .unwrap()
            .replace("&#x3d;", "=")
            .replace("&#61;", "=");
        let sri = rest
            .split("integrity=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        let asset = b.get(&url).await;
        assert_eq!(asset.status, 200, "{url}");
        assert!(
            asset.headers["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        use base64::Engine;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(asset.text.as_bytes());
        let want = format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        );
        assert_eq!(
            sri.replace("&#43;", "+")
                .replace("&#47;", "/")
                .replace("&#61;", "="),
            want,
            "{url}"
        );
    }
    assert_eq!(b.get("/assets/nope.js").await.status, 404);
    // The origin banner: this gateway's APP_URL is http://localhost:12008, not the
    // address the test uses.
    assert!(
        page.text
            .contains("but its APP_URL is http://localhost:12008"),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn a_browser_at_an_unserved_address_gets_a_page_naming_the_fix() {
    let env = Env::new();
    let gw = env.serve().await;
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}/servers", gw.base))
        .header("host", "mcp.example.com")
        .header("accept", "text/html,application/xhtml+xml")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 403);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let text = page.text().await.unwrap();
    assert!(
        text.contains("<code>APP_URL</code>") && text.contains("mcp.example.com"),
        "{text}"
    );
    // An API client still gets JSON.
    let api = http
        .get(format!("{}/health", gw.base))
        .header("host", "mcp.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 403);
    let v: serde_json::Value = api.json().await.unwrap();
    assert_eq!(v["error"], "forbidden_host");
}

#[tokio::test]
async fn servers_are_added_and_edited_without_secrets_reaching_the_browser() {
    let env = Env::new();
    let gw = env.serve().await;
    let mut b = Browser::new(&gw.base);
    b.sign_up("ada@example.com", PW).await;
    let page = b.get("/servers/new").await;
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.text);
    let add = |kind: &'static str| {
        vec![
            ("csrf_token", csrf.clone()),
            ("name", "remote".to_owned()),
            ("kind", kind.to_owned()),
            ("url", "https://mcp.example.com/mcp".to_owned()),
            ("headers", "X-Team: s3cr3t-header\nX-Plain: 1".to_owned()),
            ("bearer", "s3cr3t-token".to_owned()),
        ]
    };
    let fields = add("streamable_http");
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ok = b.form("/servers/save", &refs).await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    // Adding it again is refused, not an overwrite.
    let again = b.form("/servers/save", &refs).await;
    assert_eq!(again.status, 409, "{}", again.text);

    let edit = b.get("/servers/remote/edit").await;
    assert_eq!(edit.status, 200);
    assert!(
        !edit.text.contains("s3cr3t"),
        "no secret reaches the browser: {}",
        edit.text
    );
    assert!(
        edit.text.contains("X-Team: &#60;redacted&#62;")
            || edit.text.contains("X-Team: &lt;redacted&gt;"),
        "{}",
        edit.text
    );
    assert!(edit.text.contains("leave empty to keep it"));

    // Saving the form as shown keeps every secret.
    let keep = [
        ("csrf_token", csrf.as_str()),
        ("editing", "1"),
        ("name", "remote"),
        ("kind", "streamable_http"),
        ("description", "edited"),
        ("url", "https://mcp.example.com/mcp"),
        ("headers", "X-Team: <redacted>\nX-Plain: 2"),
        ("bearer", ""),
        ("has_bearer", "1"),
    ];
    let saved = b.form("/servers/save", &keep).await;
    assert_eq!(saved.status, 303, "{}", saved.text);
    let full = env.cli_ok(&["export", "--include-secrets"]);
    assert!(
        full.contains("s3cr3t-header") && full.contains("s3cr3t-token"),
        "{full}"
    );
    assert!(
        full.contains("\"X-Plain\": \"2\"") || full.contains("\"X-Plain\":\"2\""),
        "{full}"
    );

    // A malformed line comes back with the input kept.
    let bad = [
        ("csrf_token", csrf.as_str()),
        ("name", "local"),
        ("kind", "stdio"),
        ("command", "npx"),
        ("env", "GOOD=1\nno equals sign here"),
    ];
    let refused = b.form("/servers/save", &bad).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(
        refused.text.contains("environment, line 2"),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("no equals sign here"), "input kept");
}

/// The first `lines` event of a live-log stream opened with `b`'s cookie.
async fn first_lines(b: &Browser) -> (u16, Option<serde_json::Value>, Option<reqwest::Response>) {
    let resp = reqwest::Client::new()
        .get(format!("{}/logs/stream", b.base))
        .header("cookie", b.cookie.clone().unwrap_or_default())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    if status != 200 {
        return (status, None, None);
    }
    let mut resp = resp;
    let mut buf = String::new();
    while let Ok(Some(chunk)) =
        tokio::time::timeout(std::time::Duration::from_secs(10), resp.chunk())
            .await
            .unwrap()
    {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(rest) = buf.split("event: lines\ndata: ").nth(1)
            && let Some(data) = rest.split('\n').next()
            && rest.contains('\n')
        {
            return (status, serde_json::from_str(data).ok(), Some(resp));
        }
    }
    (status, None, Some(resp))
}

#[tokio::test]
async fn live_logs_stream_only_what_the_user_may_read_and_are_bounded() {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "main", "--server", "alpha"]);
    env.cli_ok(&[
        "endpoint",
        "create",
        "main",
        "--namespace",
        "main",
        "--no-auth",
    ]);
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("main"));
    assert_eq!(c.initialize().await.status, 200);
    c.request(
        "tools/call",
        json!({ "name": "alpha__echo", "arguments": { "message": "x" } }),
    )
    .await;
    let mut admin = Browser::new(&gw.base);
    admin.sign_up("ada@example.com", PW).await;
    let mut member = Browser::new(&gw.base);
    member.sign_up("bo@example.com", PW).await;
    assert_eq!(admin.get("/logs").await.status, 200);

    // The admin sees the public server's lines (once the gateway has copied them).
    let lines = metamcp_it::eventually(std::time::Duration::from_secs(10), || async {
        let (_, v, _) = first_lines(&admin).await;
        v.filter(|v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|l| l["server"] == "alpha"))
        })
    })
    .await
    .expect("alpha's lines in the live log");
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    // A member reads no logs of servers that are not theirs.
    let (st, v, _) = first_lines(&member).await;
    assert_eq!(st, 200);
    assert_eq!(v.unwrap(), json!([]));
    // Not signed in: refused. Five at once: the fifth refused.
    assert_eq!(first_lines(&Browser::new(&gw.base)).await.0, 401);
    let mut open = Vec::new();
    for _ in 0..4 {
        let (st, _, resp) = first_lines(&member).await;
        assert_eq!(st, 200);
        open.push(resp);
    }
    assert_eq!(first_lines(&member).await.0, 429);
    drop(open);
}

#[tokio::test]
async fn pages_speak_the_browsers_language_and_switch_on_request() {
    let env = Env::new();
    let gw = env.serve().await;
    // Before signing in: the sign-in page in the browser's language.
    let mut b = Browser::new(&gw.base);
    b.headers
        .push(("accept-language".into(), "ko-KR,ko;q=0.9,en;q=0.5".into()));
    let login = b.get("/login").await;
    assert!(login.text.contains("<html lang=\"ko\">"), "{}", login.text);
    assert!(login.text.contains("metamcp에 로그인"), "{}", login.text);
    assert_eq!(b.sign_up("ada@example.com", PW).await.status, 200);
    let page = b.get("/servers").await;
    assert!(page.text.contains("아직 서버가 없습니다"), "{}", page.text);

    // The switch remembers the choice over the browser's and goes back where it was.
    let back = format!("{}/namespaces?x=1", gw.base);
    b.headers.push(("referer".into(), back));
    let sw = b.get("/lang/zh").await;
    assert_eq!(sw.status, 303);
    assert_eq!(sw.headers["location"], "/namespaces?x=1");
    b.headers.retain(|(k, _)| k != "referer");
    let page = b.get("/namespaces").await;
    assert!(page.text.contains("<html lang=\"zh\">"));
    assert!(page.text.contains("命名空间"), "{}", page.text);
    // A Referer from elsewhere is not followed; an unknown language is refused.
    b.headers
        .push(("referer".into(), "https://evil.example/x".into()));
    assert_eq!(b.get("/lang/en").await.headers["location"], "/");
    assert_eq!(b.get("/lang/xx").await.status, 404);
    // A browser saying nothing gets English.
    let mut plain = Browser::new(&gw.base);
    assert!(
        plain
            .get("/login")
            .await
            .text
            .contains("Sign in to metamcp")
    );
}
