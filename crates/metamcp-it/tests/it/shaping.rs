//! Tool shaping through the real gateway: what `metamcp tool …` and `namespace update`
//! change is what clients list and can call, at once (with `list_changed`), and nothing
//! switched off is callable under any spelling.

use std::time::Duration;

use metamcp_it::{Env, RawClient, eventually};
use serde_json::{Value, json};

use crate::{first_text, two_server_gateway};

const SOON: Duration = Duration::from_secs(3);

fn names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .map_or_else(Vec::new, |t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
}

async fn tools(c: &RawClient) -> Vec<String> {
    names(&c.request("tools/list", json!({})).await.body)
}

/// Waits until the listed tools satisfy `ok`; panics with the last list otherwise.
async fn until_tools(c: &RawClient, what: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
    let got = eventually(SOON, || async {
        let t = tools(c).await;
        ok(&t).then_some(t)
    })
    .await;
    match got {
        Some(t) => t,
        None => panic!("{what}: tools are {:?}", tools(c).await),
    }
}

async fn call(c: &RawClient, name: &str, args: Value) -> Value {
    c.request("tools/call", json!({"name": name, "arguments": args}))
        .await
        .body
}

/// Waits for the next `notifications/tools/list_changed` on a session's GET stream.
async fn list_changed(stream: &mut tokio::sync::mpsc::Receiver<Value>) -> bool {
    let found = tokio::time::timeout(SOON, async {
        while let Some(m) = stream.recv().await {
            if m["method"] == "notifications/tools/list_changed" {
                return true;
            }
        }
        false
    })
    .await;
    found == Ok(true)
}

fn refused(answer: &Value) -> bool {
    answer["error"]["message"].is_string() && answer.get("result").is_none()
}

fn has(t: &[String], name: &str) -> bool {
    t.iter().any(|n| n == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shaping_matrix_through_mcp() {
    let (env, gw, key) = two_server_gateway().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;
    let mut stream = c.open_stream().await;
    assert!(has(&tools(&c).await, "alpha__add"));
    // The gateway records what upstreams reported; patterns expand against it.
    let listed = eventually(SOON, || async {
        let out = env.cli_ok(&["tool", "list", "ns"]);
        (out.contains("alpha__echo") && out.contains("beta__slow")).then_some(out)
    })
    .await;
    assert!(listed.is_some(), "discovered tools never reached the store");

    // Disable: gone from the list at once, with list_changed, and not callable.
    let out = env.cli_ok(&["tool", "disable", "ns", "alpha__add"]);
    assert!(out.contains("disabled: alpha__add"), "{out}");
    until_tools(&c, "disabled alpha__add", |t| !has(t, "alpha__add")).await;
    assert!(
        list_changed(&mut stream).await,
        "no tools/list_changed after the change"
    );
    let a = call(&c, "alpha__add", json!({"a": 1, "b": 2})).await;
    assert!(refused(&a), "a disabled tool answered: {a}");

    // Rename (with description and annotations): the new name works, the old one is gone.
    env.cli_ok(&[
        "tool",
        "override",
        "ns",
        "alpha__echo",
        "--name",
        "say",
        "--description",
        "Says it back",
        "--annotations",
        r#"{"readOnlyHint": true}"#,
    ]);
    let t = until_tools(&c, "renamed echo", |t| has(t, "alpha__say")).await;
    assert!(!has(&t, "alpha__echo"), "{t:?}");
    let list = c.request("tools/list", json!({})).await.body;
    let say = list["result"]["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "alpha__say"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(say["description"], "Says it back");
    assert_eq!(say["annotations"]["readOnlyHint"], true);
    assert!(
        say["inputSchema"].is_object(),
        "the schema is the upstream's"
    );
    let a = call(&c, "alpha__say", json!({"message": "hi"})).await;
    assert_eq!(first_text(&a["result"]), "hi");
    assert!(refused(
        &call(&c, "alpha__echo", json!({"message": "x"})).await
    ));

    // Reset by the exposed name: the upstream's tool again.
    env.cli_ok(&["tool", "reset", "ns", "alpha__say"]);
    until_tools(&c, "reset", |t| {
        has(t, "alpha__echo") && !has(t, "alpha__say")
    })
    .await;

    // Rename + disable: callable under neither name.
    env.cli_ok(&["tool", "override", "ns", "alpha__echo", "--name", "say"]);
    env.cli_ok(&["tool", "disable", "ns", "alpha__say"]);
    let t = until_tools(&c, "renamed+disabled", |t| {
        !has(t, "alpha__say") && !has(t, "alpha__echo")
    })
    .await;
    assert!(has(&t, "alpha__rich"), "{t:?}");
    for name in ["alpha__say", "alpha__echo", "say", "echo", "ALPHA__echo"] {
        let a = call(&c, name, json!({"message": "x"})).await;
        assert!(refused(&a), "{name} answered: {a}");
    }

    // The REST face is shaped by the same pipeline.
    let api = gw.mcp_url("ep").replace("/mcp", "/api");
    let http = reqwest::Client::new();
    let doc: Value = http
        .get(format!("{api}/openapi.json"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths: Vec<&String> = doc["paths"]
        .as_object()
        .map(|p| p.keys().collect())
        .unwrap_or_default();
    assert!(paths.iter().any(|p| *p == "/alpha__rich"), "{paths:?}");
    for gone in ["alpha__say", "alpha__echo", "alpha__add"] {
        assert!(
            !paths.iter().any(|p| *p == &format!("/{gone}")),
            "{paths:?}"
        );
        let r = http
            .post(format!("{api}/{gone}"))
            .bearer_auth(&key)
            .json(&json!({"message": "x", "a": 1, "b": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{gone} over REST");
    }

    // Bulk: a glob off, a regex back on.
    env.cli_ok(&["tool", "disable", "ns", "beta__*"]);
    until_tools(&c, "beta off", |t| {
        !t.iter().any(|n| n.starts_with("beta__"))
    })
    .await;
    env.cli_ok(&["tool", "enable", "ns", "re:beta__(echo|add)"]);
    let t = until_tools(&c, "beta echo+add on", |t| has(t, "beta__echo")).await;
    let beta: Vec<&String> = t.iter().filter(|n| n.starts_with("beta__")).collect();
    assert_eq!(beta, ["beta__echo", "beta__add"], "{t:?}");
    let a = call(&c, "beta__add", json!({"a": 2, "b": 3})).await;
    assert_eq!(a["result"]["structuredContent"]["sum"], 5);
    let none = env.cli(&["tool", "enable", "ns", "gamma__*"]);
    assert!(!none.ok && none.stderr.contains("matches"), "{none:?}");

    // A rename onto a name an enabled tool has is refused at configuration time.
    let clash = env.cli(&["tool", "override", "ns", "beta__echo", "--name", "add"]);
    assert!(!clash.ok, "{clash:?}");
    assert!(
        clash.stderr.contains("beta__add") && clash.stderr.lines().count() == 1,
        "{}",
        clash.stderr
    );

    // A name-length limit shortens long names deterministically; they stay callable.
    env.cli_ok(&[
        "tool",
        "override",
        "ns",
        "alpha__rich",
        "--name",
        "a_rather_long_name_for_the_rich_tool",
    ]);
    env.cli_ok(&["namespace", "update", "ns", "--max-name-length", "20"]);
    let out = env.cli_ok(&["tool", "list", "ns"]);
    let short = out
        .lines()
        .find(|l| l.contains("<- alpha__rich"))
        .and_then(|l| l.get(14..)?.split_whitespace().next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no alpha__rich line in {out}"));
    assert_eq!(short.len(), 20, "{short}");
    let t = until_tools(&c, "shortened", |t| has(t, &short)).await;
    assert!(t.iter().all(|n| n.len() <= 20), "{t:?}");
    let a = call(&c, &short, json!({})).await;
    assert_eq!(a["result"]["structuredContent"]["kind"], "rich", "{a}");
    assert!(refused(
        &call(&c, "alpha__a_rather_long_name_for_the_rich_tool", json!({})).await
    ));
    env.cli_ok(&["namespace", "update", "ns", "--max-name-length", "off"]);

    // Default-deny: known tools keep their state; a tool new to the upstream arrives off.
    while stream.try_recv().is_ok() {}
    let out = env.cli_ok(&["namespace", "update", "ns", "--new-tools", "disabled"]);
    assert!(out.contains("new tools disabled"), "{out}");
    // Nothing a client lists changes; the list_changed says the gateway has applied it.
    assert!(
        list_changed(&mut stream).await,
        "the change never reached the gateway"
    );
    let a = call(&c, "alpha__grow", json!({})).await;
    assert_eq!(first_text(&a["result"]), "grown_0", "{a}");
    let seen = eventually(SOON, || async {
        tools(&c).await;
        let out = env.cli_ok(&["tool", "list", "ns"]);
        out.lines()
            .any(|l| l.starts_with("off (default)") && l.contains("alpha__grown_0"))
            .then_some(())
    })
    .await;
    assert!(seen.is_some(), "{}", env.cli_ok(&["tool", "list", "ns"]));
    let t = tools(&c).await;
    assert!(!has(&t, "alpha__grown_0"), "{t:?}");
    assert!(refused(
        &call(&c, "alpha__grown_0", json!({"message": "x"})).await
    ));
    assert!(has(&tools(&c).await, "alpha__grow"), "known tools stay on");
    env.cli_ok(&["tool", "enable", "ns", "alpha__grown_0"]);
    until_tools(&c, "grown enabled", |t| has(t, "alpha__grown_0")).await;
    let a = call(&c, "alpha__grown_0", json!({"message": "new"})).await;
    assert_eq!(first_text(&a["result"]), "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_tool_configuration_denies_every_tool() {
    let (env, gw, key) = two_server_gateway().await;
    let mut c = RawClient::new(&gw.mcp_url("ep")).bearer(&key);
    c.initialize().await;
    env.cli_ok(&["tool", "disable", "ns", "alpha__add"]);
    until_tools(&c, "disabled", |t| {
        !has(t, "alpha__add") && has(t, "alpha__echo")
    })
    .await;

    // Damage the stored rule behind the CLI's back (as a bad migration or hand edit would).
    corrupt(&env).await;
    until_tools(&c, "fail closed", <[String]>::is_empty).await;
    let a = call(&c, "alpha__echo", json!({"message": "x"})).await;
    assert!(
        a["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot be read")),
        "{a}"
    );
    assert!(
        gw.log().contains("unreadable tool configuration"),
        "the operator is told why"
    );
}

/// Writes an annotations value that is not a JSON object into the rule, and bumps the
/// configuration version so the running gateway reloads.
async fn corrupt(env: &Env) {
    use sqlx::Connection;
    let path = env.data_dir().join("metamcp.db");
    let mut conn = sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open the database");
    sqlx::query("UPDATE namespace_tools SET override_annotations = '[1, 2]'")
        .execute(&mut conn)
        .await
        .expect("corrupt");
    sqlx::query("UPDATE meta SET value = value + 1 WHERE key = 'config_version'")
        .execute(&mut conn)
        .await
        .expect("bump");
    conn.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_refuses_bad_shaping_input() {
    let env = Env::new();
    env.import(json!({"alpha": metamcp_it::fixture_stdio("alpha", &[])}));
    env.cli_ok(&["namespace", "create", "ns", "--server", "alpha"]);
    for (args, want) in [
        (
            vec![
                "tool",
                "override",
                "ns",
                "alpha__echo",
                "--name",
                "bad name",
            ],
            "invalid tool name",
        ),
        (
            vec![
                "tool",
                "override",
                "ns",
                "alpha__echo",
                "--annotations",
                "[1]",
            ],
            "must be a JSON object",
        ),
        (
            vec!["namespace", "update", "ns", "--max-name-length", "8"],
            "at least 16",
        ),
        (vec!["tool", "disable", "ns", "re:("], "bad regex"),
        (vec!["tool", "disable", "nope", "x__y"], "no namespace"),
        (vec!["tool", "reset", "ns", "other__echo"], "no tool"),
    ] {
        let o = env.cli(&args);
        assert!(!o.ok, "{args:?} was accepted");
        assert!(
            o.stderr.contains(want) && o.stderr.trim().lines().count() == 1,
            "{args:?}: {}",
            o.stderr
        );
    }
    // A tool never listed yet can be named exactly, so a rule may precede it.
    let out = env.cli_ok(&["tool", "disable", "ns", "alpha__echo"]);
    assert!(out.contains("disabled: alpha__echo"), "{out}");
    let out = env.cli_ok(&["tool", "list", "ns"]);
    assert!(
        out.contains("alpha__echo") && out.contains("not reported by its server yet"),
        "{out}"
    );
}
