//! Discovery documents: RFC 9728 protected-resource metadata for each face of an endpoint
//! with OAuth on (the path-inserted form `/.well-known/oauth-protected-resource/metamcp/<e>/<face>`
//! that the 401 names, and the appended form some clients try), and RFC 8414 metadata of the
//! authorization server (also at the OpenID discovery path and path-suffixed forms).
//! `resource` is exactly the URL clients connect to, built from `APP_URL` like the issuer.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{FACES, SCOPE, issuer, resource_url};
use crate::state::Gateway;

/// `GET /.well-known/oauth-authorization-server` (and the OpenID discovery path).
pub async fn authorization_server(State(gw): State<Arc<Gateway>>) -> Response {
    let iss = issuer(&gw);
    let mut doc = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oauth/authorize"),
        "token_endpoint": format!("{iss}/oauth/token"),
        "revocation_endpoint": format!("{iss}/oauth/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": [SCOPE],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
        "subject_types_supported": ["public"],
        "service_documentation": format!("{iss}/"),
    });
    if gw.config.oauth().dynamic_registration {
        doc["registration_endpoint"] = json!(format!("{iss}/oauth/register"));
    }
    Json(doc).into_response()
}

/// `GET /.well-known/oauth-protected-resource/metamcp/{endpoint}/{face}`.
pub async fn protected_resource(
    State(gw): State<Arc<Gateway>>,
    Path((endpoint, face)): Path<(String, String)>,
) -> Response {
    resource_document(&gw, &endpoint, &face)
}

/// `GET /metamcp/{endpoint}/mcp/.well-known/oauth-protected-resource`.
pub async fn appended_mcp(
    State(gw): State<Arc<Gateway>>,
    Path(endpoint): Path<String>,
) -> Response {
    resource_document(&gw, &endpoint, "mcp")
}

/// `GET /metamcp/{endpoint}/sse/.well-known/oauth-protected-resource`.
pub async fn appended_sse(
    State(gw): State<Arc<Gateway>>,
    Path(endpoint): Path<String>,
) -> Response {
    resource_document(&gw, &endpoint, "sse")
}

/// `GET /metamcp/{endpoint}/api/.well-known/oauth-protected-resource`.
pub async fn appended_api(
    State(gw): State<Arc<Gateway>>,
    Path(endpoint): Path<String>,
) -> Response {
    resource_document(&gw, &endpoint, "api")
}

fn resource_document(gw: &Gateway, endpoint: &str, face: &str) -> Response {
    let snap = gw.snapshot();
    let known = snap
        .endpoints
        .get(endpoint)
        .is_some_and(|e| e.oauth && !e.admin_inspector_only);
    if !known || !FACES.contains(&face) {
        return super::json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no endpoint with OAuth by that name",
        );
    }
    Json(json!({
        "resource": resource_url(gw, endpoint, face),
        "authorization_servers": [issuer(gw)],
        "scopes_supported": [SCOPE],
        "bearer_methods_supported": ["header"],
        "resource_name": format!("metamcp endpoint {endpoint}"),
    }))
    .into_response()
}
