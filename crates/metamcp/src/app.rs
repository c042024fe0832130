//! `metamcp serve`: opens the store, starts the gateway, listens, and on SIGINT/SIGTERM
//! stops accepting, lets in-flight calls finish (bounded), then stops every upstream process
//! group before exiting.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use metamcp_server::{Gateway, GatewayOptions};

use crate::config::StoreArgs;

/// How long in-flight requests get after a stop signal.
const GRACE: Duration = Duration::from_secs(10);

pub async fn serve(store_args: &StoreArgs, bind: &str) -> anyhow::Result<()> {
    let store = store_args.open().await?;
    let mut opts = GatewayOptions::default();
    if let Ok(u) = std::env::var("APP_URL")
        && !u.is_empty()
    {
        opts.app_url =
            url::Url::parse(&u).with_context(|| format!("APP_URL {u:?} is not a URL"))?;
    }
    if let Ok(h) = std::env::var("METAMCP_ALLOWED_HOSTS") {
        opts.extra_allowed_hosts = h
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    if let Ok(p) = std::env::var("METAMCP_TRUSTED_PROXIES") {
        opts.trusted_proxies = p
            .parse()
            .with_context(|| format!("METAMCP_TRUSTED_PROXIES {p:?}"))?;
    }
    opts.limits = metamcp_server::limits::Limits::from_env(&|name| std::env::var(name).ok())
        .map_err(|bad| {
            let all: Vec<String> = bad.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("bad limits: {}", all.join("; "))
        })?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        opts.extra_allowed_hosts.push(local.ip().to_string());
    }
    let backend = store.backend().as_str();
    let gw = Gateway::start(store, opts).await?;
    let app = metamcp_server::router(gw.clone());
    // why: axum does not set TCP_NODELAY; without it multi-chunk responses stall on Nagle.
    let listener = listener.tap_io(|s| {
        let _ = s.set_nodelay(true);
    });
    tracing::info!(address = %local, database = backend, "metamcp listening on http://{local}");
    // The bound address on stdout too, for scripts and tests that bind port 0.
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "metamcp listening on http://{local}");
        let _ = out.flush();
    }

    let stop = tokio_util::sync::CancellationToken::new();
    let signal_gw = gw.clone();
    let signal_stop = stop.clone();
    // why: connect info gives handlers the TCP peer, the client IP of per-client rate limits.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        wait_for_signal().await;
        tracing::info!("stop requested; finishing in-flight requests");
        signal_stop.cancel();
        // why: open GET streams would otherwise hold the graceful shutdown forever.
        signal_gw.end_sessions();
    });
    let serving = tokio::spawn(async move { server.await });
    let outcome = tokio::select! {
        r = serving => Some(r),
        _ = async { stop.cancelled().await; tokio::time::sleep(GRACE).await } => None,
    };
    match outcome {
        Some(Ok(Ok(()))) => {}
        Some(Ok(Err(e))) => tracing::error!(error = %e, "server error"),
        Some(Err(e)) => tracing::error!(error = %e, "server task failed"),
        None => tracing::warn!(
            "in-flight requests did not finish within {} s",
            GRACE.as_secs()
        ),
    }
    stop_upstreams(&gw).await;
    Ok(())
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
