//! Owners (migration 0010): records carry them with the owner's email, removing a user removes
//! what they own in the same transaction, and a store made before ownership upgrades in place
//! with everything public and its admin keys working.

use super::*;

crate::both_backends!(
    owners_are_recorded_listed_and_removed_with_their_user,
    an_older_store_upgrades_with_everything_public,
);

fn user<'a>(email: &'a str) -> NewUser<'a> {
    NewUser {
        email,
        name: "U",
        password_hash: None,
        role: Role::Member,
    }
}

async fn owners_are_recorded_listed_and_removed_with_their_user(ctx: Ctx) {
    let store = ctx.open().await;
    let ada = w!(store, create_user(&user("ada@example.com")))
        .await
        .unwrap();
    let bob = w!(store, create_user(&user("bob@example.com")))
        .await
        .unwrap();
    store
        .write(async |tx: &mut Tx| {
            for (s, owner) in [
                ("pub", None),
                ("ada-s", Some(&ada.id)),
                ("bob-s", Some(&bob.id)),
            ] {
                tx.create_server(&http(s, None)).await?;
                tx.set_owner(Owned::Server, s, owner.map(String::as_str))
                    .await?;
            }
            tx.create_namespace(
                "ada-ns",
                None,
                &["ada-s".into(), "pub".into()],
                PrefixMode::Always,
            )
            .await?;
            tx.set_owner(Owned::Namespace, "ada-ns", Some(&ada.id))
                .await?;
            // A public endpoint of Ada's namespace cannot be made by the rules, but if one is
            // there it goes with the namespace, and is reported.
            tx.create_endpoint(
                "ada-ep",
                "ada-ns",
                None,
                true,
                false,
                EndpointLimits::default(),
            )
            .await?;
            tx.create_endpoint(
                "ada-ep2",
                "ada-ns",
                None,
                true,
                false,
                EndpointLimits::default(),
            )
            .await?;
            tx.set_owner(Owned::Endpoint, "ada-ep", Some(&ada.id))
                .await?;
            tx.create_api_key("ada-key", false).await?;
            tx.set_owner(Owned::ApiKey, "ada-key", Some(&ada.id))
                .await?;
            tx.create_api_key("pub-key", true).await?;
            Ok::<(), StoreError>(())
        })
        .await
        .unwrap();
    let unknown = w!(store, set_owner(Owned::Server, "nope", None))
        .await
        .unwrap_err();
    assert!(matches!(unknown, StoreError::NotFound { .. }), "{unknown}");

    let servers = r!(store, list_servers()).await.unwrap();
    let owner_of = |n: &str| {
        servers
            .iter()
            .find(|s| s.spec.name == n)
            .and_then(|s| s.owner.as_ref().map(|o| o.email.clone()))
    };
    assert_eq!(owner_of("pub"), None);
    assert_eq!(owner_of("ada-s").as_deref(), Some("ada@example.com"));
    assert_eq!(owner_of("bob-s").as_deref(), Some("bob@example.com"));
    let ns = r!(store, get_namespace("ada-ns")).await.unwrap().unwrap();
    assert_eq!(
        ns.owner.as_ref().map(|o| o.id.as_str()),
        Some(ada.id.as_str())
    );
    let ep = r!(store, get_endpoint("ada-ep")).await.unwrap().unwrap();
    assert_eq!(
        ep.owner.as_ref().map(|o| o.email.as_str()),
        Some("ada@example.com")
    );
    assert!(!ep.owner.as_ref().unwrap().disabled);
    let keys = r!(store, active_api_keys()).await.unwrap();
    let ada_key = keys.iter().find(|k| k.name == "ada-key").unwrap();
    assert_eq!(
        ada_key.owner.as_ref().map(|o| o.id.as_str()),
        Some(ada.id.as_str())
    );
    assert!(
        keys.iter()
            .any(|k| k.name == "pub-key" && k.owner.is_none() && k.admin)
    );

    // A disabled owner shows on what they own (the data path refuses it).
    w!(store, set_user_disabled(&ada.id, true)).await.unwrap();
    let keys = r!(store, active_api_keys()).await.unwrap();
    let ada_key = keys.iter().find(|k| k.name == "ada-key").unwrap();
    assert!(ada_key.owner.as_ref().unwrap().disabled);
    let ep = r!(store, get_endpoint("ada-ep")).await.unwrap().unwrap();
    assert!(ep.owner.unwrap().disabled);

    // Removing Ada removes what she owns, in one transaction, and says what went.
    let v = store.config_version().await.unwrap();
    let gone = w!(store, remove_user(&ada.id)).await.unwrap();
    assert_eq!(
        gone,
        RemovedObjects {
            servers: vec!["ada-s".into()],
            namespaces: vec!["ada-ns".into()],
            endpoints: vec!["ada-ep".into(), "ada-ep2".into()],
            api_keys: vec!["ada-key".into()],
        }
    );
    assert_eq!(store.config_version().await.unwrap(), v + 1);
    let names: Vec<String> = r!(store, list_servers())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.spec.name)
        .collect();
    assert_eq!(names, ["bob-s", "pub"]);
    assert!(r!(store, list_namespaces()).await.unwrap().is_empty());
    assert!(r!(store, list_endpoints()).await.unwrap().is_empty());
    let keys: Vec<String> = r!(store, list_api_keys())
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(keys, ["pub-key"]);
}

/// A database migrated only up to 0009 (the migrations as they were, run from a copy), with
/// configuration and an admin key in it, then opened by this version.
async fn an_older_store_upgrades_with_everything_public(ctx: Ctx) {
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(ctx.backend.as_str());
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0010" {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    sqlx::any::install_default_drivers();
    let url = match &ctx.url {
        Some(u) => u.clone(),
        None => format!(
            "sqlite://{}?mode=rwc",
            ctx.dir.path().join(DEFAULT_DB_FILE).display()
        ),
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let old = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    old.run(&pool).await.unwrap();
    for sql in [
        "INSERT INTO servers (id, name, kind, url, created_at, updated_at) \
         VALUES ('s1', 'old-server', 'STREAMABLE_HTTP', 'https://mcp.example.com/mcp', 0, 0)",
        "INSERT INTO namespaces (id, name, created_at) VALUES ('n1', 'old-ns', 0)",
        "INSERT INTO namespace_servers (namespace_id, server_id) VALUES ('n1', 's1')",
        "INSERT INTO endpoints (id, name, namespace_id, created_at) VALUES ('e1', 'old-ep', 'n1', 0)",
        "INSERT INTO api_keys (id, name, key_hash, key_prefix, active, admin, created_at) \
         VALUES ('k1', 'old-admin', \
         'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'sk_mt_abcd', 1, 1, 0)",
    ] {
        sqlx::query(AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let store = ctx.open().await;
    let servers = r!(store, list_servers()).await.unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].owner, None, "existing servers become public");
    let ns = r!(store, get_namespace("old-ns")).await.unwrap().unwrap();
    assert_eq!(ns.owner, None);
    assert_eq!(ns.servers.len(), 1);
    let ep = r!(store, get_endpoint("old-ep")).await.unwrap().unwrap();
    assert_eq!(ep.owner, None);
    let keys = r!(store, active_api_keys()).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].admin && keys[0].owner.is_none(),
        "admin keys keep working"
    );
    assert_eq!(keys[0].hash, hash_api_key("abc"));
}
