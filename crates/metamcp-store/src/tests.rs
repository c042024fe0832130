//! Store scenarios run against real databases, each once on SQLite and once on PostgreSQL
//! (see [`crate::testing`]).

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

crate::both_backends!(
    server_crud_and_secrets,
    upsert_is_idempotent,
    concurrent_creators_get_duplicate,
    namespaces_and_cascades,
    endpoint_flags,
    endpoint_rate_limits,
    api_keys,
    admin_keys,
    config_version_moves_only_on_config,
    watch_sees_other_store,
    tool_sync,
    tool_shaping,
    logs_are_trimmed,
    settings,
    wrong_key_is_a_decrypt_error,
    concurrent_open,
    one_transaction_bumps_once,
    members_change_by_difference,
    sealed_values_are_bound_to_their_row,
    v1_values_are_upgraded_on_open,
);

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

/// Every secret column of every server row, raw.
async fn raw_secret_columns(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for column in ["env", "headers", "bearer_token", "url_secret"] {
        let values: Vec<Option<String>> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT {column} FROM servers ORDER BY id"
        )))
        .fetch_all(store.pool())
        .await
        .unwrap();
        out.extend(values.into_iter().flatten());
    }
    out
}

/// The `url` column of a server, raw.
async fn raw_url(store: &Store, name: &str) -> Option<String> {
    sqlx::query_scalar("SELECT url FROM servers WHERE name = $1")
        .bind(name)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn server_crud_and_secrets(ctx: Ctx) {
    let store = ctx.open().await;
    store.ping().await.unwrap();
    assert!(r!(store, list_servers()).await.unwrap().is_empty());

    let everything = stdio("everything", &[("API_KEY", "plain-env-value-123")]);
    let remote = http("remote", Some("plain-token-456"));
    let legacy = ServerSpec {
        name: "legacy".into(),
        description: None,
        transport: Transport::Sse {
            url: "http://127.0.0.1:9/sse".into(),
            headers: BTreeMap::new(),
            bearer_token: None,
        },
    };
    let credentialed = ServerSpec {
        name: "credentialed".into(),
        description: None,
        transport: Transport::StreamableHttp {
            url: "https://url-user:url-pass-321@mcp.example.com/mcp?api_key=url-key-654&x=1".into(),
            headers: BTreeMap::new(),
            bearer_token: None,
        },
    };
    w!(store, create_server(&credentialed)).await.unwrap();
    assert_eq!(
        r!(store, get_server("credentialed"))
            .await
            .unwrap()
            .unwrap()
            .spec,
        credentialed
    );
    // The plain column shows where the credentials were, never them.
    assert_eq!(
        raw_url(&store, "credentialed").await.as_deref(),
        Some("https://<redacted>@mcp.example.com/mcp?api_key=<redacted>&x=1")
    );
    let created = w!(store, create_server(&remote)).await.unwrap();
    assert_eq!(created.spec, remote);
    w!(store, create_server(&everything)).await.unwrap();
    assert_eq!(raw_url(&store, "everything").await, None);
    w!(store, create_server(&legacy)).await.unwrap();

    let got = r!(store, get_server("everything")).await.unwrap().unwrap();
    assert_eq!(got.spec, everything);
    assert!(got.created_at > 0 && got.created_at == got.updated_at);
    assert_eq!(
        r!(store, get_server("remote")).await.unwrap().unwrap(),
        created
    );
    assert!(r!(store, get_server("nope")).await.unwrap().is_none());
    let names: Vec<_> = r!(store, list_servers())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.spec.name)
        .collect();
    assert_eq!(names, ["credentialed", "everything", "legacy", "remote"]);

    // Debug output of a record hides secrets too.
    let dbg = format!("{:?}", r!(store, list_servers()).await.unwrap());
    assert!(
        !dbg.contains("plain-env-value-123") && !dbg.contains("plain-token-456"),
        "{dbg}"
    );

    // The raw rows hold only sealed values.
    let raw = raw_secret_columns(&store).await;
    assert!(raw.len() >= 4, "{raw:?}");
    for value in &raw {
        assert!(value.starts_with("v2:"), "{value}");
        for plain in [
            "plain-env-value-123",
            "plain-token-456",
            "header-secret-789",
            "API_KEY",
            "url-pass-321",
            "url-key-654",
        ] {
            assert!(!value.contains(plain), "{value} contains {plain}");
        }
    }

    assert!(matches!(
        w!(store, create_server(&stdio("everything", &[]))).await,
        Err(StoreError::Duplicate { kind: "server", ref name }) if name == "everything"
    ));
    assert!(matches!(
        w!(store, create_server(&stdio("bad__name", &[]))).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        w!(store, create_server(&stdio("", &[]))).await,
        Err(StoreError::Invalid(_))
    ));
    let mut bad_url = http("badurl", None);
    if let Transport::StreamableHttp { url, .. } = &mut bad_url.transport {
        *url = "ftp://x".into();
    }
    assert!(matches!(
        w!(store, create_server(&bad_url)).await,
        Err(StoreError::Invalid(_))
    ));

    w!(store, remove_server("legacy")).await.unwrap();
    assert!(r!(store, get_server("legacy")).await.unwrap().is_none());
    assert!(matches!(
        w!(store, remove_server("legacy")).await,
        Err(StoreError::NotFound { kind: "server", ref name }) if name == "legacy"
    ));
    assert_eq!(r!(store, list_servers()).await.unwrap().len(), 3);
}

async fn upsert_is_idempotent(ctx: Ctx) {
    let store = ctx.open().await;
    let spec = stdio("s1", &[("TOKEN", "one")]);
    assert_eq!(
        w!(store, upsert_server(&spec)).await.unwrap(),
        Upsert::Created
    );
    let v = store.config_version().await.unwrap();
    let first = r!(store, get_server("s1")).await.unwrap().unwrap();

    assert_eq!(
        w!(store, upsert_server(&spec)).await.unwrap(),
        Upsert::Unchanged
    );
    assert_eq!(store.config_version().await.unwrap(), v);
    assert_eq!(r!(store, get_server("s1")).await.unwrap().unwrap(), first);

    let changed = stdio("s1", &[("TOKEN", "two")]);
    assert_eq!(
        w!(store, upsert_server(&changed)).await.unwrap(),
        Upsert::Updated
    );
    assert_eq!(store.config_version().await.unwrap(), v + 1);
    let after = r!(store, get_server("s1")).await.unwrap().unwrap();
    assert_eq!(after.spec, changed);
    assert_eq!(after.id, first.id);
    assert_eq!(after.created_at, first.created_at);

    // Changing the transport kind is an update too.
    let to_http = http("s1", None);
    assert_eq!(
        w!(store, upsert_server(&to_http)).await.unwrap(),
        Upsert::Updated
    );
    assert_eq!(
        r!(store, get_server("s1")).await.unwrap().unwrap().spec,
        to_http
    );
    assert_eq!(
        w!(store, upsert_server(&to_http)).await.unwrap(),
        Upsert::Unchanged
    );
}

async fn concurrent_creators_get_duplicate(ctx: Ctx) {
    let (a, b) = (ctx.open().await, ctx.open().await);
    let spec = stdio("race", &[]);
    for _ in 0..5 {
        let (ra, rb) = tokio::join!(w!(a, create_server(&spec)), w!(b, create_server(&spec)));
        let oks = [ra.is_ok(), rb.is_ok()].iter().filter(|ok| **ok).count();
        assert_eq!(oks, 1, "{ra:?} {rb:?}");
        let err = ra.err().or(rb.err()).unwrap();
        assert!(
            matches!(err, StoreError::Duplicate { kind: "server", .. }),
            "{err}"
        );
        w!(a, remove_server("race")).await.unwrap();
    }
    let (ra, rb) = tokio::join!(
        w!(a, create_namespace("ns", None, &[], PrefixMode::Always)),
        w!(b, create_namespace("ns", None, &[], PrefixMode::Always))
    );
    assert!(ra.is_ok() != rb.is_ok(), "{ra:?} {rb:?}");
    let err = ra.err().or(rb.err()).unwrap();
    assert!(
        matches!(
            err,
            StoreError::Duplicate {
                kind: "namespace",
                ..
            }
        ),
        "{err}"
    );
}

async fn namespaces_and_cascades(ctx: Ctx) {
    let store = ctx.open().await;
    for name in ["alpha", "beta", "gamma"] {
        w!(store, create_server(&stdio(name, &[]))).await.unwrap();
    }
    let v = store.config_version().await.unwrap();
    let err = w!(
        store,
        create_namespace(
            "ns1",
            None,
            &["alpha".into(), "missing".into()],
            PrefixMode::Always
        )
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "server", ref name } if name == "missing"),
        "{err}"
    );
    // The failed create left nothing behind and did not count as a change.
    assert!(r!(store, get_namespace("ns1")).await.unwrap().is_none());
    assert_eq!(store.config_version().await.unwrap(), v);

    let ns = w!(
        store,
        create_namespace(
            "ns1",
            Some("first"),
            &["gamma".into(), "alpha".into(), "gamma".into()],
            PrefixMode::Always
        )
    )
    .await
    .unwrap();
    assert_eq!(ns.name, "ns1");
    assert_eq!(ns.description.as_deref(), Some("first"));
    let members: Vec<_> = ns
        .servers
        .iter()
        .map(|m| (m.server_name.as_str(), m.active))
        .collect();
    assert_eq!(members, [("gamma", true), ("alpha", true)]);
    assert_eq!(r!(store, get_namespace("ns1")).await.unwrap().unwrap(), ns);
    assert!(matches!(
        w!(
            store,
            create_namespace("ns1", None, &[], PrefixMode::Always)
        )
        .await,
        Err(StoreError::Duplicate {
            kind: "namespace",
            ..
        })
    ));
    assert!(matches!(
        w!(
            store,
            create_namespace("bad name", None, &[], PrefixMode::Always)
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
    w!(
        store,
        create_namespace("empty", None, &[], PrefixMode::Always)
    )
    .await
    .unwrap();

    w!(store, set_namespace_server_active("ns1", "alpha", false))
        .await
        .unwrap();
    w!(store, add_namespace_server("ns1", "beta"))
        .await
        .unwrap();
    assert!(matches!(
        w!(store, add_namespace_server("ns1", "beta")).await,
        Err(StoreError::Duplicate { .. })
    ));
    assert!(matches!(
        w!(store, add_namespace_server("nope", "beta")).await,
        Err(StoreError::NotFound {
            kind: "namespace",
            ..
        })
    ));
    assert!(matches!(
        w!(store, set_namespace_server_active("empty", "beta", true)).await,
        Err(StoreError::NotFound { .. })
    ));
    let ns = r!(store, get_namespace("ns1")).await.unwrap().unwrap();
    let members: Vec<_> = ns
        .servers
        .iter()
        .map(|m| (m.server_name.as_str(), m.active))
        .collect();
    assert_eq!(members, [("gamma", true), ("alpha", false), ("beta", true)]);

    w!(store, remove_namespace_server("ns1", "gamma"))
        .await
        .unwrap();
    // Removing a server drops its memberships.
    w!(store, remove_server("alpha")).await.unwrap();
    let ns = r!(store, get_namespace("ns1")).await.unwrap().unwrap();
    let members: Vec<_> = ns.servers.iter().map(|m| m.server_name.as_str()).collect();
    assert_eq!(members, ["beta"]);

    let names: Vec<_> = r!(store, list_namespaces())
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["empty", "ns1"]);

    // Removing a namespace removes its endpoints, not other namespaces' ones.
    w!(
        store,
        create_endpoint("ep1", "ns1", None, true, false, EndpointLimits::default())
    )
    .await
    .unwrap();
    w!(
        store,
        create_endpoint("ep2", "ns1", None, true, false, EndpointLimits::default())
    )
    .await
    .unwrap();
    w!(
        store,
        create_endpoint("ep3", "empty", None, true, false, EndpointLimits::default())
    )
    .await
    .unwrap();
    w!(store, remove_namespace("ns1")).await.unwrap();
    let eps: Vec<_> = r!(store, list_endpoints())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(eps, ["ep3"]);
    assert!(matches!(
        w!(store, remove_namespace("ns1")).await,
        Err(StoreError::NotFound {
            kind: "namespace",
            ..
        })
    ));
    // The servers stay.
    assert!(r!(store, get_server("beta")).await.unwrap().is_some());
}

async fn endpoint_flags(ctx: Ctx) {
    let store = ctx.open().await;
    let ns = w!(store, create_namespace("ns", None, &[], PrefixMode::Always))
        .await
        .unwrap();
    let b = w!(
        store,
        create_endpoint(
            "b-open",
            "ns",
            Some("public"),
            false,
            true,
            EndpointLimits::default()
        )
    )
    .await
    .unwrap();
    let a = w!(
        store,
        create_endpoint(
            "a-keyed",
            "ns",
            None,
            true,
            false,
            EndpointLimits::default()
        )
    )
    .await
    .unwrap();
    assert_eq!((a.api_key_auth, a.query_auth), (true, false));
    assert_eq!((b.api_key_auth, b.query_auth), (false, true));
    assert_eq!(b.namespace_id, ns.id);
    assert_eq!(b.namespace_name, "ns");
    let listed = r!(store, list_endpoints()).await.unwrap();
    assert_eq!(listed, [a.clone(), b.clone()]);
    assert_eq!(r!(store, get_endpoint("b-open")).await.unwrap(), Some(b));
    assert!(matches!(
        w!(
            store,
            create_endpoint(
                "a-keyed",
                "ns",
                None,
                true,
                false,
                EndpointLimits::default()
            )
        )
        .await,
        Err(StoreError::Duplicate {
            kind: "endpoint",
            ..
        })
    ));
    assert!(matches!(
        w!(
            store,
            create_endpoint("c", "nope", None, true, false, EndpointLimits::default())
        )
        .await,
        Err(StoreError::NotFound {
            kind: "namespace",
            ..
        })
    ));
    assert!(matches!(
        w!(
            store,
            create_endpoint("c/d", "ns", None, true, false, EndpointLimits::default())
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
    w!(store, remove_endpoint("a-keyed")).await.unwrap();
    assert!(matches!(
        w!(store, remove_endpoint("a-keyed")).await,
        Err(StoreError::NotFound {
            kind: "endpoint",
            ..
        })
    ));
    assert_eq!(r!(store, list_endpoints()).await.unwrap().len(), 1);
}

async fn endpoint_rate_limits(ctx: Ctx) {
    use crate::{EndpointLimits, LimitsUpdate};
    use metamcp_core::RateLimit;
    let store = ctx.open().await;
    w!(store, create_namespace("ns", None, &[], PrefixMode::Always))
        .await
        .unwrap();
    let r = |s: &str| s.parse::<RateLimit>().unwrap();
    // Without limits: none stored, none read.
    let plain = w!(
        store,
        create_endpoint("plain", "ns", None, true, false, EndpointLimits::default())
    )
    .await
    .unwrap();
    assert_eq!((plain.rate, plain.client_rate), (None, None));
    // Created with limits: read back as written, by get and list.
    let limited = w!(
        store,
        create_endpoint(
            "limited",
            "ns",
            None,
            true,
            false,
            EndpointLimits {
                rate: Some(r("100/60")),
                client_rate: Some(r("4294967295/86400")),
            },
        )
    )
    .await
    .unwrap();
    assert_eq!(limited.rate, Some(r("100/60")));
    assert_eq!(limited.client_rate, Some(r("4294967295/86400")));
    assert_eq!(
        r!(store, get_endpoint("limited")).await.unwrap(),
        Some(limited.clone())
    );
    assert_eq!(
        r!(store, list_endpoints()).await.unwrap(),
        [limited.clone(), plain.clone()]
    );
    // Update: one limit set, the other left alone.
    let v = store.config_version().await.unwrap();
    let up = w!(
        store,
        update_endpoint_limits(
            "plain",
            LimitsUpdate {
                rate: Some(Some(r("3/1"))),
                client_rate: None,
            },
        )
    )
    .await
    .unwrap();
    assert_eq!((up.rate, up.client_rate), (Some(r("3/1")), None));
    assert_eq!(store.config_version().await.unwrap(), v + 1);
    assert_eq!(r!(store, get_endpoint("plain")).await.unwrap(), Some(up));
    // Removing one keeps the other.
    let up = w!(
        store,
        update_endpoint_limits(
            "limited",
            LimitsUpdate {
                rate: Some(None),
                client_rate: None,
            },
        )
    )
    .await
    .unwrap();
    assert_eq!((up.rate, up.client_rate), (None, limited.client_rate));
    let up = w!(
        store,
        update_endpoint_limits(
            "limited",
            LimitsUpdate {
                rate: Some(Some(r("7/7"))),
                client_rate: Some(None),
            },
        )
    )
    .await
    .unwrap();
    assert_eq!((up.rate, up.client_rate), (Some(r("7/7")), None));
    assert_eq!(r!(store, get_endpoint("limited")).await.unwrap(), Some(up));
    assert!(matches!(
        w!(
            store,
            update_endpoint_limits("nope", LimitsUpdate::default())
        )
        .await,
        Err(StoreError::NotFound {
            kind: "endpoint",
            ..
        })
    ));
}

fn is_key_format(key: &str) -> bool {
    key.len() == 70
        && key.starts_with("sk_mt_")
        && key[6..].bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn api_keys(ctx: Ctx) {
    let store = ctx.open().await;
    let (rec, key) = w!(store, create_api_key("ci", false)).await.unwrap();
    assert!(is_key_format(&key), "{key}");
    assert_eq!(rec.prefix, key[..10]);
    assert!(rec.active && rec.revoked_at.is_none());
    let (_, key2) = w!(store, create_api_key("laptop", false)).await.unwrap();
    assert_ne!(key, key2);

    // Nothing in the table reveals the key.
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT id, name, key_hash, key_prefix FROM api_keys")
            .fetch_all(store.pool())
            .await
            .unwrap();
    for (id, name, hash, prefix) in &rows {
        for col in [id, name, hash, prefix] {
            assert!(
                !col.contains(&key[10..]) && !col.contains(&key2[10..]),
                "{col}"
            );
        }
    }

    let active = r!(store, active_api_keys()).await.unwrap();
    assert_eq!(active.len(), 2);
    let ci = active.iter().find(|k| k.name == "ci").unwrap();
    assert_eq!(ci.hash, hash_api_key(&key));
    assert_eq!(ci.id, rec.id);

    assert!(matches!(
        w!(store, create_api_key("ci", false)).await,
        Err(StoreError::Duplicate {
            kind: "api key",
            ..
        })
    ));
    w!(store, revoke_api_key("ci")).await.unwrap();
    let active = r!(store, active_api_keys()).await.unwrap();
    assert_eq!(
        active.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["laptop"]
    );
    let listed = r!(store, list_api_keys()).await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["ci", "laptop"]
    );
    assert!(!listed[0].active);
    let revoked_at = listed[0].revoked_at.unwrap();
    assert!(revoked_at >= listed[0].created_at);
    w!(store, revoke_api_key("ci")).await.unwrap();
    assert_eq!(
        r!(store, list_api_keys()).await.unwrap()[0].revoked_at,
        Some(revoked_at)
    );
    assert!(matches!(
        w!(store, revoke_api_key("nope")).await,
        Err(StoreError::NotFound {
            kind: "api key",
            ..
        })
    ));
}

async fn admin_keys(ctx: Ctx) {
    let store = ctx.open().await;
    let (plain, _) = w!(store, create_api_key("plain", false)).await.unwrap();
    assert!(!plain.admin);
    let v = store.config_version().await.unwrap();
    let (root, key) = w!(store, create_api_key("root", true)).await.unwrap();
    assert!(root.admin && root.active);
    assert!(store.config_version().await.unwrap() > v);

    let listed = r!(store, list_api_keys()).await.unwrap();
    let flags: Vec<(&str, bool)> = listed.iter().map(|k| (k.name.as_str(), k.admin)).collect();
    assert_eq!(flags, [("plain", false), ("root", true)]);
    let active = r!(store, active_api_keys()).await.unwrap();
    let r = active.iter().find(|k| k.name == "root").unwrap();
    assert!(r.admin);
    assert_eq!(r.hash, hash_api_key(&key));
    assert!(!active.iter().find(|k| k.name == "plain").unwrap().admin);

    // A revoked admin key is no longer among the active ones, admin or not.
    w!(store, revoke_api_key("root")).await.unwrap();
    assert!(
        r!(store, active_api_keys())
            .await
            .unwrap()
            .iter()
            .all(|k| k.name != "root")
    );
    assert!(r!(store, list_api_keys()).await.unwrap()[1].admin);
}

async fn config_version_moves_only_on_config(ctx: Ctx) {
    let store = ctx.open().await;
    let mut v = store.config_version().await.unwrap();
    assert_eq!(v, 0);
    macro_rules! bumps {
        ($e:expr) => {{
            let out = $e.await.unwrap();
            let now = store.config_version().await.unwrap();
            assert_eq!(now, v + 1, "{}", stringify!($e));
            v = now;
            out
        }};
    }
    macro_rules! keeps {
        ($e:expr) => {{
            let _ = $e.await;
            assert_eq!(
                store.config_version().await.unwrap(),
                v,
                "{}",
                stringify!($e)
            );
        }};
    }
    let rec = bumps!(w!(store, create_server(&stdio("s", &[]))));
    bumps!(w!(store, upsert_server(&stdio("t", &[]))));
    bumps!(w!(store, upsert_server(&stdio("t", &[("A", "b")]))));
    keeps!(w!(store, upsert_server(&stdio("t", &[("A", "b")]))));
    bumps!(w!(
        store,
        create_namespace("ns", None, &["s".into()], PrefixMode::Always)
    ));
    bumps!(w!(store, add_namespace_server("ns", "t")));
    bumps!(w!(store, set_namespace_server_active("ns", "t", false)));
    bumps!(w!(store, remove_namespace_server("ns", "t")));
    bumps!(w!(
        store,
        create_endpoint("ep", "ns", None, true, false, EndpointLimits::default())
    ));
    bumps!(w!(
        store,
        update_endpoint_limits(
            "ep",
            crate::LimitsUpdate {
                rate: Some("5/1".parse().ok()),
                client_rate: None,
            }
        )
    ));
    keeps!(w!(
        store,
        update_endpoint_limits("nope", crate::LimitsUpdate::default())
    ));
    bumps!(w!(store, remove_endpoint("ep")));
    bumps!(w!(store, create_api_key("k", false)));
    bumps!(w!(store, revoke_api_key("k")));
    bumps!(w!(store, set_setting("theme", "dark")));
    let tool = DiscoveredTool {
        name: "echo".into(),
        title: None,
        description: None,
        input_schema: serde_json::json!({"type": "object"}),
        annotations: None,
    };
    keeps!(store.sync_tools(&rec.id, std::slice::from_ref(&tool)));
    keeps!(store.append_server_logs(
        &rec.id,
        &[LogLine {
            ts_ms: 1,
            line: "x".into()
        }],
        10
    ));
    // Failed mutations do not count.
    keeps!(w!(store, create_server(&stdio("s", &[]))));
    keeps!(w!(store, remove_server("nope")));
    keeps!(w!(store, remove_endpoint("nope")));
    keeps!(w!(store, revoke_api_key("nope")));
    bumps!(w!(store, remove_namespace("ns")));
    bumps!(w!(store, remove_server("s")));
    assert_eq!(v, 15);
}

async fn watch_sees_other_store(ctx: Ctx) {
    let a = ctx.open().await;
    let b = ctx.open().await;
    // On PostgreSQL the poll is far longer than the deadline, so only NOTIFY can be in time.
    let poll = match ctx.backend {
        Backend::Sqlite => Duration::from_millis(100),
        Backend::Postgres => Duration::from_secs(60),
    };
    let mut rx = a.watch_changes(poll);
    let start = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|v| *v >= 0))
        .await
        .expect("initial version published")
        .map(|v| *v)
        .unwrap();
    assert_eq!(start, a.config_version().await.unwrap());

    for round in 1..=2 {
        w!(b, set_setting("k", &round.to_string())).await.unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|v| *v > start))
            .await
            .unwrap_or_else(|_| panic!("round {round}: change not seen within 2 s"))
            .map(|v| *v)
            .unwrap();
        assert!(seen > start);
        let target = b.config_version().await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|v| *v == target))
            .await
            .unwrap()
            .unwrap();
    }
    // Not a configuration change: nothing new arrives.
    let rec = w!(b, create_server(&stdio("s", &[]))).await.unwrap();
    let v = b.config_version().await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|x| *x == v))
        .await
        .unwrap()
        .unwrap();
    rx.mark_unchanged();
    b.append_server_logs(
        &rec.id,
        &[LogLine {
            ts_ms: 1,
            line: "l".into(),
        }],
        5,
    )
    .await
    .unwrap();
    b.sync_tools(&rec.id, &[]).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(400), rx.changed()).await;
    assert!(
        quiet.is_err(),
        "logs and tool sync must not signal a change"
    );
    // Dropping the last receiver ends the task, which releases its clone of the store.
    drop(rx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while Arc::strong_count(&a.inner) > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watch task still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
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

async fn tool_sync(ctx: Ctx) {
    let store = ctx.open().await;
    let s = w!(store, create_server(&stdio("s", &[]))).await.unwrap();
    let other = w!(store, create_server(&stdio("other", &[])))
        .await
        .unwrap();
    store
        .sync_tools(&other.id, &[tool("keep", "mine")])
        .await
        .unwrap();

    store
        .sync_tools(&s.id, &[tool("b", "bee"), tool("a", "ay")])
        .await
        .unwrap();
    assert_eq!(
        r!(store, list_tools(&s.id)).await.unwrap(),
        [tool("a", "ay"), tool("b", "bee")]
    );

    let bare = DiscoveredTool {
        name: "c".into(),
        title: None,
        description: None,
        input_schema: serde_json::json!({}),
        annotations: None,
    };
    store
        .sync_tools(&s.id, &[tool("b", "bee v2"), bare.clone()])
        .await
        .unwrap();
    assert_eq!(
        r!(store, list_tools(&s.id)).await.unwrap(),
        [tool("b", "bee v2"), bare]
    );
    // Other servers' tools are untouched.
    assert_eq!(
        r!(store, list_tools(&other.id)).await.unwrap(),
        [tool("keep", "mine")]
    );

    store.sync_tools(&s.id, &[]).await.unwrap();
    assert!(r!(store, list_tools(&s.id)).await.unwrap().is_empty());
    assert!(matches!(
        store.sync_tools("no-such-id", &[tool("a", "ay")]).await,
        Err(StoreError::NotFound { kind: "server", .. })
    ));
    // Tools go with their server.
    w!(store, remove_server("other")).await.unwrap();
    assert!(r!(store, list_tools(&other.id)).await.unwrap().is_empty());
}

async fn tool_shaping(ctx: Ctx) {
    let store = ctx.open().await;
    w!(store, create_server(&stdio("a", &[]))).await.unwrap();
    w!(store, create_server(&stdio("b", &[]))).await.unwrap();
    w!(
        store,
        create_namespace("ns", None, &["a".to_owned()], PrefixMode::Always)
    )
    .await
    .unwrap();
    let ns = r!(store, get_namespace("ns")).await.unwrap().unwrap();
    assert!(ns.new_tools_enabled && ns.max_name_length.is_none() && ns.tools.is_empty());

    let v0 = store.config_version().await.unwrap();
    let off = ToolRuleRecord {
        server_name: "a".into(),
        tool: "add".into(),
        status: Some("INACTIVE".into()),
        ..ToolRuleRecord::default()
    };
    let renamed = ToolRuleRecord {
        server_name: "a".into(),
        tool: "echo".into(),
        name: Some("say".into()),
        annotations: Some(r#"{"readOnlyHint":true}"#.into()),
        ..ToolRuleRecord::default()
    };
    w!(
        store,
        change_shaping(
            "ns",
            &ShapingChange {
                new_tools_enabled: Some(false),
                max_name_length: Some(Some(64)),
                rules: vec![off.clone(), renamed.clone()],
            },
        )
    )
    .await
    .unwrap();
    assert_eq!(
        store.config_version().await.unwrap(),
        v0 + 1,
        "one change, one bump"
    );
    let ns = r!(store, get_namespace("ns")).await.unwrap().unwrap();
    assert!(!ns.new_tools_enabled);
    assert_eq!(ns.max_name_length, Some(64));
    let got: Vec<(String, String, Option<String>, Option<String>)> = ns
        .tools
        .iter()
        .map(|r| {
            (
                r.server_name.clone(),
                r.tool.clone(),
                r.status.clone(),
                r.name.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a".into(), "add".into(), Some("INACTIVE".into()), None),
            ("a".into(), "echo".into(), None, Some("say".into())),
        ]
    );
    assert_eq!(
        ns.tools[1].annotations.as_deref(),
        Some(r#"{"readOnlyHint":true}"#)
    );

    // Rewriting a rule replaces it whole; an empty rule deletes it; the limit can be removed.
    w!(
        store,
        change_shaping(
            "ns",
            &ShapingChange {
                max_name_length: Some(None),
                rules: vec![
                    ToolRuleRecord {
                        status: Some("ACTIVE".into()),
                        ..off
                    },
                    ToolRuleRecord {
                        server_name: "a".into(),
                        tool: "echo".into(),
                        ..ToolRuleRecord::default()
                    },
                ],
                ..ShapingChange::default()
            },
        )
    )
    .await
    .unwrap();
    let ns = r!(store, get_namespace("ns")).await.unwrap().unwrap();
    assert_eq!(ns.max_name_length, None);
    assert!(!ns.new_tools_enabled, "untouched when not asked");
    assert_eq!(ns.tools.len(), 1);
    assert_eq!(ns.tools[0].status.as_deref(), Some("ACTIVE"));

    // A rule for a server outside the namespace, or an unknown namespace, is refused.
    let foreign = ShapingChange {
        rules: vec![ToolRuleRecord {
            server_name: "b".into(),
            tool: "x".into(),
            status: Some("INACTIVE".into()),
            ..ToolRuleRecord::default()
        }],
        ..ShapingChange::default()
    };
    assert!(matches!(
        w!(store, change_shaping("ns", &foreign)).await,
        Err(StoreError::NotFound {
            kind: "namespace member",
            ..
        })
    ));
    assert!(matches!(
        w!(store, change_shaping("nope", &ShapingChange::default())).await,
        Err(StoreError::NotFound {
            kind: "namespace",
            ..
        })
    ));
    // Rules go with their server and their namespace.
    w!(store, remove_server("a")).await.unwrap();
    let ns = r!(store, get_namespace("ns")).await.unwrap().unwrap();
    assert!(ns.tools.is_empty());
}

fn lines(range: std::ops::Range<i64>) -> Vec<LogLine> {
    range
        .map(|i| LogLine {
            ts_ms: 1_000 + i,
            line: format!("line {i}"),
        })
        .collect()
}

async fn logs_are_trimmed(ctx: Ctx) {
    let store = ctx.open().await;
    let s = w!(store, create_server(&stdio("s", &[]))).await.unwrap();
    let t = w!(store, create_server(&stdio("t", &[]))).await.unwrap();
    store
        .append_server_logs(&t.id, &lines(0..4), 100)
        .await
        .unwrap();

    store
        .append_server_logs(&s.id, &lines(0..5), 3)
        .await
        .unwrap();
    assert_eq!(r!(store, server_logs("s", 10)).await.unwrap(), lines(2..5));
    assert_eq!(r!(store, server_logs("s", 2)).await.unwrap(), lines(3..5));
    store
        .append_server_logs(&s.id, &lines(5..7), 3)
        .await
        .unwrap();
    assert_eq!(r!(store, server_logs("s", 10)).await.unwrap(), lines(4..7));
    store.append_server_logs(&s.id, &[], 3).await.unwrap();
    assert_eq!(r!(store, server_logs("s", 10)).await.unwrap(), lines(4..7));
    // The other server's lines are kept.
    assert_eq!(r!(store, server_logs("t", 10)).await.unwrap(), lines(0..4));
    store.append_server_logs(&s.id, &[], 0).await.unwrap();
    assert!(r!(store, server_logs("s", 10)).await.unwrap().is_empty());
    assert!(r!(store, server_logs("s", 0)).await.unwrap().is_empty());

    assert!(matches!(
        r!(store, server_logs("nope", 10)).await,
        Err(StoreError::NotFound { kind: "server", .. })
    ));
    assert!(matches!(
        store
            .append_server_logs("no-such-id", &lines(0..1), 10)
            .await,
        Err(StoreError::NotFound { kind: "server", .. })
    ));
}

async fn settings(ctx: Ctx) {
    let store = ctx.open().await;
    assert_eq!(r!(store, get_setting("a")).await.unwrap(), None);
    w!(store, set_setting("b", "2")).await.unwrap();
    w!(store, set_setting("a", "1")).await.unwrap();
    w!(store, set_setting("a", "one")).await.unwrap();
    assert_eq!(
        r!(store, get_setting("a")).await.unwrap().as_deref(),
        Some("one")
    );
    assert_eq!(
        r!(store, list_settings()).await.unwrap(),
        [
            ("a".to_owned(), "one".to_owned()),
            ("b".to_owned(), "2".to_owned())
        ]
    );
    assert!(matches!(
        w!(store, set_setting("", "x")).await,
        Err(StoreError::Invalid(_))
    ));
}

async fn wrong_key_is_a_decrypt_error(ctx: Ctx) {
    let key = |b: u8| Some(base64::engine::general_purpose::STANDARD.encode([b; 32]));
    let right = Store::open(ctx.options(key(1))).await.unwrap();
    w!(right, create_server(&stdio("secretive", &[("K", "v")])))
        .await
        .unwrap();
    w!(right, create_server(&http("tokened", Some("t"))))
        .await
        .unwrap();

    let wrong = Store::open(ctx.options(key(2))).await.unwrap();
    let err = r!(wrong, list_servers()).await.unwrap_err();
    assert!(matches!(err, StoreError::Decrypt(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("secretive") || msg.contains("tokened"),
        "{msg}"
    );
    // The message says which key sealed it and which one is configured.
    assert!(
        msg.contains("sealed with key") && msg.contains("METAMCP_SECRET_KEY"),
        "{msg}"
    );
    let err = r!(wrong, get_server("tokened")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Decrypt(ref m) if m.contains("tokened")),
        "{err}"
    );
    // Import cannot silently overwrite what it cannot read.
    assert!(matches!(
        w!(wrong, upsert_server(&stdio("secretive", &[("K", "v")]))).await,
        Err(StoreError::Decrypt(_))
    ));
    // The key file is a third key, also wrong.
    let filed = ctx.open().await;
    assert!(matches!(
        r!(filed, list_servers()).await,
        Err(StoreError::Decrypt(_))
    ));
    // A malformed key is refused before anything is opened.
    assert!(matches!(
        Store::open(ctx.options(Some("not-a-key".into()))).await,
        Err(StoreError::Config(_))
    ));
    assert_eq!(r!(right, list_servers()).await.unwrap().len(), 2);
}

async fn concurrent_open(ctx: Ctx) {
    let (a, b, c) = tokio::join!(
        Store::open(ctx.options(None)),
        Store::open(ctx.options(None)),
        Store::open(ctx.options(None))
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    w!(a, create_server(&stdio("x", &[("K", "v")])))
        .await
        .unwrap();
    // All three share the key file and see the same data.
    assert_eq!(
        r!(b, get_server("x")).await.unwrap().unwrap().spec,
        stdio("x", &[("K", "v")])
    );
    assert_eq!(c.config_version().await.unwrap(), 1);
}

#[tokio::test]
async fn rejects_unknown_urls() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        database_url: Some("mysql://root:hunter2@localhost/db".into()),
        data_dir: dir.path().to_owned(),
        secret_key: None,
    };
    let dbg = format!("{opts:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    let err = Store::open(opts).await.unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn sqlite_url_and_default_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub dir/my.db");
    let opts = StoreOptions {
        database_url: Some(format!("sqlite://{}", path.display())),
        data_dir: dir.path().join("data"),
        secret_key: None,
    };
    let store = Store::open(opts).await.unwrap();
    w!(store, set_setting("x", "y")).await.unwrap();
    assert!(path.exists());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);

    let data = dir.path().join("fresh");
    let store = Store::open(StoreOptions {
        data_dir: data.clone(),
        ..StoreOptions::default()
    })
    .await
    .unwrap();
    store.ping().await.unwrap();
    assert!(data.join(DEFAULT_DB_FILE).exists() && data.join(KEY_FILE).exists());
}

#[test]
fn replaces_database_in_url() {
    assert_eq!(
        with_database("postgres://u@h:5/test", "x"),
        "postgres://u@h:5/x"
    );
    assert_eq!(
        with_database("postgres://u@h/test?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}

async fn one_transaction_bumps_once(ctx: Ctx) {
    let store = ctx.open().await;
    let v = store.config_version().await.unwrap();
    // Many writes, one commit: one bump, and a NOTIFY-carried version equal to it.
    let committed = store
        .write(async |tx: &mut Tx| {
            tx.create_server(&stdio("a", &[])).await?;
            tx.create_server(&stdio("b", &[])).await?;
            tx.create_namespace("ns", None, &["a".into()], PrefixMode::Always)
                .await?;
            tx.add_namespace_server("ns", "b").await?;
            tx.set_setting("k", "v").await?;
            assert!(tx.changed());
            Ok::<_, StoreError>(())
        })
        .await;
    committed.unwrap();
    assert_eq!(store.config_version().await.unwrap(), v + 1);

    // A failure half-way rolls everything back: no server c, no bump.
    let failed = store
        .write(async |tx: &mut Tx| {
            tx.create_server(&stdio("c", &[])).await?;
            tx.add_namespace_server("ns", "ghost").await
        })
        .await;
    assert!(matches!(
        failed,
        Err(StoreError::NotFound { kind: "server", .. })
    ));
    assert!(r!(store, get_server("c")).await.unwrap().is_none());
    assert_eq!(store.config_version().await.unwrap(), v + 1);

    // Explicit commit reports the new version; an unchanged transaction reports none.
    let mut tx = store.begin().await.unwrap();
    tx.set_setting("k", "w").await.unwrap();
    assert_eq!(tx.commit().await.unwrap(), Some(v + 2));
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.upsert_server(&stdio("a", &[])).await.unwrap(),
        Upsert::Unchanged
    );
    assert_eq!(tx.commit().await.unwrap(), None);
    // Rolled back: nothing written, nothing bumped.
    let mut tx = store.begin().await.unwrap();
    tx.remove_server("a").await.unwrap();
    tx.rollback().await.unwrap();
    assert!(r!(store, get_server("a")).await.unwrap().is_some());
    assert_eq!(store.config_version().await.unwrap(), v + 2);

    // A read transaction refuses writes and sees the version it started with.
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.config_version().await.unwrap(), v + 2);
    assert!(matches!(
        read.set_setting("k", "x").await,
        Err(StoreError::ReadOnly)
    ));
    read.rollback().await.unwrap();
    let mut read = store.begin_read().await.unwrap();
    assert_eq!(read.list_servers().await.unwrap().len(), 2);
    w!(store, set_setting("k", "y")).await.unwrap();
    // One consistent state: the write committed meanwhile is not seen (on SQLite the
    // snapshot starts at the first read, list_servers above).
    assert_eq!(read.get_setting("k").await.unwrap().as_deref(), Some("w"));
    assert_eq!(read.config_version().await.unwrap(), v + 2);
    read.commit().await.unwrap();
    assert_eq!(store.config_version().await.unwrap(), v + 3);
}

async fn members_change_by_difference(ctx: Ctx) {
    let store = ctx.open().await;
    for name in ["a", "b", "c", "d"] {
        w!(store, create_server(&stdio(name, &[]))).await.unwrap();
    }
    w!(
        store,
        create_namespace(
            "ns",
            None,
            &["a".into(), "b".into(), "c".into()],
            PrefixMode::Always
        )
    )
    .await
    .unwrap();
    w!(
        store,
        change_shaping(
            "ns",
            &ShapingChange {
                rules: vec![ToolRuleRecord {
                    server_name: "b".into(),
                    tool: "echo".into(),
                    status: Some("INACTIVE".into()),
                    ..ToolRuleRecord::default()
                }],
                ..ShapingChange::default()
            }
        )
    )
    .await
    .unwrap();
    let raw = async |store: &Store| -> Vec<(String, String, i64)> {
        sqlx::query_as(
            "SELECT s.name, m.status, m.position FROM namespace_servers m \
             JOIN servers s ON s.id = m.server_id ORDER BY m.position, s.name",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
    };
    let members = |list: &[(&str, bool)]| -> Vec<(String, bool)> {
        list.iter().map(|(s, a)| ((*s).to_owned(), *a)).collect()
    };
    let v = store.config_version().await.unwrap();
    // Remove a, keep b (now inactive) and c, append d: kept rows keep their positions.
    w!(
        store,
        set_namespace_members("ns", &members(&[("b", false), ("c", true), ("d", true)]))
    )
    .await
    .unwrap();
    assert_eq!(
        raw(&store).await,
        [
            ("b".to_owned(), "INACTIVE".to_owned(), 1),
            ("c".to_owned(), "ACTIVE".to_owned(), 2),
            ("d".to_owned(), "ACTIVE".to_owned(), 3),
        ]
    );
    assert_eq!(store.config_version().await.unwrap(), v + 1);
    // The same list again changes nothing and bumps nothing.
    w!(
        store,
        set_namespace_members("ns", &members(&[("b", false), ("c", true), ("d", true)]))
    )
    .await
    .unwrap();
    assert_eq!(store.config_version().await.unwrap(), v + 1);
    // A member put before kept ones renumbers them.
    let first = members(&[("a", true), ("b", false), ("c", true), ("d", true)]);
    w!(store, set_namespace_members("ns", &first))
        .await
        .unwrap();
    let order: Vec<String> = raw(&store).await.into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(order, ["a", "b", "c", "d"]);
    // A new order renumbers.
    w!(
        store,
        set_namespace_members("ns", &members(&[("d", true), ("b", true), ("c", true)]))
    )
    .await
    .unwrap();
    let ns = r!(store, get_namespace("ns")).await.unwrap().unwrap();
    let got: Vec<(&str, bool)> = ns
        .servers
        .iter()
        .map(|m| (m.server_name.as_str(), m.active))
        .collect();
    assert_eq!(got, [("d", true), ("b", true), ("c", true)]);
    // b's tool rule survived: membership was never dropped and re-added.
    assert_eq!(ns.tools.len(), 1);
    assert_eq!(ns.tools[0].server_name, "b");
    // Unknown servers are refused and change nothing.
    assert!(matches!(
        w!(
            store,
            set_namespace_members("ns", &members(&[("ghost", true)]))
        )
        .await,
        Err(StoreError::NotFound { kind: "server", .. })
    ));
    assert_eq!(
        r!(store, get_namespace("ns"))
            .await
            .unwrap()
            .unwrap()
            .servers
            .len(),
        3
    );
}

async fn sealed_values_are_bound_to_their_row(ctx: Ctx) {
    let store = ctx.open().await;
    w!(store, create_server(&http("first", Some("token-of-first"))))
        .await
        .unwrap();
    w!(
        store,
        create_server(&http("second", Some("token-of-second")))
    )
    .await
    .unwrap();
    w!(
        store,
        create_server(&stdio("third", &[("K", "env-of-third")]))
    )
    .await
    .unwrap();
    // Copy first's sealed token into second's row, and third's env into second's headers.
    sqlx::query(
        "UPDATE servers SET bearer_token = (SELECT bearer_token FROM servers WHERE name = 'first') \
         WHERE name = 'second'",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let err = r!(store, get_server("second")).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, StoreError::Decrypt(_))
            && msg.contains("bearer_token")
            && msg.contains("\"second\"")
            && msg.contains("does not belong"),
        "{msg}"
    );
    assert!(matches!(
        r!(store, list_servers()).await,
        Err(StoreError::Decrypt(_))
    ));
    // The row the value came from is untouched.
    let first = r!(store, get_server("first")).await.unwrap().unwrap();
    assert_eq!(first.spec, http("first", Some("token-of-first")));
    sqlx::query(
        "UPDATE servers SET bearer_token = NULL, headers = (SELECT env FROM servers WHERE name = 'third') \
         WHERE name = 'second'",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let err = r!(store, get_server("second")).await.unwrap_err();
    assert!(err.to_string().contains("cannot decrypt headers"), "{err}");
}

/// A store written by the previous format: secrets sealed as `v1:` (column binding only),
/// inserted with raw SQL. Opening it re-seals them as v2, once.
async fn v1_values_are_upgraded_on_open(ctx: Ctx) {
    let engine = base64::engine::general_purpose::STANDARD;
    let key = [5u8; 32];
    let opts = || ctx.options(Some(engine.encode(key)));
    let store = Store::open(opts()).await.unwrap();
    let v1 = |column: &str, json: &str| {
        crate::secrets::seal_v1(&key, &format!("servers.{column}"), json.as_bytes())
    };
    let insert = "INSERT INTO servers (id, name, kind, command, args, env, url, headers, \
                  bearer_token, created_at, updated_at) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, 1)";
    sqlx::query(insert)
        .bind("id-old-stdio")
        .bind("old-stdio")
        .bind("STDIO")
        .bind("npx")
        .bind(r#"["-y","pkg"]"#)
        .bind(v1("env", r#"{"TOKEN":"env-secret"}"#))
        .bind(None::<String>)
        .bind(None::<String>)
        .bind(None::<String>)
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query(insert)
        .bind("id-old-http")
        .bind("old-http")
        .bind("STREAMABLE_HTTP")
        .bind(None::<String>)
        .bind("[]")
        .bind(None::<String>)
        .bind("https://old:url-pass@mcp.example.com/mcp?token=url-token&page=1")
        .bind(v1("headers", r#"{"X-Api":"header-secret"}"#))
        .bind(v1("bearer_token", r#""bearer-secret""#))
        .execute(store.pool())
        .await
        .unwrap();
    let version = store.config_version().await.unwrap();
    store.close().await;

    // Opened with another key: the store opens, the values stay v1 and report the key.
    let other = Store::open(ctx.options(Some(engine.encode([6u8; 32]))))
        .await
        .unwrap();
    assert!(matches!(
        r!(other, get_server("old-http")).await,
        Err(StoreError::Decrypt(_))
    ));
    // Nothing was sealed with the wrong key: the values are as they were.
    assert!(
        raw_secret_columns(&other)
            .await
            .iter()
            .all(|v| v.starts_with("v1:"))
    );
    assert_eq!(
        raw_url(&other, "old-http").await.as_deref(),
        Some("https://old:url-pass@mcp.example.com/mcp?token=url-token&page=1")
    );
    other.close().await;

    let store = Store::open(opts()).await.unwrap();
    let raw = raw_secret_columns(&store).await;
    assert_eq!(raw.len(), 4, "{raw:?}");
    assert!(raw.iter().all(|v| v.starts_with("v2:")), "{raw:?}");
    assert_eq!(
        raw_url(&store, "old-http").await.as_deref(),
        Some("https://<redacted>@mcp.example.com/mcp?token=<redacted>&page=1")
    );
    let got = r!(store, get_server("old-stdio")).await.unwrap().unwrap();
    assert_eq!(
        got.spec.transport,
        Transport::Stdio {
            command: "npx".into(),
            args: vec!["-y".into(), "pkg".into()],
            env: BTreeMap::from([("TOKEN".into(), "env-secret".into())]),
        }
    );
    let got = r!(store, get_server("old-http")).await.unwrap().unwrap();
    assert_eq!(
        got.spec.transport,
        Transport::StreamableHttp {
            url: "https://old:url-pass@mcp.example.com/mcp?token=url-token&page=1".into(),
            headers: BTreeMap::from([("X-Api".into(), "header-secret".into())]),
            bearer_token: Some("bearer-secret".into()),
        }
    );
    // Not a configuration change.
    assert_eq!(store.config_version().await.unwrap(), version);
    // Idempotent: nothing left to do, nothing rewritten.
    assert_eq!(
        crate::upgrade::run(&store).await.unwrap(),
        crate::upgrade::Upgraded::default()
    );
    store.close().await;
    let again = Store::open(opts()).await.unwrap();
    assert_eq!(raw_secret_columns(&again).await, raw);
    assert_eq!(
        raw_url(&again, "old-http").await.as_deref(),
        Some("https://<redacted>@mcp.example.com/mcp?token=<redacted>&page=1")
    );
}

/// The data directory is private (0700) and so are the database, its WAL files and the key
/// file (0600): when created, and when an existing installation had them looser.
#[tokio::test]
async fn store_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let opts = || StoreOptions {
        data_dir: data.clone(),
        ..StoreOptions::default()
    };
    let files = [
        data.join(DEFAULT_DB_FILE),
        data.join(format!("{DEFAULT_DB_FILE}-wal")),
        data.join(format!("{DEFAULT_DB_FILE}-shm")),
        data.join(KEY_FILE),
    ];

    // A fresh installation.
    let store = Store::open(opts()).await.unwrap();
    w!(store, set_setting("k", "v")).await.unwrap();
    assert_eq!(mode(&data), 0o700);
    for f in &files {
        assert!(f.exists(), "{} missing", f.display());
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    store.close().await;

    // An installation made by hand: a 0755 directory with a 0644 database and key.
    let legacy = tmp.path().join("legacy");
    std::fs::create_dir(&legacy).unwrap();
    set(&legacy, 0o755);
    std::fs::write(legacy.join(DEFAULT_DB_FILE), b"").unwrap();
    std::fs::write(legacy.join(KEY_FILE), generate_master_key().unwrap()).unwrap();
    set(&legacy.join(DEFAULT_DB_FILE), 0o644);
    set(&legacy.join(KEY_FILE), 0o644);
    let store = Store::open(StoreOptions {
        data_dir: legacy.clone(),
        ..StoreOptions::default()
    })
    .await
    .unwrap();
    w!(store, set_setting("k", "v")).await.unwrap();
    assert_eq!(mode(&legacy), 0o700);
    for f in [
        DEFAULT_DB_FILE,
        KEY_FILE,
        "metamcp.db-wal",
        "metamcp.db-shm",
    ] {
        assert_eq!(mode(&legacy.join(f)), 0o600, "{f}");
    }
    store.close().await;

    // Loosened again after use (WAL files included): tightened on the next open.
    set(&data, 0o755);
    for f in &files {
        if f.exists() {
            set(f, 0o644);
        }
    }
    let store = Store::open(opts()).await.unwrap();
    assert_eq!(mode(&data), 0o700);
    for f in files.iter().filter(|f| f.exists()) {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert_eq!(
        r!(store, get_setting("k")).await.unwrap().as_deref(),
        Some("v")
    );
}
