//! OAuth towards upstreams, on both backends: grants sealed and replaced per (server, user),
//! the refresh lease held by one replica at a time (so a rotating refresh token is redeemed
//! once), flows taken once and bounded, rows gone with their server, no version bump.

use super::*;

crate::both_backends!(
    grants_are_sealed_per_server_and_user,
    one_replica_holds_the_refresh_lease,
    flows_are_taken_once_and_bounded,
);

fn tokens(access: &str, refresh: Option<&str>, expires_at: Option<i64>) -> TokenSet {
    TokenSet {
        access_token: access.into(),
        refresh_token: refresh.map(str::to_owned),
        expires_at,
    }
}

async fn grants_are_sealed_per_server_and_user(ctx: Ctx) {
    let store = ctx.open().await;
    let s = w!(store, create_server(&http("up", None))).await.unwrap();
    let v0 = store.config_version().await.unwrap();
    let shared = tokens("access-one-SECRET", Some("refresh-one-SECRET"), Some(5_000));
    store
        .put_upstream_token(&s.id, None, &shared, "{}", Some("admin"), 1_000)
        .await
        .unwrap();
    store
        .put_upstream_token(
            &s.id,
            Some("u1"),
            &tokens("user-access", None, None),
            "{}",
            None,
            1_000,
        )
        .await
        .unwrap();
    let got = store.upstream_token(&s.id, None).await.unwrap().unwrap();
    assert_eq!(got.access_token, "access-one-SECRET");
    assert_eq!(got.refresh_token.as_deref(), Some("refresh-one-SECRET"));
    assert_eq!(got.user_id, None);
    let mine = store
        .upstream_token(&s.id, Some("u1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mine.access_token, "user-access");
    assert!(
        store
            .upstream_token(&s.id, Some("u2"))
            .await
            .unwrap()
            .is_none()
    );
    // A new authorization replaces the old grant.
    store
        .put_upstream_token(
            &s.id,
            None,
            &tokens("access-two", None, None),
            "{}",
            None,
            2_000,
        )
        .await
        .unwrap();
    let all = store.list_upstream_tokens(Some(&s.id)).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(
        all.iter().all(|t| t.access_token.is_empty()),
        "listing never opens tokens"
    );
    // Sealed at rest: no token text in the table.
    let raw: Vec<String> = sqlx::query_scalar("SELECT access_token FROM upstream_tokens")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert!(
        raw.iter()
            .all(|t| t.starts_with("v2:") && !t.contains("access")),
        "{raw:?}"
    );
    // A client secret too.
    store
        .put_upstream_client(&UpstreamClient {
            server_id: s.id.clone(),
            client_id: "c1".into(),
            client_secret: Some("client-SECRET".into()),
            scope: None,
            source: "configured".into(),
            issuer: None,
            created_at: 1,
        })
        .await
        .unwrap();
    let c = store.upstream_client(&s.id).await.unwrap().unwrap();
    assert_eq!(c.client_secret.as_deref(), Some("client-SECRET"));
    let raw: String = sqlx::query_scalar("SELECT client_secret FROM upstream_oauth_clients")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!raw.contains("SECRET"), "{raw}");
    assert_eq!(store.config_version().await.unwrap(), v0, "no version bump");
    // Gone with the server.
    w!(store, remove_server("up")).await.unwrap();
    assert!(store.list_upstream_tokens(None).await.unwrap().is_empty());
    assert!(store.upstream_client(&s.id).await.unwrap().is_none());
}

async fn one_replica_holds_the_refresh_lease(ctx: Ctx) {
    let store = Arc::new(ctx.open().await);
    let s = w!(store, create_server(&http("up", None))).await.unwrap();
    let id = store
        .put_upstream_token(
            &s.id,
            None,
            &tokens("a1", Some("r1"), Some(10)),
            "{}",
            None,
            0,
        )
        .await
        .unwrap();
    // Eight replicas race for the lease: one wins.
    let racers = (0..8).map(|i| {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move {
            store
                .take_upstream_refresh_lease(&id, 0, &format!("r{i}"), 100, 30_100)
                .await
                .unwrap()
        })
    });
    let racers: Vec<_> = racers.collect();
    let mut won = Vec::new();
    for r in racers {
        won.push(r.await.unwrap());
    }
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let holder = format!("r{}", won.iter().position(|w| *w).unwrap());
    // Only the holder stores the refresh; a refresh token not replaced is kept.
    let next = tokens("a2", None, Some(60_000));
    assert!(
        !store
            .finish_upstream_refresh(&id, "someone-else", &next, 200)
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_upstream_refresh(&id, &holder, &next, 200)
            .await
            .unwrap()
    );
    let t = store.upstream_token(&s.id, None).await.unwrap().unwrap();
    assert_eq!(
        (t.access_token.as_str(), t.refresh_token.as_deref()),
        ("a2", Some("r1"))
    );
    assert_eq!((t.refreshes, t.refreshed_at), (1, Some(200)));
    // The lease ended with the refresh, but one who read the grant before it (and holds the
    // spent refresh token) cannot take it: only one who read the refreshed grant can.
    let lease = |seen: i64, holder: &'static str, now: i64, until: i64| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            store
                .take_upstream_refresh_lease(&id, seen, holder, now, until)
                .await
                .unwrap()
        }
    };
    assert!(!lease(0, "late", 300, 1_000).await);
    assert!(lease(1, "x", 300, 1_000).await);
    // An expired lease can be taken over; a released one at once.
    assert!(!lease(1, "y", 999, 2_000).await);
    assert!(lease(1, "y", 1_000, 2_000).await);
    store
        .release_upstream_refresh_lease(&id, "y")
        .await
        .unwrap();
    assert!(lease(1, "z", 1_001, 2_000).await);
    assert!(store.remove_upstream_token(&id).await.unwrap());
    assert!(!lease(1, "z", 5_000, 6_000).await);
}

async fn flows_are_taken_once_and_bounded(ctx: Ctx) {
    let store = Arc::new(ctx.open().await);
    let s = w!(store, create_server(&http("up", None))).await.unwrap();
    let flow = |n: u32, at: i64| UpstreamFlow {
        state_hash: format!("{n:064x}"),
        server_id: s.id.clone(),
        user_id: n.is_multiple_of(2).then(|| "u1".to_owned()),
        started_by: "u1".into(),
        verifier: format!("verifier-{n}-SECRET"),
        context: "{}".into(),
        created_at: at,
        expires_at: at + 600_000,
    };
    for n in 0..5 {
        store
            .insert_upstream_flow(&flow(n, i64::from(n)), 3)
            .await
            .unwrap();
    }
    // At most 3 pending: the oldest went.
    assert!(
        store
            .take_upstream_flow(&format!("{:064x}", 0))
            .await
            .unwrap()
            .is_none()
    );
    let raw: Vec<String> = sqlx::query_scalar("SELECT verifier FROM upstream_oauth_flows")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(raw.len(), 3);
    assert!(raw.iter().all(|v| !v.contains("SECRET")), "{raw:?}");
    // Concurrent takers: one gets it.
    let h = format!("{:064x}", 4);
    let (a, b) = tokio::join!(store.take_upstream_flow(&h), store.take_upstream_flow(&h));
    let got: Vec<UpstreamFlow> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].verifier, "verifier-4-SECRET");
    assert_eq!(got[0].user_id.as_deref(), Some("u1"));
}
