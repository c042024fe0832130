//! Endpoints as an operator manages them: create (auth, query auth, rate limits), change
//! rate limits, list with their URLs, remove. Rate limits are `N/SECONDS` (or `off` in a
//! change), checked here so a mistake is one clear error.

use metamcp_core::RateLimit;
use metamcp_store::{EndpointLimits, EndpointRecord, LimitsUpdate};
use serde::Serialize;

use super::{Access, AdminError, Cx, tenancy};

/// One endpoint as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointView {
    pub name: String,
    /// The owner's email; `None`: public.
    pub owner: Option<String>,
    pub namespace: String,
    pub description: Option<String>,
    /// Callers must present an API key.
    pub api_key_auth: bool,
    /// The key may also be given as `?api_key=`.
    pub query_auth: bool,
    /// OAuth access tokens issued for it open it (the gateway is the authorization server).
    pub oauth: bool,
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
    /// OAuth access tokens open it too (with `api_key_auth` off: only they do).
    pub oauth: bool,
    /// `N/SECONDS`.
    pub rate: Option<String>,
    /// `N/SECONDS`.
    pub client_rate: Option<String>,
    /// The owner's email; `None`: the actor's default ([`Cx::owner_for_new`]).
    pub owner: Option<String>,
}

/// The gateway's public URL (`APP_URL`), without a trailing slash.
pub fn base_url() -> String {
    let base = std::env::var("APP_URL").unwrap_or_else(|_| "http://localhost:12008".into());
    base.trim_end_matches('/').to_owned()
}

fn view(e: EndpointRecord) -> EndpointView {
    EndpointView {
        owner: tenancy::email(e.owner.as_ref()),
        url: format!("{}/metamcp/{}/mcp", base_url(), e.name),
        rate: e.rate.map(|l| l.to_string()),
        client_rate: e.client_rate.map(|l| l.to_string()),
        name: e.name,
        namespace: e.namespace_name,
        description: e.description,
        api_key_auth: e.api_key_auth,
        query_auth: e.query_auth,
        oauth: e.oauth,
    }
}

/// How callers authenticate, in words: `API key (header)`, `OAuth or API key`, `NONE`…
pub fn auth_text(e: &EndpointView) -> String {
    let key = match (e.api_key_auth, e.query_auth) {
        (false, _) => None,
        (true, false) => Some("API key (header)"),
        (true, true) => Some("API key (header or ?api_key=)"),
    };
    match (e.oauth, key) {
        (false, None) => "NONE (open to anyone)".into(),
        (false, Some(k)) => k.into(),
        (true, None) => "OAuth".into(),
        (true, Some(k)) => format!("OAuth or {k}"),
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
    let owner_id = cx.owner_for_new(new.owner.as_deref()).await?;
    let owner = tenancy::owner_of(cx.tx, owner_id.as_deref()).await?;
    tenancy::check_endpoint(cx, &new.name, owner.as_ref(), &new.namespace).await?;
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
    let ep = if new.oauth {
        cx.tx.set_endpoint_oauth(&new.name, true).await?
    } else {
        ep
    };
    if let Some(id) = &owner_id {
        cx.tx
            .set_owner(metamcp_store::Owned::Endpoint, &new.name, Some(id))
            .await?;
    }
    Ok(view(metamcp_store::EndpointRecord { owner, ..ep }))
}

/// Changes an endpoint's rate limits: each `N/SECONDS` or `off`; `None` leaves one alone.
pub async fn update(
    cx: &mut Cx<'_>,
    name: &str,
    rate: Option<&str>,
    client_rate: Option<&str>,
) -> Result<EndpointView, AdminError> {
    load(cx, name, Access::Configure).await?;
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

/// Turns API-key auth, query-string keys and OAuth on or off; `None` leaves one as it is.
/// Query keys need key auth (an endpoint without auth takes no key).
pub async fn set_auth(
    cx: &mut Cx<'_>,
    name: &str,
    api_key_auth: Option<bool>,
    query_auth: Option<bool>,
    oauth: Option<bool>,
) -> Result<EndpointView, AdminError> {
    let ep = load(cx, name, Access::Configure).await?;
    if let Some(on) = oauth
        && on != ep.oauth
    {
        cx.tx.set_endpoint_oauth(name, on).await?;
    }
    if api_key_auth.is_none() && query_auth.is_none() {
        return load(cx, name, Access::Configure).await.map(view);
    }
    let key = api_key_auth.unwrap_or(ep.api_key_auth);
    // Turning key auth off turns query keys off with it, unless asked otherwise.
    let query = query_auth.unwrap_or(ep.query_auth && key);
    if query && !key {
        return Err(AdminError::Invalid(
            "query auth needs API-key auth (an endpoint without auth takes no key)".into(),
        ));
    }
    Ok(view(cx.tx.update_endpoint_auth(name, key, query).await?))
}

/// Every endpoint the actor sees.
pub async fn list(cx: &mut Cx<'_>) -> Result<Vec<EndpointView>, AdminError> {
    cx.require(Access::Read)?;
    Ok(cx
        .tx
        .list_endpoints()
        .await?
        .into_iter()
        .filter(|e| tenancy::visible(cx.actor, e.owner.as_ref()))
        .map(view)
        .collect())
}

/// One endpoint by name.
pub async fn get(cx: &mut Cx<'_>, name: &str) -> Result<EndpointView, AdminError> {
    load(cx, name, Access::Read).await.map(view)
}

/// Removes an endpoint.
pub async fn remove(cx: &mut Cx<'_>, name: &str) -> Result<(), AdminError> {
    load(cx, name, Access::Configure).await?;
    cx.tx.remove_endpoint(name).await?;
    Ok(())
}

/// Gives the endpoint to the user with `owner` (an email), or makes it public (`None`):
/// admins only; its namespace must still be allowed with it.
pub async fn set_owner(cx: &mut Cx<'_>, name: &str, owner: Option<&str>) -> Result<(), AdminError> {
    change_owner(cx, name, owner).await?;
    tenancy::check_all(cx.tx).await
}

/// [`set_owner`] without the composition check (`apply` checks everything at its end).
pub(super) async fn change_owner(
    cx: &mut Cx<'_>,
    name: &str,
    owner: Option<&str>,
) -> Result<(), AdminError> {
    cx.require(Access::Administer)?;
    load(cx, name, Access::Administer).await?;
    let id = cx.owner_for_new(owner).await?;
    cx.tx
        .set_owner(metamcp_store::Owned::Endpoint, name, id.as_deref())
        .await?;
    Ok(())
}

/// The endpoint `name`, if the actor may do `access` to it.
async fn load(cx: &mut Cx<'_>, name: &str, access: Access) -> Result<EndpointRecord, AdminError> {
    let e = cx
        .tx
        .get_endpoint(name)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no endpoint named {name:?}")))?;
    cx.require_object(access, "endpoint", name, e.owner.as_ref())?;
    Ok(e)
}
