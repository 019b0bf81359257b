//! `keel serve`: bind, serve, and stop gracefully on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::app::{self, AppState};
use crate::cli::{ServeArgs, chain};

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = keel::KeelConfig::load(args.config.as_deref())
        .map_err(|e| anyhow::anyhow!(chain(&e)))
        .context("invalid configuration")?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let demo = args.config.is_none() && config.routes.is_empty();
    if demo {
        crate::demo::apply(&mut config);
    }
    // Held until the end of `run`: dropping it flushes the log writer.
    let log = config
        .logging
        .install()
        .map_err(|e| anyhow::anyhow!(chain(&e)))
        .context("cannot start logging")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, demo, log.stats().clone()))
}

async fn serve(
    config: keel::KeelConfig,
    demo: bool,
    log_stats: keel::log::LogStats,
) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {listen}: {e}; choose another address with --listen or server.listen"
        )
    })?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let keel = keel::Keel::from_config(config.clone())
        .await
        .map_err(|e| anyhow::anyhow!(chain(&e)))?;
    if keel::cache::set_default_manager(keel.caches().clone()).is_err() {
        tracing::warn!("a default cache manager was already set; #[cached] keeps using it");
    }
    if demo {
        let pool = keel
            .pools()
            .db(crate::demo::POOL)
            .map_err(|e| anyhow::anyhow!(chain(&e)))?;
        crate::demo::seed(&pool).await?;
    }
    let monitoring = monitoring(&keel, log_stats)?;
    let keel = Arc::new(keel);
    let websocket = keel.websocket().clone();
    let routes = crate::gateway::router(&keel)?;
    let admin = match (&config.server.admin_token, local.ip().is_loopback()) {
        (Some(token), _) => Some(crate::admin::router(Arc::clone(&keel), Some(token.clone()))),
        (None, true) => {
            tracing::info!("admin API open without a token: keel listens on loopback only");
            Some(crate::admin::router(Arc::clone(&keel), None))
        }
        (None, false) => {
            tracing::warn!(
                "admin API disabled: set server.admin_token to serve /admin on a non-loopback address"
            );
            None
        }
    };
    tracing::info!(address = %local, "keel listening on http://{local}");

    let state = AppState::new(
        keel.caches().clone(),
        websocket.clone(),
        monitoring.clone(),
        keel.executor().clone(),
    )
    .with_pools(keel.pools().clone());
    let stats = tokio::spawn(app::publish_stats(state.clone(), Duration::from_secs(1)));
    let webhook = match &config.monitoring.alert_webhook {
        Some(url) => Some(app::Webhook::new(Arc::clone(&keel), url)?),
        None => None,
    };
    let alerts = tokio::spawn(app::publish_alerts(
        monitoring.subscribe_alerts(),
        websocket.clone(),
        webhook,
    ));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // No Nagle delay: WebSocket messages and small responses go out at once.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let mut router = app::router(state).merge(routes);
    if let Some(admin) = admin {
        router = router.merge(admin);
    }
    // Every route, the gateway's and the admin API's included, is measured.
    let router = app::measured(
        router,
        app::Measure {
            monitoring,
            access_log: config.server.access_log,
            slow: config.server.slow_request,
        },
    );
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop_rx.await;
    })
    .into_future();
    let mut server = tokio::spawn(server);

    tokio::select! {
        result = &mut server => {
            stats.abort();
            alerts.abort();
            return result.context("server task failed")?.context("server failed");
        }
        signal = shutdown_signal() => {
            tracing::info!(signal, "shutting down");
        }
    }
    stats.abort();
    alerts.abort();
    // The alert task holds the rooms (its webhook queues jobs): let it go
    // before they are shut down.
    let _ = alerts.await;
    let _ = stop_tx.send(());
    // WebSocket clients get a close frame (1001); upgraded connections are
    // not the HTTP server's to wait for.
    let timeout = config.server.shutdown_timeout;
    if !websocket.shutdown(timeout).await {
        tracing::warn!(?timeout, "websocket clients did not all close in time");
    }
    let drained = drain(server, timeout).await;
    // Requests are done: the rooms stop in order (jobs, sockets, pools,
    // executor); the log guard, held by `run`, flushes last.
    match Arc::try_unwrap(keel) {
        Ok(keel) => keel.shutdown(timeout).await,
        Err(_) => tracing::warn!("rooms still in use at shutdown; leaving them to the exit"),
    }
    drained
}

/// The rooms' monitoring service made the process's `metrics` recorder and
/// `#[monitored]`'s monitor, publishing the log pipeline's counters too,
/// and started.
fn monitoring(
    keel: &keel::Keel,
    log_stats: keel::log::LogStats,
) -> anyhow::Result<keel::monitor::DataMonitoringService> {
    let monitoring = keel.monitoring().clone();
    if monitoring.install_recorder().is_err() {
        tracing::warn!(
            "a metrics recorder was already installed; /metrics shows only keel's own figures"
        );
    }
    if monitoring.set_default().is_err() {
        tracing::warn!(
            "a default performance monitor was already set; #[monitored] keeps using it"
        );
    }
    monitoring.add_collector(move || log_stats.publish_metrics());
    monitoring
        .start()
        .map_err(|e| anyhow::anyhow!(chain(&e)))
        .context("cannot start monitoring")?;
    Ok(monitoring)
}

async fn drain(
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    timeout: Duration,
) -> anyhow::Result<()> {
    match tokio::time::timeout(timeout, server).await {
        Ok(joined) => {
            joined
                .context("server task failed")?
                .context("server failed")?;
            tracing::info!("stopped");
        }
        Err(_) => tracing::warn!(
            ?timeout,
            "shutdown timeout elapsed; abandoning in-flight requests"
        ),
    }
    Ok(())
}

/// Resolves with the name of the first SIGINT or SIGTERM received.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops keel");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
