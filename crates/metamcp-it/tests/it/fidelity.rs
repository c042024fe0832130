//! Fidelity: what an upstream sends is what the client receives, byte for byte for call
//! results and field for field for listed items (only names are prefixed) — vendor fields,
//! unknown content types, `_meta`, escapes and odd numbers included — and results of many
//! megabytes pass whole. The upstream is `metamcp-fixture raw`, written without an SDK.

use metamcp_it::{Env, RawClient, bin};
use serde_json::{Value, json};

#[path = "../../src/bin/fixture/raw.rs"]
#[allow(dead_code)]
mod raw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_json_reaches_the_client_untouched() {
    let env = Env::new();
    env.import(
        json!({ "raw": {"command": bin("metamcp-fixture").to_string_lossy(), "args": ["raw"]} }),
    );
    env.cli_ok(&["namespace", "create", "ns", "--server", "raw"]);
    env.cli_ok(&["endpoint", "create", "ep", "--namespace", "ns", "--no-auth"]);
    let gw = env.serve().await;
    let mut c = RawClient::new(&gw.mcp_url("ep"));
    c.initialize().await;

    // Listed items: every field kept, only the name prefixed.
    let list = c.request("tools/list", json!({})).await.body;
    let mut expected = raw::tools_list()["tools"][0].clone();
    expected["name"] = json!("raw__weird");
    let got = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "raw__weird")
        .unwrap();
    assert_eq!(got, &expected);

    // A call result: the upstream's bytes, unchanged.
    let body = json!({"jsonrpc":"2.0","id":"fid-1","method":"tools/call","params":{"name":"raw__weird","arguments":{}}});
    let text = reqwest::Client::new()
        .post(gw.mcp_url("ep"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let upstream_bytes = raw::weird_result().to_string();
    assert_eq!(
        text,
        format!(r#"{{"jsonrpc":"2.0","id":"fid-1","result":{upstream_bytes}}}"#)
    );

    // An upstream error, with its data, likewise.
    let a = c
        .request("tools/call", json!({"name": "raw__nope", "arguments": {}}))
        .await
        .body;
    assert_eq!(
        a["error"],
        json!({"code": -32602, "message": "unknown tool", "data": {"x-why": "raw"}})
    );

    // Eight megabytes come through whole.
    let n = 8 * 1024 * 1024;
    let a = c
        .request(
            "tools/call",
            json!({"name": "raw__big", "arguments": {"bytes": n}}),
        )
        .await
        .body;
    let got = a["result"]["content"][0]["text"]
        .as_str()
        .map_or(0, str::len);
    assert_eq!(got, n);
    let _: Value = a;
}
