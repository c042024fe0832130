//! The authorization matrix: every admin API route (read from the gateway's own
//! `GET /api/v1/openapi.json`, which a unit test holds equal to the route table the router is
//! built from) and every endpoint face, × eight principals × three objects (public, Ada's,
//! Bob's), each cell's status compared with a small model written here. A route without a
//! row in [`model`] fails the test.
//!
//! One gateway; objects made once; cells run concurrently. Mutations that succeed act on
//! throwaway objects made for that cell, mutations that must be refused target the shared
//! objects, and at the end nothing of either tenant has changed.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use metamcp_it::browser::Browser;
use metamcp_it::{Env, Gateway, fixture_stdio};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";
const ADA: &str = "ada@example.com";
const BOB: &str = "bob@example.com";
const ROOT: &str = "root@example.com";
const PUBLIC_URL: &str = "https://93.184.215.14/mcp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    MemberA,
    MemberB,
    AdminUser,
    KeyA,
    KeyB,
    PublicKey,
    AdminKey,
}

const WHO: [Who; 8] = [
    Who::Anonymous,
    Who::MemberA,
    Who::MemberB,
    Who::AdminUser,
    Who::KeyA,
    Who::KeyB,
    Who::PublicKey,
    Who::AdminKey,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Obj {
    Public,
    Ada,
    Bob,
}

const OBJ: [Obj; 3] = [Obj::Public, Obj::Ada, Obj::Bob];

impl Obj {
    /// The suffix of the shared objects: `srv-pub`, `ns-ada`, …
    fn tag(self) -> &'static str {
        match self {
            Obj::Public => "pub",
            Obj::Ada => "ada",
            Obj::Bob => "bob",
        }
    }

    fn owner(self) -> Option<&'static str> {
        match self {
            Obj::Public => None,
            Obj::Ada => Some(ADA),
            Obj::Bob => Some(BOB),
        }
    }

    /// A user to stand for the object in `/users/{email}`.
    fn user(self) -> &'static str {
        self.owner().unwrap_or(ROOT)
    }
}

impl Who {
    fn short(self) -> &'static str {
        match self {
            Who::Anonymous => "an",
            Who::MemberA => "ma",
            Who::MemberB => "mb",
            Who::AdminUser => "au",
            Who::KeyA => "ka",
            Who::KeyB => "kb",
            Who::PublicKey => "kp",
            Who::AdminKey => "ak",
        }
    }

    /// The member acting, if a member acts (signed in).
    fn member(self) -> Option<Obj> {
        match self {
            Who::MemberA => Some(Obj::Ada),
            Who::MemberB => Some(Obj::Bob),
            _ => None,
        }
    }

    fn admin(self) -> bool {
        matches!(self, Who::AdminUser | Who::AdminKey)
    }

    /// The owner of the key presented, if a key is presented (`Some(None)`: a public key).
    fn key_owner(self) -> Option<Option<Obj>> {
        match self {
            Who::KeyA => Some(Some(Obj::Ada)),
            Who::KeyB => Some(Some(Obj::Bob)),
            Who::PublicKey | Who::AdminKey => Some(None),
            _ => None,
        }
    }
}

/// What a cell sends and expects.
#[derive(Debug, Clone)]
struct Cell {
    who: Who,
    obj: Obj,
    method: &'static str,
    path: String,
    body: Option<Value>,
    expect: u16,
    /// For listings: the name that must (true) or must not (false) appear.
    listed: Option<(String, bool)>,
    /// Objects to make (as an admin) before the cell runs: `(method, path, body)`.
    setup: Vec<(&'static str, String, Value)>,
}

/// A cell's request and expectation: path, body, status, listing check, setup.
type Row = (
    String,
    Option<Value>,
    u16,
    Option<(String, bool)>,
    Vec<(&'static str, String, Value)>,
);

/// How a member stands to an object: not visible, public (read-only), or their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stand {
    Hidden,
    Public,
    Own,
}

fn stand(who: Who, obj: Obj) -> Stand {
    match (who.member(), obj) {
        (_, Obj::Public) => Stand::Public,
        (Some(m), o) if m == o => Stand::Own,
        _ => Stand::Hidden,
    }
}

/// The expected status of `who` calling `method route` about `obj` — the model — with the
/// request to send. `None`: the route has no row (the test fails).
fn model(method: &str, route: &str, who: Who, obj: Obj, n: usize) -> Option<Cell> {
    let t = obj.tag();
    let id = format!("t{n}-{}-{t}", who.short());
    let owner_q = obj
        .owner()
        .map(|o| format!("?owner={o}"))
        .unwrap_or_default();
    let with_owner = |mut v: Value| {
        if let Some(o) = obj.owner() {
            v["owner"] = json!(o);
        }
        v
    };
    // Who gets past authentication; members and admins continue below.
    let gate = match who {
        Who::Anonymous => Some(401),
        Who::KeyA | Who::KeyB | Who::PublicKey => Some(403),
        _ => None,
    };
    let s = stand(who, obj);
    // An object route: admins `ok`; members `ok` on their own, `public` on public objects,
    // 404 on others'.
    let obj_rule = |ok: u16, public: u16| {
        if who.admin() {
            ok
        } else {
            match s {
                Stand::Hidden => 404,
                Stand::Public => public,
                Stand::Own => ok,
            }
        }
    };
    // A create: admins `ok`; members `ok` for themselves (absent owner or their own email),
    // 403 when asking for another user's.
    let create_rule = |ok: u16| {
        if who.admin() || s != Stand::Hidden {
            ok
        } else {
            403
        }
    };
    let admin_only = |ok: u16| if who.admin() { ok } else { 403 };
    // Destructive changes that succeed act on a throwaway object made for the cell.
    let allowed = |st: u16| gate.is_none() && obj_rule(st, 403) == st;

    let mut cell = Cell {
        who,
        obj,
        method: leak(method),
        path: route.to_owned(),
        body: None,
        expect: 0,
        listed: None,
        setup: Vec::new(),
    };
    let path = |p: &str| p.replace("{name}", &format!("x-{t}"));
    let (path, body, expect, listed, setup): Row = match (method, route) {
        ("GET", "/api/v1/openapi.json") => (route.into(), None, 200, None, vec![]),
        (
            "GET",
            "/api/v1/servers" | "/api/v1/namespaces" | "/api/v1/endpoints" | "/api/v1/keys",
        ) => {
            let kind = match route {
                "/api/v1/servers" => "srv",
                "/api/v1/namespaces" => "ns",
                "/api/v1/endpoints" => "ep",
                _ => "key",
            };
            let seen = who.admin() || s != Stand::Hidden;
            (
                route.into(),
                None,
                200,
                Some((format!("\"{kind}-{t}\""), seen)),
                vec![],
            )
        }
        // Members read the audit log too: their own records only (the service layer's rule,
        // tested in `admin::audit`).
        ("GET", "/api/v1/audit") => (route.into(), None, 200, None, vec![]),
        // Everyone lists their own grants (admins: all); revoking one that does not exist (or
        // is someone else's) is 404 alike. Registered clients are for admins.
        ("GET", "/api/v1/oauth/grants") => (route.into(), None, 200, None, vec![]),
        ("DELETE", "/api/v1/oauth/grants/{id}") => (
            route.replace("{id}", &format!("nogrant-{t}")),
            None,
            404,
            None,
            vec![],
        ),
        ("GET", "/api/v1/oauth/clients") => (route.into(), None, admin_only(200), None, vec![]),
        ("DELETE", "/api/v1/oauth/clients/{id}") => (
            route.replace("{id}", &format!("noclient-{t}")),
            None,
            admin_only(404),
            None,
            vec![],
        ),
        ("GET", "/api/v1/users" | "/api/v1/settings") => {
            (route.into(), None, admin_only(200), None, vec![])
        }
        ("GET", "/api/v1/servers/{name}") => (
            route.replace("{name}", &format!("srv-{t}")),
            None,
            obj_rule(200, 200),
            None,
            vec![],
        ),
        ("GET", "/api/v1/namespaces/{name}" | "/api/v1/namespaces/{name}/tools") => (
            route.replace("{name}", &format!("ns-{t}")),
            None,
            obj_rule(200, 200),
            None,
            vec![],
        ),
        ("GET", "/api/v1/endpoints/{name}") => (
            route.replace("{name}", &format!("ep-{t}")),
            None,
            obj_rule(200, 200),
            None,
            vec![],
        ),
        // Logs and reset: the owner's and admins' (Inspect); public servers' are admins'.
        ("GET", "/api/v1/servers/{name}/logs") => (
            route.replace("{name}", &format!("srv-{t}")),
            None,
            obj_rule(200, 403),
            None,
            vec![],
        ),
        ("POST", "/api/v1/servers/{name}/reset") => (
            route.replace("{name}", &format!("srv-{t}")),
            None,
            obj_rule(202, 403),
            None,
            vec![],
        ),
        // The shared servers are stdio: a member may not change even their own.
        ("PATCH", "/api/v1/servers/{name}") => (
            route.replace("{name}", &format!("srv-{t}")),
            Some(json!({ "cap": 16 })),
            if who.admin() {
                200
            } else if s == Stand::Hidden {
                404
            } else {
                403
            },
            None,
            vec![],
        ),
        ("DELETE", "/api/v1/servers/{name}") => {
            if allowed(204) {
                let tmp = format!("{id}-s");
                let setup = vec![(
                    "POST",
                    format!("/api/v1/servers{owner_q}"),
                    json!({ "mcpServers": { &tmp: { "type": "streamable_http", "url": PUBLIC_URL } } }),
                )];
                (route.replace("{name}", &tmp), None, 204, None, setup)
            } else {
                (
                    route.replace("{name}", &format!("srv-{t}")),
                    None,
                    obj_rule(204, 403),
                    None,
                    vec![],
                )
            }
        }
        ("POST", "/api/v1/servers") => (
            format!("{route}{owner_q}"),
            Some(
                json!({ "mcpServers": { format!("{id}-n"): { "type": "streamable_http", "url": PUBLIC_URL } } }),
            ),
            create_rule(200),
            None,
            vec![],
        ),
        ("POST", "/api/v1/namespaces") => (
            route.into(),
            Some(with_owner(
                json!({ "name": format!("{id}-n"), "servers": [format!("srv-{t}")] }),
            )),
            create_rule(201),
            None,
            vec![],
        ),
        ("PATCH", "/api/v1/namespaces/{name}") => (
            route.replace("{name}", &format!("ns-{t}")),
            Some(json!({ "prefix": "always" })),
            obj_rule(200, 403),
            None,
            vec![],
        ),
        ("DELETE", "/api/v1/namespaces/{name}") => {
            if allowed(204) {
                let tmp = format!("{id}-ns");
                let setup = vec![(
                    "POST",
                    "/api/v1/namespaces".to_owned(),
                    with_owner(json!({ "name": &tmp, "servers": [format!("srv-{t}")] })),
                )];
                (route.replace("{name}", &tmp), None, 204, None, setup)
            } else {
                (
                    route.replace("{name}", &format!("ns-{t}")),
                    None,
                    obj_rule(204, 403),
                    None,
                    vec![],
                )
            }
        }
        ("POST" | "DELETE", "/api/v1/namespaces/{name}/servers/{server}") => {
            if allowed(200) {
                let (ns, srv) = (format!("{id}-ns"), format!("{id}-s"));
                let mut members = vec![format!("srv-{t}")];
                if method == "DELETE" {
                    members.push(srv.clone());
                }
                let setup = vec![
                    (
                        "POST",
                        format!("/api/v1/servers{owner_q}"),
                        json!({ "mcpServers": { &srv: { "type": "streamable_http", "url": PUBLIC_URL } } }),
                    ),
                    (
                        "POST",
                        "/api/v1/namespaces".to_owned(),
                        with_owner(json!({ "name": &ns, "servers": members })),
                    ),
                ];
                (
                    route.replace("{name}", &ns).replace("{server}", &srv),
                    None,
                    200,
                    None,
                    setup,
                )
            } else {
                let p = route
                    .replace("{name}", &format!("ns-{t}"))
                    .replace("{server}", &format!("srv-{t}"));
                (p, None, obj_rule(200, 403), None, vec![])
            }
        }
        (
            "POST",
            "/api/v1/namespaces/{name}/tools/enable" | "/api/v1/namespaces/{name}/tools/disable",
        ) => (
            route.replace("{name}", &format!("ns-{t}")),
            Some(json!({ "patterns": [format!("srv-{t}__echo")] })),
            obj_rule(200, 403),
            None,
            vec![],
        ),
        ("PATCH", "/api/v1/namespaces/{name}/tools/{tool}") => (
            route
                .replace("{name}", &format!("ns-{t}"))
                .replace("{tool}", &format!("srv-{t}__echo")),
            Some(json!({ "title": "Echo" })),
            obj_rule(200, 403),
            None,
            vec![],
        ),
        ("DELETE", "/api/v1/namespaces/{name}/tools/{tool}") => (
            route
                .replace("{name}", &format!("ns-{t}"))
                .replace("{tool}", &format!("srv-{t}__echo")),
            None,
            obj_rule(200, 403),
            None,
            vec![],
        ),
        ("POST", "/api/v1/endpoints") => (
            route.into(),
            Some(with_owner(
                json!({ "name": format!("{id}-n"), "namespace": format!("ns-{t}") }),
            )),
            create_rule(201),
            None,
            vec![],
        ),
        ("PATCH", "/api/v1/endpoints/{name}") => (
            route.replace("{name}", &format!("ep-{t}")),
            Some(json!({ "rate": "off" })),
            obj_rule(200, 403),
            None,
            vec![],
        ),
        ("DELETE", "/api/v1/endpoints/{name}") => {
            if allowed(204) {
                let tmp = format!("{id}-ep");
                let setup = vec![(
                    "POST",
                    "/api/v1/endpoints".to_owned(),
                    with_owner(json!({ "name": &tmp, "namespace": format!("ns-{t}") })),
                )];
                (route.replace("{name}", &tmp), None, 204, None, setup)
            } else {
                (
                    route.replace("{name}", &format!("ep-{t}")),
                    None,
                    obj_rule(204, 403),
                    None,
                    vec![],
                )
            }
        }
        ("POST", "/api/v1/keys") => (
            route.into(),
            Some(with_owner(json!({ "name": format!("{id}-n") }))),
            create_rule(201),
            None,
            vec![],
        ),
        ("DELETE", "/api/v1/keys/{name}") => {
            if allowed(204) {
                let tmp = format!("{id}-k");
                let setup = vec![(
                    "POST",
                    "/api/v1/keys".to_owned(),
                    with_owner(json!({ "name": &tmp })),
                )];
                (route.replace("{name}", &tmp), None, 204, None, setup)
            } else {
                (
                    route.replace("{name}", &format!("key-{t}")),
                    None,
                    obj_rule(204, 403),
                    None,
                    vec![],
                )
            }
        }
        ("POST", "/api/v1/users") => (
            route.into(),
            Some(json!({ "email": format!("{id}@example.com") })),
            admin_only(201),
            None,
            vec![],
        ),
        ("GET", "/api/v1/users/{email}") => (
            route.replace("{email}", obj.user()),
            None,
            admin_only(200),
            None,
            vec![],
        ),
        ("PATCH", "/api/v1/users/{email}") => (
            route.replace("{email}", obj.user()),
            Some(json!({ "name": "Same" })),
            admin_only(200),
            None,
            vec![],
        ),
        ("DELETE", "/api/v1/users/{email}") => {
            if gate.is_none() && who.admin() {
                let tmp = format!("{id}@example.com");
                (
                    route.replace("{email}", &tmp),
                    None,
                    200,
                    None,
                    vec![("POST", "/api/v1/users".to_owned(), json!({ "email": &tmp }))],
                )
            } else {
                (
                    route.replace("{email}", obj.user()),
                    None,
                    403,
                    None,
                    vec![],
                )
            }
        }
        ("PUT", "/api/v1/settings/{key}") => (
            route.replace("{key}", "MCP_TIMEOUT"),
            Some(json!({ "value": "60000" })),
            admin_only(200),
            None,
            vec![],
        ),
        _ => {
            let _ = path;
            return None;
        }
    };
    cell.path = path;
    cell.body = body;
    cell.expect = if route == "/api/v1/openapi.json" {
        200
    } else {
        gate.unwrap_or(expect)
    };
    cell.listed = if gate.is_none() { listed } else { None };
    cell.setup = if gate.is_none() { setup } else { Vec::new() };
    Some(cell)
}

fn leak(s: &str) -> &'static str {
    match s {
        "GET" => "GET",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        other => panic!("method {other}"),
    }
}

/// Everyone's credentials.
#[derive(Clone)]
struct Principals {
    base: String,
    http: reqwest::Client,
    browsers: BTreeMap<&'static str, Browser>,
    keys: BTreeMap<&'static str, String>,
}

impl Principals {
    async fn call(
        &self,
        who: Who,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, String) {
        if let Some(b) = self.browsers.get(who.short()) {
            let mut b = b.clone();
            let a = b
                .send(
                    method,
                    path,
                    body.map(|v| ("application/json", v.to_string())),
                    true,
                )
                .await;
            return (a.status, a.text);
        }
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{path}", self.base));
        if let Some(k) = self.keys.get(who.short()) {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    async fn admin(&self, method: &str, path: &str, body: Value) {
        let (st, text) = self.call(Who::AdminKey, method, path, Some(&body)).await;
        assert!(
            (200..300).contains(&st),
            "setup {method} {path}: {st} {text}"
        );
    }

    /// A face request: status only (an SSE stream is not read).
    async fn face(&self, who: Who, method: &str, path: &str, body: Option<Value>) -> u16 {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.base))
            .header("accept", "application/json, text/event-stream");
        if let Some(k) = self.keys.get(who.short()) {
            req = req.bearer_auth(k);
        }
        if let Some(b) = self.browsers.get(who.short())
            && let Some(c) = &b.cookie
        {
            req = req.header("cookie", c);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = tokio::time::timeout(Duration::from_secs(20), req.send())
            .await
            .expect("face answered")
            .expect("face request");
        resp.status().as_u16()
    }
}

#[tokio::test]
async fn authorization_matrix() {
    let env = Env::new();
    for (email, admin) in [(ROOT, true), (ADA, false), (BOB, false)] {
        let mut args = vec!["user", "create", email, "--password-stdin"];
        if admin {
            args.push("--admin");
        }
        let o = env.cli_stdin(&args, PW);
        assert!(o.ok, "{}", o.stderr);
    }
    let admin_key = env.admin_key("admin-key");
    let gw: Gateway = env.serve().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut p = Principals {
        base: gw.base.clone(),
        http,
        browsers: BTreeMap::new(),
        keys: BTreeMap::new(),
    };
    p.keys.insert(Who::AdminKey.short(), admin_key);
    for (who, email) in [
        (Who::MemberA, ADA),
        (Who::MemberB, BOB),
        (Who::AdminUser, ROOT),
    ] {
        let mut b = Browser::new(&gw.base);
        let a = b.sign_in(email, PW).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(b.csrf.is_some());
        p.browsers.insert(who.short(), b);
    }

    // The shared objects: per owner a stdio server, a namespace, an endpoint and a key.
    for obj in OBJ {
        let t = obj.tag();
        let q = obj
            .owner()
            .map(|o| format!("?owner={o}"))
            .unwrap_or_default();
        let owner = |mut v: Value| {
            if let Some(o) = obj.owner() {
                v["owner"] = json!(o);
            }
            v
        };
        p.admin("POST", &format!("/api/v1/servers{q}"), json!({ "mcpServers": { format!("srv-{t}"): fixture_stdio(&format!("srv-{t}"), &[]) } })).await;
        p.admin(
            "POST",
            "/api/v1/namespaces",
            owner(json!({ "name": format!("ns-{t}"), "servers": [format!("srv-{t}")] })),
        )
        .await;
        p.admin(
            "POST",
            "/api/v1/endpoints",
            owner(json!({ "name": format!("ep-{t}"), "namespace": format!("ns-{t}") })),
        )
        .await;
        let (st, text) = p
            .call(
                Who::AdminKey,
                "POST",
                "/api/v1/keys",
                Some(&owner(json!({ "name": format!("key-{t}") }))),
            )
            .await;
        assert_eq!(st, 201, "{text}");
        let key = serde_json::from_str::<Value>(&text).unwrap()["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let who = match obj {
            Obj::Public => Who::PublicKey,
            Obj::Ada => Who::KeyA,
            Obj::Bob => Who::KeyB,
        };
        p.keys.insert(who.short(), key);
    }
    let before = tenants(&p).await;
    // The admin API applies a change on the gateway that answered before answering.

    // ---- endpoint faces ----
    let mut faces = Vec::new();
    for obj in OBJ {
        let ep = format!("/metamcp/ep-{}", obj.tag());
        let tool = format!("srv-{}__echo", obj.tag());
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "m", "version": "1"}}});
        let list: Vec<(&str, String, Option<Value>, u16)> = vec![
            ("POST", format!("{ep}/mcp"), Some(init), 200),
            ("GET", format!("{ep}/sse"), None, 200),
            (
                "POST",
                format!("{ep}/message?sessionId=none"),
                Some(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})),
                404,
            ),
            (
                "POST",
                format!("{ep}/api/{tool}"),
                Some(json!({"message": "hi"})),
                200,
            ),
            ("GET", format!("{ep}/api/openapi.json"), None, 200),
            ("GET", format!("{ep}/mcp/health/sessions"), None, 200),
        ];
        for (method, path, body, ok) in list {
            for who in WHO {
                let expect = match who.key_owner() {
                    None => 401,
                    Some(k) if obj == Obj::Public || k == Some(obj) => ok,
                    Some(_) => 403,
                };
                faces.push((who, obj, method, path.clone(), body.clone(), expect));
            }
        }
    }
    let face_results: Vec<String> = futures::stream::iter(faces.iter().cloned())
        .map(|(who, obj, method, path, body, expect)| {
            let p = p.clone();
            async move {
                let got = p.face(who, method, &path, body).await;
                (got != expect).then(|| {
                    format!("{who:?} × {obj:?}: {method} {path}: expected {expect}, got {got}")
                })
            }
        })
        .buffer_unordered(12)
        .filter_map(|x| async move { x })
        .collect()
        .await;

    // ---- admin API ----
    let doc: Value = p
        .http
        .get(format!("{}/api/v1/openapi.json", p.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut routes = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            routes.push((method.to_ascii_uppercase(), path.clone()));
        }
    }
    let mut cells = Vec::new();
    let mut missing = Vec::new();
    for (n, (method, route)) in routes.iter().enumerate() {
        for who in WHO {
            for obj in OBJ {
                match model(method, route, who, obj, n) {
                    Some(c) => cells.push(c),
                    None => missing.push(format!("{method} {route}")),
                }
            }
        }
    }
    missing.dedup();
    assert!(
        missing.is_empty(),
        "routes without a row in the matrix: {missing:?}"
    );
    for c in &cells {
        for (m, path, body) in &c.setup {
            p.admin(m, path, body.clone()).await;
        }
    }
    let admin_results: Vec<String> = futures::stream::iter(cells.iter().cloned())
        .map(|c| {
            let p = p.clone();
            async move {
                let (got, text) = p.call(c.who, c.method, &c.path, c.body.as_ref()).await;
                let mut bad = None;
                if got != c.expect {
                    bad = Some(format!(
                        "{:?} × {:?}: {} {}: expected {}, got {got} {}",
                        c.who,
                        c.obj,
                        c.method,
                        c.path,
                        c.expect,
                        text.chars().take(200).collect::<String>()
                    ));
                } else if let Some((name, seen)) = &c.listed
                    && text.contains(name.as_str()) != *seen
                {
                    bad = Some(format!(
                        "{:?} × {:?}: {} {}: {name} listed = {}, expected {seen}",
                        c.who, c.obj, c.method, c.path, !seen
                    ));
                }
                bad
            }
        })
        .buffer_unordered(8)
        .filter_map(|x| async move { x })
        .collect()
        .await;

    let total = faces.len() + cells.len();
    eprintln!(
        "authorization matrix: {} admin API cells ({} routes) + {} endpoint-face cells = {total}",
        cells.len(),
        routes.len(),
        faces.len()
    );
    let mut failures = face_results;
    failures.extend(admin_results);
    assert!(
        failures.is_empty(),
        "{} of {total} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Nothing of either tenant (or the public objects) changed in the refused cells.
    assert_eq!(tenants(&p).await, before);
    gw.stop().await;
}

/// The shared objects as an admin sees them: servers' names and owners, namespaces'
/// members and owners, endpoints' namespaces and owners, keys' owners and state.
async fn tenants(p: &Principals) -> Vec<String> {
    let mut out = Vec::new();
    for (list, fields) in [
        ("/api/v1/servers", &["name", "owner", "kind"][..]),
        ("/api/v1/namespaces", &["name", "owner", "servers"][..]),
        ("/api/v1/endpoints", &["name", "owner", "namespace"][..]),
        ("/api/v1/keys", &["name", "owner", "active", "admin"][..]),
    ] {
        let (st, text) = p.call(Who::AdminKey, "GET", list, None).await;
        assert_eq!(st, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        for item in v.as_array().unwrap() {
            let name = item["name"].as_str().unwrap_or_default();
            if !["srv-", "ns-", "ep-", "key-"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                continue;
            }
            let shown: Vec<String> = fields.iter().map(|f| item[*f].to_string()).collect();
            out.push(format!("{list}: {}", shown.join(" ")));
        }
    }
    out.sort();
    assert_eq!(out.len(), 12, "{out:?}");
    out
}
