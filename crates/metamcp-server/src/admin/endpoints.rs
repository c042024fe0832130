//! Endpoints as an operator manages them: create (auth, query auth, rate limits), change
//! rate limits, list with their URLs, remove. Rate limits are `N/SECONDS` (or `off` in a
//! change), checked here so a mistake is one clear error.

use metamcp_core::RateLimit;
use metamcp_store::{EndpointLimits, EndpointRecord, LimitsUpdate};
use serde::Serialize;

use super::{Access, AdminError, Cx};

/// One endpoint as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointView {
    pub name: String,
    pub namespace: String,
    pub description: Option<String>,
    /// Callers must present an API key.
    pub api_key_auth: bool,
    /// The key may also be given as `?api_key=`.
    pub query_auth: bool,
    /// `N/SECONDS` on the whole endpoint; `None`: unlimited.
    pub rate: Option<String>,
    /// `N/SECONDS` per client (API key, else IP); `None`: unlimited.
    pub client_rate: Option<String>,
    /// Where Streamable HTTP clients connect (from `APP_URL`).
    pub url: String,
}

/// An endpoint to create.
#[derive(Debug, Clone, Default)]
pub struct NewEndpoint {
    pub name: String,
    pub namespace: String,
    pub description: Option<String>,
    /// `false`: anyone who can reach the gateway may use it.
    pub api_key_auth: bool,
    pub query_auth: bool,
    /// `N/SECONDS`.
    pub rate: Option<String>,
    /// `N/SECONDS`.
    pub client_rate: Option<String>,
}

/// The gateway's public URL (`APP_URL`), without a trailing slash.
pub fn base_url() -> String {
    let base = std::env::var("APP_URL").unwrap_or_else(|_| "http://localhost:12008".into());
    base.trim_end_matches('/').to_owned()
}

fn view(e: EndpointRecord) -> EndpointView {
    EndpointView {
        url: format!("{}/metamcp/{}/mcp", base_url(), e.name),
        rate: e.rate.map(|l| l.to_string()),
        client_rate: e.client_rate.map(|l| l.to_string()),
        name: e.name,
        namespace: e.namespace_name,
        description: e.description,
        api_key_auth: e.api_key_auth,
        query_auth: e.query_auth,
    }
}

/// `N/SECONDS`.
pub fn parse_rate(s: &str) -> Result<RateLimit, AdminError> {
    s.parse()
        .map_err(|e: metamcp_core::rate::RateLimitError| AdminError::Invalid(e.to_string()))
}

/// `N/SECONDS`, or `off` for no limit.
pub fn parse_rate_or_off(s: &str) -> Result<Option<RateLimit>, AdminError> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_rate(s).map(Some)
}

/// Creates an endpoint serving a namespace.
pub async fn create(cx: &mut Cx<'_>, new: NewEndpoint) -> Result<EndpointView, AdminError> {
    cx.require(Access::Configure)?;
    if new.query_auth && !new.api_key_auth {
        return Err(AdminError::Invalid(
            "query auth needs API-key auth (an endpoint without auth takes no key)".into(),
        ));
    }
    let limits = EndpointLimits {
        rate: new.rate.as_deref().map(parse_rate).transpose()?,
        client_rate: new.client_rate.as_deref().map(parse_rate).transpose()?,
    };
    let ep = cx
        .tx
        .create_endpoint(
            &new.name,
            &new.namespace,
            new.description.as_deref(),
            new.api_key_auth,
            new.query_auth,
            limits,
        )
        .await?;
    Ok(view(ep))
}

/// Changes an endpoint's rate limits: each `N/SECONDS` or `off`; `None` leaves one alone.
pub async fn update(
    cx: &mut Cx<'_>,
    name: &str,
    rate: Option<&str>,
    client_rate: Option<&str>,
) -> Result<EndpointView, AdminError> {
    cx.require(Access::Configure)?;
    if rate.is_none() && client_rate.is_none() {
        return Err(AdminError::Invalid(
            "nothing to change: give --rate and/or --client-rate".into(),
        ));
    }
    let update = LimitsUpdate {
        rate: rate.map(parse_rate_or_off).transpose()?,
        client_rate: client_rate.map(parse_rate_or_off).transpose()?,
    };
    Ok(view(cx.tx.update_endpoint_limits(name, update).await?))
}

/// Every endpoint.
pub async fn list(cx: &mut Cx<'_>) -> Result<Vec<EndpointView>, AdminError> {
    cx.require(Access::Read)?;
    Ok(cx
        .tx
        .list_endpoints()
        .await?
        .into_iter()
        .map(view)
        .collect())
}

/// One endpoint by name.
pub async fn get(cx: &mut Cx<'_>, name: &str) -> Result<EndpointView, AdminError> {
    cx.require(Access::Read)?;
    cx.tx
        .get_endpoint(name)
        .await?
        .map(view)
        .ok_or_else(|| AdminError::NotFound(format!("no endpoint named {name:?}")))
}

/// Removes an endpoint.
pub async fn remove(cx: &mut Cx<'_>, name: &str) -> Result<(), AdminError> {
    cx.require(Access::Configure)?;
    cx.tx.remove_endpoint(name).await?;
    Ok(())
}
