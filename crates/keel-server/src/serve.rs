//! `keel serve`: bind, serve, and stop gracefully on SIGINT or SIGTERM.

use std::net::SocketAddr;
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
    runtime.block_on(serve(config, log.stats().clone()))
}

async fn serve(config: keel::KeelConfig, log_stats: keel::log::LogStats) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {listen}: {e}; choose another address with --listen or server.listen"
        )
    })?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let caches = keel::cache::CacheManager::new(config.cache.clone())
        .map_err(|e| anyhow::anyhow!(chain(&e)))
        .context("cannot start the caches")?;
    if keel::cache::set_default_manager(caches.clone()).is_err() {
        tracing::warn!("a default cache manager was already set; #[cached] keeps using it");
    }
    let websocket = keel::websocket::WebSocketManager::new(config.websocket.clone())
        .map_err(|e| anyhow::anyhow!(chain(&e)))
        .context("cannot start the websocket hub")?;
    let executor = keel::concurrency::Executor::new(config.thread_pool.clone())
        .map_err(|e| anyhow::anyhow!(chain(&e)))
        .context("cannot start the thread pool")?;
    let pools = keel::pool::ConnectionPoolManager::from_config(&config.pools)
        .await
        .map_err(|e| anyhow::anyhow!(chain(&e)))
        .context("cannot open the pools")?;
    let monitoring = monitoring(&config, &caches, &pools, &websocket, &executor, log_stats)?;
    tracing::info!(address = %local, "keel listening on http://{local}");

    let state = AppState::new(caches, websocket.clone(), monitoring.clone(), executor);
    let stats = tokio::spawn(app::publish_stats(state.clone(), Duration::from_secs(1)));
    let alerts = tokio::spawn(app::publish_alerts(
        monitoring.subscribe_alerts(),
        websocket.clone(),
    ));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // No Nagle delay: WebSocket messages and small responses go out at once.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(
        listener,
        app::router(state).into_make_service_with_connect_info::<SocketAddr>(),
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
    let _ = stop_tx.send(());
    // WebSocket clients get a close frame (1001); upgraded connections are
    // not the HTTP server's to wait for.
    let timeout = config.server.shutdown_timeout;
    if !websocket.shutdown(timeout).await {
        tracing::warn!(?timeout, "websocket clients did not all close in time");
    }
    let drained = drain(server, timeout).await;
    monitoring.stop();
    pools.close().await;
    drained
}

/// The monitoring service from `[monitoring]`: the process's `metrics`
/// recorder and `#[monitored]`'s monitor, publishing every room's numbers
/// before each scrape, alert evaluation and report.
fn monitoring(
    config: &keel::KeelConfig,
    caches: &keel::cache::CacheManager,
    pools: &keel::pool::ConnectionPoolManager,
    websocket: &keel::websocket::WebSocketManager,
    executor: &keel::concurrency::Executor,
    log_stats: keel::log::LogStats,
) -> anyhow::Result<keel::monitor::DataMonitoringService> {
    use keel::monitor::{CheckOutcome, DataMonitoringService, check_fn};

    let monitoring = DataMonitoringService::new(config.monitoring.clone())
        .map_err(|e| anyhow::anyhow!(chain(&e)))
        .context("cannot start monitoring")?;
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
    let (c, p, w, e) = (
        caches.clone(),
        pools.clone(),
        websocket.clone(),
        executor.clone(),
    );
    monitoring.add_collector(move || {
        c.publish_metrics();
        p.publish_metrics();
        w.publish_metrics();
        e.publish_metrics("default");
        log_stats.publish_metrics();
    });
    let c = caches.clone();
    monitoring.register_health_check(
        "cache",
        false,
        check_fn(move || {
            let c = c.clone();
            async move {
                if c.probe().await {
                    CheckOutcome::healthy()
                } else {
                    CheckOutcome::degraded("the redis tier is failing; serving from the local tier")
                }
            }
        }),
    );
    let w = websocket.clone();
    monitoring.register_health_check(
        "websocket",
        false,
        check_fn(move || {
            let ok = w.config().redis.is_none() || w.fanout_connected();
            async move {
                if ok {
                    CheckOutcome::healthy()
                } else {
                    CheckOutcome::degraded(
                        "the redis fan-out is lost; clients of this instance are still served",
                    )
                }
            }
        }),
    );
    // A database pool down makes the gateway unhealthy; an HTTP upstream
    // down, degraded (the other routes still answer).
    for key in pools.health().into_keys() {
        let critical = key.starts_with("db.");
        let p = pools.clone();
        let name = key.clone();
        monitoring.register_health_check(
            &key,
            critical,
            check_fn(move || {
                use keel::pool::ConnectionStatus;
                let status = p.health().get(&name).copied();
                async move {
                    match status {
                        Some(ConnectionStatus::Healthy) => CheckOutcome::healthy(),
                        Some(ConnectionStatus::Degraded) => CheckOutcome::degraded(
                            "a connection, statement or request failed recently",
                        ),
                        Some(ConnectionStatus::Unhealthy) => {
                            CheckOutcome::unhealthy("the last health check failed")
                        }
                        _ => CheckOutcome::unhealthy("the pool is closed"),
                    }
                }
            }),
        );
    }
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
