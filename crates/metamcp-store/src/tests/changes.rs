//! Transactions and the change counter, watching for changes, concurrent opens, what running
//! gateways record (tools, logs), and database URLs.

use super::*;

crate::both_backends!(
    config_version_moves_only_on_config,
    watch_sees_other_store,
    one_transaction_bumps_once,
    concurrent_open,
    tool_sync,
    logs_are_trimmed,
);

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

fn lines(range: std::ops::Range<i64>) -> Vec<LogLine> {
    range
        .map(|i| LogLine {
            ts_ms: 1_000 + i,
            line: format!("line {i}"),
        })
        .collect()
}

#[tokio::test]
async fn rejects_unknown_urls() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        database_url: Some("mysql://root:hunter2@localhost/db".into()),
        data_dir: dir.path().to_owned(),
        secret_key: None,
        previous_keys: Vec::new(),
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
        previous_keys: Vec::new(),
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
