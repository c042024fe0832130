//! The token endpoint (`POST /oauth/token`) and revocation (`POST /oauth/revoke`, RFC 7009).
//!
//! Clients are public: they name themselves with `client_id` (form field, or the user part of
//! HTTP Basic) and prove possession with PKCE. A code is redeemed once (atomic take), within
//! its lifetime, by the client it was issued to, with the same redirect URI and a verifier
//! whose S256 is its challenge; the grant it makes is bound to the code's endpoint and
//! resource (a `resource` sent here must be the same). Refresh tokens rotate on every use; a
//! superseded one presented again revokes the whole grant (so does a concurrent double use:
//! one wins, the other is reuse). A refresh cannot widen the grant (resource and scope).
//! Answers carry `Cache-Control: no-store`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use metamcp_store::{OAuthGrant, Refreshed};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::access::{self, Claims};
use super::{SCOPE, json_error, no_store};
use crate::state::Gateway;

fn invalid_grant(why: &str) -> Response {
    json_error(StatusCode::BAD_REQUEST, "invalid_grant", why)
}

fn invalid_request(why: &str) -> Response {
    json_error(StatusCode::BAD_REQUEST, "invalid_request", why)
}

fn server_error(e: &metamcp_store::StoreError) -> Response {
    tracing::error!(error = %e, "the OAuth store failed");
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the store failed; try again",
    )
}

/// The form's fields; a field given twice is refused.
fn form(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        return Err("send the parameters as application/x-www-form-urlencoded".into());
    }
    let mut map = std::collections::BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if map.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(format!("{k:?} is given more than once"));
        }
    }
    Ok(map)
}

/// The client id: the form's `client_id`, else the user of HTTP Basic.
fn client_id(
    headers: &HeaderMap,
    f: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    if let Some(c) = f.get("client_id").filter(|c| !c.is_empty()) {
        return Some(c.clone());
    }
    let basic = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let raw = STANDARD.decode(basic.trim()).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let user = raw.split(':').next()?;
    let user = url::form_urlencoded::parse(format!("u={user}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    (!user.is_empty()).then_some(user)
}

/// Whether the user and endpoint of a grant can still be used: the user exists and is
/// enabled, the endpoint exists with OAuth on and is public or theirs.
fn still_allowed(gw: &Gateway, user_id: &str, endpoint_id: &str) -> Result<String, &'static str> {
    let snap = gw.snapshot();
    let Some(user) = snap.users.get(user_id) else {
        return Err("the user of this grant no longer exists");
    };
    if user.disabled {
        return Err("the user of this grant is disabled");
    }
    let Some(ep) = snap.endpoints.values().find(|e| e.id == endpoint_id) else {
        return Err("the endpoint of this grant no longer exists");
    };
    if !ep.oauth {
        return Err("the endpoint of this grant no longer takes OAuth tokens");
    }
    if ep.owner_disabled || ep.owner.as_ref().is_some_and(|o| o != user_id) {
        return Err("the user of this grant may not use its endpoint");
    }
    Ok(ep.name.clone())
}

/// The answer with a fresh access token for `g` and the refresh token `refresh`.
fn tokens(gw: &Gateway, g: &OAuthGrant, refresh: &str) -> Response {
    let ttl = gw.config.oauth().access_token_ms;
    let now = crate::audit::now_ms();
    let at = gw.oauth.access.mint(Claims {
        grant_id: g.id.clone(),
        endpoint_id: g.endpoint_id.clone(),
        user_id: g.user_id.clone(),
        scope: g.scope.clone(),
        expires_at_ms: now.saturating_add(ttl),
        nonce: String::new(),
    });
    let mut resp = Json(json!({
        "access_token": at,
        "token_type": "Bearer",
        // why: rounded down (at least 1): a client that trusts it never sends a token the
        // gateway already considers expired (the Python SDK refreshes only after it).
        "expires_in": (ttl / 1000).max(1),
        "refresh_token": refresh,
        "scope": g.scope,
    }))
    .into_response();
    no_store(&mut resp);
    resp
}

/// `POST /oauth/token`.
pub async fn token(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let f = match form(&headers, &body) {
        Ok(f) => f,
        Err(why) => return invalid_request(&why),
    };
    let Some(client) = client_id(&headers, &f) else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client_id is required (clients are public: PKCE, no secret)",
        );
    };
    gw.oauth.maybe_prune(&gw.rt.store, crate::audit::now_ms());
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => code_grant(&gw, &client, &f).await,
        Some("refresh_token") => refresh_grant(&gw, &client, &f).await,
        Some(_) => json_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type is authorization_code or refresh_token",
        ),
        None => invalid_request("grant_type is required"),
    }
}

fn pkce_ok(verifier: &str, challenge: &str) -> bool {
    let shape = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    shape
        && computed.len() == challenge.len()
        && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

async fn code_grant(
    gw: &Gateway,
    client: &str,
    f: &std::collections::BTreeMap<String, String>,
) -> Response {
    let Some(code) = f.get("code").filter(|c| !c.is_empty() && c.len() <= 200) else {
        return invalid_request("code is required");
    };
    let taken = match gw.rt.store.take_oauth_code(&super::hash(code)).await {
        Ok(t) => t,
        Err(e) => return server_error(&e),
    };
    let Some(c) = taken else {
        return invalid_grant("unknown code, or already redeemed");
    };
    let now = crate::audit::now_ms();
    if now >= c.expires_at {
        return invalid_grant("the code has expired");
    }
    if c.client_id != client {
        return invalid_grant("the code was issued to another client");
    }
    if f.get("redirect_uri").map(String::as_str) != Some(c.redirect_uri.as_str()) {
        return invalid_grant("redirect_uri is not the one the code was issued for");
    }
    let Some(verifier) = f.get("code_verifier") else {
        return invalid_request("code_verifier is required (PKCE)");
    };
    if !pkce_ok(verifier, &c.code_challenge) {
        return invalid_grant("code_verifier does not match the code_challenge (PKCE)");
    }
    if let Some(r) = f.get("resource")
        && r.trim_end_matches('/') != c.resource
    {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "resource is not the one the code was issued for",
        );
    }
    if let Err(why) = still_allowed(gw, &c.user_id, &c.endpoint_id) {
        return invalid_grant(why);
    }
    let refresh = super::random_token();
    let grant = OAuthGrant {
        // why: a bare base64url id may begin with `-`, which `metamcp oauth revoke ID` would
        // take for an option.
        id: format!("grant_{}", super::random_token()),
        client_id: c.client_id.clone(),
        client_name: c.client_name.clone(),
        user_id: c.user_id.clone(),
        endpoint_id: c.endpoint_id.clone(),
        resource: c.resource.clone(),
        scope: c.scope.clone(),
        created_at: now,
        expires_at: now.saturating_add(gw.config.oauth().refresh_token_ms),
        last_used_at: Some(now),
        revoked_at: None,
        revoked_reason: None,
    };
    if let Err(e) = gw
        .rt
        .store
        .create_oauth_grant(&grant, &super::hash(&refresh))
        .await
    {
        return server_error(&e);
    }
    tokens(gw, &grant, &refresh)
}

async fn refresh_grant(
    gw: &Gateway,
    client: &str,
    f: &std::collections::BTreeMap<String, String>,
) -> Response {
    let Some(old) = f
        .get("refresh_token")
        .filter(|t| !t.is_empty() && t.len() <= 200)
    else {
        return invalid_request("refresh_token is required");
    };
    let old_hash = super::hash(old);
    let found = match gw.rt.store.oauth_grant_of_refresh(&old_hash).await {
        Ok(g) => g,
        Err(e) => return server_error(&e),
    };
    let Some(g) = found else {
        return invalid_grant("unknown refresh token");
    };
    if g.client_id != client {
        return invalid_grant("the refresh token was issued to another client");
    }
    if let Some(r) = f.get("resource")
        && r.trim_end_matches('/') != g.resource
    {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "a refresh cannot change the resource",
        );
    }
    if let Some(s) = f.get("scope")
        && !s.split(' ').filter(|x| !x.is_empty()).all(|x| x == SCOPE)
    {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "a refresh cannot widen the scope",
        );
    }
    let now = crate::audit::now_ms();
    let new = super::random_token();
    let outcome = match gw
        .rt
        .store
        .rotate_oauth_refresh(&old_hash, &super::hash(&new), now)
        .await
    {
        Ok(o) => o,
        Err(e) => return server_error(&e),
    };
    match outcome {
        Refreshed::Rotated(g) => {
            if let Err(why) = still_allowed(gw, &g.user_id, &g.endpoint_id) {
                return invalid_grant(why);
            }
            tokens(gw, &g, &new)
        }
        Refreshed::Reused(g) => {
            remember_revoked(gw, &g.id, now);
            let email = gw.snapshot().users.get(&g.user_id).map(|u| u.email.clone());
            super::audit(
                gw,
                super::Event {
                    kind: "oauth_refresh_reused",
                    email: email.as_deref(),
                    user_id: Some(&g.user_id),
                    endpoint: None,
                    client_id: &g.client_id,
                    refused: Some("refresh_token_reused"),
                    client: None,
                },
            )
            .await;
            tracing::warn!(
                grant = %g.id,
                client_id = %g.client_id,
                "a superseded refresh token was presented again: the grant is revoked"
            );
            invalid_grant("this refresh token was already used: the grant is revoked")
        }
        Refreshed::Inactive(g) if g.revoked_at.is_some() => invalid_grant("the grant was revoked"),
        Refreshed::Inactive(_) => invalid_grant("the grant has expired: authorize again"),
        Refreshed::Unknown => invalid_grant("unknown refresh token"),
    }
}

/// This replica refuses the grant's access tokens from now until they would have expired.
pub fn remember_revoked(gw: &Gateway, grant_id: &str, now: i64) {
    let ttl = gw.config.oauth().access_token_ms.max(300_000);
    gw.oauth
        .revoked
        .insert(grant_id, now.saturating_add(ttl), now);
}

/// `POST /oauth/revoke` (RFC 7009): a refresh or access token; its grant is revoked. An
/// unknown token is answered 200 as the RFC asks; a token of another client is refused.
pub async fn revoke(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let f = match form(&headers, &body) {
        Ok(f) => f,
        Err(why) => return invalid_request(&why),
    };
    let Some(client) = client_id(&headers, &f) else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client_id is required",
        );
    };
    let Some(token) = f.get("token").filter(|t| !t.is_empty()) else {
        return invalid_request("token is required");
    };
    let now = crate::audit::now_ms();
    let grant = if token.starts_with(access::PREFIX) {
        // An expired access token's grant is still revoked: check the signature only.
        let claims = gw.oauth.access.check(token, i64::MIN + 1).ok();
        match claims {
            Some(c) => match gw.rt.store.get_oauth_grant(&c.grant_id).await {
                Ok(g) => g,
                Err(e) => return server_error(&e),
            },
            None => None,
        }
    } else if token.len() <= 200 {
        match gw
            .rt
            .store
            .oauth_grant_of_refresh(&super::hash(token))
            .await
        {
            Ok(g) => g,
            Err(e) => return server_error(&e),
        }
    } else {
        None
    };
    if let Some(g) = grant {
        if g.client_id != client {
            return json_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "this token was issued to another client",
            );
        }
        match gw
            .rt
            .store
            .revoke_oauth_grant(&g.id, "revoked by client", now, None)
            .await
        {
            Ok(_) => remember_revoked(&gw, &g.id, now),
            Err(e) => return server_error(&e),
        }
        let email = gw.snapshot().users.get(&g.user_id).map(|u| u.email.clone());
        super::audit(
            &gw,
            super::Event {
                kind: "oauth_revoke",
                email: email.as_deref(),
                user_id: Some(&g.user_id),
                endpoint: None,
                client_id: &g.client_id,
                refused: None,
                client: None,
            },
        )
        .await;
    }
    let mut resp = StatusCode::OK.into_response();
    no_store(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_only_with_a_well_formed_verifier() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_ok(verifier, challenge));
        assert!(!pkce_ok(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            challenge
        ));
        assert!(!pkce_ok("short", challenge));
        assert!(!pkce_ok(challenge, challenge), "plain is not accepted");
    }
}
