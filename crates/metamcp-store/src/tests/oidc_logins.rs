//! Pending single sign-on logins: single use (also under concurrent takers), the PKCE
//! verifier sealed and bound to its row, expiry purge, the cap on pending rows, and no
//! configuration version bump.

use super::*;

crate::both_backends!(
    taken_once_and_sealed,
    concurrent_takers_get_it_once,
    bounded_and_purged,
    verifier_bound_to_its_row,
);

fn login(n: u32, created_at: i64) -> OidcLogin {
    OidcLogin {
        state_hash: format!("{n:064x}"),
        browser_hash: format!("b{n:063x}"),
        nonce: format!("nonce-{n}"),
        pkce_verifier: Some(format!("verifier-{n}-secret")),
        return_to: Some("/ui/servers".into()),
        created_at,
        expires_at: created_at + 600_000,
    }
}

async fn taken_once_and_sealed(ctx: Ctx) {
    let store = ctx.open().await;
    let v0 = store.config_version().await.unwrap();
    let l = login(1, 1_000);
    store.insert_oidc_login(&l, 10).await.unwrap();
    let mut no_pkce = login(2, 1_000);
    no_pkce.pkce_verifier = None;
    no_pkce.return_to = None;
    store.insert_oidc_login(&no_pkce, 10).await.unwrap();

    let stored: Option<String> =
        sqlx::query_scalar("SELECT pkce_verifier FROM oidc_logins WHERE state_hash = $1")
            .bind(&l.state_hash)
            .fetch_one(store.pool())
            .await
            .unwrap();
    let stored = stored.unwrap();
    assert!(stored.starts_with("v2:"), "{stored}");
    assert!(!stored.contains("secret"), "{stored}");

    assert!(matches!(
        store.insert_oidc_login(&l, 10).await,
        Err(StoreError::Duplicate { .. })
    ));
    assert_eq!(
        store.take_oidc_login(&l.state_hash).await.unwrap(),
        Some(l.clone())
    );
    assert_eq!(store.take_oidc_login(&l.state_hash).await.unwrap(), None);
    assert_eq!(
        store.take_oidc_login(&no_pkce.state_hash).await.unwrap(),
        Some(no_pkce)
    );
    assert_eq!(store.take_oidc_login("unknown").await.unwrap(), None);
    assert_eq!(store.config_version().await.unwrap(), v0);
}

async fn concurrent_takers_get_it_once(ctx: Ctx) {
    let store = ctx.open().await;
    let l = login(7, 5_000);
    store.insert_oidc_login(&l, 10).await.unwrap();
    let takers = (0..8).map(|_| {
        let store = store.clone();
        let hash = l.state_hash.clone();
        tokio::spawn(async move { store.take_oidc_login(&hash).await.unwrap() })
    });
    let got = futures_join(takers).await;
    assert_eq!(got.iter().filter(|g| g.is_some()).count(), 1, "{got:?}");
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

async fn bounded_and_purged(ctx: Ctx) {
    let store = ctx.open().await;
    for n in 0..5 {
        store
            .insert_oidc_login(&login(n, 1_000 + i64::from(n)), 3)
            .await
            .unwrap();
    }
    assert_eq!(store.count_oidc_logins().await.unwrap(), 3);
    // The oldest two made room.
    assert_eq!(
        store
            .take_oidc_login(&login(0, 0).state_hash)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_oidc_login(&login(1, 0).state_hash)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .take_oidc_login(&login(4, 0).state_hash)
            .await
            .unwrap()
            .is_some()
    );

    // Expired rows go when asked, and when a later login is begun.
    assert_eq!(store.purge_expired_oidc_logins(1_000).await.unwrap(), 0);
    assert_eq!(store.purge_expired_oidc_logins(601_002).await.unwrap(), 1);
    assert_eq!(store.count_oidc_logins().await.unwrap(), 1);
    store
        .insert_oidc_login(&login(9, 10_000_000), 3)
        .await
        .unwrap();
    assert_eq!(store.count_oidc_logins().await.unwrap(), 1);
}

async fn verifier_bound_to_its_row(ctx: Ctx) {
    let store = ctx.open().await;
    let a = login(1, 1_000);
    let b = login(2, 1_000);
    store.insert_oidc_login(&a, 10).await.unwrap();
    store.insert_oidc_login(&b, 10).await.unwrap();
    // Moving A's sealed verifier into B's row does not open.
    sqlx::query(
        "UPDATE oidc_logins SET pkce_verifier = (SELECT pkce_verifier FROM oidc_logins \
         WHERE state_hash = $1) WHERE state_hash = $2",
    )
    .bind(&a.state_hash)
    .bind(&b.state_hash)
    .execute(store.pool())
    .await
    .unwrap();
    let err = store.take_oidc_login(&b.state_hash).await.unwrap_err();
    assert!(matches!(err, StoreError::Decrypt(_)), "{err}");
}
