//! The audit log and key hygiene, end to end: calls on every face (Streamable HTTP, legacy
//! SSE, REST, the stateless era) and their outcomes, refused keys, failed sign-ins and admin
//! changes are recorded and read back with `metamcp audit` and `GET /api/v1/audit` (filters,
//! tamper-proof cursor paging); API keys' last use is stamped and an expired key is refused.

use std::time::{Duration, Instant};

use metamcp_it::{Env, RawClient, eventually, fixture_stdio};
use serde_json::{Value, json};

use crate::sse::LegacyClient;

/// The records `metamcp audit ARGS --json` prints.
fn audit_json(env: &Env, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json", "--limit", "0"];
    all.extend_from_slice(args);
    env.cli_ok(&all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls `metamcp audit ARGS --json` until it shows `n` records (or 10 s pass).
async fn audit_n(env: &Env, args: &[&str], n: usize) -> Vec<Value> {
    let got = eventually(Duration::from_secs(10), || async {
        let r = audit_json(env, args);
        (r.len() >= n).then_some(r)
    })
    .await;
    got.unwrap_or_else(|| panic!("{n} records for {args:?}: {:?}", audit_json(env, args)))
}

fn field<'a>(r: &'a Value, k: &str) -> &'a str {
    r[k].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_face_is_audited_and_one_command_says_who_called_a_tool() {
    let env = Env::new();
    env.import(json!({
        "alpha": fixture_stdio("alpha", &[]),
        "beta": fixture_stdio("beta", &[]),
    }));
    env.cli_ok(&[
        "namespace",
        "create",
        "ns",
        "--server",
        "alpha",
        "--server",
        "beta",
    ]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    let laptop = env.key("laptop");
    let ci = env.key("ci");
    let admin = env.admin_key("ops");
    let gw = env.serve().await;

    // Streamable HTTP, key "laptop": ok, tool error, unknown tool, a resource, a prompt.
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&laptop);
    c.initialize().await;
    let started = Instant::now();
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "hi"}}),
        )
        .await;
    assert_eq!(a.body["result"]["content"][0]["text"], "hi", "{:?}", a.body);
    let first = audit_n(&env, &["--tool", "alpha__echo"], 1).await;
    println!("first record visible after {:?}", started.elapsed());
    c.request(
        "tools/call",
        json!({"name": "alpha__fail", "arguments": {"message": "no"}}),
    )
    .await;
    c.request(
        "tools/call",
        json!({"name": "alpha__nope", "arguments": {}}),
    )
    .await;
    c.request("tools/call", json!({"name": "nowhere", "arguments": {}}))
        .await;
    c.request("resources/read", json!({"uri": "fixture://static/readme"}))
        .await;
    c.request("prompts/get", json!({"name": "beta__plain"}))
        .await;

    // Legacy SSE, key "ci".
    let auth = format!("Bearer {ci}");
    let mut legacy = LegacyClient::open(&gw, &gw.sse_url("ep"), &[("authorization", &auth)])
        .await
        .unwrap();
    legacy.initialize().await;
    legacy
        .request(
            2,
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "sse"}}),
        )
        .await;

    // REST, key "ci": a call and a refused (unknown) tool.
    let http = reqwest::Client::new();
    for tool in ["alpha__echo", "alpha__missing"] {
        http.post(format!("{}/metamcp/ep/api/{tool}", gw.base))
            .bearer_auth(&ci)
            .header("content-type", "application/json")
            .body(r#"{"message":"rest"}"#)
            .send()
            .await
            .unwrap();
    }

    // The stateless era, key "laptop".
    let modern = RawClient::new(&gw.mcp_url("ep"))
        .bearer(&laptop)
        .header("mcp-protocol-version", "2026-07-28");
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}
    });
    let a = modern
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "new"}, "_meta": meta}),
        )
        .await;
    assert!(a.body["result"].is_object(), "{:?}", a.body);

    // A wrong key, and a failed sign-in.
    let a = RawClient::new(&gw.mcp_url("ep"))
        .bearer("sk_mt_wrong")
        .initialize()
        .await;
    assert_eq!(a.status, 401);
    let s = http
        .post(format!("{}/api/auth/sign-in/email", gw.base))
        .json(&json!({"email": "Mallory@Example.com", "password": "guess"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s.as_u16(), 401);

    // "Which key called alpha__echo?" — one command.
    let echo = audit_n(&env, &["--tool", "alpha__echo", "--since", "1d"], 4).await;
    let mut seen: Vec<(String, String)> = echo
        .iter()
        .map(|r| {
            (
                field(r, "face").to_owned(),
                field(r, "principal").to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("mcp".to_owned(), "laptop".to_owned()),
            ("rest".to_owned(), "ci".to_owned()),
            ("sse".to_owned(), "ci".to_owned()),
            ("stateless".to_owned(), "laptop".to_owned()),
        ],
        "{echo:#?}"
    );
    for r in &echo {
        assert_eq!(field(r, "kind"), "tool_call");
        assert_eq!(field(r, "outcome"), "ok", "{r}");
        assert_eq!(field(r, "endpoint"), "ep");
        assert_eq!(field(r, "namespace"), "ns");
        assert_eq!(field(r, "server"), "alpha");
        assert_eq!(field(r, "client"), "127.0.0.1");
        assert!(r["duration_ms"].as_f64().unwrap() > 0.0, "{r}");
        // Never the key itself.
        assert!(!r.to_string().contains("sk_mt_"), "{r}");
    }
    assert_eq!(first[0]["principal"], "laptop");
    let text = env.cli_ok(&["audit", "--tool", "alpha__echo", "--since", "1d"]);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.contains("laptop") && text.contains("ci"), "{text}");

    // Outcomes.
    let errors = audit_n(&env, &["--outcome", "error"], 6).await;
    let outcome_of = |tool: &str| {
        errors
            .iter()
            .find(|r| field(r, "tool") == tool)
            .map(|r| (field(r, "outcome").to_owned(), field(r, "error").to_owned()))
            .unwrap_or_else(|| panic!("no record for {tool}: {errors:#?}"))
    };
    assert_eq!(
        outcome_of("alpha__fail"),
        ("tool_error".into(), "is_error".into())
    );
    // The upstream refused a name it does not know; the gateway refused one it cannot route.
    assert_eq!(
        outcome_of("alpha__nope"),
        ("tool_error".into(), "rpc:-32602".into())
    );
    assert_eq!(
        outcome_of("nowhere"),
        ("denied".into(), "unknown_tool".into())
    );
    assert_eq!(
        outcome_of("alpha__missing"),
        ("denied".into(), "unknown_tool".into())
    );
    let refused = errors
        .iter()
        .find(|r| field(r, "kind") == "auth_failed" && field(r, "face") == "mcp")
        .expect("the wrong key is recorded");
    assert_eq!(field(refused, "outcome"), "denied");
    assert_eq!(field(refused, "error"), "unauthorized");
    assert_eq!(refused["principal"], Value::Null);
    let sign_in = errors
        .iter()
        .find(|r| field(r, "face") == "web")
        .expect("the failed sign-in is recorded");
    assert_eq!(field(sign_in, "principal"), "mallory@example.com");
    assert_eq!(field(sign_in, "error"), "invalid_credentials");
    let read = audit_json(&env, &["--tool", "fixture://static/readme"]);
    assert_eq!(field(&read[0], "kind"), "resource_read");
    assert_eq!(field(&read[0], "server"), "alpha");
    let prompt = audit_json(&env, &["--server", "beta"]);
    assert_eq!(field(&prompt[0], "kind"), "prompt_get");
    assert_eq!(field(&prompt[0], "outcome"), "ok");

    // Admin changes, from the CLI and from the API, commit with their record.
    let r = http
        .post(format!("{}/api/v1/keys", gw.base))
        .bearer_auth(&admin)
        .json(&json!({"name": "from-api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let changes = audit_json(&env, &["--principal", "ops"]);
    assert_eq!(field(&changes[0], "kind"), "admin");
    assert_eq!(field(&changes[0], "tool"), "POST /api/v1/keys");
    let by_cli = audit_json(&env, &["--principal", "cli"]);
    let ops: Vec<&str> = by_cli.iter().map(|r| field(r, "tool")).collect();
    assert!(ops.contains(&"key create laptop"), "{ops:?}");
    assert!(ops.contains(&"namespace create ns"), "{ops:?}");

    // The API: same filters, cursor paging, tampered cursors refused.
    let get = |q: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/audit?{q}", gw.base);
        let admin = admin.clone();
        async move {
            let r = http.get(url).bearer_auth(admin).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (s, page) = get("tool=alpha__echo&limit=3".into()).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["records"].as_array().unwrap().len(), 3);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (s, rest) = get(format!("tool=alpha__echo&limit=3&cursor={cursor}")).await;
    assert_eq!(s, 200, "{rest}");
    assert_eq!(rest["records"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_cursor"], Value::Null);
    let mut ids: Vec<i64> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["records"].as_array().unwrap())
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    let listed = ids.clone();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(listed, ids, "newest first, no record twice");
    ids.dedup();
    assert_eq!(ids.len(), 4);
    // The cursor of another query, or an edited one, is refused.
    let (s, e) = get(format!("tool=alpha__fail&limit=3&cursor={cursor}")).await;
    assert_eq!(s, 422, "{e}");
    let mut edited = cursor.clone().into_bytes();
    edited[2] = if edited[2] == b'A' { b'B' } else { b'A' };
    let edited = String::from_utf8(edited).unwrap();
    let (s, _) = get(format!("tool=alpha__echo&limit=3&cursor={edited}")).await;
    assert_eq!(s, 422);
    let (s, e) = get("outcome=maybe".into()).await;
    assert_eq!(s, 422, "{e}");
    let r = http
        .get(format!("{}/api/v1/audit", gw.base))
        .bearer_auth(&laptop)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        403,
        "an endpoint key reads no audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_record_their_last_use_and_expire() {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    let key = env.key("laptop");
    let out = env.cli_ok(&["key", "create", "brief", "--expires", "3s"]);
    let brief = out.lines().last().unwrap().trim().to_owned();
    let refused = env.cli(&["key", "create", "odd", "--expires", "soon"]);
    assert!(!refused.ok);
    assert!(refused.stderr.contains("expires"), "{}", refused.stderr);
    let gw = env.serve().await;

    let line = |name: &str| {
        env.cli_ok(&["key", "list"])
            .lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap()
            .to_owned()
    };
    assert!(
        line("laptop").contains("last used: never"),
        "{}",
        line("laptop")
    );
    assert!(
        !line("brief").contains("expires: never"),
        "{}",
        line("brief")
    );

    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200);
    let used = eventually(Duration::from_secs(10), || async {
        let l = line("laptop");
        (!l.contains("last used: never")).then_some(l)
    })
    .await
    .expect("last use stamped");
    assert!(used.contains("last used: 20"), "{used}");

    // The short key works, then is refused like a revoked one, saying it expired.
    let mut b = RawClient::new(&gw.mcp_url("ep")).bearer(&brief);
    assert_eq!(b.initialize().await.status, 200);
    let refused = eventually(Duration::from_secs(15), || async {
        let a = RawClient::new(&gw.mcp_url("ep"))
            .bearer(&brief)
            .initialize()
            .await;
        (a.status == 401).then_some(a.body)
    })
    .await
    .expect("the key expires");
    assert!(refused.to_string().contains("expired at"), "{refused}");
    assert!(line("brief").contains("\texpired\t"), "{}", line("brief"));
    let rec = audit_n(&env, &["--outcome", "denied"], 1).await;
    assert_eq!(field(&rec[0], "error"), "key_expired", "{rec:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_may_record_payloads_redacted_and_capped() {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    let key = env.key("laptop");
    let gw = env
        .serve_with(&[("METAMCP_AUDIT_PAYLOAD_BYTES", "300")])
        .await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;
    let call = |message: String| json!({"name": "alpha__echo", "arguments": {"message": message, "api_token": "tok-SECRET-1"}});
    // Off by default: nothing of the payload is recorded.
    c.request("tools/call", call("first".into())).await;
    let r = audit_n(&env, &["--tool", "alpha__echo"], 1).await;
    assert_eq!(r[0]["detail"], Value::Null, "{r:?}");

    let out = env.cli_ok(&["namespace", "update", "ns", "--audit-payloads", "on"]);
    assert!(out.contains("recorded"), "{out}");
    // The gateway follows the change within a second; poll until a call is recorded with it.
    let recorded = eventually(Duration::from_secs(10), || async {
        c.request("tools/call", call("second".into())).await;
        let r = audit_json(&env, &["--tool", "alpha__echo"]);
        r.first()
            .filter(|r| r["detail"].is_string())
            .map(|r| field(r, "detail").to_owned())
    })
    .await
    .expect("payloads recorded once switched on");
    let v: Value = serde_json::from_str(&recorded).unwrap();
    assert_eq!(v["arguments"]["message"], "second");
    assert_eq!(v["arguments"]["api_token"], "<redacted>");
    assert_eq!(v["result"]["content"][0]["text"], "second");
    assert!(!recorded.contains("tok-SECRET-1"), "{recorded}");

    // Capped.
    c.request("tools/call", call("x".repeat(1000))).await;
    let d = eventually(Duration::from_secs(10), || async {
        let r = audit_json(&env, &["--tool", "alpha__echo"]);
        let d = field(&r[0], "detail").to_owned();
        d.contains("xxxx").then_some(d)
    })
    .await
    .expect("the long call is recorded");
    assert!(d.len() <= 300 && d.ends_with('…'), "{d}");
    let ns = env.cli_ok(&["namespace", "list"]);
    assert!(!ns.is_empty());
}
