//! Endpoints as OAuth 2.1 protected resources, the gateway as their authorization server:
//! discovery from the 401, registration, consent by a signed-in user, PKCE, codes used once,
//! tokens bound to one endpoint, refresh rotation with reuse detection, revocation, expiry —
//! and the refusals an attacker or a second tenant would meet.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use metamcp_it::browser::Browser;
use metamcp_it::{Env, Gateway, RawClient, fixture_stdio};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub(crate) const PW: &str = "correct horse battery";
const REDIRECT: &str = "http://127.0.0.1/callback";

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    // RFC 7636: 43 to 128 unreserved characters.
    let verifier: String = (0..4)
        .map(|_| metamcp_it::uuid_simple())
        .collect::<Vec<_>>()
        .join("-");
    assert!(verifier.len() >= 43, "{verifier}");
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

/// Starts a gateway whose APP_URL is its own address (the issuer clients check).
pub(crate) async fn serve(env: &Env, extra: &[(&str, &str)]) -> Gateway {
    let port = metamcp_it::free_port();
    let app = format!("http://127.0.0.1:{port}");
    let mut vars = vec![("APP_URL", app.as_str())];
    vars.extend_from_slice(extra);
    env.serve_at(&format!("127.0.0.1:{port}"), &vars).await
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The authorization request's query.
pub(crate) fn authorize_query(
    client_id: &str,
    redirect: &str,
    p: &Pkce,
    state: &str,
    resource: &str,
) -> String {
    form(&[
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("code_challenge", &p.challenge),
        ("code_challenge_method", "S256"),
        ("state", state),
        ("resource", resource),
        ("scope", "mcp"),
    ])
}

/// The consent form's hidden fields.
fn hidden_fields(page: &str) -> Vec<(String, String)> {
    page.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|chunk| {
            let attr = |name: &str| {
                chunk
                    .split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .map(|v| {
                        v.replace("&#38;", "&")
                            .replace("&amp;", "&")
                            .replace("&#34;", "\"")
                            .replace("&quot;", "\"")
                            .replace("&#39;", "'")
                            .replace("&#x27;", "'")
                            .replace("&lt;", "<")
                            .replace("&gt;", ">")
                    })
            };
            Some((attr("name")?, attr("value")?))
        })
        .collect()
}

/// The query parameters of a redirect's `Location`.
pub(crate) fn location_params(a: &metamcp_it::browser::Answer) -> (String, Vec<(String, String)>) {
    let loc = a
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("a Location header: {} {}", a.status, a.text))
        .to_owned();
    let url = reqwest::Url::parse(&loc).unwrap_or_else(|e| panic!("{loc}: {e}"));
    let params = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (loc, params)
}

pub(crate) fn param<'a>(params: &'a [(String, String)], k: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

/// Signs `b` through the consent page of `query` with `decision`; the redirect's answer.
pub(crate) async fn consent(
    b: &mut Browser,
    query: &str,
    decision: &str,
) -> metamcp_it::browser::Answer {
    let page = b.get(&format!("/oauth/authorize?{query}")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let mut fields = hidden_fields(&page.text);
    assert!(fields.iter().any(|(k, _)| k == "csrf"), "{}", page.text);
    fields.push(("decision".into(), decision.into()));
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    b.form("/oauth/authorize", &refs).await
}

pub(crate) async fn post_form(gw: &Gateway, path: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", gw.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(fields))
        .send()
        .await
        .expect("request");
    let st = r.status().as_u16();
    let cc = r
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if path == "/oauth/token" {
        assert_eq!(cc, "no-store", "token answers are never cached");
    }
    (st, body)
}

/// Redeems `code`: (status, answer).
pub async fn redeem(
    gw: &Gateway,
    client_id: &str,
    code: &str,
    redirect: &str,
    verifier: &str,
) -> (u16, Value) {
    post_form(
        gw,
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("client_id", client_id),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub(crate) async fn refresh(gw: &Gateway, client_id: &str, token: &str) -> (u16, Value) {
    post_form(
        gw,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", client_id),
        ],
    )
    .await
}

pub(crate) async fn register(gw: &Gateway, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/register", gw.base))
        .json(&body)
        .send()
        .await
        .expect("register");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A code for `resource` through the whole browser dance: (code, redirect used).
pub(crate) async fn code_for(b: &mut Browser, client_id: &str, p: &Pkce, resource: &str) -> String {
    let redirect = "http://127.0.0.1:5555/callback";
    let q = authorize_query(client_id, redirect, p, "st", resource);
    let a = consent(b, &q, "approve").await;
    assert_eq!(a.status, 303, "{}", a.text);
    let (_, params) = location_params(&a);
    param(&params, "code").expect("a code").to_owned()
}

/// A fresh grant's token answer for `resource`: consent as `b`, redeem on `gw` (200).
pub(crate) async fn tokens_for(
    b: &mut Browser,
    gw: &Gateway,
    client: &str,
    resource: &str,
) -> Value {
    let p = pkce();
    let code = code_for(b, client, &p, resource).await;
    let (st, tok) = redeem(
        gw,
        client,
        &code,
        "http://127.0.0.1:5555/callback",
        &p.verifier,
    )
    .await;
    assert_eq!(st, 200, "{tok}");
    tok
}

/// Waits until `gw` serves the protected-resource metadata of OAuth endpoint `ep`.
pub(crate) async fn wait_for_oauth_endpoint(gw: &Gateway, ep: &str) {
    let url = format!(
        "{}/.well-known/oauth-protected-resource/metamcp/{ep}/mcp",
        gw.base
    );
    metamcp_it::eventually(std::time::Duration::from_secs(10), || async {
        let r = reqwest::get(&url).await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{} never served endpoint {ep}", gw.base));
}

pub(crate) async fn mcp_status(gw: &Gateway, ep: &str, token: &str) -> (u16, String) {
    let mut c = RawClient::new(&gw.mcp_url(ep)).bearer(token);
    let a = c.initialize().await;
    (a.status, a.body.to_string())
}

pub(crate) fn setup(env: &Env) {
    env.import(json!({ "alpha": fixture_stdio("alpha", &[]) }));
    env.cli_ok(&["namespace", "create", "pub", "--server", "alpha"]);
    env.cli_ok(&[
        "endpoint",
        "create",
        "ob",
        "--namespace",
        "pub",
        "--no-auth",
        "--oauth",
    ]);
    env.cli_ok(&["endpoint", "create", "oa", "--namespace", "pub", "--oauth"]);
    env.cli_ok(&["endpoint", "create", "keys", "--namespace", "pub"]);
}

#[tokio::test]
async fn a_client_discovers_registers_signs_in_and_calls_tools() {
    let env = Env::new();
    let gw = serve(&env, &[]).await;
    let app = gw.base.clone();
    let mut ada = Browser::new(&gw.base);
    assert_eq!(ada.sign_up("ada@example.com", PW).await.status, 200);
    setup(&env);
    let resource = format!("{app}/metamcp/ob/mcp");

    // Discovery from the 401 (once the endpoint is loaded).
    let r = metamcp_it::eventually(std::time::Duration::from_secs(10), || async {
        let r = reqwest::Client::new()
            .post(gw.mcp_url("ob"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .send()
            .await
            .ok()?;
        (r.status() == 401).then_some(r)
    })
    .await
    .expect("a 401 from the OAuth endpoint");
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .expect("WWW-Authenticate")
        .to_owned();
    let prm_url = format!("{app}/.well-known/oauth-protected-resource/metamcp/ob/mcp");
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(&format!("resource_metadata=\"{prm_url}\"")),
        "{challenge}"
    );
    let http = reqwest::Client::new();
    let prm = http
        .get(&prm_url)
        .header("origin", "https://client.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        prm.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("*"),
        "metadata answers any origin"
    );
    let prm: Value = prm.json().await.unwrap();
    assert_eq!(prm["resource"], resource.as_str());
    assert_eq!(prm["authorization_servers"], json!([app]));
    let appended: Value = http
        .get(format!(
            "{app}/metamcp/ob/mcp/.well-known/oauth-protected-resource"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(appended, prm);
    // An endpoint without OAuth has no metadata, and its 401 names none.
    let none = http
        .get(format!(
            "{app}/.well-known/oauth-protected-resource/metamcp/keys/mcp"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let asm: Value = http
            .get(format!("{app}{path}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(asm["issuer"], app.as_str(), "{path}");
        assert_eq!(asm["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(asm["authorization_response_iss_parameter_supported"], true);
        assert_eq!(asm["client_id_metadata_document_supported"], true);
        assert_eq!(
            asm["registration_endpoint"],
            format!("{app}/oauth/register").as_str()
        );
    }

    // Registration: loopback and https redirect URIs; anything else refused.
    let (st, bad) = register(&gw, json!({ "redirect_uris": ["http://evil.example/cb"] })).await;
    assert_eq!(
        (st, bad["error"].as_str()),
        (400, Some("invalid_redirect_uri")),
        "{bad}"
    );
    let (st, reg) = register(
        &gw,
        json!({ "redirect_uris": [REDIRECT], "client_name": "Test <Client>", "token_endpoint_auth_method": "client_secret_post" }),
    )
    .await;
    assert_eq!(st, 201, "{reg}");
    assert_eq!(reg["token_endpoint_auth_method"], "none");
    assert!(reg.get("client_secret").is_none());
    let client = reg["client_id"].as_str().unwrap().to_owned();

    // Not signed in: to the sign-in page, and back here afterwards.
    let p = pkce();
    let q = authorize_query(
        &client,
        "http://127.0.0.1:5555/callback",
        &p,
        "st-1",
        &resource,
    );
    let mut anon = Browser::new(&gw.base);
    let a = anon.get(&format!("/oauth/authorize?{q}")).await;
    assert_eq!(a.status, 303);
    let loc = a.headers["location"].to_str().unwrap();
    assert!(
        loc.starts_with("/login?return_to=%2Foauth%2Fauthorize%3F"),
        "{loc}"
    );

    // A redirect URI not registered: an error page, never a redirect.
    let q_bad = authorize_query(
        &client,
        "http://127.0.0.1:5555/elsewhere",
        &p,
        "st-1",
        &resource,
    );
    let a = ada.get(&format!("/oauth/authorize?{q_bad}")).await;
    assert_eq!(a.status, 400);
    assert!(a.headers.get("location").is_none());
    // No PKCE: back to the client with an error, state and iss.
    let q_nopkce = form(&[
        ("response_type", "code"),
        ("client_id", &client),
        ("redirect_uri", REDIRECT),
        ("state", "s0"),
        ("resource", &resource),
    ]);
    let a = ada.get(&format!("/oauth/authorize?{q_nopkce}")).await;
    let (_, params) = location_params(&a);
    assert_eq!(param(&params, "error"), Some("invalid_request"));
    assert_eq!(param(&params, "state"), Some("s0"));
    assert_eq!(param(&params, "iss"), Some(app.as_str()));
    // A resource that is not an OAuth endpoint of this gateway.
    let q_keys = authorize_query(
        &client,
        REDIRECT,
        &p,
        "s1",
        &format!("{app}/metamcp/keys/mcp"),
    );
    let (_, params) = location_params(&ada.get(&format!("/oauth/authorize?{q_keys}")).await);
    assert_eq!(param(&params, "error"), Some("invalid_target"));

    // The consent page shows the client's (escaped) name and who signs in.
    let page = ada.get(&format!("/oauth/authorize?{q}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("Test &#60;Client&#62;") || page.text.contains("Test &lt;Client&gt;"),
        "{}",
        page.text
    );
    assert!(page.text.contains("ada@example.com"));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(!csp.contains("form-action"), "{csp}");
    // A forged CSRF token, or a cross-site post, is refused.
    let mut fields = hidden_fields(&page.text);
    for f in fields.iter_mut() {
        if f.0 == "csrf" {
            f.1 = "forged".into();
        }
    }
    fields.push(("decision".into(), "approve".into()));
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(ada.form("/oauth/authorize", &refs).await.status, 403);

    // Deny: access_denied back to the client.
    let a = consent(&mut ada, &q, "deny").await;
    let (_, params) = location_params(&a);
    assert_eq!(param(&params, "error"), Some("access_denied"));

    // Approve: a code, the state, and the issuer (RFC 9207).
    let a = consent(&mut ada, &q, "approve").await;
    assert_eq!(a.status, 303, "{}", a.text);
    let (loc, params) = location_params(&a);
    assert!(loc.starts_with("http://127.0.0.1:5555/callback?"), "{loc}");
    assert_eq!(param(&params, "state"), Some("st-1"));
    assert_eq!(param(&params, "iss"), Some(app.as_str()));
    let code = param(&params, "code").unwrap().to_owned();

    // PKCE mismatch: refused, and the code is spent.
    let wrong = pkce();
    let (st, e) = redeem(
        &gw,
        &client,
        &code,
        "http://127.0.0.1:5555/callback",
        &wrong.verifier,
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    let (st, e) = redeem(
        &gw,
        &client,
        &code,
        "http://127.0.0.1:5555/callback",
        &p.verifier,
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "a code is used once: {e}"
    );

    // Wrong redirect URI at the token endpoint.
    let p2 = pkce();
    let code2 = code_for(&mut ada, &client, &p2, &resource).await;
    let (st, e) = redeem(&gw, &client, &code2, REDIRECT, &p2.verifier).await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );

    // The real thing.
    let tok = tokens_for(&mut ada, &gw, &client, &resource).await;
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 300);
    let access = tok["access_token"].as_str().unwrap().to_owned();
    let refresh1 = tok["refresh_token"].as_str().unwrap().to_owned();

    // The token opens its endpoint on every face, as ada.
    let mut c = RawClient::new(&gw.mcp_url("ob")).bearer(&access);
    assert_eq!(c.initialize().await.status, 200);
    let call = c
        .request(
            "tools/call",
            json!({ "name": "alpha__echo", "arguments": { "message": "via oauth" } }),
        )
        .await;
    assert!(call.body.to_string().contains("via oauth"), "{}", call.body);
    let rest = http
        .post(format!("{app}/metamcp/ob/api/alpha__echo"))
        .bearer_auth(&access)
        .json(&json!({ "message": "rest" }))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 200);
    // Not another endpoint (RFC 8707 audience), not one without OAuth, not forged.
    let (st, body) = mcp_status(&gw, "oa", &access).await;
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("another endpoint"), "{body}");
    assert_eq!(mcp_status(&gw, "keys", &access).await.0, 401);
    let forged = format!("{}x", &access[..access.len() - 1]);
    assert_eq!(mcp_status(&gw, "ob", &forged).await.0, 401);
    // The access token is not a refresh token, nor the reverse.
    assert_eq!(refresh(&gw, &client, &access).await.0, 400);
    assert_eq!(mcp_status(&gw, "ob", &refresh1).await.0, 401);

    // Refresh rotates; another client cannot use it.
    let (st, e) = refresh(&gw, "mcp_client_other", &refresh1).await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    let (st, t2) = refresh(&gw, &client, &refresh1).await;
    assert_eq!(st, 200, "{t2}");
    let refresh2 = t2["refresh_token"].as_str().unwrap().to_owned();
    let access2 = t2["access_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh1);
    assert_eq!(mcp_status(&gw, "ob", &access2).await.0, 200);
    // Reuse of the superseded token revokes the whole family: the current refresh token
    // and (on this replica, at once) its access tokens.
    let (st, e) = refresh(&gw, &client, &refresh1).await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{e}"
    );
    assert_eq!(refresh(&gw, &client, &refresh2).await.0, 400);
    assert_eq!(mcp_status(&gw, "ob", &access2).await.0, 401);

    // Revocation (RFC 7009) of a fresh grant's refresh token.
    let tok4 = tokens_for(&mut ada, &gw, &client, &resource).await;
    let r4 = tok4["refresh_token"].as_str().unwrap().to_owned();
    let a4 = tok4["access_token"].as_str().unwrap().to_owned();
    let (st, _) = post_form(
        &gw,
        "/oauth/revoke",
        &[("token", &r4), ("client_id", &client)],
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(refresh(&gw, &client, &r4).await.0, 400);
    assert_eq!(mcp_status(&gw, "ob", &a4).await.0, 401);
    let (st, _) = post_form(
        &gw,
        "/oauth/revoke",
        &[("token", "nonsense"), ("client_id", &client)],
    )
    .await;
    assert_eq!(st, 200, "unknown tokens are answered 200 (RFC 7009)");

    // The grants are visible to their user and to the CLI, with why they ended.
    let grants = ada.get("/api/v1/oauth/grants").await;
    assert_eq!(grants.status, 200, "{}", grants.text);
    let list = grants.json.as_array().unwrap();
    assert_eq!(list.len(), 2, "{}", grants.text);
    assert!(
        list.iter()
            .all(|g| g["user"] == "ada@example.com" && g["endpoint"] == "ob")
    );
    let cli = env.cli_ok(&["oauth", "grants", "--all"]);
    assert!(
        cli.contains("refresh token reused") && cli.contains("revoked by client"),
        "{cli}"
    );
    assert!(env.cli_ok(&["oauth", "clients"]).contains(&client));

    // Consents (given and refused), the reuse and the revocation are in the audit log.
    let audited = metamcp_it::eventually(std::time::Duration::from_secs(5), || async {
        let rows: Vec<Value> = env
            .cli_ok(&["audit", "--json"])
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let has = |kind: &str, outcome: &str| {
            rows.iter().any(|r| {
                r["kind"] == kind && r["outcome"] == outcome && r["tool"] == client.as_str()
            })
        };
        (has("oauth_consent", "ok")
            && has("oauth_consent", "denied")
            && has("oauth_refresh_reused", "denied")
            && has("oauth_revoke", "ok"))
        .then_some(())
    })
    .await;
    assert!(audited.is_some(), "{}", env.cli_ok(&["audit", "--json"]));

    // Expiry: lifetimes are settings, so no sleeping for five minutes.
    let tok5 = tokens_for(&mut ada, &gw, &client, &resource).await;
    let r5 = tok5["refresh_token"].as_str().unwrap().to_owned();
    env.cli_ok(&["settings", "set", "OAUTH_ACCESS_TOKEN_LIFETIME", "1"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut r = r5;
    loop {
        let (st, t) = refresh(&gw, &client, &r).await;
        assert_eq!(st, 200, "{t}");
        r = t["refresh_token"].as_str().unwrap().to_owned();
        let a = t["access_token"].as_str().unwrap().to_owned();
        let (st, body) = mcp_status(&gw, "ob", &a).await;
        if st == 401 && body.contains("expired") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "an access token of a 1 ms lifetime is refused as expired once the setting applies"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tenants_cannot_cross_through_oauth() {
    let env = Env::new();
    let gw = serve(&env, &[]).await;
    let app = gw.base.clone();
    let mut ada = Browser::new(&gw.base);
    assert_eq!(ada.sign_up("ada@example.com", PW).await.status, 200);
    let mut bo = Browser::new(&gw.base);
    assert_eq!(bo.sign_up("bo@example.com", PW).await.status, 200);
    setup(&env);
    env.cli_ok(&[
        "namespace",
        "create",
        "ada-ns",
        "--server",
        "alpha",
        "--owner",
        "ada@example.com",
    ]);
    env.cli_ok(&[
        "endpoint",
        "create",
        "ada-ep",
        "--namespace",
        "ada-ns",
        "--oauth",
        "--no-auth",
        "--owner",
        "ada@example.com",
    ]);
    let (_, reg) = register(&gw, json!({ "redirect_uris": [REDIRECT] })).await;
    let client = reg["client_id"].as_str().unwrap().to_owned();
    let private = format!("{app}/metamcp/ada-ep/mcp");
    wait_for_oauth_endpoint(&gw, "ada-ep").await;

    // bo cannot consent to ada's private endpoint: access_denied, no code.
    let p = pkce();
    let q = authorize_query(&client, REDIRECT, &p, "x", &private);
    let a = bo.get(&format!("/oauth/authorize?{q}")).await;
    let (_, params) = location_params(&a);
    assert_eq!(param(&params, "error"), Some("access_denied"), "{params:?}");
    assert!(param(&params, "code").is_none());

    // ada can; bo's own token (for the public endpoint) does not open ada's, nor take over
    // ada's MCP session on the public endpoint.
    let code = code_for(&mut ada, &client, &p, &private).await;
    let (st, t) = redeem(
        &gw,
        &client,
        &code,
        "http://127.0.0.1:5555/callback",
        &p.verifier,
    )
    .await;
    assert_eq!(st, 200, "{t}");
    let ada_private = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(mcp_status(&gw, "ada-ep", &ada_private).await.0, 200);

    let public = format!("{app}/metamcp/ob/mcp");
    let t = tokens_for(&mut ada, &gw, &client, &public).await;
    let ada_public = t["access_token"].as_str().unwrap().to_owned();
    let t = tokens_for(&mut bo, &gw, &client, &public).await;
    let bo_public = t["access_token"].as_str().unwrap().to_owned();
    let (st, body) = mcp_status(&gw, "ada-ep", &bo_public).await;
    assert_eq!(st, 401, "{body}");

    let mut ada_c = RawClient::new(&gw.mcp_url("ob")).bearer(&ada_public);
    let init = ada_c.initialize().await;
    assert_eq!(init.status, 200);
    let sid = init
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session")
        .to_owned();
    let thief = RawClient::new(&gw.mcp_url("ob"))
        .bearer(&bo_public)
        .header("mcp-session-id", &sid);
    let stolen = thief.request("tools/list", json!({})).await;
    assert_eq!(stolen.status, 404, "{}", stolen.body);

    // bo sees only his own grants and cannot revoke ada's.
    let mine = bo.get("/api/v1/oauth/grants").await;
    let list = mine.json.as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{}", mine.text);
    assert_eq!(list[0]["user"], "bo@example.com");
    let adas = ada.get("/api/v1/oauth/grants").await;
    // ada is the admin: she sees every grant, bo's too.
    let all = adas.json.as_array().unwrap();
    assert_eq!(all.len(), 3, "{}", adas.text);
    let ada_grant = all
        .iter()
        .find(|g| g["user"] == "ada@example.com")
        .and_then(|g| g["id"].as_str())
        .unwrap()
        .to_owned();
    let r = bo
        .json(
            "DELETE",
            &format!("/api/v1/oauth/grants/{ada_grant}"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(bo.get("/api/v1/oauth/clients").await.status, 403);
    // ada revokes her own through the API.
    let r = ada
        .json(
            "DELETE",
            &format!("/api/v1/oauth/grants/{ada_grant}"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["active"], false);

    // Disabling a user stops their tokens at the next reload.
    env.cli_ok(&["user", "disable", "bo@example.com"]);
    let refused = metamcp_it::eventually(std::time::Duration::from_secs(10), || async {
        let st = mcp_status(&gw, "ob", &bo_public).await.0;
        (st == 403).then_some(())
    })
    .await;
    assert!(refused.is_some(), "a disabled user's token is refused");

    // Dynamic registration can be switched off: registering is refused and the metadata no
    // longer offers it; clients already registered keep working.
    env.cli_ok(&["settings", "set", "OAUTH_DYNAMIC_REGISTRATION", "false"]);
    let off = metamcp_it::eventually(std::time::Duration::from_secs(10), || async {
        let (st, _) = register(&gw, json!({ "redirect_uris": [REDIRECT] })).await;
        (st == 403).then_some(())
    })
    .await;
    assert!(off.is_some(), "registration refused once switched off");
    let asm: Value = reqwest::get(format!("{app}/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(asm.get("registration_endpoint").is_none(), "{asm}");
    let t = tokens_for(&mut ada, &gw, &client, &public).await;
    assert!(t["access_token"].as_str().is_some());
}

/// A test CA and a certificate for 127.0.0.1 and localhost signed by it (openssl CLI),
/// in `dir`: (ca.pem, cert.pem, key.pem).
pub(crate) fn test_ca(dir: &std::path::Path) -> (String, String, String) {
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=metamcp test CA",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("key.pem"),
        "-out",
        &p("leaf.csr"),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("leaf.ext"),
        "-out",
        &p("cert.pem"),
    ]);
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

/// The document server (`e2e/oauth/cimd_server.py`) on an ephemeral port: (child, port).
pub(crate) async fn cimd_server(cert: &str, key: &str) -> (tokio::process::Child, u16) {
    cimd_server_relaying(cert, key, None).await
}

/// [`cimd_server`], also relaying GETs of other paths to `upstream` (an http base URL).
pub(crate) async fn cimd_server_relaying(
    cert: &str,
    key: &str,
    upstream: Option<&str>,
) -> (tokio::process::Child, u16) {
    use tokio::io::AsyncBufReadExt;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../e2e/oauth/cimd_server.py"
    );
    let mut child = tokio::process::Command::new("python3")
        .args([script, cert, key])
        .args(upstream)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let out = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(out).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
        .await
        .expect("the document server starts")
        .unwrap()
        .expect("a PORT line");
    let port = line
        .strip_prefix("PORT ")
        .expect("PORT n")
        .trim()
        .parse()
        .unwrap();
    (child, port)
}

#[tokio::test]
async fn client_id_metadata_documents_are_fetched_behind_a_fence() {
    let env = Env::new();
    let certs = env.data_dir().join("test-ca");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = test_ca(&certs);
    let (_server, port) = cimd_server(&cert, &key).await;
    let gw = serve(&env, &[("METAMCP_EXTRA_CA_FILE", ca.as_str())]).await;
    let app = gw.base.clone();
    let mut ada = Browser::new(&gw.base);
    assert_eq!(ada.sign_up("ada@example.com", PW).await.status, 200);
    setup(&env);
    let resource = format!("{app}/metamcp/ob/mcp");
    let doc = |path: &str| format!("https://127.0.0.1:{port}{path}");
    let page = |client: String| {
        let p = pkce();
        let q = authorize_query(
            &client,
            "http://127.0.0.1:7777/callback",
            &p,
            "s",
            &resource,
        );
        (q, p)
    };

    // Loopback and private addresses are refused unless an admin allows them, whether the
    // URL names the address or a name resolves to it.
    let ready = metamcp_it::eventually(std::time::Duration::from_secs(10), || async {
        let (q, _) = page(doc("/client.json"));
        let a = Browser::new(&gw.base)
            .get(&format!("/oauth/authorize?{q}"))
            .await;
        (a.status == 400 && a.text.contains("loopback")).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "a document on 127.0.0.1 is refused by default"
    );
    let (q, _) = page(format!("https://localhost:{port}/client.json"));
    let a = ada.get(&format!("/oauth/authorize?{q}")).await;
    assert_eq!(a.status, 400);
    assert!(a.text.contains("no public address"), "{}", a.text);

    env.cli_ok(&[
        "settings",
        "set",
        "OAUTH_CIMD_ALLOW_PRIVATE_NETWORKS",
        "true",
    ]);
    env.cli_ok(&["settings", "set", "OAUTH_CIMD_FETCH_TIMEOUT", "1000"]);
    let client = doc("/client.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (q, _) = page(client.clone());
        let a = ada.get(&format!("/oauth/authorize?{q}")).await;
        if a.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "allowed once the setting applies: {}",
            a.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The whole flow with the document's URL as client id.
    let (q, p) = page(client.clone());
    let consent_page = ada.get(&format!("/oauth/authorize?{q}")).await;
    assert!(
        consent_page.text.contains("CIMD Test Client"),
        "{}",
        consent_page.text
    );
    assert!(
        consent_page.text.contains("document"),
        "{}",
        consent_page.text
    );
    let a = consent(&mut ada, &q, "approve").await;
    let (_, params) = location_params(&a);
    let code = param(&params, "code").expect("a code").to_owned();
    let (st, tok) = redeem(
        &gw,
        &client,
        &code,
        "http://127.0.0.1:7777/callback",
        &p.verifier,
    )
    .await;
    assert_eq!(st, 200, "{tok}");
    let access = tok["access_token"].as_str().unwrap();
    assert_eq!(mcp_status(&gw, "ob", access).await.0, 200);

    // A redirect URI the document does not list.
    let p2 = pkce();
    let q = authorize_query(&client, "https://evil.example/cb", &p2, "s", &resource);
    let a = ada.get(&format!("/oauth/authorize?{q}")).await;
    assert_eq!(a.status, 400);
    assert!(a.headers.get("location").is_none());

    // Documents that must be refused: too large, too slow, redirected, not naming itself,
    // plain http.
    for (path, why) in [
        ("/big.json", "larger than"),
        ("/slow.json", "within 1000 ms"),
        ("/redirect.json", "HTTP 302"),
        ("/wrong-id.json", "not the URL"),
    ] {
        let (q, _) = page(doc(path));
        let started = std::time::Instant::now();
        let a = ada.get(&format!("/oauth/authorize?{q}")).await;
        assert_eq!(a.status, 400, "{path}: {}", a.text);
        assert!(a.text.contains(why), "{path}: {}", a.text);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{path} answered in time"
        );
    }
    let (q, _) = page(format!("http://127.0.0.1:{port}/client.json"));
    let a = ada.get(&format!("/oauth/authorize?{q}")).await;
    assert_eq!(a.status, 400, "an http client id is not a document URL");
}

/// Runs the official Python SDK's OAuth client (`e2e/oauth/client.py`, installed into
/// `e2e/oauth/.venv` by `scripts/test`) and returns its JSON lines.
pub(crate) async fn python_client(args: &[&str]) -> Vec<Value> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../e2e/oauth");
    let python = format!("{root}/.venv/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: scripts/test installs the Python SDK (e2e/oauth/requirements.txt)"
    );
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(150),
        tokio::process::Command::new(&python)
            .arg(format!("{root}/client.py"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the Python client finishes")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the Python SDK client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub(crate) fn step<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["step"] == name)
        .unwrap_or_else(|| panic!("no {name:?} step in {lines:?}"))
}

#[tokio::test]
async fn the_python_sdk_signs_in_by_registration_and_by_metadata_document() {
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
    wait_for_oauth_endpoint(&gw, "ob").await;

    // Dynamic registration, PKCE, consent, tools, refresh after expiry, revocation.
    let lines = python_client(&[
        "--url",
        &url,
        "--email",
        "ada@example.com",
        "--password",
        PW,
        "--mode",
        "dcr",
        "--tool",
        "alpha__echo",
        "--args",
        r#"{"message":"from the python sdk"}"#,
        "--expect-refresh",
        "--revoke",
    ])
    .await;
    assert!(step(&lines, "tools").to_string().contains("alpha__echo"));
    assert!(
        step(&lines, "call")
            .to_string()
            .contains("from the python sdk")
    );
    step(&lines, "refreshed");
    step(&lines, "revoked");
    step(&lines, "done");

    // The same with a client ID metadata document as the client id.
    let doc = format!("https://127.0.0.1:{port}/client.json");
    let lines = python_client(&[
        "--url",
        &url,
        "--email",
        "ada@example.com",
        "--password",
        PW,
        "--mode",
        "cimd",
        "--client-metadata-url",
        &doc,
        "--redirect-uri",
        "http://127.0.0.1/callback",
        "--tool",
        "alpha__echo",
        "--args",
        r#"{"message":"cimd"}"#,
    ])
    .await;
    assert!(step(&lines, "call").to_string().contains("cimd"));
    step(&lines, "done");
    let grants = env.cli_ok(&["oauth", "grants", "--all"]);
    assert!(grants.contains(&doc), "{grants}");
}
