//! The HTTP surface: `/metamcp/{endpoint}/mcp` (Streamable HTTP), `/metamcp/{endpoint}/sse`
//! and `/metamcp/{endpoint}/message` (legacy HTTP+SSE), `/metamcp/{endpoint}/api/…` (REST with
//! an OpenAPI 3.1 document, see `openapi.rs`), the session health, `/health`, and the admin
//! API under `/api/v1/` ([`crate::admin::api`]).
//! Every route passes the Host/Origin guard first; CORS answers are derived from the same
//! allow-list, so a browser client on an allowed origin (MCP Inspector) works.

pub mod modern;
pub mod openapi;
pub mod sse;
pub mod streamable;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::check_host_origin;
use crate::error::{HttpError, RpcRefusal};
use crate::health;
use crate::state::Gateway;

/// Largest request body accepted (MetaMCP's limit).
pub const MAX_BODY: usize = 50 * 1024 * 1024;

/// The gateway's HTTP router.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/health", get(health::health))
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
        .merge(crate::admin::api::routes(gw.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(gw.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // why: a bug must cost one request a clean 500, never a dropped connection.
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(gw)
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
/// see it: 404 for an unknown endpoint, 401 for a missing or wrong key.
pub(crate) fn resolve_endpoint(
    gw: &Gateway,
    endpoint: &str,
    headers: &axum::http::HeaderMap,
    query: Option<&str>,
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
    let principal = crate::auth::authenticate(&snap, &ep, headers, query)?;
    Ok((snap, ep, principal))
}

/// An SSE response carrying every message sent on `rx` as a `message` event, with a
/// keep-alive comment every 15 s so proxies keep the stream open; it ends when every sender
/// is gone.
pub(crate) fn sse_response(rx: tokio::sync::mpsc::Receiver<String>) -> Response {
    sse_response_held(rx, ())
}

/// [`sse_response`], keeping `held` (a slot the stream occupies) until the stream ends.
pub(crate) fn sse_response_held<H: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<String>,
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
        .keep_alive(KeepAlive::new().interval(streamable::KEEP_ALIVE))
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

const ALLOW_HEADERS: &str =
    "content-type, authorization, x-api-key, mcp-session-id, mcp-protocol-version, last-event-id";
const EXPOSE_HEADERS: &str = "mcp-session-id, mcp-protocol-version";

/// Host/Origin validation and CORS.
async fn guard(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let origin = match check_host_origin(&gw.allowed_hosts, req.headers()) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    if req.method() == Method::OPTIONS {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        add_cors(&mut resp, origin.as_deref(), true);
        return resp;
    }
    let mut resp = next.run(req).await;
    add_cors(&mut resp, origin.as_deref(), false);
    resp
}

fn add_cors(resp: &mut Response, origin: Option<&str>, preflight: bool) {
    let Some(origin) = origin.and_then(|o| HeaderValue::from_str(o).ok()) else {
        return;
    };
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
