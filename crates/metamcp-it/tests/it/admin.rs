//! The admin API (`/api/v1/…`) against the real gateway: who may use it (admin key, an
//! ordinary key, none), a whole configuration built through it and then used by a real MCP
//! client, tool shaping through it, its error answers, and its OpenAPI document.

use std::time::Duration;

use metamcp_it::{Env, Gateway, RawClient, eventually, fixture_stdio};
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(5);

/// A small client of the admin API.
struct Admin {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
    /// Send the key as `X-API-Key` rather than `Authorization: Bearer`.
    x_api_key: bool,
}

impl Admin {
    fn new(gw: &Gateway, key: Option<&str>) -> Self {
        Admin {
            http: reqwest::Client::new(),
            base: format!("{}/api/v1", gw.base),
            key: key.map(str::to_owned),
            x_api_key: false,
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<String>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            req = if self.x_api_key {
                req.header("x-api-key", k)
            } else {
                req.bearer_auth(k)
            };
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        (status, v)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, Some(body.to_string())).await
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("PATCH", path, Some(body.to_string())).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("PUT", path, Some(body.to_string())).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send("DELETE", path, None).await
    }
}

/// An error answer: `{"error": code, "message": …}` with the given status.
fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], code, "{}", got.1);
    assert!(got.1["message"].as_str().is_some_and(|m| !m.is_empty()));
}

fn tool_names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .map_or_else(Vec::new, |t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admin_keys_may_use_the_admin_api() {
    let env = Env::new();
    let out = env.cli_ok(&["key", "create", "root", "--admin"]);
    assert!(out.contains("admin API key root"), "{out}");
    let admin = out.lines().last().unwrap().trim().to_owned();
    let plain = env.key("plain");
    let listed = env.cli_ok(&["key", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("root\t") && l.ends_with("\tadmin")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("plain\t") && !l.contains("admin")),
        "{listed}"
    );
    let gw = env.serve().await;

    assert_error(
        &Admin::new(&gw, None).get("/servers").await,
        401,
        "unauthorized",
    );
    assert_error(
        &Admin::new(&gw, Some("sk_mt_nope")).get("/servers").await,
        401,
        "unauthorized",
    );
    assert_error(
        &Admin::new(&gw, Some(&plain)).get("/servers").await,
        403,
        "forbidden",
    );
    // Refused before anything is written.
    assert_error(
        &Admin::new(&gw, Some(&plain))
            .post("/keys", json!({"name": "sneaky", "admin": true}))
            .await,
        403,
        "forbidden",
    );
    assert!(!env.cli_ok(&["key", "list"]).contains("sneaky"));

    let (s, v) = Admin::new(&gw, Some(&admin)).get("/servers").await;
    assert_eq!((s, v), (200, json!([])));
    let mut x = Admin::new(&gw, Some(&admin));
    x.x_api_key = true;
    assert_eq!(x.get("/keys").await.0, 200);

    // A foreign Host is refused by the guard before auth.
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/servers", gw.base))
        .header("host", "evil.example.com")
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // An admin key revoked (by the CLI) stops working within a second.
    env.cli_ok(&["key", "revoke", "root"]);
    let gone = eventually(SOON, || async {
        (Admin::new(&gw, Some(&admin)).get("/servers").await.0 == 401).then_some(())
    })
    .await;
    assert!(gone.is_some(), "a revoked admin key still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_configured_through_the_api_serves_mcp() {
    let env = Env::new();
    let out = env.cli_ok(&["key", "create", "root", "--admin"]);
    let admin_key = out.lines().last().unwrap().trim().to_owned();
    let gw = env.serve().await;
    let api = Admin::new(&gw, Some(&admin_key));

    // Import, idempotent by name.
    let doc = json!({"mcpServers": {"alpha": fixture_stdio("alpha", &[]), "beta": fixture_stdio("beta", &[])}});
    let (s, v) = api.post("/servers", doc.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["created"].clone(), v["unchanged"].clone()),
        (json!(2), json!(0))
    );
    let (_, v) = api.post("/servers", doc).await;
    assert_eq!(v["unchanged"], 2, "{v}");
    // The change was made as the admin key that authenticated (and logged as such).
    assert!(
        gw.log()
            .lines()
            .any(|l| l.contains("configuration changed") && l.contains("admin key \"root\"")),
        "{}",
        gw.log()
    );
    let (s, v) = api.get("/servers/alpha").await;
    assert_eq!(
        (s, v["kind"].clone(), v["mode"].clone()),
        (200, json!("stdio"), json!("shared"))
    );
    assert_error(&api.get("/servers/nope").await, 404, "not_found");
    assert_error(
        &api.send("POST", "/servers", Some("{not json".into())).await,
        400,
        "bad_request",
    );
    assert_error(
        &api.post("/servers", json!({"servers": {}})).await,
        422,
        "invalid_request",
    );
    let (s, v) = api
        .patch("/servers/beta", json!({"mode": "per-session", "cap": 4}))
        .await;
    assert_eq!(
        (s, v["mode"].clone(), v["cap"].clone()),
        (200, json!("per-session"), json!(4)),
        "{v}"
    );
    assert_error(
        &api.patch("/servers/beta", json!({"cap": 0})).await,
        422,
        "invalid_request",
    );
    assert_error(
        &api.patch("/servers/beta", json!({"mode": "weird"})).await,
        422,
        "invalid_request",
    );
    assert_eq!(api.post("/servers/beta/reset", json!(null)).await.0, 202);
    assert_eq!(api.get("/servers/beta/logs?lines=5").await.0, 200);
    assert_error(
        &api.get("/servers/beta/logs?lines=x").await,
        422,
        "invalid_request",
    );

    // Namespace with both servers; its errors.
    let (s, v) = api
        .post("/namespaces", json!({"name": "ns", "servers": ["alpha"]}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["namespace"]["prefix"], "always");
    assert_error(
        &api.post("/namespaces", json!({"name": "ns", "servers": ["alpha"]}))
            .await,
        409,
        "conflict",
    );
    assert_error(
        &api.post("/namespaces", json!({"name": "ns2", "servers": ["nope"]}))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.post(
            "/namespaces",
            json!({"name": "ns2", "servers": ["alpha"], "prefix": "sideways"}),
        )
        .await,
        422,
        "invalid_request",
    );
    assert_error(
        &api.post(
            "/namespaces",
            json!({"name": "ns2", "servers": ["alpha"], "colour": "red"}),
        )
        .await,
        422,
        "invalid_request",
    );
    assert_error(
        &api.post("/namespaces", json!({"name": "ns2"})).await,
        422,
        "invalid_request",
    );
    // A refused limit leaves nothing behind.
    assert_error(
        &api.post(
            "/namespaces",
            json!({"name": "ns3", "servers": ["alpha"], "max_name_length": 5}),
        )
        .await,
        422,
        "invalid_request",
    );
    assert_error(&api.get("/namespaces/ns3").await, 404, "not_found");
    let (s, v) = api
        .post(
            "/namespaces",
            json!({"name": "ns3", "servers": ["alpha"], "max_name_length": 40, "new_tools": "disabled"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (
            v["namespace"]["max_name_length"].clone(),
            v["namespace"]["new_tools_enabled"].clone()
        ),
        (json!(40), json!(false))
    );
    let (s, v) = api
        .patch(
            "/namespaces/ns3",
            json!({"max_name_length": "off", "prefix": "never"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["namespace"]["max_name_length"].clone(),
            v["namespace"]["prefix"].clone()
        ),
        (Value::Null, json!("never"))
    );
    assert_eq!(api.delete("/namespaces/ns3").await.0, 204);
    assert_error(
        &api.patch("/namespaces/ns", json!({})).await,
        422,
        "invalid_request",
    );
    assert_error(
        &api.patch("/namespaces/nope", json!({"prefix": "never"}))
            .await,
        404,
        "not_found",
    );
    let (s, v) = api.post("/namespaces/ns/servers/beta", json!(null)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["servers"].as_array().map(Vec::len), Some(2), "{v}");
    assert_error(
        &api.post("/namespaces/ns/servers/nope", json!(null)).await,
        404,
        "not_found",
    );

    // Endpoint and a client key.
    assert_error(
        &api.post(
            "/endpoints",
            json!({"name": "ep", "namespace": "ns", "rate": "lots"}),
        )
        .await,
        422,
        "invalid_request",
    );
    let (s, v) = api
        .post(
            "/endpoints",
            json!({"name": "ep", "namespace": "ns", "client_rate": "100/60"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["api_key_auth"].clone(), v["client_rate"].clone()),
        (json!(true), json!("100/60"))
    );
    assert!(
        v["url"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/metamcp/ep/mcp"),
        "{v}"
    );
    assert_error(
        &api.post("/endpoints", json!({"name": "ep", "namespace": "ns"}))
            .await,
        409,
        "conflict",
    );
    let (s, v) = api
        .patch(
            "/endpoints/ep",
            json!({"client_rate": "off", "rate": "1000/60"}),
        )
        .await;
    assert_eq!(
        (s, v["client_rate"].clone(), v["rate"].clone()),
        (200, Value::Null, json!("1000/60")),
        "{v}"
    );
    let (s, v) = api.post("/keys", json!({"name": "client"})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["admin"], false);
    let client_key = v["key"].as_str().unwrap().to_owned();
    assert!(client_key.starts_with("sk_mt_"));
    assert_error(
        &api.post("/keys", json!({"name": "client"})).await,
        409,
        "conflict",
    );
    let (_, keys) = api.get("/keys").await;
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("key").is_none()),
        "{keys}"
    );

    // The CLI sees what the API wrote.
    let listed = env.cli_ok(&["endpoint", "list"]);
    assert!(listed.contains("ep\tnamespace: ns"), "{listed}");

    // A real MCP session through that endpoint with that key.
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&client_key);
    let ready = eventually(SOON, || async {
        let mut probe = RawClient::new(&gw.mcp_url("ep")).bearer(&client_key);
        (probe.initialize().await.status == 200).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "the endpoint never accepted the new key; log: {}",
        gw.log()
    );
    assert_eq!(c.initialize().await.status, 200);
    let a = c
        .request(
            "tools/call",
            json!({"name": "alpha__add", "arguments": {"a": 2, "b": 3}}),
        )
        .await
        .body;
    assert_eq!(crate::first_text(&a["result"]), "5", "{a}");
    assert!(
        tool_names(&c.request("tools/list", json!({})).await.body)
            .contains(&"alpha__add".to_owned())
    );

    // Tool shaping: disable through the API, gone from tools/list.
    let (s, v) = api
        .post(
            "/namespaces/ns/tools/disable",
            json!({"patterns": ["alpha__add"]}),
        )
        .await;
    assert_eq!((s, v["tools"].clone()), (200, json!(["alpha__add"])), "{v}");
    let gone = eventually(SOON, || async {
        let t = tool_names(&c.request("tools/list", json!({})).await.body);
        (!t.is_empty() && !t.contains(&"alpha__add".to_owned())).then_some(t)
    })
    .await;
    assert!(gone.is_some(), "alpha__add is still listed");
    let (_, t) = api.get("/namespaces/ns/tools").await;
    let add = t["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["canonical"] == "alpha__add"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (add["enabled"].clone(), add["explicit"].clone()),
        (json!(false), json!(true)),
        "{t}"
    );
    assert_error(
        &api.post("/namespaces/ns/tools/disable", json!({"patterns": []}))
            .await,
        422,
        "invalid_request",
    );
    assert_error(
        &api.post("/namespaces/nope/tools/enable", json!({"patterns": ["x"]}))
            .await,
        404,
        "not_found",
    );
    // Rename, then reset.
    let (s, v) = api
        .patch(
            "/namespaces/ns/tools/alpha__echo",
            json!({"name": "say", "annotations": {"readOnlyHint": true}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let renamed = eventually(SOON, || async {
        tool_names(&c.request("tools/list", json!({})).await.body)
            .contains(&"alpha__say".to_owned())
            .then_some(())
    })
    .await;
    assert!(renamed.is_some(), "the rename never reached tools/list");
    assert_error(
        &api.patch(
            "/namespaces/ns/tools/alpha__echo",
            json!({"annotations": 3}),
        )
        .await,
        422,
        "invalid_request",
    );
    assert_eq!(api.delete("/namespaces/ns/tools/alpha__echo").await.0, 200);
    assert_eq!(
        api.post(
            "/namespaces/ns/tools/enable",
            json!({"patterns": ["alpha__*"]})
        )
        .await
        .0,
        200
    );

    // Settings.
    let (s, v) = api
        .put("/settings/MCP_TIMEOUT", json!({"value": 30000}))
        .await;
    assert_eq!(
        (s, v["value"].clone(), v["default"].clone()),
        (200, json!("30000"), json!(false)),
        "{v}"
    );
    assert_error(
        &api.put("/settings/NOPE", json!({"value": "1"})).await,
        404,
        "not_found",
    );
    assert_error(
        &api.put("/settings/MCP_TIMEOUT", json!({"value": "soon"}))
            .await,
        422,
        "invalid_request",
    );
    let (_, all) = api.get("/settings").await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|s| s["key"] == "MCP_TIMEOUT" && s["value"] == "30000")
    );
    assert!(
        env.cli_ok(&["settings", "list"])
            .contains("MCP_TIMEOUT=30000\t#")
    );

    // Revoking the client key through the API locks the client out.
    assert_eq!(api.delete("/keys/client").await.0, 204);
    assert_error(&api.delete("/keys/nope").await, 404, "not_found");
    let locked = eventually(SOON, || async {
        let mut probe = RawClient::new(&gw.mcp_url("ep")).bearer(&client_key);
        (probe.initialize().await.status == 401).then_some(())
    })
    .await;
    assert!(locked.is_some(), "a revoked key still opens sessions");

    // Removals.
    assert_eq!(api.delete("/namespaces/ns/servers/beta").await.0, 200);
    assert_eq!(api.delete("/endpoints/ep").await.0, 204);
    assert_error(&api.get("/endpoints/ep").await, 404, "not_found");
    assert_eq!(api.delete("/namespaces/ns").await.0, 204);
    assert_eq!(api.delete("/servers/beta").await.0, 204);
    assert_error(&api.delete("/servers/beta").await, 404, "not_found");
    // Unknown routes under /api are JSON 404s too.
    assert_error(&api.get("/nothing-here").await, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route() {
    let env = Env::new();
    let gw = env.serve().await;
    // Readable without a key.
    let (s, doc) = Admin::new(&gw, None).get("/openapi.json").await;
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["apiKeyAuth"]["name"], "X-API-Key");
    let expected: &[(&str, &[&str])] = &[
        ("/api/v1/servers", &["get", "post"]),
        ("/api/v1/servers/{name}", &["get", "patch", "delete"]),
        ("/api/v1/servers/{name}/reset", &["post"]),
        ("/api/v1/servers/{name}/logs", &["get"]),
        ("/api/v1/namespaces", &["get", "post"]),
        ("/api/v1/namespaces/{name}", &["get", "patch", "delete"]),
        (
            "/api/v1/namespaces/{name}/servers/{server}",
            &["post", "delete"],
        ),
        ("/api/v1/namespaces/{name}/tools", &["get"]),
        ("/api/v1/namespaces/{name}/tools/enable", &["post"]),
        ("/api/v1/namespaces/{name}/tools/disable", &["post"]),
        (
            "/api/v1/namespaces/{name}/tools/{tool}",
            &["patch", "delete"],
        ),
        ("/api/v1/endpoints", &["get", "post"]),
        ("/api/v1/endpoints/{name}", &["get", "patch", "delete"]),
        ("/api/v1/keys", &["get", "post"]),
        ("/api/v1/keys/{name}", &["delete"]),
        ("/api/v1/users", &["get", "post"]),
        ("/api/v1/users/{email}", &["get", "patch", "delete"]),
        ("/api/v1/settings", &["get"]),
        ("/api/v1/settings/{key}", &["put"]),
        ("/api/v1/audit", &["get"]),
        ("/api/v1/oauth/grants", &["get"]),
        ("/api/v1/oauth/grants/{id}", &["delete"]),
        ("/api/v1/oauth/clients", &["get"]),
        ("/api/v1/oauth/clients/{id}", &["delete"]),
        ("/api/v1/openapi.json", &["get"]),
    ];
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in expected {
        for m in *methods {
            assert!(
                paths.get(*path).and_then(|p| p.get(*m)).is_some(),
                "{m} {path} is not described"
            );
        }
    }
    assert_eq!(paths.len(), expected.len(), "undescribed or stale paths");

    // Every described route exists (answers something other than the router's 404) and
    // wants a key (except the document itself).
    let http = reqwest::Client::new();
    for (path, methods) in expected {
        let url = format!(
            "{}{}",
            gw.base,
            path.replace("{name}", "x")
                .replace("{server}", "y")
                .replace("{tool}", "z")
                .replace("{key}", "K")
                .replace("{email}", "e@example.com")
                .replace("{id}", "i")
        );
        for m in *methods {
            let method = reqwest::Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
            let status = http
                .request(method, &url)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            let want = if path.ends_with("openapi.json") {
                200
            } else {
                401
            };
            assert_eq!(status, want, "{m} {path}");
        }
    }

    // The validator, where installed (scripts/test installs it).
    let available = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .status()
        .is_ok_and(|s| s.success());
    if available {
        let file = env.data_dir().with_file_name("openapi.json");
        std::fs::write(&file, doc.to_string()).unwrap();
        let out = std::process::Command::new("python3")
            .args(["-m", "openapi_spec_validator"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openapi-spec-validator: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("note: python3 -m openapi_spec_validator is not installed; validation skipped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_on_postgres() {
    let Some(env) = Env::new_pg().await else {
        return;
    };
    let out = env.cli_ok(&["key", "create", "root", "--admin"]);
    let admin_key = out.lines().last().unwrap().trim().to_owned();
    let plain = env.key("plain");
    let gw = env.serve().await;
    assert_error(
        &Admin::new(&gw, Some(&plain)).get("/namespaces").await,
        403,
        "forbidden",
    );
    let api = Admin::new(&gw, Some(&admin_key));
    let doc = json!({"mcpServers": {"alpha": fixture_stdio("alpha", &[])}});
    assert_eq!(api.post("/servers", doc).await.0, 200);
    assert_eq!(
        api.post("/namespaces", json!({"name": "ns", "servers": ["alpha"]}))
            .await
            .0,
        201
    );
    assert_error(
        &api.post("/namespaces", json!({"name": "ns", "servers": ["alpha"]}))
            .await,
        409,
        "conflict",
    );
    assert_eq!(
        api.post("/endpoints", json!({"name": "ep", "namespace": "ns"}))
            .await
            .0,
        201
    );
    let (s, v) = api.post("/keys", json!({"name": "client"})).await;
    assert_eq!(s, 201, "{v}");
    let client_key = v["key"].as_str().unwrap().to_owned();
    let called = eventually(SOON, || async {
        let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&client_key);
        if c.initialize().await.status != 200 {
            return None;
        }
        let a = c
            .request(
                "tools/call",
                json!({"name": "alpha__add", "arguments": {"a": 1, "b": 1}}),
            )
            .await
            .body;
        (crate::first_text(&a["result"]) == "2").then_some(())
    })
    .await;
    assert!(
        called.is_some(),
        "no call through the API-made endpoint; log: {}",
        gw.log()
    );
    let (_, keys) = api.get("/keys").await;
    let flags: Vec<(String, bool)> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap_or_default().to_owned(),
                k["admin"] == true,
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            ("client".to_owned(), false),
            ("plain".to_owned(), false),
            ("root".to_owned(), true)
        ]
    );
}
