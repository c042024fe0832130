//! The browser side of authorizing at an upstream: `GET /oauth/upstream/<server>/authorize`
//! sends a signed-in user to the upstream's authorization server (authorization code with
//! PKCE S256, RFC 8707 `resource`, a random `state`); `GET /oauth/upstream/callback` takes
//! the flow back (single use, only in the browser of the user who began it, `iss` checked
//! when the server sends or promises it — RFC 9207), redeems the code and stores the grant
//! sealed.
//!
//! `?for=server` (the default for shared servers) stores the server's own grant: only an
//! admin, or the server's owner, may give it. `?for=me` (the default for per-user servers)
//! stores the signed-in user's own.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use metamcp_core::UpstreamAuth;
use metamcp_store::{MAX_PENDING_UPSTREAM_FLOWS, UpstreamClient, UpstreamFlow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::discover::{Discovered, discover};
use super::source::{GrantContext, TokenError, now_ms, token_request};
use crate::state::Gateway;

/// How long a browser may take at the authorization server.
const FLOW_LIFETIME_MS: i64 = 10 * 60 * 1000;

/// What the callback needs (the flow row's `context`; no secrets).
#[derive(Serialize, Deserialize)]
struct FlowContext {
    grant: GrantContext,
    redirect_uri: String,
    iss_supported: bool,
}

#[derive(Deserialize)]
pub struct StartQuery {
    #[serde(rename = "for")]
    for_: Option<String>,
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    crate::account::pages::error(status, title, message, None)
}

fn failed(status: StatusCode, message: &str) -> Response {
    page(status, "Authorization failed", message)
}

fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The callback URL registered with every upstream authorization server.
pub fn redirect_uri(gw: &Gateway) -> String {
    format!(
        "{}/oauth/upstream/callback",
        gw.opts.app_url.as_str().trim_end_matches('/')
    )
}

/// `GET /oauth/upstream/<server>/authorize`.
pub async fn start(
    State(gw): State<Arc<Gateway>>,
    Path(server): Path<String>,
    Query(q): Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    let s = match gw.accounts.signed_in(&gw.rt.store, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let back = format!("/oauth/upstream/{server}/authorize");
            let back = match &q.for_ {
                Some(f) => format!("{back}?for={f}"),
                None => back,
            };
            let to: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return_to", &back)
                .finish();
            return see_other(&format!("/login?{to}"));
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the browser session failed");
            return failed(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The store failed; try again.",
            );
        }
    };
    let record = match gw.rt.store.begin_read().await {
        Ok(mut tx) => tx.get_server(&server).await,
        Err(e) => Err(e),
    };
    let record = match record {
        Ok(Some(r)) => r,
        Ok(None) => {
            return failed(
                StatusCode::NOT_FOUND,
                &format!("There is no server {server}."),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "reading a server failed");
            return failed(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The store failed; try again.",
            );
        }
    };
    let mode = record.connection.oauth;
    if mode == UpstreamAuth::Off {
        return failed(
            StatusCode::BAD_REQUEST,
            &format!(
                "Server {server} does not use OAuth (metamcp server update {server} --oauth shared|per-user)."
            ),
        );
    }
    let for_me = match q.for_.as_deref() {
        Some("me") => true,
        Some("server") => false,
        Some(_) => return failed(StatusCode::BAD_REQUEST, "`for` is `me` or `server`."),
        None => mode == UpstreamAuth::PerUser,
    };
    if for_me && mode != UpstreamAuth::PerUser {
        return failed(
            StatusCode::BAD_REQUEST,
            &format!("Server {server} uses one shared grant; it takes no per-user authorization."),
        );
    }
    let owner = record.owner.as_ref().map(|o| o.id.as_str());
    let may = s.user.role == metamcp_store::Role::Admin || owner == Some(s.user.id.as_str());
    if !for_me && !may {
        return failed(
            StatusCode::FORBIDDEN,
            &format!("Only an admin or the owner of {server} may authorize it for everyone."),
        );
    }
    let Some((url, _, _)) = record.spec.transport.as_http() else {
        return failed(StatusCode::BAD_REQUEST, "Only HTTP servers use OAuth.");
    };
    let d = match discover(&gw.upstream_auth.http, url).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(server = %server, error = %e, "upstream OAuth discovery failed");
            return failed(
                StatusCode::BAD_GATEWAY,
                &format!("Could not find out how to authorize at {server}: {e}"),
            );
        }
    };
    let client = match client_for(&gw, &record.id, &d).await {
        Ok(c) => c,
        Err(msg) => {
            tracing::warn!(server = %server, error = %msg, "upstream OAuth client registration failed");
            return failed(StatusCode::BAD_GATEWAY, &msg);
        }
    };
    let scope = client.scope.clone().or(d.scope.clone());
    let verifier = crate::oauth::random_token();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = crate::oauth::random_token();
    let redirect = redirect_uri(&gw);
    let ctx = FlowContext {
        grant: GrantContext {
            token_endpoint: d.token_endpoint.clone(),
            client_id: client.client_id.clone(),
            resource: d.resource.clone(),
            issuer: d.issuer.clone(),
            scope: scope.clone(),
        },
        redirect_uri: redirect.clone(),
        iss_supported: d.iss_supported,
    };
    let now = now_ms();
    let flow = UpstreamFlow {
        state_hash: crate::oauth::hash(&state),
        server_id: record.id.clone(),
        user_id: for_me.then(|| s.user.id.clone()),
        started_by: s.user.id.clone(),
        verifier,
        context: serde_json::to_string(&ctx).unwrap_or_default(),
        created_at: now,
        expires_at: now + FLOW_LIFETIME_MS,
    };
    if let Err(e) = gw
        .rt
        .store
        .insert_upstream_flow(&flow, MAX_PENDING_UPSTREAM_FLOWS)
        .await
    {
        tracing::error!(error = %e, "storing an upstream authorization failed");
        return failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The store failed; try again.",
        );
    }
    let Ok(mut to) = url::Url::parse(&d.authorization_endpoint) else {
        return failed(
            StatusCode::BAD_GATEWAY,
            "The authorization server's authorization endpoint is not a URL.",
        );
    };
    {
        let mut p = to.query_pairs_mut();
        p.append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", &redirect)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", &state)
            .append_pair("resource", &d.resource);
        if let Some(sc) = &scope {
            p.append_pair("scope", sc);
        }
    }
    tracing::info!(server = %server, user = %s.user.email, for_me, "upstream authorization begun");
    see_other(to.as_str())
}

/// The URL of the gateway's own client metadata document (its client id where the
/// authorization server takes such ids), when `APP_URL` is https.
pub fn metadata_document_url(gw: &Gateway) -> Option<String> {
    (gw.opts.app_url.scheme() == "https").then(|| {
        format!(
            "{}/oauth/upstream/client.json",
            gw.opts.app_url.as_str().trim_end_matches('/')
        )
    })
}

/// `GET /oauth/upstream/client.json`: the gateway's client metadata document (any origin).
pub async fn metadata_document(State(gw): State<Arc<Gateway>>) -> Response {
    let Some(id) = metadata_document_url(&gw) else {
        return (
            StatusCode::NOT_FOUND,
            "no client metadata document: APP_URL is not https",
        )
            .into_response();
    };
    let doc = serde_json::json!({
        "client_id": id,
        "client_name": "metamcp",
        "client_uri": gw.opts.app_url.as_str(),
        "redirect_uris": [redirect_uri(&gw)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    let mut resp = (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        doc.to_string(),
    )
        .into_response();
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

/// The configured client; else the gateway's metadata document URL where the server takes
/// such ids (CIMD, the 2026 spec's way) and `APP_URL` is https; else one registered earlier
/// at this issuer, or a new dynamic registration (RFC 7591).
async fn client_for(
    gw: &Gateway,
    server_id: &str,
    d: &Discovered,
) -> Result<UpstreamClient, String> {
    let existing = gw
        .rt
        .store
        .upstream_client(server_id)
        .await
        .map_err(|e| format!("reading the server's client failed: {e}"))?;
    if let Some(c) = existing.as_ref().filter(|c| c.source == "configured") {
        return Ok(c.clone());
    }
    if d.cimd_supported
        && let Some(url) = metadata_document_url(gw)
    {
        return Ok(UpstreamClient {
            server_id: server_id.to_owned(),
            client_id: url,
            client_secret: None,
            scope: None,
            source: "metadata-document".into(),
            issuer: Some(d.issuer.clone()),
            created_at: now_ms(),
        });
    }
    if let Some(c) = existing.filter(|c| c.issuer.as_deref() == Some(d.issuer.as_str())) {
        return Ok(c);
    }
    let Some(reg) = &d.registration_endpoint else {
        return Err(format!(
            "The authorization server {} offers no dynamic registration; configure a client with \
             `metamcp server oauth-client <server> --client-id …`.",
            d.issuer
        ));
    };
    let body = serde_json::json!({
        "client_name": "metamcp",
        "redirect_uris": [redirect_uri(gw)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    let resp = gw
        .upstream_auth
        .http
        .post(reg)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("Registering at {reg} failed: {e}"))?;
    let status = resp.status();
    let bytes = super::discover::read_limited(resp, 64 * 1024)
        .await
        .map_err(|e| format!("Registering at {reg} failed: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "Registering at {reg} was refused ({status}): {}",
            String::from_utf8_lossy(&bytes)
                .chars()
                .take(300)
                .collect::<String>()
        ));
    }
    #[derive(Deserialize)]
    struct Registered {
        client_id: String,
        client_secret: Option<String>,
    }
    let r: Registered = serde_json::from_slice(&bytes)
        .map_err(|e| format!("The registration answer of {reg} is not usable: {e}"))?;
    let c = UpstreamClient {
        server_id: server_id.to_owned(),
        client_id: r.client_id,
        client_secret: r.client_secret,
        scope: None,
        source: "registered".into(),
        issuer: Some(d.issuer.clone()),
        created_at: now_ms(),
    };
    gw.rt
        .store
        .put_upstream_client(&c)
        .await
        .map_err(|e| format!("Storing the registered client failed: {e}"))?;
    Ok(c)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /oauth/upstream/callback`.
pub async fn callback(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(state) = q.state.as_deref() else {
        return failed(StatusCode::BAD_REQUEST, "The answer carries no state.");
    };
    let s = match gw.accounts.signed_in(&gw.rt.store, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return failed(
                StatusCode::UNAUTHORIZED,
                "You are not signed in any more; start again.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the browser session failed");
            return failed(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The store failed; try again.",
            );
        }
    };
    let flow = match gw
        .rt
        .store
        .take_upstream_flow(&crate::oauth::hash(state))
        .await
    {
        Ok(Some(f)) => f,
        Ok(None) => {
            return failed(
                StatusCode::BAD_REQUEST,
                "This authorization is unknown or was already used; start again.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "taking an upstream authorization failed");
            return failed(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The store failed; try again.",
            );
        }
    };
    // why: a state is bound to the browser session of the user who began it; a link
    // forwarded to someone else must not store their grant under the starter's name.
    if flow.started_by != s.user.id {
        return failed(
            StatusCode::FORBIDDEN,
            "This authorization was begun by another user.",
        );
    }
    if flow.expires_at <= now_ms() {
        return failed(
            StatusCode::BAD_REQUEST,
            "This authorization expired; start again.",
        );
    }
    let Ok(ctx) = serde_json::from_str::<FlowContext>(&flow.context) else {
        return failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The stored authorization is unreadable.",
        );
    };
    if let Some(err) = &q.error {
        let detail = q.error_description.as_deref().unwrap_or("");
        return failed(
            StatusCode::BAD_REQUEST,
            &format!("The authorization server answered {err}. {detail}"),
        );
    }
    match q.iss.as_deref() {
        Some(iss) if iss != ctx.grant.issuer => {
            return failed(
                StatusCode::BAD_REQUEST,
                "The answer names another authorization server (iss); refused.",
            );
        }
        None if ctx.iss_supported => {
            return failed(
                StatusCode::BAD_REQUEST,
                "The answer lacks the iss its authorization server promised; refused.",
            );
        }
        _ => {}
    }
    let Some(code) = q.code.as_deref() else {
        return failed(StatusCode::BAD_REQUEST, "The answer carries no code.");
    };
    let secret = match gw.rt.store.upstream_client(&flow.server_id).await {
        Ok(c) => c
            .filter(|c| c.client_id == ctx.grant.client_id)
            .and_then(|c| c.client_secret),
        Err(e) => {
            tracing::error!(error = %e, "reading an upstream client failed");
            return failed(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The store failed; try again.",
            );
        }
    };
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", ctx.redirect_uri.as_str()),
        ("code_verifier", flow.verifier.as_str()),
        ("client_id", ctx.grant.client_id.as_str()),
        ("resource", ctx.grant.resource.as_str()),
    ];
    let now = now_ms();
    let set = match token_request(
        &gw.upstream_auth.http,
        &ctx.grant.token_endpoint,
        &form,
        secret.as_deref(),
        now,
    )
    .await
    {
        Ok(t) => t,
        Err(TokenError::Refused(m) | TokenError::Passing(m)) => {
            return failed(
                StatusCode::BAD_GATEWAY,
                &format!("Redeeming the code failed: {m}"),
            );
        }
    };
    let context = serde_json::to_string(&ctx.grant).unwrap_or_default();
    if let Err(e) = gw
        .rt
        .store
        .put_upstream_token(
            &flow.server_id,
            flow.user_id.as_deref(),
            &set,
            &context,
            Some(&s.user.id),
            now,
        )
        .await
    {
        tracing::error!(error = %e, "storing an upstream grant failed");
        return failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The store failed; try again.",
        );
    }
    // why: `reset` also drops this replica's connections and cached tokens of the server;
    // the others drop theirs when they see the reset request.
    let name = gw
        .rt
        .pool
        .get(&flow.server_id)
        .map(|up| {
            up.reset();
            up.name().to_owned()
        })
        .unwrap_or_default();
    if !name.is_empty()
        && let Err(e) = gw
            .rt
            .store
            .write(async |tx: &mut metamcp_store::Tx| tx.request_server_reset(&name).await)
            .await
    {
        tracing::warn!(server = %name, error = %e, "asking other replicas to reconnect failed");
    }
    tracing::info!(server = %name, user = %s.user.email, per_user = flow.user_id.is_some(), "upstream authorized");
    if gw.rt.audit.enabled() {
        gw.rt
            .audit
            .record(metamcp_store::AuditRecord {
                ts_ms: now,
                kind: "upstream_authorized".into(),
                face: Some("oauth".into()),
                principal: Some(s.user.email.as_str().into()),
                user_id: Some(s.user.id.as_str().into()),
                server: Some(name.as_str().into()),
                tool: Some(
                    if flow.user_id.is_some() {
                        "per-user"
                    } else {
                        "server"
                    }
                    .into(),
                ),
                outcome: "ok".into(),
                ..Default::default()
            })
            .await;
    }
    page(
        StatusCode::OK,
        "Authorized",
        &format!(
            "metamcp can now reach {name}{}. You can close this page.",
            if flow.user_id.is_some() {
                " with your own credentials"
            } else {
                " for everyone"
            }
        ),
    )
}
