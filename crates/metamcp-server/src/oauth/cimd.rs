//! Client ID Metadata Documents: a client whose `client_id` is an https URL is described by
//! the JSON document at that URL, which the gateway fetches.
//!
//! Fetching a URL a stranger names is a server-side request forgery risk, so the fetch is
//! fenced: https only, no credentials or fragment in the URL, a path required, no redirects,
//! no proxy, a time limit (`OAUTH_CIMD_FETCH_TIMEOUT`, 5 s by default), at most
//! [`MAX_DOCUMENT_BYTES`], and the host's addresses — literal or from DNS, checked after
//! resolution so a name pointing inside cannot slip through — must not be loopback, private,
//! link-local, CGNAT or unspecified unless an admin allows it
//! (`OAUTH_CIMD_ALLOW_PRIVATE_NETWORKS`). The document must name itself as `client_id`, list
//! its redirect URIs and be a public client (`token_endpoint_auth_method` `none`).
//! Successes are cached (per replica, at most [`MAX_CACHED`] documents, for the response's
//! `max-age` between one minute and a day, an hour without one); failures are not.
//! `METAMCP_EXTRA_CA_FILE` adds trusted roots (PEM), for private CAs and tests.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde::Deserialize;

use super::clients::{Client, Source, check_redirect_uri};

/// Largest document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// Most documents cached per replica.
pub const MAX_CACHED: usize = 1_000;
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(86_400);

/// Why a client id URL could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CimdError {
    #[error("the client id URL is not acceptable: {0}")]
    Url(String),
    #[error("fetching the client metadata document failed: {0}")]
    Fetch(String),
    #[error("the client metadata document is not acceptable: {0}")]
    Document(String),
}

/// Resolves names for the fetcher, dropping internal addresses unless allowed.
struct GuardedResolver {
    allow_private: Arc<AtomicBool>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private.load(Ordering::Relaxed);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow || !crate::admin::tenancy::internal(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address (loopback, private, link-local and \
                     CGNAT addresses are refused; OAUTH_CIMD_ALLOW_PRIVATE_NETWORKS allows them)"
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The metadata document fields the gateway reads.
#[derive(Debug, Deserialize)]
struct Document {
    client_id: String,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
}

/// Fetches and caches client metadata documents.
pub struct Cimd {
    /// `Err` (why) if the client could not be built; every fetch then fails with it.
    http: Result<reqwest::Client, String>,
    allow_private: Arc<AtomicBool>,
    cache: parking_lot::Mutex<HashMap<String, (Client, Instant)>>,
}

impl std::fmt::Debug for Cimd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cimd")
            .field("cached", &self.cache.lock().len())
            .finish_non_exhaustive()
    }
}

impl Cimd {
    /// A fetcher trusting the system's roots and those of `extra_ca_pem` (if any).
    pub fn new(extra_ca_pem: Option<&[u8]>) -> Self {
        let allow_private = Arc::new(AtomicBool::new(false));
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(true)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("metamcp/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(GuardedResolver {
                allow_private: allow_private.clone(),
            });
        let mut problem = None;
        if let Some(pem) = extra_ca_pem {
            match reqwest::Certificate::from_pem_bundle(pem) {
                Ok(certs) => builder = builder.tls_certs_merge(certs),
                Err(e) => problem = Some(format!("METAMCP_EXTRA_CA_FILE is not PEM: {e}")),
            }
        }
        let http = match problem {
            Some(p) => Err(p),
            None => builder
                .build()
                .map_err(|e| format!("the HTTP client could not be built: {e}")),
        };
        Cimd {
            http,
            allow_private,
            cache: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Follows the `OAUTH_CIMD_ALLOW_PRIVATE_NETWORKS` setting.
    pub fn set_allow_private(&self, allow: bool) {
        self.allow_private.store(allow, Ordering::Relaxed);
    }

    /// The client `url` describes: from the cache, else fetched within `timeout`.
    pub async fn client(&self, url: &str, timeout: Duration) -> Result<Client, CimdError> {
        if let Some((c, until)) = self.cache.lock().get(url)
            && Instant::now() < *until
        {
            return Ok(c.clone());
        }
        let parsed = check_url(url)?;
        let allow = self.allow_private.load(Ordering::Relaxed);
        if let Some(ip) = literal_ip(&parsed)
            && !allow
            && crate::admin::tenancy::internal(ip)
        {
            return Err(CimdError::Url(format!(
                "{ip} is a loopback, private, link-local or CGNAT address \
                 (OAUTH_CIMD_ALLOW_PRIVATE_NETWORKS allows them)"
            )));
        }
        let (client, ttl) = tokio::time::timeout(timeout, self.fetch(url))
            .await
            .map_err(|_| {
                CimdError::Fetch(format!(
                    "no complete answer within {} ms",
                    timeout.as_millis()
                ))
            })??;
        let mut cache = self.cache.lock();
        let now = Instant::now();
        cache.retain(|_, (_, until)| *until > now);
        if cache.len() >= MAX_CACHED
            && let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(k, _)| k.clone())
        {
            cache.remove(&oldest);
        }
        cache.insert(url.to_owned(), (client.clone(), now + ttl));
        Ok(client)
    }

    async fn fetch(&self, url: &str) -> Result<(Client, Duration), CimdError> {
        let http = self
            .http
            .as_ref()
            .map_err(|e| CimdError::Fetch(e.clone()))?;
        let resp = http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| CimdError::Fetch(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(CimdError::Fetch(format!(
                "HTTP {} (redirects are not followed)",
                resp.status().as_u16()
            )));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(CimdError::Document(format!(
                "larger than {MAX_DOCUMENT_BYTES} bytes"
            )));
        }
        let ttl = max_age(resp.headers())
            .unwrap_or(DEFAULT_TTL)
            .clamp(MIN_TTL, MAX_TTL);
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| CimdError::Fetch(error_chain(&e)))?;
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(CimdError::Document(format!(
                    "larger than {MAX_DOCUMENT_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let doc: Document = serde_json::from_slice(&body)
            .map_err(|e| CimdError::Document(format!("not the expected JSON: {e}")))?;
        Ok((validate(url, doc)?, ttl))
    }
}

/// An https URL with a path, without credentials or fragment.
fn check_url(raw: &str) -> Result<url::Url, CimdError> {
    let u = url::Url::parse(raw).map_err(|e| CimdError::Url(e.to_string()))?;
    if u.scheme() != "https" {
        return Err(CimdError::Url("it must be an https URL".into()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(CimdError::Url("it must not carry credentials".into()));
    }
    if u.fragment().is_some() {
        return Err(CimdError::Url("it must not have a fragment".into()));
    }
    if u.path() == "/" || u.path().is_empty() {
        return Err(CimdError::Url("it must have a path".into()));
    }
    if u.as_str() != raw {
        return Err(CimdError::Url(
            "it must be in normal form (no dot segments, lower-case scheme and host)".into(),
        ));
    }
    Ok(u)
}

fn literal_ip(u: &url::Url) -> Option<IpAddr> {
    match u.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

fn validate(url: &str, doc: Document) -> Result<Client, CimdError> {
    if doc.client_id != url {
        return Err(CimdError::Document(format!(
            "its client_id {:?} is not the URL it was fetched from",
            doc.client_id
        )));
    }
    if doc.redirect_uris.is_empty() {
        return Err(CimdError::Document("it lists no redirect_uris".into()));
    }
    for uri in &doc.redirect_uris {
        check_redirect_uri(uri).map_err(CimdError::Document)?;
    }
    match doc.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(other) => {
            return Err(CimdError::Document(format!(
                "token_endpoint_auth_method {other:?}: only public clients (\"none\") are supported"
            )));
        }
    }
    Ok(Client {
        client_id: doc.client_id,
        name: doc.client_name.map(|n| n.chars().take(100).collect()),
        redirect_uris: doc.redirect_uris,
        source: Source::MetadataDocument,
    })
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let cc = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    if cc
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case("no-store"))
    {
        return Some(MIN_TTL);
    }
    cc.split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_urls_are_fenced() {
        assert!(check_url("https://client.example/meta.json").is_ok());
        for bad in [
            "http://client.example/meta.json",
            "https://client.example/",
            "https://client.example",
            "https://u:p@client.example/m.json",
            "https://client.example/m.json#x",
            "https://client.example/a/../m.json",
            "HTTPS://client.example/m.json",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn documents_must_name_themselves_and_be_public() {
        let url = "https://c.example/m.json";
        let doc = |id: &str, uris: &[&str], method: Option<&str>| Document {
            client_id: id.into(),
            client_name: Some("C".into()),
            redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
            token_endpoint_auth_method: method.map(str::to_owned),
        };
        assert!(validate(url, doc(url, &["http://127.0.0.1/cb"], None)).is_ok());
        assert!(
            validate(
                url,
                doc(
                    "https://other.example/m.json",
                    &["http://127.0.0.1/cb"],
                    None
                )
            )
            .is_err()
        );
        assert!(validate(url, doc(url, &[], None)).is_err());
        assert!(validate(url, doc(url, &["javascript:alert(1)"], None)).is_err());
        assert!(
            validate(
                url,
                doc(url, &["http://127.0.0.1/cb"], Some("client_secret_basic"))
            )
            .is_err()
        );
    }
}
