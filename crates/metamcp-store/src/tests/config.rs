//! Configuration through transactions: servers, endpoints, API keys, settings.

use super::*;

crate::both_backends!(
    upsert_is_idempotent,
    concurrent_creators_get_duplicate,
    endpoint_flags,
    endpoint_rate_limits,
    api_keys,
    admin_keys,
    settings,
);

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
    // Auth flags: changed together, read back, one version bump.
    let v = store.config_version().await.unwrap();
    let up = w!(store, update_endpoint_auth("plain", false, false))
        .await
        .unwrap();
    assert_eq!((up.api_key_auth, up.query_auth), (false, false));
    assert_eq!(store.config_version().await.unwrap(), v + 1);
    let up = w!(store, update_endpoint_auth("plain", true, true))
        .await
        .unwrap();
    assert_eq!((up.api_key_auth, up.query_auth), (true, true));
    assert_eq!(r!(store, get_endpoint("plain")).await.unwrap(), Some(up));
    assert!(matches!(
        w!(store, update_endpoint_auth("nope", true, false)).await,
        Err(StoreError::NotFound { .. })
    ));
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
