//! rmcp's own OAuth client (`rmcp::transport::auth`, feature `auth`) against the gateway as
//! authorization server: discovery from the endpoint's 401, dynamic registration, PKCE, the
//! consent answered by a signed-in user, the code handed back with `state` and `iss`
//! (RFC 9207, which rmcp requires since the gateway advertises it), tokens, the streamable
//! HTTP client authorized by `AuthClient`, refresh (explicit, then by itself after expiry),
//! revocation — and the same sign-in with a client ID metadata document as the client id.

use std::time::Duration;

use metamcp_it::browser::Browser;
use metamcp_it::{Env, Gateway};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::auth::{AuthClient, AuthError, AuthorizationManager, OAuthState};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{AuthorizationRequest, StreamableHttpClientTransport};
use serde_json::{Value, json};

use crate::first_text;
use crate::oauth::{
    PW, authorize_query, cimd_server, consent, mcp_status, pkce, serve, setup, test_ca, urlencode,
};

/// Where the gateway sends the browser back; nothing listens, the test reads the redirect.
const CALLBACK: &str = "http://127.0.0.1:8976/callback";

/// The endpoint's 401 challenge (`WWW-Authenticate`), once the endpoint is loaded.
async fn challenge(url: &str) -> String {
    metamcp_it::eventually(Duration::from_secs(10), || async {
        let r = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .send()
            .await
            .ok()?;
        if r.status() != 401 {
            return None;
        }
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
    .await
    .expect("a 401 with WWW-Authenticate from the OAuth endpoint")
}

/// rmcp's whole interactive sign-in for `request`, the browser part answered by `b`: the
/// authorized manager and the authorization URL rmcp built.
async fn sign_in(
    gw: &Gateway,
    b: &mut Browser,
    url: &str,
    request: AuthorizationRequest,
) -> (AuthorizationManager, String) {
    let mut state = OAuthState::new(url, None).await.expect("OAuthState");
    state
        .start_authorization(request)
        .await
        .expect("discovery and client registration");
    let auth_url = state
        .get_authorization_url()
        .await
        .expect("an authorization URL");
    let query = auth_url
        .strip_prefix(&format!("{}/oauth/authorize?", gw.base))
        .unwrap_or_else(|| panic!("the gateway's authorization endpoint: {auth_url}"))
        .to_owned();
    let a = consent(b, &query, "approve").await;
    assert_eq!(a.status, 303, "{}", a.text);
    let location = a.headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(CALLBACK), "{location}");
    // rmcp parses code, state and iss from the redirect, checks iss against the issuer it
    // discovered and redeems the code with its PKCE verifier and the RFC 8707 resource.
    state
        .handle_callback_url(&location)
        .await
        .expect("the code exchanged for tokens");
    let manager = state
        .into_authorization_manager()
        .expect("authorized after the callback");
    (manager, auth_url)
}

/// The stored token response of `manager` as JSON, and its client id.
async fn tokens(manager: &AuthorizationManager) -> (String, Value) {
    let (client_id, tok) = manager.get_credentials().await.expect("credentials");
    let tok = serde_json::to_value(tok.expect("a token response")).unwrap();
    (client_id, tok)
}

fn field(tok: &Value, k: &str) -> String {
    tok[k]
        .as_str()
        .unwrap_or_else(|| panic!("{k} in {tok}"))
        .to_owned()
}

/// rmcp's streamable HTTP client, every request authorized by `client`.
async fn connect(url: &str, client: AuthClient<reqwest::Client>) -> RunningService<RoleClient, ()> {
    let transport = StreamableHttpClientTransport::with_client(
        client,
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
    );
    ().serve(transport).await.expect("an MCP session")
}

async fn echo(svc: &RunningService<RoleClient, ()>, message: &str) -> String {
    let r = svc
        .call_tool(
            CallToolRequestParams::new("alpha__echo")
                .with_arguments(json!({ "message": message }).as_object().cloned().unwrap()),
        )
        .await
        .expect("alpha__echo");
    first_text(&serde_json::to_value(&r).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_signs_in_by_registration_and_by_metadata_document() {
    let env = Env::new();
    let certs = env.data_dir().join("test-ca");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = test_ca(&certs);
    let (_server, port) = cimd_server(&cert, &key).await;
    let gw = serve(&env, &[("METAMCP_EXTRA_CA_FILE", ca.as_str())]).await;
    let mut ada = Browser::new(&gw.base);
    assert_eq!(ada.sign_up("ada@example.com", PW).await.status, 200);
    setup(&env);
    env.cli_ok(&["settings", "set", "OAUTH_ACCESS_TOKEN_LIFETIME", "2000"]);
    env.cli_ok(&[
        "settings",
        "set",
        "OAUTH_CIMD_ALLOW_PRIVATE_NETWORKS",
        "true",
    ]);
    let url = gw.mcp_url("ob");
    let doc = format!("https://127.0.0.1:{port}/client.json");
    // Both settings applied (the later one makes the document on 127.0.0.1 acceptable, and
    // a snapshot carries both): the consent page for the document's client id opens.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let q = authorize_query(&doc, CALLBACK, &pkce(), "s", &url);
        let a = ada.get(&format!("/oauth/authorize?{q}")).await;
        if a.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the settings apply: {}",
            a.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 1. Discovery from the 401, dynamic registration, authorization with PKCE.
    let www = challenge(&url).await;
    let (manager, auth_url) = sign_in(
        &gw,
        &mut ada,
        &url,
        AuthorizationRequest::new(CALLBACK)
            .with_client_name("rmcp it client")
            .with_challenge(www),
    )
    .await;
    let params: Vec<(String, String)> = reqwest::Url::parse(&auth_url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let p = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(p("code_challenge_method"), Some("S256"), "{auth_url}");
    assert_eq!(p("resource"), Some(url.as_str()), "{auth_url}");
    assert_eq!(p("redirect_uri"), Some(CALLBACK), "{auth_url}");
    assert_eq!(p("scope"), Some("mcp"), "from scopes_supported: {auth_url}");
    assert!(p("state").is_some_and(|s| !s.is_empty()), "{auth_url}");
    let (client_id, tok) = tokens(&manager).await;
    assert!(
        !client_id.starts_with("https://"),
        "registered: {client_id}"
    );
    let first_access = field(&tok, "access_token");
    let first_refresh = field(&tok, "refresh_token");
    assert!(first_access.starts_with("mt_at_"), "{tok}");
    assert!(tok["expires_in"].as_u64().unwrap() <= 2, "{tok}");

    // 2. rmcp's streamable HTTP client with the token: tools, a call.
    let client = AuthClient::new(reqwest::Client::new(), manager);
    let svc = connect(&url, client.clone()).await;
    let tools: Vec<String> = svc
        .list_all_tools()
        .await
        .expect("tools")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(tools.iter().any(|t| t == "alpha__echo"), "{tools:?}");
    assert_eq!(echo(&svc, "from rmcp").await, "from rmcp");

    // 3. Refresh by rmcp's API: both tokens rotate; then the client refreshes by itself
    // once the gateway refuses the access token it holds.
    let refreshed = client
        .auth_manager
        .lock()
        .await
        .refresh_token()
        .await
        .expect("refresh");
    let refreshed = serde_json::to_value(refreshed).unwrap();
    let second_access = field(&refreshed, "access_token");
    let second_refresh = field(&refreshed, "refresh_token");
    assert_ne!(second_access, first_access);
    assert_ne!(second_refresh, first_refresh, "refresh tokens rotate");
    assert_eq!(
        field(
            &tokens(&*client.auth_manager.lock().await).await.1,
            "access_token"
        ),
        second_access,
        "rmcp keeps the new token"
    );
    let expired = metamcp_it::eventually(Duration::from_secs(10), || async {
        (mcp_status(&gw, "ob", &second_access).await.0 == 401).then_some(())
    })
    .await;
    assert!(expired.is_some(), "a 2-second access token expires");
    assert_eq!(echo(&svc, "after expiry").await, "after expiry");
    let (_, now) = tokens(&*client.auth_manager.lock().await).await;
    let current_access = field(&now, "access_token");
    let current_refresh = field(&now, "refresh_token");
    assert_ne!(current_access, second_access, "rmcp refreshed by itself");
    assert_ne!(current_refresh, second_refresh);

    // 4. Revocation at /oauth/revoke (rmcp has no revocation API): the grant ends, rmcp's
    // refresh is refused, and so is its access token on this replica.
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/revoke", gw.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "token={}&token_type_hint=refresh_token&client_id={}",
            urlencode(&current_refresh),
            urlencode(&client_id)
        ))
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    let refused = client.auth_manager.lock().await.refresh_token().await;
    assert!(
        matches!(refused, Err(AuthError::TokenRefreshRejected(_))),
        "{refused:?}"
    );
    assert_eq!(mcp_status(&gw, "ob", &current_access).await.0, 401);
    svc.cancel().await.ok();

    // 5. A client ID metadata document as the client id (rmcp prefers it to registration
    // when the server advertises `client_id_metadata_document_supported`).
    let clients_before = env.cli_ok(&["oauth", "clients"]);
    let www = challenge(&url).await;
    let (manager, auth_url) = sign_in(
        &gw,
        &mut ada,
        &url,
        AuthorizationRequest::new(CALLBACK)
            .with_client_metadata_url(doc.clone())
            .with_client_name("unused: no registration")
            .with_challenge(www),
    )
    .await;
    assert!(auth_url.contains(&urlencode(&doc)), "{auth_url}");
    let (client_id, _) = tokens(&manager).await;
    assert_eq!(client_id, doc);
    assert_eq!(
        env.cli_ok(&["oauth", "clients"]),
        clients_before,
        "nothing registered"
    );
    let svc = connect(&url, AuthClient::new(reqwest::Client::new(), manager)).await;
    assert_eq!(echo(&svc, "cimd").await, "cimd");
    svc.cancel().await.ok();
    let grants = env.cli_ok(&["oauth", "grants", "--all"]);
    assert!(grants.contains(&doc), "{grants}");
}
