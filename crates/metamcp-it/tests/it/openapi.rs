//! The REST / OpenAPI face (`/metamcp/EP/api`): the document (checked by a real OpenAPI 3.1
//! validator), REST calls and their statuses, auth, and the HTML page; against the real
//! gateway and the real fixture (with its conformance tools, one of which uses `$defs`).

use std::process::Command;

use metamcp_it::{Env, RawClient, fixture_stdio};
use serde_json::{Value, json};

const APP_URL: &str = "http://gw.example.test:8080/";

async fn setup() -> (Env, metamcp_it::Gateway, String) {
    let env = Env::new();
    env.import(json!({ "alpha": fixture_stdio("alpha", &["--conformance"]) }));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns"]);
    env.cli_ok(&[
        "endpoint",
        "create",
        "open",
        "--namespace",
        "ns",
        "--no-auth",
    ]);
    let key = env.key("k1");
    let gw = env.serve_with(&[("APP_URL", APP_URL)]).await;
    (env, gw, key)
}

fn api(gw: &metamcp_it::Gateway, ep: &str) -> String {
    format!("{}/metamcp/{ep}/api", gw.base)
}

/// A REST answer: status, content type and body (JSON when it parses, else a string).
async fn send(req: reqwest::RequestBuilder) -> (u16, String, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, ct, body)
}

async fn call(gw: &metamcp_it::Gateway, key: &str, tool: &str, body: &str) -> (u16, Value) {
    let (s, ct, b) = send(
        reqwest::Client::new()
            .post(format!("{}/{tool}", api(gw, "ep")))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await;
    assert!(ct.starts_with("application/json"), "{tool}: {ct} {b}");
    (s, b)
}

/// Runs `openapi-spec-validator` (Python, pinned in `scripts/test`) on `doc`: `Ok` when valid,
/// `Err(report)` when not. Without the validator the check is skipped, except in CI.
fn openapi_validator(doc: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, doc).unwrap();
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output();
    let missing = match &out {
        Err(_) => true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).contains("No module named"),
    };
    if missing {
        assert!(
            std::env::var_os("CI").is_none(),
            "openapi-spec-validator is not installed in CI (scripts/test installs it)"
        );
        eprintln!("skipping the OpenAPI validation: python3 -m openapi_spec_validator unavailable");
        return Ok(());
    }
    let o = out.unwrap();
    if o.status.success() {
        Ok(())
    } else {
        let mut report = String::from_utf8_lossy(&o.stdout).into_owned();
        report.push_str(&String::from_utf8_lossy(&o.stderr));
        report.truncate(4000);
        Err(report)
    }
}

/// The tool names of the namespace as the MCP face lists them.
async fn mcp_tool_names(gw: &metamcp_it::Gateway, key: &str) -> Vec<String> {
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(key);
    assert_eq!(c.initialize().await.status, 200);
    let a = c.request("tools/list", json!({})).await;
    a.body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_openapi_with_one_operation_per_tool() {
    let (_env, gw, key) = setup().await;
    let http = reqwest::Client::new();
    let (s, ct, doc) = send(
        http.get(format!("{}/openapi.json", api(&gw, "ep")))
            .bearer_auth(&key),
    )
    .await;
    assert_eq!(s, 200, "{doc}");
    assert!(ct.starts_with("application/json"));
    assert_eq!(doc["openapi"], "3.1.0");

    // One POST per tool of the MCP face, with unique sanitized operation ids.
    let names = mcp_tool_names(&gw, &key).await;
    assert!(names.contains(&"alpha__echo".to_owned()), "{names:?}");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), names.len(), "{:?}", paths.keys());
    let mut ids = std::collections::HashSet::new();
    for name in &names {
        let op = &paths[&format!("/{name}")]["post"];
        let id = op["operationId"].as_str().unwrap();
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert!(ids.insert(id.to_owned()), "duplicate {id}");
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            format!("#/components/schemas/{id}_input")
        );
        for code in ["200", "401", "404", "422", "500", "502"] {
            assert!(op["responses"][code].is_object(), "{name} lacks {code}");
        }
    }
    let echo = &paths["/alpha__echo"]["post"];
    assert_eq!(echo["description"], "Echo the message back as text");
    assert_eq!(
        doc["components"]["schemas"]["alpha__echo_input"]["required"],
        json!(["message"])
    );
    // `$defs` refs point into the tool's component.
    let s = &doc["components"]["schemas"]["alpha__json_schema_2020_12_tool_input"];
    assert_eq!(
        s["properties"]["address"]["$ref"],
        "#/components/schemas/alpha__json_schema_2020_12_tool_input/$defs/address"
    );
    assert!(s["$defs"]["address"].is_object());

    // Servers and security.
    assert_eq!(
        doc["servers"],
        json!([{ "url": "http://gw.example.test:8080/metamcp/ep/api" }])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"],
        json!({ "type": "http", "scheme": "bearer", "description": "An API key (sk_mt_…) as a bearer token" })
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["apiKeyAuth"],
        json!({ "type": "apiKey", "in": "header", "name": "X-API-Key" })
    );
    assert_eq!(
        doc["security"],
        json!([{ "bearerAuth": [] }, { "apiKeyAuth": [] }])
    );

    // A real OpenAPI 3.1 validator accepts it.
    let text = doc.to_string();
    if let Err(report) = openapi_validator(&text) {
        panic!("openapi.json is not valid OpenAPI 3.1:\n{report}");
    }
    // … and the check has teeth: a broken document is refused.
    let mut broken = doc.clone();
    broken["paths"]["/alpha__echo"]["post"]["responses"] = json!({});
    broken.as_object_mut().unwrap().remove("info");
    let skipped = std::env::var_os("CI").is_none() && openapi_validator("{}").is_ok();
    // A `$ref` left pointing at the tool schema's own root would not resolve either.
    let mut unrewritten = doc.clone();
    unrewritten["components"]["schemas"]["alpha__json_schema_2020_12_tool_input"]["properties"]["address"]
        ["$ref"] = json!("#/$defs/address");
    if !skipped {
        assert!(
            openapi_validator(&broken.to_string()).is_err(),
            "the validator accepted a broken document"
        );
        assert!(
            openapi_validator(&unrewritten.to_string()).is_err(),
            "the validator accepted a dangling $ref"
        );
    }

    // An open endpoint: no security at all, still valid.
    let (s, _, open) = send(http.get(format!("{}/openapi.json", api(&gw, "open")))).await;
    assert_eq!(s, 200, "{open}");
    assert!(open.get("security").is_none(), "{open}");
    assert!(open["components"].get("securitySchemes").is_none());
    assert!(open["paths"]["/alpha__echo"]["post"]["responses"]["401"].is_null());
    if let Err(report) = openapi_validator(&open.to_string()) {
        panic!("open endpoint's openapi.json is not valid OpenAPI 3.1:\n{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_calls_answer_with_the_right_status() {
    let (_env, gw, key) = setup().await;

    let (s, b) = call(&gw, &key, "alpha__echo", r#"{"message":"hello"}"#).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["result"], "hello");
    assert_eq!(b["content"], json!([{ "type": "text", "text": "hello" }]));

    // Structured content is the answer as is.
    let (s, b) = call(&gw, &key, "alpha__add", r#"{"a":2,"b":3}"#).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, json!({ "sum": 5 }));

    // An empty body is {}.
    let (s, b) = call(&gw, &key, "alpha__test_simple_text", "").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["result"], "This is a simple text response for testing.");

    // Schema violations: 422 with every failing path, through `$ref`s too.
    let (s, b) = call(&gw, &key, "alpha__echo", r#"{"message":5}"#).await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"], "validation_error");
    assert_eq!(b["errors"][0]["path"], "/message");
    assert!(b["errors"][0]["message"].is_string());
    let (s, b) = call(
        &gw,
        &key,
        "alpha__json_schema_2020_12_tool",
        r#"{"name":1,"address":{"city":5}}"#,
    )
    .await;
    assert_eq!(s, 422, "{b}");
    let mut paths: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/address/city", "/name"], "{b}");
    let (s, b) = call(&gw, &key, "alpha__echo", "{}").await;
    assert_eq!(s, 422, "{b}");
    assert!(
        b["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("message")
    );

    // Not a JSON object: 400.
    for body in ["[1]", "{", "\"x\""] {
        let (s, b) = call(&gw, &key, "alpha__echo", body).await;
        assert_eq!(s, 400, "{body}: {b}");
    }

    // Unknown tool: 404.
    let (s, b) = call(&gw, &key, "alpha__nope", "{}").await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(b["error"], "tool_not_found");

    // The tool failed: 500 with its message and whole result.
    let (s, b) = call(&gw, &key, "alpha__fail", r#"{"message":"it broke"}"#).await;
    assert_eq!(s, 500, "{b}");
    assert_eq!(b["error"], "tool_error");
    assert_eq!(b["message"], "it broke");
    assert_eq!(b["result"]["isError"], true);

    // The server died mid-call: a JSON-RPC error, 502.
    let (s, b) = call(&gw, &key, "alpha__crash", "{}").await;
    assert_eq!(s, 502, "{b}");
    assert_eq!(b["error"], "upstream_error");
    assert!(b["message"].as_str().unwrap().contains("alpha"), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_face_has_the_mcp_faces_auth() {
    let (_env, gw, key) = setup().await;
    let http = reqwest::Client::new();
    let url = format!("{}/alpha__echo", api(&gw, "ep"));
    let body = r#"{"message":"k"}"#;
    let post = || {
        http.post(&url)
            .header("content-type", "application/json")
            .body(body)
    };
    for req in [
        post(),
        post().bearer_auth("sk_mt_wrong"),
        post().header("x-api-key", "nope"),
        http.post(format!("{url}?api_key={key}")).body(body),
    ] {
        let (s, _, b) = send(req).await;
        assert_eq!(s, 401, "{b}");
        assert_eq!(b["error"], "unauthorized");
    }
    for req in [post().bearer_auth(&key), post().header("x-api-key", &key)] {
        let (s, _, b) = send(req).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["result"], "k");
    }
    // The document and the page need the key too.
    for path in ["/openapi.json", ""] {
        let (s, _, b) = send(http.get(format!("{}{path}", api(&gw, "ep")))).await;
        assert_eq!(s, 401, "{path}: {b}");
    }
    // Unknown endpoint: 404; open endpoint: no key needed.
    let (s, _, b) = send(
        http.post(format!("{}/alpha__echo", api(&gw, "missing")))
            .bearer_auth(&key)
            .body(body),
    )
    .await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(b["error"], "endpoint_not_found");
    let (s, _, b) = send(
        http.post(format!("{}/alpha__echo", api(&gw, "open")))
            .body(body),
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_page_lists_the_tools_and_loads_nothing_from_outside() {
    let (_env, gw, key) = setup().await;
    let resp = reqwest::Client::new()
        .get(api(&gw, "ep"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/html"), "{ct}");
    let html = resp.text().await.unwrap();
    for name in mcp_tool_names(&gw, &key).await {
        assert!(html.contains(&format!("POST</span>/{name}<")), "{name}");
    }
    assert!(html.contains("href=\"/metamcp/ep/api/openapi.json\""));
    assert!(html.contains("Echo the message back as text"));
    // Schemas are pretty-printed and escaped.
    assert!(html.contains("&quot;required&quot;: ["), "schema not shown");
    // Nothing is loaded from anywhere: no scripts, stylesheets, images or fonts.
    let lower = html.to_ascii_lowercase();
    for needle in ["<script", "<link", "src=", "@import", "url(", "cdn"] {
        assert!(!lower.contains(needle), "the page contains {needle:?}");
    }
    // The only absolute URLs are the data of the tools' schemas ($schema ids).
    for scheme in ["http://", "https://"] {
        for (i, _) in lower.match_indices(scheme) {
            let at: String = lower[i..].chars().take(60).collect();
            assert!(
                at.starts_with("https://json-schema.org/"),
                "unexpected URL at {at}"
            );
        }
    }
}
