//! The one place where failures become what a client sees: JSON-RPC errors (with the
//! request's id, so SDK clients never hang on an id-less error) or HTTP statuses with a JSON
//! body for failures that happen before a JSON-RPC message is read (auth, routing).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metamcp_core::jsonrpc;
use metamcp_upstream::UpstreamError;
use serde_json::json;
use serde_json::value::RawValue;

/// An HTTP-level refusal with a JSON body `{"error": kind, "message": message}`.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct HttpError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 answers).
    pub retry_after: Option<u64>,
    /// A `WWW-Authenticate` challenge (401 answers of OAuth endpoints).
    pub www_authenticate: Option<String>,
}

impl HttpError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// The same refusal with a `Retry-After: seconds` header.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.kind, "message": self.message }).to_string();
        let mut resp = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(v) = self
            .www_authenticate
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// A refusal of the transport layer answered as a JSON-RPC error (id null) with an HTTP
/// status: missing or unknown session, bad protocol version header.
#[derive(Debug)]
pub struct RpcRefusal {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
}

impl RpcRefusal {
    pub fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for RpcRefusal {
    fn into_response(self) -> Response {
        rpc_error_response(self.status, None, self.code, &self.message)
    }
}

/// A JSON-RPC error sent as an HTTP response with the given status.
pub fn rpc_error_response(
    status: StatusCode,
    id: Option<&RawValue>,
    code: i64,
    message: &str,
) -> Response {
    let body = jsonrpc::error(id, code, message, None);
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The JSON-RPC error for an upstream failure: code -32603, message naming the server,
/// `data.server` for programs.
pub fn upstream_error(id: &RawValue, e: &UpstreamError) -> String {
    let code = match e {
        UpstreamError::Timeout { .. } => jsonrpc::REQUEST_TIMEOUT,
        _ => jsonrpc::INTERNAL_ERROR,
    };
    jsonrpc::error(
        Some(id),
        code,
        &e.to_string(),
        Some(&json!({ "server": e.server() })),
    )
}
