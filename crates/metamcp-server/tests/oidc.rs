//! Single sign-on against a real OpenID Provider (`oidc-provider` in Node, see
//! `metamcp_it::oidc`), over real HTTP, with pending logins in real SQLite and PostgreSQL
//! stores: `Oidc::begin`, the provider's login and consent driven like a browser would, and
//! `Oidc::finish` on the callback URL it redirects to. Skipped only when Node is missing.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use http::StatusCode;
use metamcp_it::oidc::{
    Decision, OidcAccount, OidcClient, OidcProvider, OidcProviderConfig, sign_in,
};
use metamcp_server::account::oidc::{Oidc, OidcError, OidcSettings};
use metamcp_store::testing::Ctx;
use url::Url;

const APP_URL: &str = "http://gw.test:8080/mm/";
const CALLBACK: &str = "http://gw.test:8080/mm/api/auth/oauth2/callback/oidc";
const CLIENT: &str = "metamcp-gw";
const SECRET: &str = "gw-client-secret";

fn account(sub: &str, verified: bool) -> OidcAccount {
    OidcAccount {
        sub: sub.into(),
        email: format!("{sub}@example.com"),
        email_verified: verified,
        name: format!("{sub} Example"),
        password: format!("{sub}-password"),
    }
}

fn client(id: &str) -> OidcClient {
    OidcClient {
        client_id: id.into(),
        client_secret: SECRET.into(),
        redirect_uris: vec![CALLBACK.into()],
        token_endpoint_auth_method: None,
    }
}

fn config() -> OidcProviderConfig {
    OidcProviderConfig::new(
        client(CLIENT),
        vec![account("alice", true), account("bob", false)],
    )
}

fn oidc(discovery_url: &str, extra: &[(&str, &str)]) -> Oidc {
    let mut vars: HashMap<String, String> = [
        ("OIDC_CLIENT_ID", CLIENT),
        ("OIDC_CLIENT_SECRET", SECRET),
        ("OIDC_DISCOVERY_URL", discovery_url),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    let settings =
        OidcSettings::from_lookup(|k| vars.get(k).cloned(), &Url::parse(APP_URL).unwrap())
            .unwrap()
            .unwrap();
    assert_eq!(settings.redirect_uri().as_str(), CALLBACK);
    Oidc::new(settings)
}

/// The callback's query string.
fn query(callback: &str) -> String {
    assert!(callback.starts_with(CALLBACK), "{callback}");
    Url::parse(callback)
        .unwrap()
        .query()
        .unwrap_or("")
        .to_owned()
}

/// `query` with parameter `name` set to `value`.
fn with_param(query: &str, name: &str, value: &str) -> String {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            let v = if k == name {
                value.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn param(query: &str, name: &str) -> String {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

async fn provider(config: &OidcProviderConfig) -> Option<OidcProvider> {
    OidcProvider::start(config).await.unwrap()
}

metamcp_store::both_backends!(
    signs_in_once,
    unverified_email_is_reported,
    tampered_state_is_refused,
    browser_cookie_is_required_and_bound,
    replayed_code_is_refused,
    token_for_another_audience_is_refused,
    declined_sign_in_is_reported,
    mixed_up_issuer_is_refused,
    wrong_client_secret_is_named,
    unreachable_discovery_names_the_variable,
    provider_id_mismatch_is_refused,
);

async fn signs_in_once(ctx: Ctx) {
    let Some(op) = provider(&config()).await else {
        return;
    };
    let store = ctx.open().await;
    let oidc = oidc(&op.discovery_url, &[]);
    let begin = oidc.begin(&store, Some("/ui/servers?tab=1")).await.unwrap();
    let auth = begin.redirect.to_string();
    assert!(auth.starts_with(&format!("{}/auth?", op.issuer)), "{auth}");
    for p in [
        "code_challenge=",
        "code_challenge_method=S256",
        "nonce=",
        "state=",
    ] {
        assert!(auth.contains(p), "{p} missing in {auth}");
    }
    let callback = sign_in(&auth, "alice", "alice-password", Decision::Approve)
        .await
        .unwrap();
    let q = query(&callback);
    let done = oidc
        .finish(&store, "oidc", &q, Some(&begin.browser_cookie))
        .await
        .unwrap();
    assert_eq!(done.identity.issuer, op.issuer);
    assert_eq!(done.identity.subject, "alice");
    assert_eq!(done.identity.email.as_deref(), Some("alice@example.com"));
    assert!(done.identity.email_verified);
    assert_eq!(done.identity.name.as_deref(), Some("alice Example"));
    assert_eq!(done.return_to.as_deref(), Some("/ui/servers?tab=1"));
    assert_eq!(store.count_oidc_logins().await.unwrap(), 0);

    // The same callback again (a replay, or the back button): the state is spent.
    let err = oidc
        .finish(&store, "oidc", &q, Some(&begin.browser_cookie))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::UnknownState), "{err}");
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);

    // A return_to that leaves the site is dropped.
    let begin = oidc.begin(&store, Some("//evil.example/x")).await.unwrap();
    let callback = sign_in(
        begin.redirect.as_str(),
        "alice",
        "alice-password",
        Decision::Approve,
    )
    .await
    .unwrap();
    let done = oidc
        .finish(
            &store,
            "oidc",
            &query(&callback),
            Some(&begin.browser_cookie),
        )
        .await
        .unwrap();
    assert_eq!(done.return_to, None);
}

async fn unverified_email_is_reported(ctx: Ctx) {
    // Claims in the ID token itself this time (the other tests read them from userinfo).
    let mut config = config();
    config.id_token_claims = true;
    let Some(op) = provider(&config).await else {
        return;
    };
    let store = ctx.open().await;
    let oidc = oidc(&op.discovery_url, &[]);
    let begin = oidc.begin(&store, None).await.unwrap();
    let callback = sign_in(
        begin.redirect.as_str(),
        "bob",
        "bob-password",
        Decision::Approve,
    )
    .await
    .unwrap();
    let done = oidc
        .finish(
            &store,
            "oidc",
            &query(&callback),
            Some(&begin.browser_cookie),
        )
        .await
        .unwrap();
    assert_eq!(done.identity.subject, "bob");
    assert_eq!(done.identity.email.as_deref(), Some("bob@example.com"));
    assert!(!done.identity.email_verified);
    assert_eq!(done.return_to, None);
}

async fn tampered_state_is_refused(ctx: Ctx) {
    let Some(op) = provider(&config()).await else {
        return;
    };
    let store = ctx.open().await;
    let oidc = oidc(&op.discovery_url, &[]);
    let begin = oidc.begin(&store, None).await.unwrap();
    let callback = sign_in(
        begin.redirect.as_str(),
        "alice",
        "alice-password",
        Decision::Approve,
    )
    .await
    .unwrap();
    let q = query(&callback);
    let state = param(&q, "state");
    let tampered = with_param(&q, "state", &format!("{state}x"));
    let err = oidc
        .finish(&store, "oidc", &tampered, Some(&begin.browser_cookie))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::UnknownState), "{err}");
    // The genuine callback still works: a wrong state consumes nothing.
    let done = oidc
        .finish(&store, "oidc", &q, Some(&begin.browser_cookie))
        .await
        .unwrap();
    assert_eq!(done.identity.subject, "alice");
}

async fn browser_cookie_is_required_and_bound(ctx: Ctx) {
    let Some(op) = provider(&config()).await else {
        return;
    };
    let store = ctx.open().await;
    let oidc = oidc(&op.discovery_url, &[]);
    // The attacker begins a login and signs in as themselves...
    let attacker = oidc.begin(&store, None).await.unwrap();
    let callback = sign_in(
        attacker.redirect.as_str(),
        "bob",
        "bob-password",
        Decision::Approve,
    )
    .await
    .unwrap();
    let q = query(&callback);

    // ...a browser without the cookie (another origin than APP_URL) is told so...
    let err = oidc.finish(&store, "oidc", &q, None).await.unwrap_err();
    assert!(
        matches!(err, OidcError::MissingBrowserCookie { .. }),
        "{err}"
    );
    assert_eq!(err.variable(), Some("APP_URL"));
    assert!(
        err.to_string()
            .contains("APP_URL (http://gw.test:8080/mm/)"),
        "{err}"
    );

    // ...and the victim's browser, with its own cookie from its own login, is refused.
    let victim = oidc.begin(&store, None).await.unwrap();
    let err = oidc
        .finish(&store, "oidc", &q, Some(&victim.browser_cookie))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::BrowserMismatch), "{err}");
    assert_eq!(err.status(), StatusCode::FORBIDDEN);
    // The state was spent by that attempt.
    let err = oidc
        .finish(&store, "oidc", &q, Some(&attacker.browser_cookie))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::UnknownState), "{err}");
}

async fn replayed_code_is_refused(ctx: Ctx) {
    // Without PKCE the provider checks nothing but the code itself, so what refuses the
    // second exchange is the code being spent.
    let mut config = config();
    config.pkce_required = false;
    let Some(op) = provider(&config).await else {
        return;
    };
    let store = ctx.open().await;
    let oidc = oidc(&op.discovery_url, &[("OIDC_PKCE", "false")]);
    let first = oidc.begin(&store, None).await.unwrap();
    assert!(!first.redirect.to_string().contains("code_challenge"));
    let second = oidc.begin(&store, None).await.unwrap();
    let callback = sign_in(
        first.redirect.as_str(),
        "alice",
        "alice-password",
        Decision::Approve,
    )
    .await
    .unwrap();
    let q = query(&callback);
    oidc.finish(&store, "oidc", &q, Some(&first.browser_cookie))
        .await
        .unwrap();
    // The spent code under the second login's fresh state.
    let second_state = param(&query_of(&second.redirect), "state");
    let replay = with_param(&q, "state", &second_state);
    let err = oidc
        .finish(&store, "oidc", &replay, Some(&second.browser_cookie))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::InvalidGrant(_)), "{err}");
    assert!(err.to_string().contains("already used"), "{err}");
}

fn query_of(url: &Url) -> String {
    url.query().unwrap_or("").to_owned()
}

async fn token_for_another_audience_is_refused(ctx: Ctx) {
    let mut config = config();
    config.clients.push(client("another-client"));
    config.id_token_audience = Some("another-client".into());
    let Some(op) = provider(&config).await else {
        return;
    };
    let store = ctx.open().await;
    let oidc = oidc(&op.discovery_url, &[]);
    let begin = oidc.begin(&store, None).await.unwrap();
    let callback = sign_in(
        begin.redirect.as_str(),
        "alice",
        "alice-password",
        Decision::Approve,
    )
    .await
    .unwrap();
    let err = oidc
        .finish(
            &store,
            "oidc",
            &query(&callback),
            Some(&begin.browser_cookie),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::IdTokenAudience(_)), "{err}");
    assert!(
        err.to_string().contains("issued for another client"),
        "{err}"
    );
    assert_eq!(err.variable(), Some("OIDC_CLIENT_ID"));
}

async fn declined_sign_in_is_reported(ctx: Ctx) {
    let Some(op) = provider(&config()).await else {
        return;
    };
    let store = ctx.open().await;
    let oidc = oidc(&op.discovery_url, &[]);
    let begin = oidc.begin(&store, None).await.unwrap();
    let callback = sign_in(
        begin.redirect.as_str(),
        "alice",
        "alice-password",
        Decision::Deny,
    )
    .await
    .unwrap();
    let err = oidc
        .finish(
            &store,
            "oidc",
            &query(&callback),
            Some(&begin.browser_cookie),
        )
        .await
        .unwrap_err();
    let OidcError::Provider { error, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(error, "access_denied");
    let msg = err.to_string();
    assert!(
        msg.contains("access_denied: End-User aborted interaction"),
        "{msg}"
    );
    assert_eq!(err.status(), StatusCode::FORBIDDEN);
    assert_eq!(store.count_oidc_logins().await.unwrap(), 0);
}

async fn mixed_up_issuer_is_refused(ctx: Ctx) {
    let Some(op) = provider(&config()).await else {
        return;
    };
    let store = ctx.open().await;
    let oidc = oidc(&op.discovery_url, &[]);
    let begin = oidc.begin(&store, None).await.unwrap();
    let callback = sign_in(
        begin.redirect.as_str(),
        "alice",
        "alice-password",
        Decision::Approve,
    )
    .await
    .unwrap();
    let q = query(&callback);
    assert_eq!(param(&q, "iss"), op.issuer);
    let mixed = with_param(&q, "iss", "https://other-idp.example");
    let err = oidc
        .finish(&store, "oidc", &mixed, Some(&begin.browser_cookie))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::IssuerMismatch { .. }), "{err}");
    assert_eq!(err.variable(), Some("OIDC_DISCOVERY_URL"));
}

async fn wrong_client_secret_is_named(ctx: Ctx) {
    let Some(op) = provider(&config()).await else {
        return;
    };
    let store = ctx.open().await;
    let oidc = oidc(
        &op.discovery_url,
        &[("OIDC_CLIENT_SECRET", "not-the-secret")],
    );
    let begin = oidc.begin(&store, None).await.unwrap();
    let callback = sign_in(
        begin.redirect.as_str(),
        "alice",
        "alice-password",
        Decision::Approve,
    )
    .await
    .unwrap();
    let err = oidc
        .finish(
            &store,
            "oidc",
            &query(&callback),
            Some(&begin.browser_cookie),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::InvalidClient(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("OIDC_CLIENT_ID and OIDC_CLIENT_SECRET"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-secret"), "{msg}");
}

async fn unreachable_discovery_names_the_variable(ctx: Ctx) {
    let store = ctx.open().await;
    let port = metamcp_it::free_port();
    let oidc = oidc(
        &format!("http://127.0.0.1:{port}/.well-known/openid-configuration"),
        &[],
    );
    let err = oidc.begin(&store, None).await.unwrap_err();
    assert!(
        matches!(err, OidcError::DiscoveryUnreachable { .. }),
        "{err}"
    );
    assert_eq!(err.variable(), Some("OIDC_DISCOVERY_URL"));
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert_eq!(store.count_oidc_logins().await.unwrap(), 0);
}

async fn provider_id_mismatch_is_refused(ctx: Ctx) {
    let store = ctx.open().await;
    let oidc = oidc("http://127.0.0.1:9/.well-known/openid-configuration", &[]);
    let err = oidc
        .finish(&store, "okta", "code=x&state=y", Some("cookie"))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::ProviderMismatch { .. }), "{err}");
    assert_eq!(err.variable(), Some("OIDC_PROVIDER_ID"));
    assert_eq!(err.status(), StatusCode::NOT_FOUND);
    assert!(err.to_string().contains(CALLBACK), "{err}");
}
