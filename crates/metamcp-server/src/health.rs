//! Health endpoints: `/health` (process and database) and
//! `/metamcp/{endpoint}/mcp/health/sessions` (session count and upstream states of one
//! endpoint, behind the endpoint's own auth, and never listing session ids). Upstream pids,
//! last errors and stderr tails are shown only to an admin key (sent as a header); any other
//! caller gets counts and states.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{authenticate, authenticate_admin};
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
    if let Err(e) = authenticate(&snap, &gw.tokens, &gw.oauth, ep, &headers, query.as_deref()) {
        return e.into_response();
    }
    // why: pids, stderr and error texts describe the host and the servers' secrets' failures;
    // they are the operator's, not every holder of an endpoint key's.
    let admin = authenticate_admin(&snap, &headers).is_ok();
    let ns = snap.namespaces.get(&ep.namespace_id);
    let upstreams: Vec<serde_json::Value> = ns
        .map(|ns| {
            ns.members
                .iter()
                .map(|m| {
                    let up = gw.rt.pool.get(&m.server_id);
                    let status = up.as_ref().map(|u| u.status());
                    let mut entry = json!({
                        "server": m.server_name,
                        "active": m.active,
                        "state": status.as_ref().map_or("unknown", |s| s.state.as_str()),
                        "failures": status.as_ref().map_or(0, |s| s.failures),
                        "restarts": status.as_ref().map_or(0, |s| s.restarts),
                        "retry_in_ms": status.as_ref().and_then(|s| s.retry_in_ms),
                        "mode": up.as_ref().map(|u| u.connection().mode.as_str()),
                        "session_connections": up.as_ref().map(|u| u.session_conns().0),
                        "warm_connections": up.as_ref().map(|u| u.session_conns().1),
                    });
                    if admin {
                        entry["pid"] = json!(status.as_ref().and_then(|s| s.pid));
                        entry["last_error"] =
                            json!(status.as_ref().and_then(|s| s.last_error.clone()));
                        // Why a failing server fails: the end of what it wrote on stderr.
                        entry["stderr_tail"] = json!(
                            up.as_ref()
                                .filter(|_| status.as_ref().is_some_and(|s| s.failures > 0))
                                .map(|u| u
                                    .logs()
                                    .tail(5)
                                    .into_iter()
                                    .map(|l| l.line)
                                    .collect::<Vec<_>>())
                        );
                    }
                    entry
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
