//! Store scenarios run against real databases, each once on SQLite and once on PostgreSQL
//! (see [`crate::testing`]), by concern: configuration reads and writes (`config`,
//! `namespaces`), transactions, change signals and what gateways record (`changes`),
//! secrets and files at rest (`secrets`), pending single sign-on logins (`oidc_logins`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use metamcp_core::mangle::PrefixMode;
use metamcp_core::{ServerSpec, Transport};
use sqlx::AssertSqlSafe;

use crate::testing::{Ctx, with_database};
use crate::*;

/// `w!(store, method(args))`: `tx.method(args)` in a write transaction of its own.
macro_rules! w {
    ($store:expr, $($call:tt)+) => {
        $store.write(async |tx: &mut Tx| tx.$($call)+.await)
    };
}

/// `r!(store, method(args))`: `tx.method(args)` in a read transaction of its own.
macro_rules! r {
    ($store:expr, $($call:tt)+) => {
        $store.read(async |tx: &mut Tx| tx.$($call)+.await)
    };
}

mod accounts;
mod audit;
mod changes;
mod config;
mod namespaces;
mod oauth;
mod oidc_logins;
mod owners;
mod secrets;
mod upstream_oauth;

fn stdio(name: &str, env: &[(&str, &str)]) -> ServerSpec {
    ServerSpec {
        name: name.to_owned(),
        description: Some(format!("{name} server")),
        transport: Transport::Stdio {
            command: "npx".to_owned(),
            args: vec![
                "-y".to_owned(),
                "@modelcontextprotocol/server-everything".to_owned(),
            ],
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        },
    }
}

fn http(name: &str, token: Option<&str>) -> ServerSpec {
    ServerSpec {
        name: name.to_owned(),
        description: None,
        transport: Transport::StreamableHttp {
            url: "https://mcp.example.com/mcp".to_owned(),
            headers: BTreeMap::from([("X-Api-Header".to_owned(), "header-secret-789".to_owned())]),
            bearer_token: token.map(str::to_owned),
        },
    }
}

fn tool(name: &str, description: &str) -> DiscoveredTool {
    DiscoveredTool {
        name: name.into(),
        title: Some(format!("{name} title")),
        description: Some(description.into()),
        input_schema: serde_json::json!({"type": "object", "properties": {"x": {"type": "string"}}}),
        annotations: Some(serde_json::json!({"readOnlyHint": true})),
    }
}
