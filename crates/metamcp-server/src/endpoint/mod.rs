//! The HTTP surface: `/metamcp/{endpoint}/mcp` (Streamable HTTP), `/metamcp/{endpoint}/sse`
//! and `/metamcp/{endpoint}/message` (legacy HTTP+SSE), `/metamcp/{endpoint}/api/…` (REST with
//! an OpenAPI 3.1 document, see `openapi.rs`), the session health, `/health`, and the admin
//! API under `/api/v1/` ([`crate::admin::api`]) — on the public listener, or alone on its own
//! ([`Faces`]), or nowhere.
//!
//! Every request passes [`guard`] first: one `Host` and one `Origin` header at most, a `Host`
//! we serve, then the CORS policy of its group of routes, then its body read whole within
//! bounds. CORS matches origins exactly (scheme, host, port) against the allowed origins
//! (loopback on the ports we listen on, `APP_URL`'s, `METAMCP_ALLOWED_ORIGINS`), so a browser
//! client on an allowed origin (MCP Inspector, once listed) works and a page elsewhere is
//! refused.
//!
//! **A route that any web origin must reach** (OAuth metadata, token, registration) says so
//! where it is defined: add it to [`any_origin_routes`], which is guarded with
//! [`Cors::AnyOrigin`] (`Access-Control-Allow-Origin: *`, no credentials). The Host check,
//! the duplicate-header check and the body bounds still apply to it. Every other route gets
//! the exact-origin policy.

pub mod guard;
pub mod modern;
pub mod openapi;
pub mod sse;
pub mod streamable;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::{HttpError, RpcRefusal};
use crate::health;
use crate::state::Gateway;

pub use guard::{BodyBounds, Cors, Guard};

/// Which routes one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Faces {
    /// The MCP, legacy SSE and REST faces, health, and the admin API (the default).
    PublicAndAdmin,
    /// Everything but the admin API (`METAMCP_ADMIN_BIND` moved it, or
    /// `METAMCP_ADMIN_API=off` switched it off): `/api/v1/*` is 404.
    Public,
    /// Only the admin API (`/api/v1/*`), for the listener of `METAMCP_ADMIN_BIND`.
    Admin,
}

/// The gateway's HTTP router for a listener serving `faces`.
pub fn router(gw: Arc<Gateway>, faces: Faces) -> Router {
    let limits = &gw.opts.limits;
    let body = BodyBounds::of(limits);
    let exact = Guard {
        cors: Cors::Allowed(Arc::new(gw.allowed_origins.clone())),
        body,
    };
    let any = Guard {
        cors: Cors::AnyOrigin,
        body,
    };
    let mut routes = Router::new();
    let mut open = Router::new();
    if faces != Faces::Admin {
        routes = routes.merge(public_routes());
        open = open.merge(any_origin_routes());
    }
    if faces != Faces::Public {
        routes = routes.merge(crate::admin::api::routes(gw.clone()));
    }
    let hosts: Arc<[String]> = gw.allowed_hosts.clone().into();
    Router::new()
        .merge(exact.apply(routes.fallback(not_found)))
        .merge(any.apply(open))
        .layer(middleware::from_fn_with_state(hosts, guard::edge))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        // why: a bug must cost one request a clean 500, never a dropped connection.
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(gw)
}

/// The MCP, legacy SSE and REST faces and health: the routes of the public listener, each
/// refused to pages on origins not allowed.
fn public_routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(metrics))
        .merge(
            crate::account::routes::routes()
                .merge(crate::dashboard::routes())
                .merge(crate::oauth::browser_routes())
                .merge(crate::upstream_auth::routes())
                .route("/lang/{code}", get(crate::dashboard::i18n::switch))
                .layer(axum::middleware::from_fn(crate::dashboard::i18n::scope)),
        )
        .route(
            "/metamcp/{endpoint}/mcp",
            get(streamable::get)
                .post(streamable::post)
                .delete(streamable::delete),
        )
        .route("/metamcp/{endpoint}/sse", get(sse::get))
        .route("/metamcp/{endpoint}/message", post(sse::post))
        .route("/metamcp/{endpoint}/api", get(openapi::page))
        .route("/metamcp/{endpoint}/api/openapi.json", get(openapi::spec))
        .route("/metamcp/{endpoint}/api/{tool}", post(openapi::call))
        .route(
            "/metamcp/{endpoint}/mcp/health/sessions",
            get(health::sessions),
        )
}

/// Routes of the public listener that any web origin may call: OAuth metadata, token,
/// registration and revocation ([`crate::oauth::any_origin_routes`]).
fn any_origin_routes() -> Router<Arc<Gateway>> {
    crate::oauth::any_origin_routes().merge(crate::upstream_auth::any_origin_routes())
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered 500");
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "Internal error; see the gateway's log",
    )
    .into_response()
}

/// The endpoint named `endpoint` in the current snapshot, and the caller as its auth rules
/// see it: 404 for an unknown endpoint, 401 for a missing, wrong or expired key, 403 for a
/// key that may not open it. A refused key is recorded in the audit log (`auth_failed`); a
/// key that opens it has its last use stamped (at most once a minute, off the request path).
pub(crate) fn resolve_endpoint(
    gw: &Gateway,
    face: &'static str,
    endpoint: &str,
    headers: &axum::http::HeaderMap,
    query: Option<&str>,
    peer: Option<std::net::SocketAddr>,
) -> Result<
    (
        Arc<crate::snapshot::Snapshot>,
        Arc<crate::snapshot::EndpointCfg>,
        crate::auth::Principal,
    ),
    HttpError,
> {
    let snap = gw.snapshot();
    let Some(ep) = snap.endpoints.get(endpoint).cloned() else {
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            "endpoint_not_found",
            format!("No endpoint named {endpoint:?}"),
        ));
    };
    let principal =
        match crate::auth::authenticate(&snap, &gw.tokens, &gw.oauth, &ep, headers, query) {
            Ok(p) => p,
            Err(mut e) => {
                if ep.oauth && e.status == StatusCode::UNAUTHORIZED {
                    let presented = headers.contains_key(axum::http::header::AUTHORIZATION);
                    e.www_authenticate = Some(crate::oauth::www_authenticate(
                        gw, &ep.name, face, presented,
                    ));
                }
                if gw.rt.audit.enabled() {
                    let who = crate::audit::Who::named(
                        face,
                        Some(&ep.name),
                        None,
                        None,
                        gw.limiter.client_ip(peer, headers),
                    );
                    let class = if e.message.contains("expired") {
                        "key_expired"
                    } else {
                        e.kind
                    };
                    let verdict = crate::audit::Verdict::new(crate::audit::Outcome::Denied, class);
                    gw.rt.audit.record_now(crate::audit::refusal(
                        &who,
                        "auth_failed",
                        None,
                        verdict,
                    ));
                }
                return Err(e);
            }
        };
    if let crate::auth::Principal::Key { id, .. } = &principal {
        gw.rt.audit.key_used(id);
    }
    Ok((snap, ep, principal))
}

/// Who is calling `method` on `ep`, for the audit log; `None` when the method is not
/// audited or the log is off (nothing is built then).
/// What the request span records of a request (face, endpoint, W3C headers); `None` while
/// tracing is off, which is all the per-call cost it has then.
pub(crate) fn trace_in(
    gw: &Gateway,
    face: &'static str,
    endpoint: &str,
    headers: &axum::http::HeaderMap,
) -> Option<Arc<crate::otel::Incoming>> {
    gw.rt
        .otel
        .as_ref()
        .map(|_| Arc::new(crate::otel::Incoming::from_headers(face, endpoint, headers)))
}

pub(crate) fn audit_who(
    gw: &Gateway,
    face: &'static str,
    method: &str,
    ep: &crate::snapshot::EndpointCfg,
    principal: &crate::auth::Principal,
    peer: Option<std::net::SocketAddr>,
    headers: &axum::http::HeaderMap,
) -> Option<Arc<crate::audit::Who>> {
    if !(gw.rt.audit.enabled() || gw.rt.metrics.enabled())
        || crate::audit::kind_of(method).is_none()
    {
        return None;
    }
    let ip = gw.limiter.client_ip(peer, headers);
    Some(gw.rt.audit.who(face, &ep.name, principal, ip))
}

/// Records a request to `method` refused before it reached the namespace (a rate limit),
/// when the method is audited.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn audit_refused(
    gw: &Gateway,
    face: &'static str,
    method: &str,
    params: Option<&serde_json::value::RawValue>,
    ep: &crate::snapshot::EndpointCfg,
    principal: &crate::auth::Principal,
    peer: Option<std::net::SocketAddr>,
    headers: &axum::http::HeaderMap,
    verdict: crate::audit::Verdict,
) {
    if verdict.outcome == crate::audit::Outcome::RateLimited {
        gw.rt.metrics.rate_limited(&ep.name);
    }
    if !gw.rt.audit.enabled() {
        return;
    }
    let Some(who) = audit_who(gw, face, method, ep, principal, peer, headers) else {
        return;
    };
    let Some(kind) = crate::audit::kind_of(method) else {
        return;
    };
    let field = if kind == "resource_read" {
        "uri"
    } else {
        "name"
    };
    let target = params
        .and_then(|p| metamcp_core::jsonrpc::str_field(p, field))
        .map(Into::into);
    gw.rt
        .audit
        .record(crate::audit::refusal(&who, kind, target, verdict))
        .await;
}

/// Counts a request to `method` on `ep` through `face` (metrics).
pub(crate) fn count_request(gw: &Gateway, face: &'static str, ep: &str, method: &str) {
    gw.rt.metrics.request(ep, face, method);
}

/// `GET /metrics` (Prometheus text format). Open while every listener of the gateway is on
/// loopback; otherwise it needs `Authorization: Bearer $METAMCP_METRICS_TOKEN` (403 without
/// a token configured, 401 with a wrong one). With `METAMCP_METRICS_BIND` it is served only
/// there, open ([`metrics_router`]); with `METAMCP_METRICS=off`, nowhere.
async fn metrics(
    axum::extract::State(gw): axum::extract::State<Arc<Gateway>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let opts = &gw.opts.metrics;
    if opts.disabled || opts.own_listener {
        return not_found().await.into_response();
    }
    let loopback_only = gw.opts.listening.iter().all(|a| a.ip().is_loopback());
    if !loopback_only {
        let Some(token) = &opts.token else {
            return HttpError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "/metrics is open only while the gateway listens on loopback: set \
                 METAMCP_METRICS_TOKEN (and scrape with it as a bearer token) or \
                 METAMCP_METRICS_BIND",
            )
            .into_response();
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        let ok = presented.is_some_and(|p| {
            use subtle::ConstantTimeEq;
            p.len() == token.len() && bool::from(p.as_bytes().ct_eq(token.as_bytes()))
        });
        if !ok {
            return HttpError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "/metrics needs Authorization: Bearer <METAMCP_METRICS_TOKEN>",
            )
            .into_response();
        }
    }
    metrics_response(&gw)
}

fn metrics_response(gw: &Gateway) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        gw.metrics_text(),
    )
        .into_response()
}

/// The router of `METAMCP_METRICS_BIND`: `GET /metrics` alone, open (the operator chose who
/// can reach that address), behind the same Host check.
pub fn metrics_router(gw: Arc<Gateway>) -> Router {
    let hosts: Arc<[String]> = gw.allowed_hosts.clone().into();
    Router::new()
        .route(
            "/metrics",
            get(
                async |axum::extract::State(gw): axum::extract::State<Arc<Gateway>>| {
                    if gw.opts.metrics.disabled {
                        return not_found().await.into_response();
                    }
                    metrics_response(&gw)
                },
            ),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(hosts, guard::edge))
        .with_state(gw)
}

/// A rate limit's refusal, as the audit log classes it.
pub(crate) fn rate_limited() -> crate::audit::Verdict {
    crate::audit::Verdict::new(crate::audit::Outcome::RateLimited, "rate_limited")
}

/// An SSE response carrying every message sent on `rx` as a `message` event, with a
/// keep-alive comment every `keep_alive` (15 s by default) so proxies keep the stream open;
/// it ends when every sender is gone.
pub(crate) fn sse_response(
    rx: tokio::sync::mpsc::Receiver<String>,
    keep_alive: std::time::Duration,
) -> Response {
    sse_response_held(rx, keep_alive, ())
}

/// [`sse_response`], keeping `held` (a slot the stream occupies) until the stream ends.
pub(crate) fn sse_response_held<H: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<String>,
    keep_alive: std::time::Duration,
    held: H,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let stream = futures::stream::unfold((rx, held), |(mut rx, held)| async move {
        let msg = rx.recv().await?;
        Some((
            Ok::<_, std::convert::Infallible>(Event::default().event("message").data(msg)),
            (rx, held),
        ))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keep_alive))
        .into_response()
}

/// Refuses a POST whose body is not declared `application/json` (415, a JSON-RPC error).
/// The media type is parsed (`application/json; charset=utf-8` passes, `application/jsonx`
/// does not), and a request with several `Content-Type` headers is refused outright.
pub(crate) fn require_json(headers: &axum::http::HeaderMap) -> Result<(), RpcRefusal> {
    if is_json(headers) {
        return Ok(());
    }
    Err(RpcRefusal::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        metamcp_core::jsonrpc::INVALID_REQUEST,
        "Unsupported Media Type: POST bodies must be application/json",
    ))
}

/// Refuses a body nested deeper than `max` levels (400, a JSON-RPC error): the relay
/// forwards what it does not parse, so the bound is checked on the bytes.
pub(crate) fn check_depth(body: &[u8], max: usize) -> Result<(), RpcRefusal> {
    if !metamcp_core::jsonrpc::nests_deeper_than(body, max) {
        return Ok(());
    }
    Err(RpcRefusal::new(
        StatusCode::BAD_REQUEST,
        metamcp_core::jsonrpc::INVALID_REQUEST,
        format!("Invalid Request: JSON nested deeper than {max} levels (METAMCP_MAX_JSON_DEPTH)"),
    ))
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    // RFC 9110 §8.3.1: `type "/" subtype *( OWS ";" OWS parameter )`, case-insensitive.
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

async fn not_found() -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, "not_found", "No such route")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_media_type_is_parsed_not_prefix_matched() {
        let with = |values: &[&'static str]| {
            let mut h = axum::http::HeaderMap::new();
            for v in values {
                h.append(header::CONTENT_TYPE, HeaderValue::from_static(v));
            }
            is_json(&h)
        };
        assert!(with(&["application/json"]));
        assert!(with(&["Application/JSON; charset=utf-8"]));
        assert!(with(&["application/json ; charset=\"utf-8\""]));
        assert!(!with(&["application/jsonx"]));
        assert!(!with(&["application/json-patch+json"]));
        assert!(!with(&["text/plain"]));
        assert!(!with(&["application/json", "application/json"]));
        assert!(!with(&[]));
    }
}
