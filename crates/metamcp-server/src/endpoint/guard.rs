//! What every request passes before a handler sees it.
//!
//! 1. [`edge`], for every route of a listener: at most one `Host` and one `Origin` header
//!    (400 otherwise: with two, a proxy and the gateway may each believe a different one),
//!    and a `Host` we serve (403; DNS-rebinding protection, see [`crate::auth::check_host`]).
//! 2. [`Guard`], per group of routes, with the CORS policy chosen where the group is defined
//!    ([`Cors`]): by default an `Origin` must be one of the [`AllowedOrigins`] exactly
//!    (scheme, host, port), else 403 without CORS headers; a group declared
//!    [`Cors::AnyOrigin`] (OAuth metadata, token, registration) is open to every page.
//!    Preflights (`OPTIONS`) are answered here, 204.
//! 3. Then the request body is read whole, bounded in size ([`Limits::max_body_bytes`], 413)
//!    and in time ([`Limits::body_read_timeout`], 408, the connection closes), so a handler
//!    never waits on a slow client and never holds more than the limit. Every refusal is a
//!    JSON body `{"error", "message"}`.
//!
//! Connection-level bounds (caps, header and idle timeouts) are `crate::listener`'s.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use crate::auth::{AllowedOrigins, check_authority, check_host};
use crate::error::HttpError;
use crate::limits::Limits;

const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str =
    "content-type, authorization, x-api-key, mcp-session-id, mcp-protocol-version, last-event-id";
const EXPOSE_HEADERS: &str = "mcp-session-id, mcp-protocol-version";

/// The first check of every request: single `Host` and `Origin`, and a `Host` we serve.
/// The authority of an absolute-form request target (`GET http://host/…`) counts as a Host.
pub(crate) async fn edge(State(hosts): State<Arc<[String]>>, req: Request, next: Next) -> Response {
    for name in [header::HOST, header::ORIGIN] {
        if req.headers().get_all(&name).iter().nth(1).is_some() {
            return duplicate(&name).into_response();
        }
    }
    if let Err(e) = check_host(&hosts, req.headers()) {
        return refusal(req.headers(), e);
    }
    if let Some(authority) = req.uri().authority()
        && let Err(e) = check_authority(&hosts, authority.as_str())
    {
        return refusal(req.headers(), e);
    }
    next.run(req).await
}

/// A Host refusal: a page for a browser opening the dashboard at an address the gateway does
/// not serve (the most common setup mistake: the fix is `APP_URL`), JSON for everyone else.
fn refusal(headers: &axum::http::HeaderMap, e: HttpError) -> Response {
    let navigating = headers
        .get("sec-fetch-mode")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"navigate"))
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if navigating {
        crate::account::pages::error(
            e.status,
            "This address is not one metamcp serves",
            &format!(
                "{} Set APP_URL to the address you open metamcp at (or add the host to \
                 METAMCP_ALLOWED_HOSTS), then restart it. This check stops other web sites from \
                 reaching the gateway through your browser (DNS rebinding).",
                e.message
            ),
            Some("APP_URL"),
        )
    } else {
        e.into_response()
    }
}

fn duplicate(name: &HeaderName) -> HttpError {
    let shown = match *name {
        header::HOST => "Host",
        _ => "Origin",
    };
    HttpError::new(
        StatusCode::BAD_REQUEST,
        "duplicate_header",
        format!("More than one {shown} header"),
    )
}

/// Which web pages may call a group of routes from a browser.
#[derive(Debug, Clone)]
pub enum Cors {
    /// Only the gateway's allowed origins, matched exactly; any other `Origin` gets 403.
    Allowed(Arc<AllowedOrigins>),
    /// Every origin (`Access-Control-Allow-Origin: *`, so never with credentials): for
    /// routes any page must reach, such as OAuth metadata, token and registration.
    AnyOrigin,
}

/// Bounds on reading one request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyBounds {
    pub max_bytes: usize,
    pub timeout: Duration,
}

impl BodyBounds {
    pub fn of(limits: &Limits) -> Self {
        Self {
            max_bytes: limits.max_body_bytes,
            timeout: limits.body_read_timeout,
        }
    }
}

/// The per-group checks: CORS policy, then the bounded body read.
#[derive(Debug, Clone)]
pub struct Guard {
    pub cors: Cors,
    pub body: BodyBounds,
}

impl Guard {
    /// `routes` (and their fallback, if set) behind this guard.
    pub fn apply<S: Clone + Send + Sync + 'static>(self, routes: Router<S>) -> Router<S> {
        routes.layer(middleware::from_fn_with_state(self, guard))
    }
}

async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let preflight = req.method() == Method::OPTIONS;
    let allow = match req.headers().get(header::ORIGIN) {
        None => None,
        Some(origin) => match &g.cors {
            Cors::AnyOrigin => Some(HeaderValue::from_static("*")),
            Cors::Allowed(allowed) => match origin.to_str() {
                Ok(o) if allowed.allows(o) => Some(origin.clone()),
                _ => {
                    let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
                    return HttpError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden_origin",
                        format!(
                            "Origin {shown:?} is not allowed; list it in METAMCP_ALLOWED_ORIGINS (scheme://host:port)"
                        ),
                    )
                    .into_response();
                }
            },
        },
    };
    if preflight {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        add_cors(&mut resp, allow, true);
        return resp;
    }
    let req = match read_body(req, g.body).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let mut resp = next.run(req).await;
    add_cors(&mut resp, allow, false);
    resp
}

/// The request with its body read whole, or the refusal: 413 (too large, told by
/// `Content-Length` before anything is read, or found while reading), 408 (not complete
/// within the timeout), 400 (the body broke off). Refusals close the connection, since the
/// rest of the body is never read.
async fn read_body(req: Request, bounds: BodyBounds) -> Result<Request, Response> {
    if req.body().is_end_stream() {
        return Ok(req);
    }
    if req.body().size_hint().lower() > bounds.max_bytes as u64 {
        return Err(too_large(bounds.max_bytes));
    }
    let (parts, body) = req.into_parts();
    let limited = Limited::new(body, bounds.max_bytes).collect();
    let bytes = match tokio::time::timeout(bounds.timeout, limited).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large(bounds.max_bytes)),
        Ok(Err(e)) => {
            return Err(closing(HttpError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("The request body could not be read: {e}"),
            )));
        }
        Err(_) => {
            return Err(closing(HttpError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "The request body did not arrive within {} ms",
                    bounds.timeout.as_millis()
                ),
            )));
        }
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn too_large(max: usize) -> Response {
    closing(HttpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("The request body is larger than {max} bytes"),
    ))
}

/// `e` with `Connection: close`: the client's unread body makes the connection unusable.
fn closing(e: HttpError) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn add_cors(resp: &mut Response, allow: Option<HeaderValue>, preflight: bool) {
    let Some(allow) = allow else {
        return;
    };
    let h = resp.headers_mut();
    if allow != "*" {
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
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
    use axum::routing::{get, post};

    /// `/closed` with the exact-origin policy, `/open` open to any origin, behind the edge.
    fn app() -> Router {
        let allowed = AllowedOrigins::new(
            &url::Url::parse("https://mcp.example.com").unwrap(),
            &["127.0.0.1:12008".parse().unwrap()],
            &[],
        );
        let body = BodyBounds {
            max_bytes: 8,
            timeout: Duration::from_secs(5),
        };
        let closed = Router::new().route("/closed", post(|b: axum::body::Bytes| async move { b }));
        let open = Router::new().route("/open", get(|| async { "open" }));
        let hosts: Arc<[String]> = vec!["localhost".to_owned()].into();
        Router::new()
            .merge(
                Guard {
                    cors: Cors::Allowed(Arc::new(allowed)),
                    body,
                }
                .apply(closed),
            )
            .merge(
                Guard {
                    cors: Cors::AnyOrigin,
                    body,
                }
                .apply(open),
            )
            .layer(middleware::from_fn_with_state(hosts, edge))
    }

    async fn send(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Body::from(body.to_owned())).unwrap();
        let Ok(resp) = tower_service::Service::call(&mut app(), req).await;
        resp
    }

    fn acao(r: &Response) -> Option<&str> {
        r.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn exact_origins_on_guarded_routes_any_origin_where_declared() {
        let ok = send(
            "POST",
            "/closed",
            &[("origin", "http://localhost:12008")],
            "hi",
        )
        .await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(acao(&ok), Some("http://localhost:12008"));
        for foreign in ["http://localhost:6666", "https://evil.example.com"] {
            let r = send("POST", "/closed", &[("origin", foreign)], "hi").await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{foreign}");
            assert_eq!(acao(&r), None);
            let pre = send("OPTIONS", "/closed", &[("origin", foreign)], "").await;
            assert_eq!(pre.status(), StatusCode::FORBIDDEN, "{foreign}");
            assert_eq!(acao(&pre), None);
            let open = send("GET", "/open", &[("origin", foreign)], "").await;
            assert_eq!(open.status(), StatusCode::OK);
            assert_eq!(acao(&open), Some("*"));
            let pre = send("OPTIONS", "/open", &[("origin", foreign)], "").await;
            assert_eq!(pre.status(), StatusCode::NO_CONTENT);
            assert_eq!(acao(&pre), Some("*"));
        }
        // The Host check applies to open routes too.
        let r = send("GET", "/open", &[("host", "evil.example.com")], "").await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn duplicate_host_or_origin_and_oversized_bodies_are_refused() {
        let mut req = Request::builder().uri("/open").body(Body::empty()).unwrap();
        req.headers_mut()
            .append(header::HOST, HeaderValue::from_static("localhost"));
        req.headers_mut()
            .append(header::HOST, HeaderValue::from_static("localhost"));
        let Ok(r) = tower_service::Service::call(&mut app(), req).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let big = send("POST", "/closed", &[], "123456789").await;
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(big.headers()[header::CONTENT_TYPE], "application/json");
        let fits = send("POST", "/closed", &[], "12345678").await;
        assert_eq!(fits.status(), StatusCode::OK);
    }
}
