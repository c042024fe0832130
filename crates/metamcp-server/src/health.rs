//! Health endpoints: `/health` (process and database) and
//! `/metamcp/{endpoint}/mcp/health/sessions` (session count and upstream states of one
//! endpoint, behind the endpoint's own auth, and never listing session ids).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::authenticate;
use crate::error::HttpError;
use crate::state::Gateway;

/// `GET /health`: 200 when the database answers, 503 otherwise.
pub async fn health(State(gw): State<Arc<Gateway>>) -> Response {
    let db = match tokio::time::timeout(Duration::from_secs(2), gw.rt.store.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "error: no answer within 2 s".to_owned(),
    };
    let ok = db == "ok";
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "database": db,
        "backend": gw.rt.store.backend().as_str(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": gw.started.elapsed().as_secs(),
        "sessions": gw.sessions.len(),
        "config_version": gw.snapshot().version,
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metamcp/{endpoint}/mcp/health/sessions`.
pub async fn sessions(
    State(gw): State<Arc<Gateway>>,
    Path(endpoint): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let snap = gw.snapshot();
    let Some(ep) = snap.endpoints.get(&endpoint) else {
        return HttpError::new(
            StatusCode::NOT_FOUND,
            "endpoint_not_found",
            format!("No endpoint named {endpoint:?}"),
        )
        .into_response();
    };
    if let Err(e) = authenticate(&snap, ep, &headers, query.as_deref()) {
        return e.into_response();
    }
    let ns = snap.namespaces.get(&ep.namespace_id);
    let upstreams: Vec<serde_json::Value> = ns
        .map(|ns| {
            ns.members
                .iter()
                .map(|m| {
                    let status = gw.rt.pool.get(&m.server_id).map(|u| u.status());
                    json!({
                        "server": m.server_name,
                        "active": m.active,
                        "state": status.as_ref().map_or("unknown", |s| s.state.as_str()),
                        "pid": status.as_ref().and_then(|s| s.pid),
                        "failures": status.as_ref().map_or(0, |s| s.failures),
                        "restarts": status.as_ref().map_or(0, |s| s.restarts),
                        "last_error": status.as_ref().and_then(|s| s.last_error.clone()),
                        "retry_in_ms": status.as_ref().and_then(|s| s.retry_in_ms),
                        // Why a failing server fails: the end of what it wrote on stderr.
                        "stderr_tail": gw.rt.pool.get(&m.server_id).filter(|_| status.as_ref().is_some_and(|s| s.failures > 0))
                            .map(|u| u.logs().tail(5).into_iter().map(|l| l.line).collect::<Vec<_>>()),
                        "mode": gw.rt.pool.get(&m.server_id).map(|u| u.connection().mode.as_str()),
                        "session_connections": gw.rt.pool.get(&m.server_id).map(|u| u.session_conns().0),
                        "warm_connections": gw.rt.pool.get(&m.server_id).map(|u| u.session_conns().1),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Json(json!({
        "endpoint": ep.name,
        "namespace": ns.map(|n| n.name.as_str()),
        "sessions": gw.sessions.count_for_endpoint(&ep.id),
        "upstreams": upstreams,
    }))
    .into_response()
}
