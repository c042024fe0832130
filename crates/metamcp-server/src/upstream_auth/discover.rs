//! Finding out how to authorize at an upstream, from nothing but its URL (MCP authorization
//! spec, client side): its 401's `WWW-Authenticate` names the RFC 9728 protected-resource
//! metadata (else the well-known paths are tried), which names the authorization server,
//! whose RFC 8414 (or OpenID) metadata gives the endpoints. The resource and issuer named by
//! each document must be the ones asked for, and the server must offer PKCE S256.

use serde::Deserialize;

/// Longest metadata document read.
const MAX_DOC: usize = 256 * 1024;

/// What the gateway needs to send a browser to an upstream's authorization server.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The resource (the server's URL as its metadata names it), sent as RFC 8707 `resource`.
    pub resource: String,
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub registration_endpoint: Option<String>,
    /// Whether the server puts `iss` in authorization responses (RFC 9207).
    pub iss_supported: bool,
    /// Whether it takes client ids that are URLs of metadata documents (CIMD).
    pub cimd_supported: bool,
    /// Scopes to ask for when none are configured (the 401's, else the metadata's).
    pub scope: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("{0}")]
    Fetch(String),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct ResourceMetadata {
    resource: Option<String>,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
}

#[derive(Deserialize)]
struct ServerMetadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    registration_endpoint: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    client_id_metadata_document_supported: bool,
    #[serde(default)]
    scopes_supported: Vec<String>,
}

/// A parameter of a `WWW-Authenticate: Bearer k="v", …` challenge.
pub fn challenge_param(header: &str, key: &str) -> Option<String> {
    let rest = header.trim_start();
    let rest = rest
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case("bearer"))
        .map(|_| &rest[6..])?;
    let mut s = rest;
    loop {
        s = s.trim_start_matches([' ', ',']);
        if s.is_empty() {
            return None;
        }
        let eq = s.find('=')?;
        let name = s[..eq].trim();
        s = &s[eq + 1..];
        let value;
        if let Some(q) = s.strip_prefix('"') {
            let end = q.find('"')?;
            value = &q[..end];
            s = &q[end + 1..];
        } else {
            let end = s.find(',').unwrap_or(s.len());
            value = s[..end].trim();
            s = &s[end..];
        }
        if name.eq_ignore_ascii_case(key) {
            return Some(value.to_owned());
        }
    }
}

/// The well-known URL of `kind` for `url`: `{origin}/.well-known/{kind}{path}` (RFC 8414 and
/// RFC 9728 insert the well-known part before the path).
fn well_known(url: &url::Url, kind: &str, with_path: bool) -> Option<String> {
    let mut u = url.clone();
    let path = url.path().trim_end_matches('/');
    u.set_query(None);
    u.set_fragment(None);
    if with_path && !path.is_empty() {
        u.set_path(&format!("/.well-known/{kind}{path}"));
    } else if with_path {
        return None;
    } else {
        u.set_path(&format!("/.well-known/{kind}"));
    }
    Some(u.to_string())
}

async fn get_json<T: for<'de> Deserialize<'de>>(
    http: &reqwest::Client,
    url: &str,
) -> Result<Option<T>, DiscoverError> {
    let resp = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| DiscoverError::Fetch(format!("GET {url}: {e}")))?;
    if !resp.status().is_success() {
        return Ok(None);
    }
    let body = read_limited(resp, MAX_DOC)
        .await
        .map_err(|e| DiscoverError::Fetch(format!("GET {url}: {e}")))?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| DiscoverError::Invalid(format!("{url} is not the expected JSON: {e}")))
}

/// Reads at most `limit` bytes of a body.
pub async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    use futures::StreamExt;
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if out.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Discovers how to authorize at the MCP server at `server_url`.
pub async fn discover(
    http: &reqwest::Client,
    server_url: &str,
) -> Result<Discovered, DiscoverError> {
    let url = url::Url::parse(server_url)
        .map_err(|e| DiscoverError::Invalid(format!("the server's URL: {e}")))?;
    let probe = http
        .post(url.clone())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(metamcp_core::jsonrpc::request(
            0,
            "initialize",
            Some(&metamcp_upstream::conn::initialize_params()),
        ))
        .send()
        .await
        .map_err(|e| DiscoverError::Fetch(format!("reaching the server: {e}")))?;
    // A legacy SSE server may refuse the POST (405) before it asks for a token: its stream
    // (GET) is what it protects.
    let probe = if probe.status() == reqwest::StatusCode::UNAUTHORIZED {
        probe
    } else {
        http.get(url.clone())
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| DiscoverError::Fetch(format!("reaching the server: {e}")))?
    };
    let challenge = probe
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.trim_start().to_ascii_lowercase().starts_with("bearer"))
        .map(str::to_owned);
    if probe.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(DiscoverError::Invalid(format!(
            "the server answered {} without a token, not 401: it does not ask for OAuth",
            probe.status()
        )));
    }
    let hinted = challenge
        .as_deref()
        .and_then(|c| challenge_param(c, "resource_metadata"));
    let challenge_scope = challenge
        .as_deref()
        .and_then(|c| challenge_param(c, "scope"));
    let candidates: Vec<String> = match hinted {
        Some(u) => vec![u],
        None => [
            well_known(&url, "oauth-protected-resource", true),
            well_known(&url, "oauth-protected-resource", false),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    let mut prm = None;
    for c in &candidates {
        if let Some(m) = get_json::<ResourceMetadata>(http, c).await? {
            prm = Some(m);
            break;
        }
    }
    let prm = prm.ok_or_else(|| {
        DiscoverError::Invalid(format!(
            "no protected-resource metadata at {}",
            candidates.join(" or ")
        ))
    })?;
    let resource = prm.resource.unwrap_or_else(|| server_url.to_owned());
    if !same_url(&resource, server_url) {
        return Err(DiscoverError::Invalid(format!(
            "the protected-resource metadata names resource {resource}, not {server_url}"
        )));
    }
    let issuer = prm
        .authorization_servers
        .into_iter()
        .next()
        .ok_or_else(|| {
            DiscoverError::Invalid(
                "the protected-resource metadata names no authorization server".into(),
            )
        })?;
    let iss_url = url::Url::parse(&issuer)
        .map_err(|e| DiscoverError::Invalid(format!("authorization server {issuer}: {e}")))?;
    let mut tried = Vec::new();
    let mut meta = None;
    for u in [
        well_known(&iss_url, "oauth-authorization-server", true),
        well_known(&iss_url, "openid-configuration", true),
        well_known(&iss_url, "oauth-authorization-server", false),
        Some(format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        )),
    ]
    .into_iter()
    .flatten()
    {
        if tried.contains(&u) {
            continue;
        }
        if let Some(m) = get_json::<ServerMetadata>(http, &u).await? {
            meta = Some(m);
            break;
        }
        tried.push(u);
    }
    let meta = meta.ok_or_else(|| {
        DiscoverError::Invalid(format!(
            "no authorization server metadata at {}",
            tried.join(" or ")
        ))
    })?;
    if !same_url(&meta.issuer, &issuer) {
        return Err(DiscoverError::Invalid(format!(
            "the authorization server's metadata names issuer {}, not {issuer}",
            meta.issuer
        )));
    }
    if !meta
        .code_challenge_methods_supported
        .iter()
        .any(|m| m == "S256")
    {
        return Err(DiscoverError::Invalid(
            "the authorization server does not offer PKCE with S256".into(),
        ));
    }
    let scope = challenge_scope.or_else(|| {
        let list = if prm.scopes_supported.is_empty() {
            meta.scopes_supported
        } else {
            prm.scopes_supported
        };
        (!list.is_empty()).then(|| list.join(" "))
    });
    Ok(Discovered {
        resource,
        issuer: meta.issuer,
        authorization_endpoint: meta.authorization_endpoint,
        token_endpoint: meta.token_endpoint,
        registration_endpoint: meta.registration_endpoint,
        iss_supported: meta.authorization_response_iss_parameter_supported,
        cimd_supported: meta.client_id_metadata_document_supported,
        scope,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn challenges_are_read_quoted_or_not() {
        let h = r#"Bearer error="invalid_token", resource_metadata="https://g/.well-known/oauth-protected-resource/metamcp/a/mcp", scope=mcp"#;
        assert_eq!(
            challenge_param(h, "resource_metadata").unwrap(),
            "https://g/.well-known/oauth-protected-resource/metamcp/a/mcp"
        );
        assert_eq!(challenge_param(h, "scope").unwrap(), "mcp");
        assert_eq!(challenge_param(h, "realm"), None);
        assert_eq!(challenge_param("Basic realm=x", "realm"), None);
        assert_eq!(challenge_param("Bearer", "scope"), None);
    }

    #[test]
    fn well_known_paths_insert_before_the_path() {
        let u = url::Url::parse("https://h:8/metamcp/a/mcp?x=1").unwrap();
        assert_eq!(
            well_known(&u, "oauth-protected-resource", true).unwrap(),
            "https://h:8/.well-known/oauth-protected-resource/metamcp/a/mcp"
        );
        assert_eq!(
            well_known(&u, "oauth-protected-resource", false).unwrap(),
            "https://h:8/.well-known/oauth-protected-resource"
        );
        let root = url::Url::parse("https://h/").unwrap();
        assert_eq!(well_known(&root, "openid-configuration", true), None);
    }
}
