//! Single sign-on: the gateway as an OpenID Connect relying party (authorization code flow).
//!
//! [`OidcSettings`] reads MetaMCP's `OIDC_*` variables; [`Oidc::begin`] sends a browser to the
//! provider and [`Oidc::finish`] turns the provider's callback into a [`VerifiedIdentity`].
//! Routes, cookies on responses and linking identities to users are the caller's; this module
//! is the protocol, so that part stays small and testable against a real provider.
//!
//! Why it is built this way:
//! - `state`, the nonce, the PKCE verifier and where to return live in a database row
//!   (`oidc_logins`), not in a signed cookie: replicas agree, a restart breaks nothing, and
//!   the row is taken with one `DELETE … RETURNING`, so a state is good once.
//! - Login CSRF: the row is bound to the browser that began the login by a random cookie whose
//!   SHA-256 the row holds. A callback carrying someone else's state and code is refused.
//! - The `openidconnect` crate does the protocol (token request, ID token signature, issuer,
//!   audience, expiry, nonce) over our own HTTP client: reqwest without redirects, with
//!   connect/total timeouts and a cap on every response body (discovery, JWKS, token,
//!   userinfo), since all of them come from a peer.
//! - Discovery (and the JWKS) is cached for an hour; an ID token signed with a key the cached
//!   JWKS lacks triggers one refetch (key rotation). A failed refresh keeps using the previous
//!   document until the next attempt.
//! - Every failure is an [`OidcError`] the caller renders as a page (never a redirect, so never
//!   a loop), saying what happened and which variable to fix.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use http::StatusCode;
use metamcp_store::{MAX_PENDING_OIDC_LOGINS, OidcLogin, Store, StoreError};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreErrorResponseType,
    CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessToken, AsyncHttpClient, AuthUrl, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest,
    HttpResponse, JsonWebKeySet, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
    UserInfoError,
};
use sha2::{Digest, Sha256};
use url::Url;

/// How long a begun login may take.
pub const LOGIN_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a discovery document (with its JWKS) is used before it is fetched again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(60 * 60);
/// The name of the browser-binding cookie.
pub const BROWSER_COOKIE: &str = "metamcp_oidc";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest body accepted from the provider (discovery, JWKS, token, userinfo).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
const MAX_PROVIDER_ID_LEN: usize = 64;
/// Longest `error`/`error_description` from the provider that is shown.
const MAX_SHOWN: usize = 300;

// ---------------------------------------------------------------------------------------
// Settings

/// Single sign-on configuration from MetaMCP's `OIDC_*` variables.
#[derive(Clone)]
pub struct OidcSettings {
    client_id: String,
    client_secret: String,
    discovery_url: Url,
    authorization_url: Option<Url>,
    provider_id: String,
    scopes: Vec<String>,
    pkce: bool,
    redirect_uri: Url,
    app_url: Url,
}

impl std::fmt::Debug for OidcSettings {
    // why: OIDC_CLIENT_SECRET is a gateway secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("discovery_url", &self.discovery_url.as_str())
            .field(
                "authorization_url",
                &self.authorization_url.as_ref().map(Url::as_str),
            )
            .field("provider_id", &self.provider_id)
            .field("scopes", &self.scopes)
            .field("pkce", &self.pkce)
            .field("redirect_uri", &self.redirect_uri.as_str())
            .finish()
    }
}

/// Why the `OIDC_*` variables do not make a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcConfigError {
    #[error(
        "single sign-on is only partly configured: {} not set; OIDC_CLIENT_ID, \
         OIDC_CLIENT_SECRET and OIDC_DISCOVERY_URL are all needed (or none, for no single sign-on)",
        missing.join(", ")
    )]
    Missing { missing: Vec<&'static str> },
    #[error("{variable} {value:?} is not an absolute http(s) URL ({reason})")]
    BadUrl {
        variable: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "OIDC_PROVIDER_ID {0:?} is not valid: use 1 to 64 of a-z, 0-9, '_' and '-' \
         (it is part of the callback URL)"
    )]
    BadProviderId(String),
    #[error("OIDC_SCOPES {0:?} must contain \"openid\" (default: \"openid email profile\")")]
    ScopesWithoutOpenid(String),
    #[error("OIDC_PKCE {0:?} is not a boolean: use true/false, 1/0 or yes/no")]
    BadPkce(String),
}

impl OidcConfigError {
    /// The environment variable to fix (the first one, for several missing).
    pub fn variable(&self) -> &'static str {
        match self {
            OidcConfigError::Missing { missing } => {
                missing.first().copied().unwrap_or("OIDC_CLIENT_ID")
            }
            OidcConfigError::BadUrl { variable, .. } => variable,
            OidcConfigError::BadProviderId(_) => "OIDC_PROVIDER_ID",
            OidcConfigError::ScopesWithoutOpenid(_) => "OIDC_SCOPES",
            OidcConfigError::BadPkce(_) => "OIDC_PKCE",
        }
    }
}

impl OidcSettings {
    /// Reads the `OIDC_*` variables through `get` (empty counts as unset). `None` when none of
    /// `OIDC_CLIENT_ID`, `OIDC_CLIENT_SECRET`, `OIDC_DISCOVERY_URL` is set: no single sign-on.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        app_url: &Url,
    ) -> Result<Option<Self>, OidcConfigError> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let client_id = var("OIDC_CLIENT_ID");
        let client_secret = var("OIDC_CLIENT_SECRET");
        let discovery_url = var("OIDC_DISCOVERY_URL");
        let (client_id, client_secret, discovery_url) =
            match (client_id, client_secret, discovery_url) {
                (None, None, None) => return Ok(None),
                (Some(id), Some(secret), Some(url)) => (id, secret, url),
                (id, secret, url) => {
                    let missing = [
                        ("OIDC_CLIENT_ID", id.is_none()),
                        ("OIDC_CLIENT_SECRET", secret.is_none()),
                        ("OIDC_DISCOVERY_URL", url.is_none()),
                    ]
                    .into_iter()
                    .filter_map(|(name, missing)| missing.then_some(name))
                    .collect();
                    return Err(OidcConfigError::Missing { missing });
                }
            };
        let discovery_url = http_url("OIDC_DISCOVERY_URL", discovery_url.trim())?;
        let authorization_url = var("OIDC_AUTHORIZATION_URL")
            .map(|u| http_url("OIDC_AUTHORIZATION_URL", u.trim()))
            .transpose()?;
        let provider_id = var("OIDC_PROVIDER_ID").unwrap_or_else(|| "oidc".to_owned());
        let provider_id = provider_id.trim().to_owned();
        if provider_id.is_empty()
            || provider_id.len() > MAX_PROVIDER_ID_LEN
            || !provider_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(OidcConfigError::BadProviderId(provider_id));
        }
        let scopes_text = var("OIDC_SCOPES").unwrap_or_else(|| "openid email profile".to_owned());
        let mut scopes: Vec<String> = Vec::new();
        for s in scopes_text.split([' ', ',']).filter(|s| !s.is_empty()) {
            if !scopes.iter().any(|have| have == s) {
                scopes.push(s.to_owned());
            }
        }
        if !scopes.iter().any(|s| s == "openid") {
            return Err(OidcConfigError::ScopesWithoutOpenid(scopes_text));
        }
        let pkce = match var("OIDC_PKCE") {
            None => true,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(OidcConfigError::BadPkce(v)),
            },
        };
        let redirect_uri = callback_url(app_url, &provider_id)?;
        Ok(Some(OidcSettings {
            client_id: client_id.trim().to_owned(),
            client_secret,
            discovery_url,
            authorization_url,
            provider_id,
            scopes,
            pkce,
            redirect_uri,
            app_url: app_url.clone(),
        }))
    }

    /// The `OIDC_PROVIDER_ID`, the last segment of the callback path.
    pub fn provider_id(&self) -> &str {
        &self.provider_id
    }

    /// The callback URL to register at the provider:
    /// `APP_URL` + `/api/auth/oauth2/callback/<OIDC_PROVIDER_ID>`.
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn discovery_url(&self) -> &Url {
        &self.discovery_url
    }

    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    pub fn pkce(&self) -> bool {
        self.pkce
    }
}

fn http_url(variable: &'static str, value: &str) -> Result<Url, OidcConfigError> {
    let bad = |reason: String| OidcConfigError::BadUrl {
        variable,
        value: value.to_owned(),
        reason,
    };
    let url = Url::parse(value).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("expected http:// or https:// and a host".into()));
    }
    if url.fragment().is_some() {
        return Err(bad("a fragment (#…) is not allowed".into()));
    }
    Ok(url)
}

/// `APP_URL` (path prefix kept) + `api/auth/oauth2/callback/<provider_id>`.
fn callback_url(app_url: &Url, provider_id: &str) -> Result<Url, OidcConfigError> {
    let bad = |reason: &str| OidcConfigError::BadUrl {
        variable: "APP_URL",
        value: app_url.to_string(),
        reason: reason.to_owned(),
    };
    if !matches!(app_url.scheme(), "http" | "https") || app_url.host_str().is_none() {
        return Err(bad("expected http:// or https:// and a host"));
    }
    let mut url = app_url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| bad("it cannot carry a path"))?
        .pop_if_empty()
        .extend(["api", "auth", "oauth2", "callback", provider_id]);
    Ok(url)
}

/// `return_to` if it is a same-site relative path: one leading `/`, not `//`, no backslash,
/// no control characters (so no scheme and no other host); else `None`.
pub fn sanitize_return_to(return_to: &str) -> Option<String> {
    let ok = return_to.starts_with('/')
        && !return_to.starts_with("//")
        && !return_to.contains('\\')
        && !return_to.chars().any(char::is_control)
        && return_to.len() <= 2048;
    ok.then(|| return_to.to_owned())
}

// ---------------------------------------------------------------------------------------
// Errors

/// Why a single sign-on could not be begun or finished. The `Display` is plain text for a
/// person (the caller HTML-escapes it); values from the provider are reduced to printable
/// ASCII and shortened.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error(
        "the identity provider's discovery document at {url} could not be fetched ({reason}); \
         check OIDC_DISCOVERY_URL and that the gateway can reach it"
    )]
    DiscoveryUnreachable { url: String, reason: String },
    #[error(
        "the document at {url} is not an OpenID Provider discovery document ({reason}); \
         OIDC_DISCOVERY_URL must point at the provider's .well-known/openid-configuration"
    )]
    BadDiscovery { url: String, reason: String },
    #[error(
        "the identity provider's signing keys at {url} could not be fetched ({reason}); \
         check the provider named by OIDC_DISCOVERY_URL"
    )]
    Jwks { url: String, reason: String },
    #[error(
        "the identity provider accepts none of the client authentication methods the gateway \
         supports (client_secret_basic, client_secret_post); it offers: {offered}. Check \
         OIDC_DISCOVERY_URL and the client's settings at the provider"
    )]
    UnsupportedClientAuth { offered: String },
    #[error(
        "this sign-in callback is for provider {in_path:?}, but OIDC_PROVIDER_ID is \
         {configured:?}; register the callback URL {redirect_uri} at the provider, or set \
         OIDC_PROVIDER_ID to match"
    )]
    ProviderMismatch {
        in_path: String,
        configured: String,
        redirect_uri: String,
    },
    #[error(
        "this browser did not send the sign-in cookie. Most often the gateway is opened at an \
         address other than APP_URL ({app_url}), so the cookie was set for another origin: \
         open the gateway at APP_URL or set APP_URL to the address in the browser. Cookies \
         must also be enabled. Then start the sign-in again"
    )]
    MissingBrowserCookie { app_url: String },
    #[error(
        "this sign-in is unknown or was already used (each one works once); start the sign-in \
         again"
    )]
    UnknownState,
    #[error("this sign-in took longer than 10 minutes and expired; start the sign-in again")]
    ExpiredState,
    #[error(
        "this sign-in was started in another browser, so it is refused here (a link from \
         someone else can sign you in as them); start the sign-in again in this browser"
    )]
    BrowserMismatch,
    #[error("the sign-in callback is malformed: {0}; start the sign-in again")]
    BadCallback(String),
    #[error("the identity provider refused the sign-in: {}", provider_refusal(.error, .description.as_deref(), .redirect_uri))]
    Provider {
        error: String,
        description: Option<String>,
        redirect_uri: String,
    },
    #[error(
        "the identity provider's issuer does not match ({detail}); OIDC_DISCOVERY_URL must be \
         the discovery document of the provider that issues the tokens"
    )]
    IssuerMismatch { detail: String },
    #[error(
        "the identity provider's token endpoint could not be reached ({0}); check the provider \
         named by OIDC_DISCOVERY_URL"
    )]
    TokenEndpoint(String),
    #[error(
        "the identity provider refused the gateway's client credentials (invalid_client{}); \
         check OIDC_CLIENT_ID and OIDC_CLIENT_SECRET against the client registered at the \
         provider",
        shown_description(.0.as_deref())
    )]
    InvalidClient(Option<String>),
    #[error(
        "the identity provider refused the authorization code (invalid_grant{}): it was \
         already used (a replayed callback), expired, or issued for another redirect URI or \
         PKCE verifier; start the sign-in again",
        shown_description(.0.as_deref())
    )]
    InvalidGrant(Option<String>),
    #[error(
        "the identity provider refused the code exchange: {}{}",
        printable(.error),
        shown_description(.description.as_deref())
    )]
    CodeRejected {
        error: String,
        description: Option<String>,
    },
    #[error("the identity provider's token response is malformed ({0})")]
    BadTokenResponse(String),
    #[error("the identity provider returned no ID token; is \"openid\" in OIDC_SCOPES?")]
    NoIdToken,
    #[error("the ID token's signature does not verify ({0})")]
    IdTokenSignature(String),
    #[error(
        "the ID token was issued for another client ({0}); it is not for OIDC_CLIENT_ID, so \
         it is refused"
    )]
    IdTokenAudience(String),
    #[error(
        "the ID token has expired ({0}); if this repeats, check the clocks of the gateway and \
         the identity provider"
    )]
    IdTokenExpired(String),
    #[error(
        "the ID token does not belong to this sign-in (nonce mismatch: {0}); start the \
         sign-in again"
    )]
    IdTokenNonce(String),
    #[error("the ID token is invalid ({0})")]
    IdToken(String),
    #[error("the identity provider's userinfo answer is unusable ({0})")]
    UserInfo(String),
    #[error("the sign-in could not be recorded: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl OidcError {
    /// The environment variable to fix, when the fix is one.
    pub fn variable(&self) -> Option<&'static str> {
        match self {
            OidcError::DiscoveryUnreachable { .. }
            | OidcError::BadDiscovery { .. }
            | OidcError::Jwks { .. }
            | OidcError::UnsupportedClientAuth { .. }
            | OidcError::IssuerMismatch { .. }
            | OidcError::TokenEndpoint(_) => Some("OIDC_DISCOVERY_URL"),
            OidcError::ProviderMismatch { .. } => Some("OIDC_PROVIDER_ID"),
            OidcError::MissingBrowserCookie { .. } => Some("APP_URL"),
            OidcError::InvalidClient(_) => Some("OIDC_CLIENT_SECRET"),
            OidcError::IdTokenAudience(_) => Some("OIDC_CLIENT_ID"),
            OidcError::NoIdToken => Some("OIDC_SCOPES"),
            OidcError::Provider { error, .. } => match error.as_str() {
                "invalid_client" | "unauthorized_client" => Some("OIDC_CLIENT_ID"),
                "invalid_scope" => Some("OIDC_SCOPES"),
                _ if mentions_redirect_uri(self) => Some("APP_URL"),
                _ => None,
            },
            _ => None,
        }
    }

    /// The HTTP status of the page that shows this error.
    pub fn status(&self) -> StatusCode {
        match self {
            OidcError::ProviderMismatch { .. } => StatusCode::NOT_FOUND,
            OidcError::MissingBrowserCookie { .. }
            | OidcError::UnknownState
            | OidcError::ExpiredState
            | OidcError::BadCallback(_)
            | OidcError::InvalidGrant(_)
            | OidcError::IdTokenNonce(_) => StatusCode::BAD_REQUEST,
            OidcError::BrowserMismatch => StatusCode::FORBIDDEN,
            OidcError::Provider { error, .. } if error == "access_denied" => StatusCode::FORBIDDEN,
            OidcError::Store(_) | OidcError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

fn mentions_redirect_uri(e: &OidcError) -> bool {
    match e {
        OidcError::Provider {
            error, description, ..
        } => {
            error.contains("redirect_uri")
                || description
                    .as_deref()
                    .is_some_and(|d| d.to_ascii_lowercase().contains("redirect_uri"))
        }
        _ => false,
    }
}

/// A provider's value, shown: printable ASCII only (RFC 6749's error charset plus quotes),
/// at most [`MAX_SHOWN`] characters.
fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_SHOWN)
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() > MAX_SHOWN {
        out.push('…');
    }
    out
}

fn shown_description(d: Option<&str>) -> String {
    d.map(|d| format!(": {}", printable(d))).unwrap_or_default()
}

fn provider_refusal(error: &str, description: Option<&str>, redirect_uri: &str) -> String {
    let mut out = format!("{}{}", printable(error), shown_description(description));
    let mentions = error.contains("redirect_uri")
        || description.is_some_and(|d| d.to_ascii_lowercase().contains("redirect_uri"));
    match error {
        "access_denied" => out.push_str(" (the sign-in was declined or not allowed)"),
        "invalid_client" | "unauthorized_client" => out.push_str(
            "; check OIDC_CLIENT_ID and that the client may use the authorization code flow",
        ),
        "invalid_scope" => out.push_str("; check OIDC_SCOPES"),
        _ if mentions => out.push_str(&format!(
            "; register exactly {redirect_uri} as a redirect URI of the client at the provider \
             (it is APP_URL + /api/auth/oauth2/callback/<OIDC_PROVIDER_ID>)"
        )),
        _ => {}
    }
    out
}

// ---------------------------------------------------------------------------------------
// HTTP client for openidconnect: no redirects, timeouts, bounded bodies

/// Why a request to the provider failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Transport(String),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

#[derive(Clone)]
struct Http {
    /// `Err` (why) if the client could not be built; every request then fails with it.
    // why: never fall back to a default client, which would follow redirects.
    client: Result<reqwest::Client, String>,
    max_bytes: usize,
}

impl Http {
    fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("the HTTP client could not be built: {}", error_chain(&e)));
        Http {
            client,
            max_bytes: MAX_RESPONSE_BYTES,
        }
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| HttpError::Transport(e.clone()))?;
        let (parts, body) = request.into_parts();
        let mut resp = client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| HttpError::Transport(error_chain(&e)))?;
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(HttpError::TooLarge(self.max_bytes));
        }
        let status = resp.status();
        let headers = std::mem::take(resp.headers_mut());
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| HttpError::Transport(error_chain(&e)))?
        {
            if buf.len() + chunk.len() > self.max_bytes {
                return Err(HttpError::TooLarge(self.max_bytes));
            }
            buf.extend_from_slice(&chunk);
        }
        let mut out = http::Response::new(buf);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// An error and its sources, `: `-separated (reqwest's own text omits the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

// ---------------------------------------------------------------------------------------
// The relying party

/// Where to send the browser, and the browser-binding cookie's value to set with it.
#[derive(Debug, Clone)]
pub struct Begin {
    pub redirect: Url,
    /// Set as cookie [`BROWSER_COOKIE`] with [`Oidc::browser_cookie_header`].
    pub browser_cookie: String,
}

/// A finished sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub identity: VerifiedIdentity,
    /// The same-site path given to [`Oidc::begin`], if any.
    pub return_to: Option<String>,
}

/// Who signed in, as the provider vouches: key users on (`issuer`, `subject`); trust
/// `email` for linking only when `email_verified`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// The client as built from the provider's metadata.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

struct Discovered {
    metadata: CoreProviderMetadata,
    fetched_at: Instant,
}

/// The relying party: settings, HTTP client and the cached discovery document.
pub struct Oidc {
    settings: OidcSettings,
    http: Http,
    discovered: tokio::sync::Mutex<Option<Arc<Discovered>>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Self {
        Oidc {
            settings,
            http: Http::new(),
            discovered: tokio::sync::Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// The `Set-Cookie` value for the browser-binding cookie: HttpOnly, SameSite=Lax (the
    /// provider's redirect back is a top-level GET from another site), limited to the callback
    /// path, expiring with the login, Secure when `APP_URL` is https.
    pub fn browser_cookie_header(&self, value: &str) -> String {
        format!(
            "{BROWSER_COOKIE}={value}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{}",
            self.settings.redirect_uri.path(),
            LOGIN_TTL.as_secs(),
            self.secure_attr()
        )
    }

    /// The `Set-Cookie` value that removes the browser-binding cookie (after the callback).
    pub fn clear_browser_cookie_header(&self) -> String {
        format!(
            "{BROWSER_COOKIE}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax{}",
            self.settings.redirect_uri.path(),
            self.secure_attr()
        )
    }

    fn secure_attr(&self) -> &'static str {
        if self.settings.app_url.scheme() == "https" {
            "; Secure"
        } else {
            ""
        }
    }

    /// Starts a sign-in: discovery (cached), a pending login stored in the database, the URL
    /// to send the browser to, and the browser-binding cookie's value (see
    /// [`Oidc::browser_cookie_header`]). A `return_to` that is not a same-site path is
    /// dropped.
    pub async fn begin(&self, store: &Store, return_to: Option<&str>) -> Result<Begin, OidcError> {
        let discovered = self.discovered(false).await?;
        let client = self.client(&discovered.metadata)?;
        let state = random_token()?;
        let nonce = random_token()?;
        let browser_cookie = random_token()?;
        let verifier = if self.settings.pkce {
            Some(random_token()?)
        } else {
            None
        };
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            {
                let state = state.clone();
                move || CsrfToken::new(state)
            },
            {
                let nonce = nonce.clone();
                move || Nonce::new(nonce)
            },
        );
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(v) = &verifier {
            request = request.set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(
                &PkceCodeVerifier::new(v.clone()),
            ));
        }
        let (redirect, _, _) = request.url();
        let now = now_ms();
        store
            .insert_oidc_login(
                &OidcLogin {
                    state_hash: sha256_hex(&state),
                    browser_hash: sha256_hex(&browser_cookie),
                    nonce,
                    pkce_verifier: verifier,
                    return_to: return_to.and_then(sanitize_return_to),
                    created_at: now,
                    expires_at: now
                        .saturating_add(i64::try_from(LOGIN_TTL.as_millis()).unwrap_or(i64::MAX)),
                },
                MAX_PENDING_OIDC_LOGINS,
            )
            .await?;
        Ok(Begin {
            redirect,
            browser_cookie,
        })
    }

    /// Finishes a sign-in from the callback's path segment, raw query string and the
    /// browser-binding cookie (`None` if the request had none). The pending login is taken
    /// (single use) whatever the outcome once the cookie is present.
    pub async fn finish(
        &self,
        store: &Store,
        provider_id_in_path: &str,
        query: &str,
        browser_cookie: Option<&str>,
    ) -> Result<Finished, OidcError> {
        if provider_id_in_path != self.settings.provider_id {
            return Err(OidcError::ProviderMismatch {
                in_path: printable(provider_id_in_path),
                configured: self.settings.provider_id.clone(),
                redirect_uri: self.settings.redirect_uri.to_string(),
            });
        }
        let params = CallbackParams::parse(query)?;
        let Some(state) = params.state.as_deref() else {
            if let Some(error) = params.error {
                return Err(self.provider_error(error, params.error_description));
            }
            return Err(OidcError::BadCallback("it carries no state".into()));
        };
        let Some(cookie) = browser_cookie.filter(|c| !c.is_empty()) else {
            return Err(OidcError::MissingBrowserCookie {
                app_url: self.settings.app_url.to_string(),
            });
        };
        let login = store
            .take_oidc_login(&sha256_hex(state))
            .await?
            .ok_or(OidcError::UnknownState)?;
        if !constant_time_eq(sha256_hex(cookie).as_bytes(), login.browser_hash.as_bytes()) {
            return Err(OidcError::BrowserMismatch);
        }
        if login.expires_at <= now_ms() {
            return Err(OidcError::ExpiredState);
        }
        if let Some(error) = params.error {
            return Err(self.provider_error(error, params.error_description));
        }
        let discovered = self.discovered(false).await?;
        // RFC 9207: a provider that names itself in the response must be ours (mix-up).
        if let Some(iss) = &params.iss
            && iss.as_str() != discovered.metadata.issuer().as_str()
        {
            return Err(OidcError::IssuerMismatch {
                detail: format!(
                    "the callback names issuer {:?}, the discovery document {:?}",
                    printable(iss),
                    discovered.metadata.issuer().as_str()
                ),
            });
        }
        let code = params
            .code
            .ok_or_else(|| OidcError::BadCallback("it carries no code".into()))?;
        let client = self.client(&discovered.metadata)?;
        let mut exchange = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| OidcError::BadDiscovery {
                url: self.settings.discovery_url.to_string(),
                reason: e.to_string(),
            })?;
        if let Some(v) = login.pkce_verifier {
            exchange = exchange.set_pkce_verifier(PkceCodeVerifier::new(v));
        }
        let tokens = exchange
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = tokens.id_token().ok_or(OidcError::NoIdToken)?;
        let nonce = Nonce::new(login.nonce);

        let verified = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // The provider may have rotated its keys: fetch them again, once.
                let fresh = self.discovered(true).await?;
                let client = self.client(&fresh.metadata)?;
                id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .cloned()
            }
            other => other.cloned(),
        }
        .map_err(claims_error)?;
        if let Some(azp) = verified.authorized_party()
            && azp.as_str() != self.settings.client_id
        {
            return Err(OidcError::IdTokenAudience(format!(
                "its authorized party (azp) is {:?}",
                printable(azp.as_str())
            )));
        }

        let mut identity = VerifiedIdentity {
            issuer: verified.issuer().as_str().to_owned(),
            subject: verified.subject().as_str().to_owned(),
            email: verified.email().map(|e| e.as_str().to_owned()),
            email_verified: verified.email_verified().unwrap_or(false),
            name: verified
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
        };
        if (identity.email.is_none() || identity.name.is_none())
            && let Ok(request) = client.user_info(
                AccessToken::new(tokens.access_token().secret().clone()),
                Some(verified.subject().clone()),
            )
        {
            let info: CoreUserInfoClaims =
                request
                    .request_async(&self.http)
                    .await
                    .map_err(|e| match e {
                        UserInfoError::ClaimsVerification(e) => OidcError::UserInfo(e.to_string()),
                        UserInfoError::Request(e) => OidcError::UserInfo(e.to_string()),
                        UserInfoError::Response(status, _, _) => {
                            OidcError::UserInfo(format!("HTTP {status}"))
                        }
                        other => OidcError::UserInfo(error_chain(&other)),
                    })?;
            if identity.email.is_none()
                && let Some(email) = info.email()
            {
                identity.email = Some(email.as_str().to_owned());
                identity.email_verified = info.email_verified().unwrap_or(false);
            }
            if identity.name.is_none() {
                identity.name = info
                    .name()
                    .and_then(|n| n.get(None))
                    .map(|n| n.as_str().to_owned());
            }
        }
        Ok(Finished {
            identity,
            return_to: login.return_to,
        })
    }

    fn provider_error(&self, error: String, description: Option<String>) -> OidcError {
        OidcError::Provider {
            error,
            description,
            redirect_uri: self.settings.redirect_uri.to_string(),
        }
    }

    fn client(&self, metadata: &CoreProviderMetadata) -> Result<Client, OidcError> {
        let redirect = RedirectUrl::from_url(self.settings.redirect_uri.clone());
        let mut client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.settings.client_secret.clone())),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(auth_type(metadata)?);
        if let Some(url) = &self.settings.authorization_url {
            client = client.set_auth_uri(AuthUrl::from_url(url.clone()));
        }
        Ok(client)
    }

    /// The discovery document with its JWKS: cached for [`DISCOVERY_TTL`], fetched again
    /// when stale or when `refresh`. A failed fetch of a stale document keeps the old one.
    async fn discovered(&self, refresh: bool) -> Result<Arc<Discovered>, OidcError> {
        let mut slot = self.discovered.lock().await;
        if !refresh
            && let Some(d) = slot.as_ref()
            && d.fetched_at.elapsed() < DISCOVERY_TTL
        {
            return Ok(d.clone());
        }
        match self.discover().await {
            Ok(metadata) => {
                let d = Arc::new(Discovered {
                    metadata,
                    fetched_at: Instant::now(),
                });
                *slot = Some(d.clone());
                Ok(d)
            }
            Err(e) => match slot.as_ref() {
                Some(old) if !refresh => {
                    tracing::warn!(error = %e, "OIDC discovery refresh failed; using the previous document");
                    Ok(old.clone())
                }
                _ => Err(e),
            },
        }
    }

    async fn discover(&self) -> Result<CoreProviderMetadata, OidcError> {
        let url = self.settings.discovery_url.to_string();
        let request = http::Request::builder()
            .method(http::Method::GET)
            .uri(&url)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| OidcError::BadDiscovery {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let resp = self
            .http
            .send(request)
            .await
            .map_err(|e| OidcError::DiscoveryUnreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if resp.status() != StatusCode::OK {
            return Err(OidcError::DiscoveryUnreachable {
                url,
                reason: format!("HTTP {}", resp.status()),
            });
        }
        let metadata: CoreProviderMetadata =
            serde_json::from_slice(resp.body()).map_err(|e| OidcError::BadDiscovery {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if metadata.token_endpoint().is_none() {
            return Err(OidcError::BadDiscovery {
                url,
                reason: "it names no token_endpoint".into(),
            });
        }
        let jwks_url = metadata.jwks_uri().url().to_string();
        let jwks = JsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| OidcError::Jwks {
                url: jwks_url,
                reason: error_chain(&e),
            })?;
        Ok(metadata.set_jwks(jwks))
    }
}

/// `client_secret_basic` unless the provider offers only `client_secret_post` (no list
/// means basic, the default of RFC 8414).
fn auth_type(metadata: &CoreProviderMetadata) -> Result<openidconnect::AuthType, OidcError> {
    let Some(methods) = metadata.token_endpoint_auth_methods_supported() else {
        return Ok(openidconnect::AuthType::BasicAuth);
    };
    if methods.contains(&CoreClientAuthMethod::ClientSecretBasic) {
        Ok(openidconnect::AuthType::BasicAuth)
    } else if methods.contains(&CoreClientAuthMethod::ClientSecretPost) {
        Ok(openidconnect::AuthType::RequestBody)
    } else {
        Err(OidcError::UnsupportedClientAuth {
            offered: methods
                .iter()
                .map(|m| printable(m.as_ref()))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

fn token_error(
    e: RequestTokenError<HttpError, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
) -> OidcError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let description = r.error_description().cloned();
            match r.error() {
                CoreErrorResponseType::InvalidClient => OidcError::InvalidClient(description),
                CoreErrorResponseType::InvalidGrant => OidcError::InvalidGrant(description),
                other => OidcError::CodeRejected {
                    error: other.as_ref().to_owned(),
                    description,
                },
            }
        }
        RequestTokenError::Request(e) => OidcError::TokenEndpoint(e.to_string()),
        RequestTokenError::Parse(e, _) => OidcError::BadTokenResponse(e.to_string()),
        RequestTokenError::Other(e) => OidcError::BadTokenResponse(e),
    }
}

fn claims_error(e: ClaimsVerificationError) -> OidcError {
    match e {
        ClaimsVerificationError::InvalidAudience(m) => OidcError::IdTokenAudience(m),
        ClaimsVerificationError::InvalidIssuer(m) => OidcError::IssuerMismatch { detail: m },
        ClaimsVerificationError::Expired(m) => OidcError::IdTokenExpired(m),
        ClaimsVerificationError::InvalidNonce(m) => OidcError::IdTokenNonce(m),
        ClaimsVerificationError::SignatureVerification(e) => {
            OidcError::IdTokenSignature(e.to_string())
        }
        other => OidcError::IdToken(other.to_string()),
    }
}

/// The callback's query: each parameter at most once.
#[derive(Debug, Default)]
struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

impl CallbackParams {
    fn parse(query: &str) -> Result<Self, OidcError> {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut p = CallbackParams::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "state" => &mut p.state,
                "code" => &mut p.code,
                "error" => &mut p.error,
                "error_description" => &mut p.error_description,
                "iss" => &mut p.iss,
                _ => continue,
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(OidcError::BadCallback(format!("{k} appears twice")));
            }
        }
        Ok(p)
    }
}

/// 32 random bytes, base64url: states, nonces, cookie values and PKCE verifiers (43 chars).
fn random_token() -> Result<String, OidcError> {
    use rand::TryRng;
    let mut bytes = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| OidcError::Internal(format!("cannot read OS randomness: {e}")))?;
    Ok(B64URL.encode(bytes))
}

fn sha256_hex(s: &str) -> String {
    use std::fmt::Write;
    Sha256::digest(s.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(
        vars: &[(&str, &str)],
        app_url: &str,
    ) -> Result<Option<OidcSettings>, OidcConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let app_url = Url::parse(app_url).expect("test APP_URL");
        OidcSettings::from_lookup(|k| map.get(k).cloned(), &app_url)
    }

    const BASE: [(&str, &str); 3] = [
        ("OIDC_CLIENT_ID", "metamcp"),
        ("OIDC_CLIENT_SECRET", "s3cret-value"),
        (
            "OIDC_DISCOVERY_URL",
            "https://idp.example.com/.well-known/openid-configuration",
        ),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v = BASE.to_vec();
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn nothing_set_is_no_sso() {
        assert!(settings(&[], "http://localhost:12008").unwrap().is_none());
        assert!(
            settings(&[("OIDC_CLIENT_ID", " ")], "http://localhost:12008")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn missing_variables_are_named() {
        let err = settings(&[("OIDC_CLIENT_ID", "x")], "http://localhost:12008").unwrap_err();
        assert_eq!(
            err,
            OidcConfigError::Missing {
                missing: vec!["OIDC_CLIENT_SECRET", "OIDC_DISCOVERY_URL"]
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("OIDC_CLIENT_SECRET, OIDC_DISCOVERY_URL"),
            "{msg}"
        );
        assert_eq!(err.variable(), "OIDC_CLIENT_SECRET");
        let err = settings(&BASE[1..], "http://localhost:12008").unwrap_err();
        assert_eq!(err.variable(), "OIDC_CLIENT_ID");
    }

    #[test]
    fn defaults_and_callback() {
        let s = settings(&BASE, "http://localhost:12008").unwrap().unwrap();
        assert_eq!(s.provider_id(), "oidc");
        assert_eq!(s.scopes(), ["openid", "email", "profile"]);
        assert!(s.pkce());
        assert_eq!(
            s.redirect_uri().as_str(),
            "http://localhost:12008/api/auth/oauth2/callback/oidc"
        );
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cret-value"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn app_url_path_prefix_is_kept() {
        for app in [
            "https://gw.example.com/metamcp",
            "https://gw.example.com/metamcp/",
            "https://gw.example.com/metamcp/?x=1#frag",
        ] {
            let s = settings(&with(&[("OIDC_PROVIDER_ID", "corp-sso")]), app)
                .unwrap()
                .unwrap();
            assert_eq!(
                s.redirect_uri().as_str(),
                "https://gw.example.com/metamcp/api/auth/oauth2/callback/corp-sso",
                "{app}"
            );
        }
        let err = settings(&BASE, "mailto:someone@example.com").unwrap_err();
        assert_eq!(err.variable(), "APP_URL");
    }

    #[test]
    fn provider_id_is_validated() {
        for bad in ["Okta", "a/b", "a b", "x?y", "../x", &"a".repeat(65)] {
            let err = settings(
                &with(&[(
                    "OIDC_PROVIDER_ID",
                    Box::leak(bad.to_owned().into_boxed_str()),
                )]),
                "http://localhost:12008",
            )
            .unwrap_err();
            assert_eq!(err.variable(), "OIDC_PROVIDER_ID", "{bad}");
        }
        for good in ["okta", "keycloak_1", "my-idp", &"a".repeat(64)] {
            let s = settings(
                &with(&[(
                    "OIDC_PROVIDER_ID",
                    Box::leak(good.to_owned().into_boxed_str()),
                )]),
                "http://localhost:12008",
            )
            .unwrap()
            .unwrap();
            assert_eq!(s.provider_id(), good);
        }
    }

    #[test]
    fn pkce_is_parsed_strictly() {
        for (text, want) in [
            ("true", true),
            ("1", true),
            ("YES", true),
            ("false", false),
            ("0", false),
            ("no", false),
        ] {
            let s = settings(
                &with(&[("OIDC_PKCE", Box::leak(text.to_owned().into_boxed_str()))]),
                "http://localhost:12008",
            )
            .unwrap()
            .unwrap();
            assert_eq!(s.pkce(), want, "{text}");
        }
        let err = settings(&with(&[("OIDC_PKCE", "maybe")]), "http://localhost:12008").unwrap_err();
        assert_eq!(err, OidcConfigError::BadPkce("maybe".into()));
        assert!(err.to_string().contains("OIDC_PKCE"));
    }

    #[test]
    fn scopes_must_contain_openid() {
        let err =
            settings(&with(&[("OIDC_SCOPES", "email profile")]), "http://x.test").unwrap_err();
        assert_eq!(err.variable(), "OIDC_SCOPES");
        let s = settings(
            &with(&[("OIDC_SCOPES", "openid,groups openid")]),
            "http://x.test",
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.scopes(), ["openid", "groups"]);
    }

    #[test]
    fn urls_are_checked() {
        let err = settings(
            &[
                ("OIDC_CLIENT_ID", "a"),
                ("OIDC_CLIENT_SECRET", "b"),
                ("OIDC_DISCOVERY_URL", "idp.example.com/.well-known"),
            ],
            "http://x.test",
        )
        .unwrap_err();
        assert_eq!(err.variable(), "OIDC_DISCOVERY_URL");
        let err = settings(
            &with(&[("OIDC_AUTHORIZATION_URL", "ftp://idp.example.com/auth")]),
            "http://x.test",
        )
        .unwrap_err();
        assert_eq!(err.variable(), "OIDC_AUTHORIZATION_URL");
    }

    #[test]
    fn return_to_is_same_site_only() {
        for good in ["/", "/ui/servers?x=1#top", "/a/b"] {
            assert_eq!(sanitize_return_to(good).as_deref(), Some(good));
        }
        for bad in [
            "",
            "ui",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "/a\nb",
            "/a\tb",
        ] {
            assert_eq!(sanitize_return_to(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn callback_params() {
        let p = CallbackParams::parse("?code=a%20b&state=s&iss=https%3A%2F%2Fidp&x=1").unwrap();
        assert_eq!(p.code.as_deref(), Some("a b"));
        assert_eq!(p.state.as_deref(), Some("s"));
        assert_eq!(p.iss.as_deref(), Some("https://idp"));
        assert!(matches!(
            CallbackParams::parse("state=a&state=b"),
            Err(OidcError::BadCallback(_))
        ));
    }

    #[test]
    fn provider_values_are_shown_printable_and_short() {
        let e = OidcError::Provider {
            error: "invalid_request".into(),
            description: Some(format!("bad <script>\u{7}\n{}", "x".repeat(400))),
            redirect_uri: "https://gw/cb".into(),
        };
        let msg = e.to_string();
        assert!(!msg.contains('\n') && !msg.contains('\u{7}'), "{msg}");
        assert!(msg.len() < 500, "{msg}");
        let e = OidcError::Provider {
            error: "invalid_request".into(),
            description: Some("redirect_uri did not match".into()),
            redirect_uri: "https://gw.example.com/api/auth/oauth2/callback/oidc".into(),
        };
        assert!(
            e.to_string()
                .contains("register exactly https://gw.example.com/api/auth/oauth2/callback/oidc")
        );
        assert_eq!(e.variable(), Some("APP_URL"));
    }

    #[test]
    fn cookie_headers() {
        let s = settings(&BASE, "https://gw.example.com/mm/")
            .unwrap()
            .unwrap();
        let oidc = Oidc::new(s);
        let set = oidc.browser_cookie_header("abc");
        assert_eq!(
            set,
            "metamcp_oidc=abc; Path=/mm/api/auth/oauth2/callback/oidc; Max-Age=600; HttpOnly; \
             SameSite=Lax; Secure"
        );
        assert!(oidc.clear_browser_cookie_header().contains("Max-Age=0"));
    }

    #[test]
    fn tokens_and_hashes() {
        let a = random_token().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token().unwrap());
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(constant_time_eq(b"ab", b"ab"));
        assert!(!constant_time_eq(b"ab", b"ac"));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
