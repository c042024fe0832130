//! Users, browser sessions and web setup: what bumps the configuration version and what does
//! not, revocation, expiry, and the first-admin rules of fresh and upgraded stores.

use super::*;

crate::both_backends!(
    users_are_configuration_sessions_are_not,
    sessions_end_on_signout_password_disable_and_expiry,
    web_setup_open_on_fresh_store_closed_by_first_admin,
    web_setup_closed_on_upgraded_store,
    sessions_per_user_are_bounded,
);

fn member<'a>(email: &'a str) -> NewUser<'a> {
    NewUser {
        email,
        name: "Member",
        password_hash: Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"),
        role: Role::Member,
    }
}

fn session<'a>(hash: &'a str, user_id: &'a str, expires_at: i64) -> NewBrowserSession<'a> {
    NewBrowserSession {
        id_hash: hash,
        user_id,
        expires_at,
        ip: Some("127.0.0.1"),
        user_agent: None,
    }
}

fn far() -> i64 {
    crate::db::now_ms() + 3_600_000
}

async fn users_are_configuration_sessions_are_not(ctx: Ctx) {
    let store = ctx.open().await;
    let v0 = store.config_version().await.unwrap();
    let user = w!(store, create_user(&member("a@example.com")))
        .await
        .unwrap();
    let v1 = store.config_version().await.unwrap();
    assert_eq!(v1, v0 + 1, "creating a user is configuration");
    let dup = w!(store, create_user(&member("a@example.com")))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Duplicate { .. }), "{dup}");

    let h = session_token_hash("token-1");
    store
        .create_browser_session(&session(&h, &user.id, far()), 10)
        .await
        .unwrap();
    store.touch_browser_session(&h).await.unwrap();
    store.touch_last_login(&user.id).await.unwrap();
    assert!(store.browser_session(&h, 60_000).await.unwrap().is_some());
    store.end_browser_session(&h).await.unwrap();
    assert_eq!(
        store.config_version().await.unwrap(),
        v1,
        "sign-ins and sessions never bump the configuration version"
    );
    let creds = store
        .user_credentials("a@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(creds.user.last_login_at.is_some());
    assert!(creds.password_hash.is_some());
    assert!(
        store
            .user_credentials("b@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

async fn sessions_end_on_signout_password_disable_and_expiry(ctx: Ctx) {
    let store = ctx.open().await;
    let user = w!(store, create_user(&member("a@example.com")))
        .await
        .unwrap();
    let other = w!(store, create_user(&member("b@example.com")))
        .await
        .unwrap();
    let (a1, a2, b1) = (
        session_token_hash("a1"),
        session_token_hash("a2"),
        session_token_hash("b1"),
    );
    for (h, u) in [(&a1, &user.id), (&a2, &user.id), (&b1, &other.id)] {
        store
            .create_browser_session(&session(h, u, far()), 10)
            .await
            .unwrap();
    }
    let live = async |h: &str| store.browser_session(h, 60_000).await.unwrap().is_some();
    assert!(live(&a1).await && live(&a2).await && live(&b1).await);

    store.end_browser_session(&a1).await.unwrap();
    assert!(!live(&a1).await && live(&a2).await);

    w!(store, set_user_password(&user.id, "$argon2id$new"))
        .await
        .unwrap();
    assert!(
        !live(&a2).await,
        "a password change ends the user's sessions"
    );
    assert!(live(&b1).await, "…and nobody else's");

    w!(store, set_user_disabled(&other.id, true)).await.unwrap();
    assert!(!live(&b1).await, "disabling a user ends their sessions");
    let b2 = session_token_hash("b2");
    store
        .create_browser_session(&session(&b2, &other.id, far()), 10)
        .await
        .unwrap();
    assert!(!live(&b2).await, "a disabled user's session is not live");
    w!(store, set_user_disabled(&other.id, false))
        .await
        .unwrap();
    assert!(live(&b2).await);

    // Absolute expiry, then idle expiry.
    let old = session_token_hash("old");
    store
        .create_browser_session(&session(&old, &user.id, crate::db::now_ms() - 1), 10)
        .await
        .unwrap();
    assert!(!live(&old).await, "past expires_at");
    let idle = session_token_hash("idle");
    store
        .create_browser_session(&session(&idle, &user.id, far()), 10)
        .await
        .unwrap();
    assert!(
        store.browser_session(&idle, 0).await.unwrap().is_none(),
        "idle"
    );

    w!(store, remove_user(&user.id)).await.unwrap();
    assert!(!live(&idle).await);
    assert!(w!(store, remove_user(&user.id)).await.is_err());
}

async fn web_setup_open_on_fresh_store_closed_by_first_admin(ctx: Ctx) {
    let store = ctx.open().await;
    assert_eq!(r!(store, web_setup()).await.unwrap(), WebSetup::Open);
    assert!(store.replace_setup_token("tok-1").await.unwrap());
    assert!(store.replace_setup_token("tok-2").await.unwrap());
    assert!(
        !r!(store, setup_token_matches("tok-1")).await.unwrap(),
        "replaced"
    );
    assert!(r!(store, setup_token_matches("tok-2")).await.unwrap());
    // A member does not close setup; an admin does, and voids the token.
    w!(store, create_user(&member("m@example.com")))
        .await
        .unwrap();
    assert_eq!(r!(store, web_setup()).await.unwrap(), WebSetup::Open);
    w!(
        store,
        create_user(&NewUser {
            role: Role::Admin,
            ..member("admin@example.com")
        })
    )
    .await
    .unwrap();
    assert_eq!(r!(store, web_setup()).await.unwrap(), WebSetup::Closed);
    assert!(!r!(store, setup_token_matches("tok-2")).await.unwrap());
    assert!(!store.replace_setup_token("tok-3").await.unwrap());
    assert_eq!(r!(store, count_active_admins()).await.unwrap(), 1);
}

async fn web_setup_closed_on_upgraded_store(ctx: Ctx) {
    // A store that held configuration before accounts existed: undo migration 0008, add an
    // admin key as an older metamcp would have, and open again (0008 runs over it).
    let store = ctx.open().await;
    // why: owner_id (0010) references users; PostgreSQL drops those constraints with it.
    let drop_users = match ctx.backend {
        Backend::Postgres => "DROP TABLE users CASCADE",
        Backend::Sqlite => "DROP TABLE users",
    };
    for sql in [
        // why: first, while users (which api_keys.owner_id references) still exists.
        "INSERT INTO api_keys (id, name, key_hash, key_prefix, active, admin, created_at) \
         VALUES ('k', 'old', 'h', 'sk_mt_abcd', 1, 1, 0)",
        "DROP TABLE browser_sessions",
        "DROP TABLE user_identities",
        "DROP TABLE setup_tokens",
        drop_users,
        "DELETE FROM meta WHERE key = 'web_admin_setup'",
        "DELETE FROM _sqlx_migrations WHERE version = 8",
    ] {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
    store.close().await;
    let store = ctx.open().await;
    assert_eq!(r!(store, web_setup()).await.unwrap(), WebSetup::Closed);
    assert!(!store.replace_setup_token("tok").await.unwrap());
    let keys = r!(store, list_api_keys()).await.unwrap();
    assert!(
        keys[0].admin && keys[0].active,
        "existing admin keys keep working"
    );
}

async fn sessions_per_user_are_bounded(ctx: Ctx) {
    let store = ctx.open().await;
    let user = w!(store, create_user(&member("a@example.com")))
        .await
        .unwrap();
    let hashes: Vec<String> = (0..5)
        .map(|i| session_token_hash(&format!("t{i}")))
        .collect();
    for h in &hashes {
        store
            .create_browser_session(&session(h, &user.id, far()), 3)
            .await
            .unwrap();
        // why: created_at has millisecond resolution; order must be unambiguous.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut live = 0;
    for h in &hashes {
        live += usize::from(store.browser_session(h, 60_000).await.unwrap().is_some());
    }
    assert_eq!(live, 3);
    assert!(
        store
            .browser_session(&hashes[4], 60_000)
            .await
            .unwrap()
            .is_some()
    );
}
