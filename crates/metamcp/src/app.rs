//! `metamcp serve`: opens the store, starts the gateway, listens — on `METAMCP_BIND`, and on
//! `METAMCP_ADMIN_BIND` for the admin API when that is set — and on SIGINT/SIGTERM stops
//! accepting, ends client sessions, lets in-flight calls finish (bounded), then stops every
//! upstream process group before exiting. Connections are accepted and bounded by
//! `metamcp_server::listener` (caps, header and idle timeouts), the same on both listeners.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metamcp_server::auth::AllowedOrigins;
use metamcp_server::{Faces, Gateway, GatewayOptions, listener};
use tokio::net::TcpListener;

use crate::config::StoreArgs;

/// How long in-flight requests get after a stop signal.
const GRACE: Duration = Duration::from_secs(10);

/// Where the admin API (`/api/v1/*`) is served: `METAMCP_ADMIN_API` and `METAMCP_ADMIN_BIND`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AdminApi {
    /// On the public listener (the default).
    Public,
    /// Only on its own listener at this address.
    Bind(String),
    /// Nowhere.
    Off,
}

impl AdminApi {
    fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let set = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mode = set("METAMCP_ADMIN_API").map(|m| m.to_ascii_lowercase());
        match (mode.as_deref(), set("METAMCP_ADMIN_BIND")) {
            (None | Some("on"), None) => Ok(Self::Public),
            (None | Some("on"), Some(addr)) => Ok(Self::Bind(addr)),
            (Some("off"), None) => Ok(Self::Off),
            (Some("off"), Some(_)) => anyhow::bail!(
                "METAMCP_ADMIN_API=off switches the admin API off, yet METAMCP_ADMIN_BIND gives it a listener; unset one of them"
            ),
            (Some(other), _) => {
                anyhow::bail!("METAMCP_ADMIN_API={other:?} is not `on` or `off`")
            }
        }
    }
}

/// `DISABLE_SIGNUP`, `DISABLE_SSO_SIGNUP`, `DISABLE_BASIC_AUTH` when set (they win over the
/// stored settings); a value that is not a boolean names its variable.
fn signup_env(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<metamcp_server::settings::SignupOverrides> {
    let flag = |name: &str| -> anyhow::Result<Option<bool>> {
        match lookup(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        {
            None => Ok(None),
            Some(v) => metamcp_server::settings::parse_bool(&v)
                .map(Some)
                .with_context(|| format!("{name}={v:?} is not true or false")),
        }
    };
    Ok(metamcp_server::settings::SignupOverrides {
        disable_signup: flag("DISABLE_SIGNUP")?,
        disable_sso_signup: flag("DISABLE_SSO_SIGNUP")?,
        disable_basic_auth: flag("DISABLE_BASIC_AUTH")?,
    })
}

pub async fn serve(store_args: &StoreArgs, bind: &str) -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok();
    // why: read before the store opens, so a bad value fails before anything is touched.
    let bootstrap = match crate::bootstrap::from_env(&env) {
        Ok(b) => b,
        Err(e) => {
            let hard = env("BOOTSTRAP_FAIL_HARD")
                .and_then(|v| metamcp_server::settings::parse_bool(&v))
                .unwrap_or(false);
            if hard || e.variable == "BOOTSTRAP_FAIL_HARD" {
                anyhow::bail!("bootstrap refused (BOOTSTRAP_FAIL_HARD): {e}");
            }
            tracing::error!(
                "bootstrap skipped: {e} (BOOTSTRAP_FAIL_HARD=true refuses to start instead)"
            );
            eprintln!("error: bootstrap skipped: {e}");
            None
        }
    };
    let store = store_args.open().await?;
    if let Some(plan) = &bootstrap {
        match crate::bootstrap::apply(&store, plan).await {
            Ok(report) => {
                for l in &report.lines {
                    tracing::info!("{l}");
                }
                print!("{}", crate::bootstrap::render(&report));
            }
            Err(e) if plan.fail_hard() => {
                anyhow::bail!("bootstrap failed (BOOTSTRAP_FAIL_HARD): {e:#}")
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "bootstrap failed; nothing of it was applied, starting anyway \
                 (BOOTSTRAP_FAIL_HARD=true refuses to start instead)"
            ),
        }
    }
    let mut opts = GatewayOptions::default();
    if let Some(u) = env("APP_URL").filter(|u| !u.is_empty()) {
        opts.app_url =
            url::Url::parse(&u).with_context(|| format!("APP_URL {u:?} is not a URL"))?;
    }
    if let Some(h) = env("METAMCP_ALLOWED_HOSTS") {
        opts.extra_allowed_hosts = h
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    if let Some(o) = env("METAMCP_ALLOWED_ORIGINS") {
        opts.extra_allowed_origins =
            AllowedOrigins::parse_list(&o).context("METAMCP_ALLOWED_ORIGINS")?;
    }
    if let Some(p) = env("METAMCP_TRUSTED_PROXIES") {
        opts.trusted_proxies = p
            .parse()
            .with_context(|| format!("METAMCP_TRUSTED_PROXIES {p:?}"))?;
    }
    opts.limits = metamcp_server::limits::Limits::from_env(&env).map_err(|bad| {
        let all: Vec<String> = bad.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("bad limits: {}", all.join("; "))
    })?;
    opts.audit = metamcp_server::audit::AuditOptions::from_env(env).map_err(anyhow::Error::msg)?;
    opts.accounts.signup_env = signup_env(&env)?;
    opts.accounts.oidc =
        metamcp_server::account::oidc::OidcSettings::from_lookup(env, &opts.app_url)
            .map_err(|e| anyhow::anyhow!("{e} (fix {})", e.variable()))?;
    if let Some(o) = &opts.accounts.oidc {
        tracing::info!(
            provider = o.provider_id(),
            redirect_uri = %o.redirect_uri(),
            "single sign-on on; register this redirect URI at the identity provider"
        );
    }
    let admin = AdminApi::from_env(&env)?;
    if let Some(v) = env("METAMCP_METRICS").filter(|v| !v.trim().is_empty()) {
        opts.metrics.disabled = !metamcp_server::settings::parse_bool(v.trim())
            .with_context(|| format!("METAMCP_METRICS must be on or off, not {v:?}"))?;
    }
    opts.metrics.token = env("METAMCP_METRICS_TOKEN").filter(|t| !t.trim().is_empty());
    let metrics_bind = env("METAMCP_METRICS_BIND").filter(|b| !b.trim().is_empty());
    if let Some(path) = env("METAMCP_EXTRA_CA_FILE").filter(|p| !p.trim().is_empty()) {
        let pem = std::fs::read(path.trim())
            .with_context(|| format!("METAMCP_EXTRA_CA_FILE: cannot read {path:?}"))?;
        opts.extra_ca_pem = Some(pem);
    }
    opts.metrics.own_listener = metrics_bind.is_some();

    // why: spans start only when an OTLP endpoint is configured; without one `opts.otel`
    // stays `None` and the request path only tests that.
    let telemetry = match crate::telemetry::from_env(&env)? {
        Some((telemetry, otel)) => {
            tracing::info!("OpenTelemetry tracing on (OTLP/HTTP)");
            opts.otel = Some(otel);
            Some(telemetry)
        }
        None => None,
    };

    let public = listen(bind).await?;
    let metrics_listener = match &metrics_bind {
        Some(addr) if !opts.metrics.disabled => Some(listen(addr).await?),
        _ => None,
    };
    let admin_listener = match &admin {
        AdminApi::Bind(addr) => Some(listen(addr).await?),
        AdminApi::Public | AdminApi::Off => None,
    };
    for l in std::iter::once(&public).chain(admin_listener.as_ref()) {
        let local = l.local_addr()?;
        if !local.ip().is_loopback() {
            opts.extra_allowed_hosts.push(local.ip().to_string());
        }
        opts.listening.push(local);
    }
    if let Some(l) = &metrics_listener {
        let local = l.local_addr()?;
        if !local.ip().is_loopback() {
            opts.extra_allowed_hosts.push(local.ip().to_string());
        }
    }
    let local = public.local_addr()?;
    let backend = store.backend().as_str();
    let gw = Gateway::start(store, opts).await?;
    let bounds = listener::Bounds::new(&gw.options().limits, gw.options().trusted_proxies.clone());
    let faces = match admin {
        AdminApi::Public => Faces::PublicAndAdmin,
        AdminApi::Bind(_) | AdminApi::Off => Faces::Public,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = vec![tokio::spawn(listener::serve(
        public,
        metamcp_server::router(gw.clone(), faces),
        bounds.clone(),
        stop.clone(),
    ))];
    if let Some(l) = admin_listener {
        let addr = l.local_addr()?;
        tracing::info!(address = %addr, "admin API listening on http://{addr}/api/v1/");
        say(&format!("metamcp admin API listening on http://{addr}"));
        tasks.push(tokio::spawn(listener::serve(
            l,
            metamcp_server::router(gw.clone(), Faces::Admin),
            bounds,
            stop.clone(),
        )));
    }
    if let Some(l) = metrics_listener {
        let addr = l.local_addr()?;
        tracing::info!(address = %addr, "metrics on http://{addr}/metrics");
        say(&format!("metamcp metrics on http://{addr}/metrics"));
        tasks.push(tokio::spawn(listener::serve(
            l,
            metamcp_server::endpoint::metrics_router(gw.clone()),
            listener::Bounds::new(&gw.options().limits, gw.options().trusted_proxies.clone()),
            stop.clone(),
        )));
    }
    if admin == AdminApi::Off {
        tracing::info!("admin API switched off (METAMCP_ADMIN_API=off)");
    }
    // A fresh instance without an admin: a one-time token lets the first sign-up from
    // another machine become admin (from this machine none is needed). Each start makes a
    // new one; it is void once an admin exists.
    let token = metamcp_server::account::browser::new_token();
    if gw.store().replace_setup_token(&token).await? {
        let register = gw
            .options()
            .app_url
            .join("register")
            .map(|u| u.to_string())
            .unwrap_or_default();
        tracing::info!("no admin yet: the first account made at {register} becomes admin");
        say(&format!(
            "metamcp has no admin yet: the first account made at {register} becomes admin. From \
             another machine it needs this one-time setup token: {token}"
        ));
    }
    tracing::info!(address = %local, database = backend, "metamcp listening on http://{local}");
    // The bound address on stdout too (last), for scripts and tests that bind port 0.
    say(&format!("metamcp listening on http://{local}"));

    let listeners = async move {
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "a listener task failed");
            }
        }
    };
    let mut listeners = std::pin::pin!(listeners);
    let mut ended = false;
    tokio::select! {
        () = wait_for_signal() => {}
        () = listeners.as_mut() => ended = true,
    }
    tracing::info!("stop requested; finishing in-flight requests");
    stop.cancel();
    // why: open GET streams would otherwise hold the graceful stop until the grace ends.
    gw.end_sessions();
    if !ended && tokio::time::timeout(GRACE, listeners).await.is_err() {
        tracing::warn!(
            "in-flight requests did not finish within {} s",
            GRACE.as_secs()
        );
    }
    stop_upstreams(&gw).await;
    if let Some(t) = telemetry {
        t.shutdown().await;
    }
    Ok(())
}

async fn listen(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// One line on stdout, flushed.
fn say(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn stop_upstreams(gw: &Arc<Gateway>) {
    gw.shutdown().await;
    gw.store().close().await;
    tracing::info!("metamcp stopped");
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(pairs: &[(&str, &str)]) -> anyhow::Result<AdminApi> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        AdminApi::from_env(&move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn admin_api_placement() {
        assert_eq!(admin(&[]).unwrap(), AdminApi::Public);
        assert_eq!(
            admin(&[("METAMCP_ADMIN_API", "on")]).unwrap(),
            AdminApi::Public
        );
        assert_eq!(
            admin(&[("METAMCP_ADMIN_API", "OFF")]).unwrap(),
            AdminApi::Off
        );
        assert_eq!(
            admin(&[("METAMCP_ADMIN_BIND", "127.0.0.1:9")]).unwrap(),
            AdminApi::Bind("127.0.0.1:9".into())
        );
        assert!(
            admin(&[
                ("METAMCP_ADMIN_API", "off"),
                ("METAMCP_ADMIN_BIND", "127.0.0.1:9")
            ])
            .is_err()
        );
        assert!(admin(&[("METAMCP_ADMIN_API", "maybe")]).is_err());
    }
}
