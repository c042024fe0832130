//! The stateless protocol era (MCP 2026-07-28) on the same endpoint URL as the session era:
//! real rmcp clients in `ClientLifecycleMode::Discover` beside session-era rmcp clients,
//! plus raw JSON-RPC for the exact wire shapes (discover, refusals, MRTR, listen).

// Sampling is deprecated by SEP-2577, yet still an MRTR input request in 2026-07-28.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use metamcp_it::{Env, RawClient, eventually, fixture_stdio, mcp_client};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequestParams, ElicitResult, ElicitationAction,
    GetPromptRequestParams, Implementation, ProgressNotificationParam, ProtocolVersion,
    ReadResourceRequestParams, ServerNotification, SubscriptionFilter,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService, SubscriptionEnd};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, ErrorData, RoleClient};
use serde_json::{Value, json};

use crate::{first_text, two_server_gateway};

/// A 2026-07-28 client: answers elicitation and sampling, records progress.
#[derive(Clone, Default)]
struct Modern {
    progress: Arc<Mutex<Vec<f64>>>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Modern {
    fn get_info(&self) -> ClientConfig {
        let caps: ClientCapabilities =
            serde_json::from_value(json!({"elicitation": {}, "sampling": {}})).unwrap();
        let mut info = ClientConfig::new(caps, Implementation::new("metamcp-it-modern", "0.1.0"));
        info.protocol_version = ProtocolVersion::V_2026_07_28;
        info
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params.progress);
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.asked
            .lock()
            .unwrap()
            .push(serde_json::to_value(&request).unwrap().to_string());
        Ok(ElicitResult::new(ElicitationAction::Accept)
            .with_content(json!({"username": "ada-2026", "email": "ada@example.org"})))
    }

    async fn create_message(
        &self,
        _request: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        Ok(serde_json::from_value(json!({
            "role": "assistant",
            "content": {"type": "text", "text": "sampled-2026"},
            "model": "m",
            "stopReason": "endTurn"
        }))
        .unwrap())
    }
}

/// An rmcp client using the 2026-07-28 lifecycle (`server/discover`, no session).
async fn modern_client(
    url: &str,
    key: Option<&str>,
    handler: Modern,
) -> anyhow::Result<RunningService<RoleClient, Modern>> {
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(k) = key {
        cfg = cfg.auth_header(k.to_owned());
    }
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), cfg);
    Ok(handler
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await?)
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// The per-request protocol context of a 2026-07-28 request.
fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}, "sampling": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}
    })
}

fn raw_modern(url: &str, key: &str) -> RawClient {
    RawClient::new(url)
        .bearer(key)
        .header("mcp-protocol-version", "2026-07-28")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_eras_list_call_prompt_and_read_on_one_endpoint() {
    let (_env, gw, key) = two_server_gateway().await;
    let modern = modern_client(&gw.mcp_url("ep"), Some(&key), Modern::default())
        .await
        .expect("discover");
    let legacy = mcp_client(&gw.mcp_url("ep"), Some(&key))
        .await
        .expect("initialize");

    let info = modern.peer_info().expect("discover result");
    assert_eq!(info.protocol_version, ProtocolVersion::V_2026_07_28);
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("metamcp")
    );
    assert!(info.capabilities.tools.is_some() && info.capabilities.resources.is_some());
    assert!(info.instructions.as_deref().unwrap_or("").contains("ns"));

    for client_tools in [
        modern.list_all_tools().await.expect("modern tools"),
        legacy.list_all_tools().await.expect("legacy tools"),
    ] {
        let names: Vec<String> = client_tools.iter().map(|t| t.name.to_string()).collect();
        assert!(
            names.contains(&"alpha__echo".to_owned()) && names.contains(&"beta__slow".to_owned()),
            "{names:?}"
        );
    }

    let r = modern
        .call_tool(
            CallToolRequestParams::new("beta__echo")
                .with_arguments(args(json!({"message": "new era"}))),
        )
        .await
        .expect("modern call");
    assert_eq!(first_text(&serde_json::to_value(&r).unwrap()), "new era");
    let r = legacy
        .call_tool(
            CallToolRequestParams::new("alpha__echo")
                .with_arguments(args(json!({"message": "old era"}))),
        )
        .await
        .expect("legacy call");
    assert_eq!(first_text(&serde_json::to_value(&r).unwrap()), "old era");
    let r = modern
        .call_tool(
            CallToolRequestParams::new("alpha__add").with_arguments(args(json!({"a": 2, "b": 5}))),
        )
        .await
        .expect("add");
    assert_eq!(
        serde_json::to_value(&r).unwrap()["structuredContent"]["sum"],
        7
    );

    let prompts = modern.list_all_prompts().await.expect("prompts");
    assert!(prompts.iter().any(|p| p.name == "alpha__greeting"));
    let mut gp = GetPromptRequestParams::new("alpha__greeting");
    gp.arguments = Some(args(json!({"name": "Grace"})));
    let p = serde_json::to_value(modern.get_prompt(gp).await.expect("prompt")).unwrap();
    assert!(p.to_string().contains("Hello, Grace!"), "{p}");

    let resources = modern.list_all_resources().await.expect("resources");
    assert!(resources.iter().any(|r| r.uri == "fixture://static/readme"));
    let read = serde_json::to_value(
        modern
            .read_resource(ReadResourceRequestParams::new("fixture://items/7"))
            .await
            .expect("read"),
    )
    .unwrap();
    assert_eq!(read["contents"][0]["text"], "item 7");
    let templates = modern
        .list_all_resource_templates()
        .await
        .expect("templates");
    assert!(
        templates
            .iter()
            .any(|t| t.uri_template == "fixture://items/{id}")
    );

    // Unknown names fail as clearly as in the session era.
    let err = modern
        .call_tool(CallToolRequestParams::new("nobody__echo"))
        .await
        .expect_err("unknown tool");
    assert!(err.to_string().contains("Unknown tool"), "{err}");

    // The session era still works after all that, on the same endpoint.
    assert!(
        legacy
            .list_all_prompts()
            .await
            .expect("legacy prompts")
            .len()
            >= 4
    );
    modern.cancel().await.ok();
    legacy.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_clients_need_the_endpoint_key() {
    let (_env, gw, key) = two_server_gateway().await;
    let url = gw.mcp_url("ep");
    assert!(modern_client(&url, None, Modern::default()).await.is_err());
    assert!(
        modern_client(&url, Some("sk_mt_wrong"), Modern::default())
            .await
            .is_err()
    );
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta()}});
    let a = RawClient::new(&url)
        .header("mcp-protocol-version", "2026-07-28")
        .post_raw(discover.to_string())
        .await;
    assert_eq!(a.status, 401, "{:?}", a.body);
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "alpha__echo", "arguments": {"message": "x"}, "_meta": meta()}});
    let a = raw_modern(&url, "sk_mt_wrong")
        .post_raw(call.to_string())
        .await;
    assert_eq!(a.status, 401, "{:?}", a.body);
    let a = raw_modern(&url, &key).post_raw(call.to_string()).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(first_text(&a.body["result"]), "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_shapes_of_discover_results_and_refusals() {
    let (_env, gw, key) = two_server_gateway().await;
    let c = raw_modern(&gw.mcp_url("ep"), &key);
    let a = c.request("server/discover", json!({"_meta": meta()})).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let r = &a.body["result"];
    assert_eq!(r["resultType"], "complete", "{r}");
    assert_eq!(
        r["supportedVersions"],
        json!([
            "2026-07-28",
            "2025-11-25",
            "2025-06-18",
            "2025-03-26",
            "2024-11-05"
        ])
    );
    assert_eq!(r["capabilities"]["tools"]["listChanged"], true, "{r}");
    assert_eq!(r["capabilities"]["resources"]["subscribe"], true, "{r}");
    assert!(r["ttlMs"].as_u64().is_some_and(|t| t > 0), "{r}");
    assert_eq!(r["cacheScope"], "private");
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "metamcp"
    );
    assert!(r["instructions"].as_str().is_some());

    // Results carry resultType and, where cacheable, cache hints; upstreams see none of
    // the protocol context (the fixture would refuse a 2026-07-28 _meta on its 2025 session).
    let a = c.request("tools/list", json!({"_meta": meta()})).await;
    let r = &a.body["result"];
    assert_eq!(r["resultType"], "complete", "{r}");
    assert_eq!(r["ttlMs"], 0);
    assert_eq!(r["cacheScope"], "private");
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__echo", "arguments": {"message": "m"}, "_meta": meta()}),
        )
        .await;
    assert_eq!(a.body["result"]["resultType"], "complete", "{:?}", a.body);
    assert!(a.body["result"].get("ttlMs").is_none(), "{:?}", a.body);
    let a = c
        .request(
            "resources/read",
            json!({"uri": "fixture://nowhere", "_meta": meta()}),
        )
        .await;
    assert_eq!(a.body["error"]["code"], -32602, "{:?}", a.body);

    // Session-era methods are gone in this era; so is anything unknown.
    for method in ["ping", "resources/subscribe", "no/such"] {
        let a = c
            .request(
                method,
                json!({"uri": "fixture://static/readme", "_meta": meta()}),
            )
            .await;
        assert_eq!(a.status, 404, "{method}: {:?}", a.body);
        assert_eq!(a.body["error"]["code"], -32601, "{method}: {:?}", a.body);
    }
    // Incomplete protocol context.
    let a = c
        .request(
            "tools/list",
            json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}),
        )
        .await;
    assert_eq!(
        (a.status, a.body["error"]["code"].clone()),
        (400, json!(-32602)),
        "{:?}",
        a.body
    );
    // A version we do not speak: the supported ones are named.
    let mut m = meta();
    m["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let a = RawClient::new(&gw.mcp_url("ep"))
        .bearer(&key)
        .header("mcp-protocol-version", "2099-01-01")
        .request("server/discover", json!({"_meta": m}))
        .await;
    assert_eq!(a.status, 400, "{:?}", a.body);
    assert_eq!(a.body["error"]["code"], -32022);
    assert_eq!(a.body["error"]["data"]["supported"][0], "2026-07-28");
    // Header and body disagree.
    let a = RawClient::new(&gw.mcp_url("ep"))
        .bearer(&key)
        .header("mcp-protocol-version", "2025-06-18")
        .request("tools/list", json!({"_meta": meta()}))
        .await;
    assert_eq!(
        (a.status, a.body["error"]["code"].clone()),
        (400, json!(-32020)),
        "{:?}",
        a.body
    );
    let a = c
        .clone()
        .header("mcp-method", "tools/call")
        .request("tools/list", json!({"_meta": meta()}))
        .await;
    assert_eq!(a.body["error"]["code"], -32020, "{:?}", a.body);
    // No sessions: notifications are accepted and ignored, GET and DELETE are not allowed.
    let a = c
        .post_raw(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
        .await;
    assert_eq!(a.status, 202);
    let get = reqwest::Client::new()
        .get(gw.mcp_url("ep"))
        .bearer_auth(&key)
        .header("mcp-protocol-version", "2026-07-28")
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 405);
    // The session era is untouched: a 2026-07-28 version on initialize is negotiated down.
    let mut legacy = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    let init = legacy
        .request(
            "initialize",
            json!({"protocolVersion": "2026-07-28", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}),
        )
        .await;
    assert_eq!(
        init.body["result"]["protocolVersion"], "2025-11-25",
        "{:?}",
        init.body
    );
    legacy.initialize().await;
    let a = legacy.request("ping", json!({})).await;
    assert_eq!(a.body["result"], json!({}), "{:?}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_a_modern_call_before_its_result() {
    let (_env, gw, key) = two_server_gateway().await;
    let handler = Modern::default();
    let progress = handler.progress.clone();
    let client = modern_client(&gw.mcp_url("ep"), Some(&key), handler)
        .await
        .expect("discover");
    let r = client
        .call_tool(
            CallToolRequestParams::new("alpha__slow")
                .with_arguments(args(json!({"steps": 3, "delay_ms": 60}))),
        )
        .await
        .expect("slow");
    assert_eq!(
        first_text(&serde_json::to_value(&r).unwrap()),
        "done after 3 steps"
    );
    let seen = eventually(Duration::from_secs(3), || {
        let p = progress.lock().unwrap().clone();
        async move { (p.len() == 3).then_some(p) }
    })
    .await
    .unwrap_or_else(|| panic!("progress: {:?}", progress.lock().unwrap()));
    assert_eq!(seen, vec![1.0, 2.0, 3.0]);

    // On the wire: an SSE answer, progress (with the client's own token) before the result.
    let c = raw_modern(&gw.mcp_url("ep"), &key);
    let mut m = meta();
    m["progressToken"] = json!("tok-9");
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "beta__slow", "arguments": {"steps": 2, "delay_ms": 30}, "_meta": m}});
    let (status, ct, events) = c.post_events(body.to_string()).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0]["params"]["progressToken"], "tok-9");
    assert_eq!(events[2]["id"], 5);
    assert_eq!(events[2]["result"]["resultType"], "complete");
    client.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_delivers_list_changed_from_upstreams_and_configuration() {
    let (env, gw, key) = two_server_gateway().await;
    let modern = modern_client(&gw.mcp_url("ep"), Some(&key), Modern::default())
        .await
        .expect("discover");
    let legacy = mcp_client(&gw.mcp_url("ep"), Some(&key))
        .await
        .expect("initialize");
    let mut sub = modern
        .listen(
            SubscriptionFilter::builder()
                .tools_list_changed()
                .prompts_list_changed()
                .build(),
        )
        .await
        .expect("listen");
    assert_eq!(sub.acknowledged().tools_list_changed, Some(true));
    assert_eq!(sub.acknowledged().resources_list_changed, None);

    // An upstream's list_changed, caused by the other era's client.
    legacy
        .call_tool(CallToolRequestParams::new("alpha__grow"))
        .await
        .expect("grow");
    let n = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("no list_changed within 10 s")
        .expect("subscription error")
        .expect("subscription ended");
    assert!(
        matches!(n, ServerNotification::ToolListChangedNotification(_)),
        "{n:?}"
    );
    let tools = modern.list_all_tools().await.expect("tools");
    assert!(tools.iter().any(|t| t.name == "alpha__grown_0"));

    // A configuration change: tools and prompts (resources were not asked for).
    env.cli_ok(&["namespace", "remove-server", "ns", "--server", "beta"]);
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap_or_else(|_| panic!("only {kinds:?} within 10 s"))
            .expect("subscription error")
            .expect("subscription ended");
        kinds.push(match n {
            ServerNotification::ToolListChangedNotification(_) => "tools",
            ServerNotification::PromptListChangedNotification(_) => "prompts",
            other => panic!("unexpected {other:?}"),
        });
    }
    kinds.sort_unstable();
    assert_eq!(kinds, ["prompts", "tools"]);

    // The listener is a registration on the endpoint only while its stream is open.
    let health = format!("{}/health/sessions", gw.mcp_url("ep"));
    let count = || async {
        let v: Value = reqwest::Client::new()
            .get(&health)
            .bearer_auth(&key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["sessions"].as_u64()
    };
    assert_eq!(
        count().await,
        Some(2),
        "the legacy session and the listener"
    );
    sub.cancel().await.expect("cancel");
    drop(sub);
    assert!(
        eventually(Duration::from_secs(5), || async {
            (count().await == Some(1)).then_some(())
        })
        .await
        .is_some(),
        "the listener outlived its stream"
    );
    modern.cancel().await.ok();
    legacy.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_acknowledges_resource_subscriptions_upstreams_accept() {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &["--conformance"]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;
    let modern = modern_client(&gw.mcp_url("ep"), None, Modern::default())
        .await
        .expect("discover");
    let sub = modern
        .listen(
            SubscriptionFilter::builder()
                .resources_list_changed()
                .resource_subscription("test://watched-resource")
                .resource_subscription("nowhere://nothing")
                .build(),
        )
        .await
        .expect("listen");
    assert_eq!(
        sub.acknowledged().resource_subscriptions,
        Some(vec!["test://watched-resource".to_owned()])
    );
    assert_eq!(sub.acknowledged().resources_list_changed, Some(true));
    drop(sub);
    modern.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elicitation_and_sampling_become_input_required_rounds() {
    let env = Env::new();
    env.import(json!({
        "alpha": fixture_stdio("alpha", &["--conformance"]),
        "beta": fixture_stdio("beta", &["--conformance"]),
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
    let key = env.key("k1");
    let other_key = env.key("k2");
    let gw = env.serve().await;

    // A real rmcp client drives the rounds itself (RunningService::call_tool).
    let handler = Modern::default();
    let asked = handler.asked.clone();
    let modern = modern_client(&gw.mcp_url("ep"), Some(&key), handler)
        .await
        .expect("discover");
    let r = modern
        .call_tool(
            CallToolRequestParams::new("beta__test_elicitation")
                .with_arguments(args(json!({"message": "who are you?"}))),
        )
        .await
        .expect("elicitation call");
    let text = first_text(&serde_json::to_value(&r).unwrap());
    assert!(
        text.contains("action=accept") && text.contains("ada-2026"),
        "{text}"
    );
    assert!(
        asked.lock().unwrap()[0].contains("who are you?"),
        "{:?}",
        asked.lock().unwrap()
    );
    let r = modern
        .call_tool(
            CallToolRequestParams::new("alpha__test_sampling")
                .with_arguments(args(json!({"prompt": "hi"}))),
        )
        .await
        .expect("sampling call");
    assert!(first_text(&serde_json::to_value(&r).unwrap()).contains("sampled-2026"));
    // A session-era client on the same endpoint still gets its requests on its stream.
    let mut legacy = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    legacy.initialize().await;
    let a = legacy
        .request(
            "tools/call",
            json!({"name": "alpha__test_sampling", "arguments": {"prompt": "hi"}}),
        )
        .await;
    assert!(a.body.to_string().contains("no open stream"), "{}", a.body);

    // On the wire.
    let c = raw_modern(&gw.mcp_url("ep"), &key);
    let call = json!({"name": "alpha__test_elicitation", "arguments": {"message": "raw?"}, "_meta": meta()});
    let a = c.request("tools/call", call.clone()).await;
    let r = &a.body["result"];
    assert_eq!(r["resultType"], "input_required", "{:?}", a.body);
    let requests = r["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(requests.len(), 1, "{r}");
    let (input_key, request) = requests.iter().next().unwrap();
    assert_eq!(request["method"], "elicitation/create", "{r}");
    assert_eq!(request["params"]["message"], "raw?", "{r}");
    assert!(
        request.get("id").is_none() && request.get("jsonrpc").is_none(),
        "{r}"
    );
    let state = r["requestState"].as_str().expect("requestState").to_owned();
    assert!(state.len() >= 32, "{state}");

    let mut retry = call.clone();
    retry["inputResponses"] = json!({ input_key: {"action": "accept", "content": {"username": "raw-user", "email": "r@x.y"}} });
    retry["requestState"] = json!(state);
    // Another key cannot resume (or end) this call.
    let stranger = raw_modern(&gw.mcp_url("ep"), &other_key)
        .request("tools/call", retry.clone())
        .await;
    assert_eq!(
        stranger.body["error"]["code"], -32602,
        "{:?}",
        stranger.body
    );
    // Nor another tool.
    let mut wrong = retry.clone();
    wrong["name"] = json!("alpha__echo");
    let a = c.request("tools/call", wrong).await;
    assert_eq!(a.body["error"]["code"], -32602, "{:?}", a.body);
    let a = c.request("tools/call", retry.clone()).await;
    assert_eq!(a.body["result"]["resultType"], "complete", "{:?}", a.body);
    assert!(
        first_text(&a.body["result"]).contains("raw-user"),
        "{:?}",
        a.body
    );
    // A state is good for one retry only.
    let a = c.request("tools/call", retry).await;
    assert_eq!(a.body["error"]["code"], -32602, "{:?}", a.body);
    // A client that did not declare elicitation is not asked; the upstream hears why.
    let mut no_caps = meta();
    no_caps["io.modelcontextprotocol/clientCapabilities"] = json!({});
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__test_elicitation", "arguments": {"message": "?"}, "_meta": no_caps}),
        )
        .await;
    assert_eq!(a.body["result"]["resultType"], "complete", "{:?}", a.body);
    assert!(
        first_text(&a.body["result"]).contains("elicitation capability"),
        "{:?}",
        a.body
    );
    modern.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_ends_listen_streams_with_their_final_result() {
    let (_env, gw, key) = two_server_gateway().await;
    let modern = modern_client(&gw.mcp_url("ep"), Some(&key), Modern::default())
        .await
        .expect("discover");
    let mut sub = modern
        .listen(SubscriptionFilter::builder().tools_list_changed().build())
        .await
        .expect("listen");
    let stop = tokio::spawn(gw.stop());
    let next = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("the stop did not end the listen stream");
    assert!(matches!(next, Ok(None)), "{next:?}");
    assert!(
        matches!(sub.end(), Some(SubscriptionEnd::Graceful(_))),
        "{:?}",
        sub.end()
    );
    let status = stop.await.unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_required_rounds_work_with_a_streamable_http_upstream() {
    let fx = metamcp_it::FixtureHttp::start("remote", &["--conformance"])
        .await
        .expect("fixture http");
    let env = Env::new();
    env.import(json!({ "remote": {"type": "streamable_http", "url": fx.url} }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "remote"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;
    let modern = modern_client(&gw.mcp_url("ep"), None, Modern::default())
        .await
        .expect("discover");
    for _ in 0..2 {
        let r = modern
            .call_tool(
                CallToolRequestParams::new("remote__test_elicitation")
                    .with_arguments(args(json!({"message": "over http?"}))),
            )
            .await
            .expect("elicitation call");
        let text = first_text(&serde_json::to_value(&r).unwrap());
        assert!(text.contains("ada-2026"), "{text}");
    }
    modern.cancel().await.ok();
}
