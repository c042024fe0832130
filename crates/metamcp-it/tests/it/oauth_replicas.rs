//! OAuth across replicas sharing PostgreSQL: a code issued by one replica is redeemed on the
//! other, an access token minted by one opens the endpoint on the other, a refresh token
//! rotated on one is reuse on the other, and a revocation on one stops refreshes on both.

use metamcp_it::Env;
use metamcp_it::browser::Browser;
use serde_json::json;

use crate::oauth::{
    PW, code_for, mcp_status, pkce, redeem, refresh, register, setup, tokens_for,
    wait_for_oauth_endpoint,
};

#[tokio::test]
async fn tokens_work_across_replicas_sharing_postgresql() {
    let Some(env) = Env::new_pg().await else {
        return;
    };
    // Both replicas name the same issuer (APP_URL), as behind one load balancer.
    let port = metamcp_it::free_port();
    let app = format!("http://127.0.0.1:{port}");
    let one = env
        .serve_at(&format!("127.0.0.1:{port}"), &[("APP_URL", app.as_str())])
        .await;
    let two = env.serve_with(&[("APP_URL", app.as_str())]).await;
    let mut ada = Browser::new(&one.base);
    assert_eq!(ada.sign_up("ada@example.com", PW).await.status, 200);
    setup(&env);
    let resource = format!("{app}/metamcp/ob/mcp");
    for gw in [&one, &two] {
        wait_for_oauth_endpoint(gw, "ob").await;
    }

    // Registered on one, authorized on one, redeemed on two.
    let (st, reg) = register(
        &two,
        json!({ "redirect_uris": ["http://127.0.0.1/callback"] }),
    )
    .await;
    assert_eq!(st, 201, "{reg}");
    let client = reg["client_id"].as_str().unwrap().to_owned();
    let p = pkce();
    let code = code_for(&mut ada, &client, &p, &resource).await;
    let (st, tok) = redeem(
        &two,
        &client,
        &code,
        "http://127.0.0.1:5555/callback",
        &p.verifier,
    )
    .await;
    assert_eq!(st, 200, "{tok}");
    // The code is spent on both.
    let (st, _) = redeem(
        &one,
        &client,
        &code,
        "http://127.0.0.1:5555/callback",
        &p.verifier,
    )
    .await;
    assert_eq!(st, 400);
    let access = tok["access_token"].as_str().unwrap().to_owned();
    let r1 = tok["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(mcp_status(&one, "ob", &access).await.0, 200);
    assert_eq!(mcp_status(&two, "ob", &access).await.0, 200);

    // Rotated on one; the old token presented to two is reuse and revokes the grant for both.
    let (st, t2) = refresh(&one, &client, &r1).await;
    assert_eq!(st, 200, "{t2}");
    let r2 = t2["refresh_token"].as_str().unwrap().to_owned();
    let (st, e) = refresh(&two, &client, &r1).await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    assert_eq!(refresh(&one, &client, &r2).await.0, 400);

    // A fresh grant revoked through one replica's API cannot be refreshed on the other.
    let tok = tokens_for(&mut ada, &one, &client, &resource).await;
    let r = tok["refresh_token"].as_str().unwrap().to_owned();
    let grants = ada.get("/api/v1/oauth/grants").await;
    let live = grants
        .json
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["active"] == true)
        .and_then(|g| g["id"].as_str())
        .unwrap()
        .to_owned();
    let gone = ada
        .json("DELETE", &format!("/api/v1/oauth/grants/{live}"), json!({}))
        .await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    let (st, e) = refresh(&two, &client, &r).await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
}
