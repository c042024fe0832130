//! Secrets at rest: sealed columns bound to their row, the v1 → v2 upgrade, wrong keys, URL
//! credentials, and private files.

use super::*;

crate::both_backends!(
    server_crud_and_secrets,
    wrong_key_is_a_decrypt_error,
    sealed_values_are_bound_to_their_row,
    v1_values_are_upgraded_on_open,
    rotation_reseals_under_the_new_key,
);

async fn rotation_reseals_under_the_new_key(ctx: Ctx) {
    let key = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let with = |current: u8, previous: &[u8]| {
        let mut o = ctx.options(Some(key(current)));
        o.previous_keys = previous.iter().map(|b| key(*b)).collect();
        o
    };
    let old = Store::open(with(1, &[])).await.unwrap();
    w!(old, create_server(&stdio("s1", &[("K", "v1-secret")])))
        .await
        .unwrap();
    let h1 = w!(old, create_server(&http("h1", Some("tok-1"))))
        .await
        .unwrap();
    let grant = TokenSet {
        access_token: "up-access".into(),
        refresh_token: Some("up-refresh".into()),
        expires_at: None,
    };
    old.put_upstream_token(&h1.id, None, &grant, "{}", None, 1)
        .await
        .unwrap();
    old.put_upstream_client(&UpstreamClient {
        server_id: h1.id.clone(),
        client_id: "c".into(),
        client_secret: Some("up-client-secret".into()),
        scope: None,
        source: "configured".into(),
        issuer: None,
        created_at: 1,
    })
    .await
    .unwrap();
    let before = r!(old, list_servers()).await.unwrap();
    let v0 = old.config_version().await.unwrap();

    // A replica that has the new key as a previous one still reads everything, and so
    // does one that has the new key as current and the old one as previous.
    let next = Store::open(with(2, &[1])).await.unwrap();
    assert_eq!(r!(next, list_servers()).await.unwrap(), before);
    let rotated = next.rotate_secrets().await.unwrap();
    // env, headers, bearer token; the grant's two tokens; the client secret.
    assert_eq!(rotated.resealed, 6, "{rotated:?}");
    assert_eq!(rotated.key_id, next.secret_key_id());
    assert_ne!(rotated.key_id, old.secret_key_id());
    assert_eq!(next.config_version().await.unwrap(), v0, "no version bump");
    let again = next.rotate_secrets().await.unwrap();
    assert_eq!((again.resealed, again.current), (0, 6));

    // Now the new key alone opens everything, and the old key alone nothing.
    let only_new = Store::open(with(2, &[])).await.unwrap();
    assert_eq!(r!(only_new, list_servers()).await.unwrap(), before);
    let t = only_new
        .upstream_token(&h1.id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.refresh_token.as_deref(), Some("up-refresh"));
    let c = only_new.upstream_client(&h1.id).await.unwrap().unwrap();
    assert_eq!(c.client_secret.as_deref(), Some("up-client-secret"));
    let only_old = Store::open(with(1, &[])).await.unwrap();
    assert!(matches!(
        r!(only_old, list_servers()).await,
        Err(StoreError::Decrypt(_))
    ));

    // A rotation that meets a value no configured key opens changes nothing.
    let stranger = Store::open(with(3, &[])).await.unwrap();
    let err = stranger.rotate_secrets().await.unwrap_err();
    assert!(
        matches!(err, StoreError::Decrypt(ref m) if m.contains("nothing was changed")),
        "{err}"
    );
    assert_eq!(r!(only_new, list_servers()).await.unwrap(), before);
    // A malformed previous key is refused, naming the variable.
    let mut bad = ctx.options(Some(key(2)));
    bad.previous_keys = vec!["short".into()];
    let err = Store::open(bad).await.unwrap_err();
    assert!(
        err.to_string().contains("METAMCP_SECRET_KEY_PREVIOUS"),
        "{err}"
    );
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
