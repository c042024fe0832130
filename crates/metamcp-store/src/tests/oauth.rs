//! The OAuth authorization server's rows, on both backends: codes taken once (also by
//! concurrent redeemers), refresh tokens rotated by compare-and-set so a concurrent double use
//! is reuse and revokes the grant, registration bounded, revocation, pruning, and no
//! configuration version bump for any of it.

use super::*;

crate::both_backends!(
    codes_are_taken_once,
    refresh_rotates_and_reuse_revokes_the_grant,
    concurrent_refreshes_rotate_once,
    registrations_are_bounded,
);

fn code(n: u32, created_at: i64) -> OAuthCode {
    OAuthCode {
        code_hash: format!("{n:064x}"),
        client_id: "mcp_client_a".into(),
        client_name: Some("A".into()),
        user_id: "u1".into(),
        endpoint_id: "e1".into(),
        resource: "http://127.0.0.1:1/metamcp/e/mcp".into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        code_challenge: "c".repeat(43),
        scope: "mcp".into(),
        created_at,
        expires_at: created_at + 60_000,
    }
}

fn grant(id: &str, now: i64) -> OAuthGrant {
    crate::testing::oauth_grant(id, "u1", now)
}

async fn codes_are_taken_once(ctx: Ctx) {
    let store = Arc::new(ctx.open().await);
    let v0 = store.config_version().await.unwrap();
    let c = code(1, 1_000);
    store.insert_oauth_code(&c, 10).await.unwrap();
    let takers: Vec<_> = (0..4)
        .map(|_| {
            let s = store.clone();
            let h = c.code_hash.clone();
            tokio::spawn(async move { s.take_oauth_code(&h).await.unwrap() })
        })
        .collect();
    let mut got = 0;
    for t in takers {
        if let Some(taken) = t.await.unwrap() {
            assert_eq!(taken, c);
            got += 1;
        }
    }
    assert_eq!(got, 1, "exactly one redeemer gets a code");
    // Bounded: beyond the cap the oldest pending codes go.
    for n in 10..20 {
        store
            .insert_oauth_code(&code(n, 2_000 + i64::from(n)), 5)
            .await
            .unwrap();
    }
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oauth_codes")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(left, 5);
    assert!(
        store
            .take_oauth_code(&code(19, 0).code_hash)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .take_oauth_code(&code(10, 0).code_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.config_version().await.unwrap(), v0);
}

async fn refresh_rotates_and_reuse_revokes_the_grant(ctx: Ctx) {
    let store = ctx.open().await;
    let v0 = store.config_version().await.unwrap();
    store
        .create_oauth_grant(&grant("g1", 1_000), "r1")
        .await
        .unwrap();
    assert_eq!(
        store
            .oauth_grant_of_refresh("r1")
            .await
            .unwrap()
            .map(|g| g.id),
        Some("g1".into())
    );
    assert!(matches!(
        store.rotate_oauth_refresh("r1", "r2", 2_000).await.unwrap(),
        Refreshed::Rotated(g) if g.id == "g1" && g.last_used_at == Some(2_000)
    ));
    assert!(matches!(
        store.rotate_oauth_refresh("r2", "r3", 3_000).await.unwrap(),
        Refreshed::Rotated(_)
    ));
    // r1 again: reuse; the grant is revoked, and its current token r3 is dead too.
    assert!(matches!(
        store.rotate_oauth_refresh("r1", "r4", 4_000).await.unwrap(),
        Refreshed::Reused(g) if g.revoked_reason.as_deref() == Some("refresh token reused")
    ));
    assert!(matches!(
        store.rotate_oauth_refresh("r3", "r5", 5_000).await.unwrap(),
        Refreshed::Inactive(g) if g.revoked_at == Some(4_000)
    ));
    assert_eq!(
        store
            .rotate_oauth_refresh("nope", "r6", 5_000)
            .await
            .unwrap(),
        Refreshed::Unknown
    );
    // Revocation and expiry.
    store
        .create_oauth_grant(&grant("g2", 1_000), "s1")
        .await
        .unwrap();
    assert!(
        store
            .revoke_oauth_grant("g2", "revoked by its user", 6_000, None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_oauth_grant("g2", "again", 7_000, None)
            .await
            .unwrap()
    );
    assert!(matches!(
        store.rotate_oauth_refresh("s1", "s2", 8_000).await.unwrap(),
        Refreshed::Inactive(_)
    ));
    store
        .create_oauth_grant(&grant("g3", 1_000), "t1")
        .await
        .unwrap();
    assert!(matches!(
        store.rotate_oauth_refresh("t1", "t2", 2_000_000).await.unwrap(),
        Refreshed::Inactive(g) if g.revoked_at.is_none()
    ));
    let mine = store.list_oauth_grants(Some("u1")).await.unwrap();
    assert_eq!(mine.len(), 3);
    assert!(
        store
            .list_oauth_grants(Some("u2"))
            .await
            .unwrap()
            .is_empty()
    );
    // Pruning forgets grants that ended long ago, with their tokens.
    assert_eq!(store.prune_oauth(10_000, 10_000).await.unwrap(), 2);
    assert!(store.get_oauth_grant("g1").await.unwrap().is_none());
    assert!(store.get_oauth_grant("g3").await.unwrap().is_some());
    assert_eq!(store.config_version().await.unwrap(), v0);
}

async fn concurrent_refreshes_rotate_once(ctx: Ctx) {
    let store = Arc::new(ctx.open().await);
    store
        .create_oauth_grant(&grant("g1", 1_000), "r1")
        .await
        .unwrap();
    let racers: Vec<_> = (0..2)
        .map(|n| {
            let s = store.clone();
            tokio::spawn(async move {
                s.rotate_oauth_refresh("r1", &format!("next{n}"), 2_000)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut rotated = 0;
    let mut reused = 0;
    for r in racers {
        match r.await.unwrap() {
            Refreshed::Rotated(_) => rotated += 1,
            Refreshed::Reused(_) | Refreshed::Inactive(_) => reused += 1,
            Refreshed::Unknown => panic!("the token exists"),
        }
    }
    assert_eq!((rotated, reused), (1, 1));
    let g = store.get_oauth_grant("g1").await.unwrap().unwrap();
    assert!(g.revoked_at.is_some(), "a double use revokes the family");
}

async fn registrations_are_bounded(ctx: Ctx) {
    let store = ctx.open().await;
    let v0 = store.config_version().await.unwrap();
    let client = |n: u32, created_at: i64| OAuthClient {
        client_id: format!("mcp_client_{n}"),
        client_name: Some(format!("client {n}")),
        redirect_uris: vec!["http://127.0.0.1/cb".into()],
        created_at,
        last_used_at: None,
        created_from: Some("127.0.0.1".into()),
    };
    for n in 0..3 {
        store
            .insert_oauth_client(&client(n, 1_000), 3, 0)
            .await
            .unwrap();
    }
    assert!(matches!(
        store.insert_oauth_client(&client(9, 2_000), 3, 0).await,
        Err(StoreError::Invalid(_))
    ));
    store
        .touch_oauth_client("mcp_client_0", 1_500)
        .await
        .unwrap();
    // Unused clients older than the stale mark are purged to make room; used ones stay.
    store
        .insert_oauth_client(&client(9, 5_000), 3, 2_000)
        .await
        .unwrap();
    let ids: Vec<String> = store
        .list_oauth_clients()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert_eq!(ids, vec!["mcp_client_9", "mcp_client_0"]);
    assert_eq!(
        store
            .get_oauth_client("mcp_client_9")
            .await
            .unwrap()
            .unwrap()
            .redirect_uris,
        vec!["http://127.0.0.1/cb".to_owned()]
    );
    store
        .create_oauth_grant(&grant("g1", 1_000), "r1")
        .await
        .unwrap();
    store
        .remove_oauth_client("mcp_client_a", 6_000, None)
        .await
        .unwrap_err();
    store
        .remove_oauth_client("mcp_client_0", 6_000, None)
        .await
        .unwrap();
    assert!(
        store
            .get_oauth_client("mcp_client_0")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.config_version().await.unwrap(), v0);
}
