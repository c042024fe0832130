//! End-to-end tests of metamcp: the real binary, real fixture upstreams (stdio child
//! processes and Streamable HTTP), real MCP clients over TCP, real SQLite and PostgreSQL.
//! One test binary (fast to link); each test gets its own data directory and ports.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod accounts;
mod admin;
mod apply;
mod audit;
mod auth;
mod authz;
mod bootstrap;
mod bounds;
mod browser;
mod churn;
mod cli;
mod config;
mod dashboard;
mod docs;
mod edge;
mod fidelity;
mod gateway;
mod inspector;
mod interop;
mod lifecycle;
mod lists;
mod metrics;
mod modern;
mod oauth;
mod oauth_replicas;
mod oauth_rmcp;
mod openapi;
mod otel;
mod ownership;
mod ratelimit;
mod relay;
mod secrets;
mod shaping;
mod sse;
mod sso;
mod tenancy;
mod upstream_oauth;

use metamcp_it::{Env, Gateway, fixture_stdio};
use serde_json::json;

/// A gateway with namespace `ns` = {alpha, beta} (stdio fixtures) on endpoint `ep`, and a key.
pub(crate) async fn two_server_gateway() -> (Env, Gateway, String) {
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
    let key = env.key("k1");
    let gw = env.serve().await;
    (env, gw, key)
}

/// What the fixture's `env` tool (exposed as `tool`) reports for variable `var` of its
/// process (`<unset>` when it has none).
pub(crate) async fn fixture_env(c: &metamcp_it::RawClient, tool: &str, var: &str) -> String {
    let a = c
        .request(
            "tools/call",
            json!({"name": tool, "arguments": {"name": var}}),
        )
        .await;
    first_text(&a.body["result"])
}

/// The text of the first content block of a tools/call result.
pub(crate) fn first_text(result: &serde_json::Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
