//! The HTTP edge, end to end on real sockets: connection caps (global and per client IP),
//! header, body and idle timeouts that never cut an SSE stream or a slow call, the request
//! body limit, exact CORS origins, duplicate `Host`/`Origin` headers, what the session health
//! shows to whom, and where the admin API is served. Timeouts are set small through the
//! `METAMCP_*` variables; every wait is for an observable event (a close, an answer, a
//! keep-alive comment) with a deadline.

use std::time::{Duration, Instant};

use metamcp_it::{Env, Gateway, RawClient, bin, eventually, fixture_stdio};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::first_text;

const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Namespace `ns` = {alpha} on endpoint `ep` (API-key auth) and a key.
fn one_endpoint() -> (Env, String) {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    let key = env.key("k");
    (env, key)
}

/// A TCP connection to `addr`, from the loopback address `from` when given.
async fn connect_from(addr: std::net::SocketAddr, from: Option<&str>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(ip) = from {
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    }
    socket.connect(addr).await.unwrap()
}

async fn connect(gw: &Gateway) -> TcpStream {
    connect_from(gw.addr, None).await
}

/// Everything the peer sends until it closes the connection (EOF or reset), or `None` if it
/// is still open after `within`.
async fn read_until_closed<R: AsyncRead + Unpin>(r: &mut R, within: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads until the gateway closes the connection (within 10 s); its answer must be `status`
/// with the JSON error `kind`. Returns the answer.
async fn refusal<R: AsyncRead + Unpin>(r: &mut R, status: u16, kind: &str) -> String {
    let got = read_until_closed(r, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no {status} within 10 s, and the connection is still open"));
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
    assert!(text.contains("content-type: application/json"), "{text}");
    assert!(text.contains(&format!("\"error\":\"{kind}\"")), "{text}");
    text
}

/// Sends `request` and reads one response with a `Content-Length` body; the connection
/// stays open.
async fn round_trip(s: &mut TcpStream, request: &str) -> String {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("no complete answer within 10 s")
            .expect("read");
        assert!(n > 0, "closed mid-answer: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// `metamcp serve` with `vars` must refuse to start; its stderr.
async fn serve_refused(env: &Env, vars: &[(&str, &str)]) -> String {
    let mut cmd = tokio::process::Command::new(bin("metamcp"));
    cmd.arg("--data-dir")
        .arg(env.data_dir())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .envs(vars.iter().copied())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("serve started (or hung) instead of refusing its configuration")
        .unwrap();
    assert!(!out.status.success(), "serve accepted {vars:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_request_heads_are_closed_within_the_header_timeout() {
    const SOCKETS: usize = 100;
    const HEADER_MS: u64 = 1500;
    let (env, key) = one_endpoint();
    let gw = env
        .serve_with(&[("METAMCP_HEADER_READ_TIMEOUT_MS", &HEADER_MS.to_string())])
        .await;
    // Slowloris: many sockets that send half a request head and stop.
    let mut slow = Vec::new();
    for _ in 0..SOCKETS {
        let mut s = connect(&gw).await;
        s.write_all(b"POST /metamcp/ep/mcp HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push((Instant::now(), s));
    }
    // And a keep-alive connection that completes one request, then sends half of the next.
    let mut later = connect(&gw).await;
    assert!(
        round_trip(&mut later, HEALTH)
            .await
            .starts_with("HTTP/1.1 200")
    );
    later
        .write_all(b"GET /health HTTP/1.1\r\nHo")
        .await
        .unwrap();
    slow.push((Instant::now(), later));

    // Meanwhile a normal client is served.
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200);
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "still here"}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]), "still here", "{}", a.body);

    // Every slow socket is closed within the header timeout (and some slack), unanswered.
    let slack = Duration::from_secs(5);
    for (i, (opened, s)) in slow.iter_mut().enumerate() {
        let deadline = *opened + Duration::from_millis(HEADER_MS) + slack;
        let left = deadline.saturating_duration_since(Instant::now());
        let got = read_until_closed(s, left).await;
        assert!(
            got.is_some(),
            "socket {i} still open {:?} after it sent half a head",
            opened.elapsed()
        );
    }
    // The normal client is still served.
    assert_eq!(c.request("ping", json!({})).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_off_with_408() {
    let (env, key) = one_endpoint();
    let gw = env
        .serve_with(&[("METAMCP_BODY_READ_TIMEOUT_MS", "1000")])
        .await;
    let s = connect(&gw).await;
    let (mut r, mut w) = s.into_split();
    let head = format!(
        "POST /metamcp/ep/mcp HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: 200\r\n\r\n{{"
    );
    w.write_all(head.as_bytes()).await.unwrap();
    // One byte every 100 ms: the whole body would take 20 s.
    let trickle = tokio::spawn(async move {
        for _ in 0..199 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if w.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    refusal(&mut r, 408, "request_timeout").await;
    trickle.abort();
    eprintln!("cut off after {:?}", started.elapsed());
    // The gateway keeps serving.
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_but_sse_streams_and_slow_calls_do_not() {
    const IDLE_MS: u64 = 1000;
    let (env, key) = one_endpoint();
    let gw = env
        .serve_with(&[
            ("METAMCP_IDLE_TIMEOUT_MS", &IDLE_MS.to_string()),
            ("METAMCP_SSE_KEEPALIVE_MS", "200"),
        ])
        .await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200);
    let sid = c.session.clone().unwrap();

    // The session's GET stream, on its own connection.
    let mut sse = connect(&gw).await;
    let get = format!(
        "GET /metamcp/ep/mcp HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\
         Authorization: Bearer {key}\r\nMcp-Session-Id: {sid}\r\n\r\n"
    );
    sse.write_all(get.as_bytes()).await.unwrap();
    // A call that keeps its upstream busy for three idle timeouts, on another connection.
    let slow = {
        let c = c.clone();
        tokio::spawn(async move {
            c.request(
                "tools/call",
                json!({"name": "alpha__slow", "arguments": {"steps": 1, "delay_ms": 3 * IDLE_MS}}),
            )
            .await
        })
    };
    // A keep-alive connection that goes idle after one request.
    let mut idle = connect(&gw).await;
    assert!(
        round_trip(&mut idle, HEALTH)
            .await
            .starts_with("HTTP/1.1 200")
    );
    let idle_from = Instant::now();
    let got = read_until_closed(&mut idle, Duration::from_millis(IDLE_MS) * 6)
        .await
        .expect("the idle connection was not closed");
    let lived = idle_from.elapsed();
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        lived >= Duration::from_millis(IDLE_MS * 9 / 10),
        "closed after {lived:?}, before the idle timeout"
    );

    // The stream outlives the idle timeout twice over, still sending keep-alives.
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let past = idle_from + Duration::from_millis(IDLE_MS) * 2;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut late_keep_alives = 0;
    while late_keep_alives < 3 {
        let n = tokio::time::timeout_at(deadline, sse.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no keep-alive past the idle timeout: {seen:?}"))
            .unwrap();
        assert!(n > 0, "the SSE stream was closed: {seen:?}");
        let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
        if Instant::now() > past {
            late_keep_alives += chunk.matches(":\n\n").count();
        }
        seen.push_str(&chunk);
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen:?}");

    // The slow call was never idle: it is answered.
    let a = slow.await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body["result"].is_object(), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_global_or_per_ip_cap_are_closed_at_once() {
    let (env, _key) = one_endpoint();
    let gw = env
        .serve_with(&[
            ("METAMCP_MAX_CONNECTIONS", "6"),
            ("METAMCP_MAX_CONNECTIONS_PER_IP", "4"),
        ])
        .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect(&gw).await;
        assert!(round_trip(&mut s, HEALTH).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // A fifth from 127.0.0.1 is closed unanswered, at once (not after a timeout).
    const REFUSED: usize = 20;
    for i in 0..REFUSED {
        let mut s = connect(&gw).await;
        let _ = s.write_all(HEALTH.as_bytes()).await;
        let got = read_until_closed(&mut s, Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("connection {i} over the per-IP cap still open"));
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    }
    // Another client IP gets in under its own cap …
    for _ in 0..2 {
        let mut s = connect_from(gw.addr, Some("127.0.0.2")).await;
        assert!(round_trip(&mut s, HEALTH).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // … until the global cap (6) is reached.
    let mut s = connect_from(gw.addr, Some("127.0.0.3")).await;
    let _ = s.write_all(HEALTH.as_bytes()).await;
    let got = read_until_closed(&mut s, Duration::from_secs(3))
        .await
        .expect("a connection over the global cap is still open");
    assert!(got.is_empty());
    // Connections already open are untouched.
    for s in &mut held {
        assert!(round_trip(s, HEALTH).await.starts_with("HTTP/1.1 200"));
    }
    // Refusals are logged at most once per few seconds, not once per connection.
    let lines = gw.log().matches("connection refused at the cap").count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} log lines for {} refusals",
        REFUSED + 1
    );
    // A closed connection frees its place.
    drop(held.remove(0));
    let back = eventually(Duration::from_secs(5), || async {
        let mut s = connect(&gw).await;
        s.write_all(HEALTH.as_bytes()).await.ok()?;
        let mut buf = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf))
            .await
            .ok()?
            .ok()?;
        (&buf == b"HTTP/1.1 200").then_some(())
    })
    .await;
    assert!(back.is_some(), "the freed place was not given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_and_the_gateway_keeps_serving() {
    let (env, key) = one_endpoint();
    let admin = env.admin_key("ops");
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200);

    // Announced too large (the default limit is 4 MiB): refused before a byte of it is read.
    for (path, auth) in [("/metamcp/ep/mcp", &key), ("/api/v1/servers", &admin)] {
        let mut s = connect(&gw).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {auth}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             Content-Length: {}\r\n\r\n",
            4 * 1024 * 1024 + 1
        );
        s.write_all(head.as_bytes()).await.unwrap();
        refusal(&mut s, 413, "payload_too_large").await;
    }
    // A large body within the limit is relayed.
    let message = "x".repeat(1024 * 1024);
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": message}}),
        )
        .await;
    assert_eq!(first_text(&a.body["result"]).len(), message.len());

    // A chunked body found too large while reading (a smaller limit here).
    gw.stop().await;
    let gw = env.serve_with(&[("METAMCP_MAX_BODY_BYTES", "1024")]).await;
    let mut s = connect(&gw).await;
    let body = format!("{{\"pad\":\"{}\"}}", "y".repeat(2048));
    let req = format!(
        "POST /metamcp/ep/mcp HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    refusal(&mut s, 413, "payload_too_large").await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200);
    assert_eq!(c.request("ping", json!({})).await.status, 200);
    gw.stop().await;

    // A body limit above what upstream messages may carry is refused at start.
    let err = serve_refused(&env, &[("METAMCP_MAX_BODY_BYTES", "33554432")]).await;
    assert!(
        err.contains("METAMCP_MAX_BODY_BYTES")
            && err.contains("METAMCP_MAX_UPSTREAM_MESSAGE_BYTES"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_matches_origins_exactly() {
    let (env, key) = one_endpoint();
    let admin = env.admin_key("ops");
    let gw = env
        .serve_with(&[
            ("APP_URL", "https://mcp.example.com"),
            ("METAMCP_ALLOWED_ORIGINS", "http://localhost:6274"),
        ])
        .await;
    let http = reqwest::Client::new();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}});
    let post = |origin: &str| {
        http.post(gw.mcp_url("ep"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("origin", origin)
            .body(init.to_string())
            .send()
    };
    let preflight = |path: &str, origin: &str| {
        http.request(reqwest::Method::OPTIONS, format!("{}{path}", gw.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let port = gw.addr.port();
    let allowed = [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        "https://mcp.example.com".to_owned(),
        "http://localhost:6274".to_owned(),
    ];
    for origin in &allowed {
        let r = post(origin).await.unwrap();
        assert_eq!(r.status(), 200, "{origin}");
        assert_eq!(r.headers()["access-control-allow-origin"], origin.as_str());
        let p = preflight("/api/v1/keys", origin).await.unwrap();
        assert_eq!(p.status(), 204, "{origin}");
        assert_eq!(p.headers()["access-control-allow-origin"], origin.as_str());
        assert!(p.headers().contains_key("access-control-allow-methods"));
    }
    // Same host, another port (or scheme): another origin, refused.
    for origin in [
        "http://localhost:6666",
        "http://127.0.0.1:6274",
        "http://mcp.example.com",
        "https://evil.example.com",
    ] {
        let r = post(origin).await.unwrap();
        assert_eq!(r.status(), 403, "{origin}");
        assert!(
            !r.headers().contains_key("access-control-allow-origin"),
            "{origin}"
        );
        let p = preflight("/api/v1/keys", origin).await.unwrap();
        assert_ne!(p.status(), 204, "{origin}");
        assert!(
            !p.headers().contains_key("access-control-allow-origin"),
            "{origin}"
        );
        assert!(
            !p.headers().contains_key("access-control-allow-methods"),
            "{origin}"
        );
        // And the admin API does nothing for it.
        let r = http
            .post(format!("{}/api/v1/keys", gw.base))
            .bearer_auth(&admin)
            .header("origin", origin)
            .json(&json!({"name": "from-a-page"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{origin}");
    }
    assert!(!env.cli_ok(&["key", "list"]).contains("from-a-page"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_or_origin_header_is_refused_before_anything_runs() {
    let (env, _key) = one_endpoint();
    let admin = env.admin_key("ops");
    let gw = env.serve().await;
    let own = format!("http://127.0.0.1:{}", gw.addr.port());
    let body = json!({"name": "twice"}).to_string();
    for (extra, what) in [
        ("Host: localhost\r\nHost: localhost\r\n".to_owned(), "Host"),
        (
            "Host: localhost\r\nHost: evil.example.com\r\n".to_owned(),
            "Host",
        ),
        (
            format!("Host: localhost\r\nOrigin: {own}\r\nOrigin: {own}\r\n"),
            "Origin",
        ),
        (
            format!("Host: localhost\r\nOrigin: {own}\r\nOrigin: https://evil.example.com\r\n"),
            "Origin",
        ),
    ] {
        let mut s = connect(&gw).await;
        let req = format!(
            "POST /api/v1/keys HTTP/1.1\r\n{extra}Authorization: Bearer {admin}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let text = round_trip(&mut s, &req).await;
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(text.contains("\"error\":\"duplicate_header\""), "{text}");
        assert!(
            text.contains(&format!("More than one {what} header")),
            "{text}"
        );
    }
    // Nothing ran: no key was created.
    assert!(!env.cli_ok(&["key", "list"]).contains("twice"));
    // One of each is fine.
    let mut s = connect(&gw).await;
    let req = format!(
        "POST /api/v1/keys HTTP/1.1\r\nHost: localhost\r\nOrigin: {own}\r\n\
         Authorization: Bearer {admin}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert!(round_trip(&mut s, &req).await.starts_with("HTTP/1.1 201"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_health_shows_pids_and_stderr_to_admin_keys_only() {
    let env = Env::new();
    let failing = "echo 'flaky: secret-looking failure' >&2; exit 3";
    env.import(json!({
        "alpha": fixture_stdio("alpha", &[]),
        "flaky": {"command": "/bin/sh", "args": ["-c", failing]},
    }));
    env.cli_ok(&[
        "namespace",
        "create",
        "ns",
        "--server",
        "alpha",
        "--server",
        "flaky",
    ]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    env.cli_ok(&[
        "endpoint",
        "create",
        "open",
        "--namespace",
        "ns",
        "--no-auth",
    ]);
    let key = env.key("k");
    let admin = env.admin_key("ops");
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;
    for tool in ["alpha__echo", "flaky__echo"] {
        c.request(
            "tools/call",
            json!({"name": tool, "arguments": {"message": "x"}}),
        )
        .await;
    }
    let upstream = |v: &Value, server: &str| {
        v["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["server"] == server)
            .cloned()
            .unwrap()
    };
    // The operator sees why flaky fails and which process alpha is.
    let detailed = eventually(Duration::from_secs(10), || {
        let gw = &gw;
        let admin = &admin;
        async move {
            let v = gw.session_health("ep", Some(admin)).await;
            let flaky = upstream(&v, "flaky");
            flaky["stderr_tail"]
                .to_string()
                .contains("secret-looking failure")
                .then_some(v)
        }
    })
    .await
    .expect("the admin view never showed flaky's stderr");
    assert!(
        upstream(&detailed, "alpha")["pid"].as_u64().is_some(),
        "{detailed}"
    );
    assert!(
        upstream(&detailed, "flaky")["last_error"].is_string(),
        "{detailed}"
    );
    let open_admin = gw.session_health("open", Some(&admin)).await;
    assert!(
        upstream(&open_admin, "alpha")["pid"].is_u64(),
        "{open_admin}"
    );

    // An endpoint key, or anyone on a --no-auth endpoint, gets counts and states only.
    for v in [
        gw.session_health("ep", Some(&key)).await,
        gw.session_health("open", None).await,
    ] {
        assert!(v["sessions"].is_u64(), "{v}");
        for u in v["upstreams"].as_array().unwrap() {
            assert!(u["state"].is_string(), "{u}");
            assert!(u["failures"].is_u64(), "{u}");
            for hidden in ["pid", "last_error", "stderr_tail"] {
                assert!(u.get(hidden).is_none(), "{hidden} shown: {u}");
            }
        }
        assert!(
            upstream(&v, "flaky")["failures"].as_u64().unwrap() > 0,
            "{v}"
        );
        assert!(!v.to_string().contains("secret-looking"), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_moves_to_its_own_listener_or_switches_off() {
    let (env, key) = one_endpoint();
    let admin = env.admin_key("ops");
    let http = reqwest::Client::new();
    let status = |url: String| {
        let http = http.clone();
        let admin = admin.clone();
        async move {
            http.get(url)
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    let gw = env
        .serve_with(&[
            ("METAMCP_ADMIN_BIND", "127.0.0.1:0"),
            ("METAMCP_MAX_CONNECTIONS_PER_IP", "3"),
        ])
        .await;
    let admin_base = gw.admin_base().expect("the admin listener's address");
    assert_ne!(admin_base, gw.base);
    for path in ["/api/v1/servers", "/api/v1/openapi.json"] {
        assert_eq!(
            status(format!("{}{path}", gw.base)).await,
            404,
            "public {path}"
        );
        assert_eq!(
            status(format!("{admin_base}{path}")).await,
            200,
            "admin {path}"
        );
    }
    // Only /api/v1 moves: the admin listener serves nothing else.
    assert_eq!(status(format!("{admin_base}/health")).await, 404);
    assert_eq!(status(format!("{admin_base}/metamcp/ep/mcp")).await, 404);
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200);
    // The admin listener has the same Host guard and connection bounds.
    let admin_addr: std::net::SocketAddr =
        admin_base.trim_start_matches("http://").parse().unwrap();
    let mut s = connect_from(admin_addr, None).await;
    let text = round_trip(
        &mut s,
        "GET /api/v1/openapi.json HTTP/1.1\r\nHost: evil.example.com\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from(admin_addr, Some("127.0.0.6")).await;
        let text = round_trip(
            &mut s,
            "GET /api/v1/openapi.json HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        held.push(s);
    }
    let mut over = connect_from(admin_addr, Some("127.0.0.6")).await;
    let _ = over
        .write_all(b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let got = read_until_closed(&mut over, Duration::from_secs(3))
        .await
        .expect("a fourth connection from one IP to the admin listener is still open");
    assert!(got.is_empty());
    drop(held);
    gw.stop().await;

    let gw = env.serve_with(&[("METAMCP_ADMIN_API", "off")]).await;
    for path in ["/api/v1/servers", "/api/v1/openapi.json", "/api/v1/keys"] {
        assert_eq!(status(format!("{}{path}", gw.base)).await, 404, "{path}");
    }
    assert!(gw.admin_base().is_none(), "{:?}", gw.banner);
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    assert_eq!(c.initialize().await.status, 200);
    gw.stop().await;

    let err = serve_refused(
        &env,
        &[
            ("METAMCP_ADMIN_API", "off"),
            ("METAMCP_ADMIN_BIND", "127.0.0.1:0"),
        ],
    )
    .await;
    assert!(err.contains("METAMCP_ADMIN_BIND"), "{err}");
}
