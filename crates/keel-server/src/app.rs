//! The HTTP routes of the gateway.

use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keel::cache::CacheManager;
use keel::concurrency::Executor;
use keel::monitor::{DataMonitoringService, ServiceHealthStatus};
use keel::websocket::{WebSocketManager, WebSocketMessage};
use serde::Serialize;
use serde_json::json;

/// The topic the dashboard subscribes to.
pub(crate) const STATS_TOPIC: &str = "stats";

/// The topic alert events (raised and resolved) are published on.
pub(crate) const ALERTS_TOPIC: &str = "alerts";

/// What every handler can reach.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    started: Instant,
    caches: CacheManager,
    websocket: WebSocketManager,
    monitoring: DataMonitoringService,
    /// Blocking and CPU-heavy work (rendering `/metrics`).
    executor: Executor,
    /// The pools shown on the dashboard.
    pools: keel::pool::ConnectionPoolManager,
}

impl AppState {
    pub(crate) fn new(
        caches: CacheManager,
        websocket: WebSocketManager,
        monitoring: DataMonitoringService,
        executor: Executor,
    ) -> Self {
        Self {
            started: Instant::now(),
            caches,
            websocket,
            monitoring,
            executor,
            pools: keel::pool::ConnectionPoolManager::default(),
        }
    }

    /// The same state, showing `pools` in the stats snapshots.
    pub(crate) fn with_pools(mut self, pools: keel::pool::ConnectionPoolManager) -> Self {
        self.pools = pools;
        self
    }
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/stats", get(stats))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/monitoring/report", get(report))
        .merge(state.websocket.router())
        .with_state(state)
}

/// How requests are measured and logged.
#[derive(Debug, Clone)]
pub(crate) struct Measure {
    pub(crate) monitoring: DataMonitoringService,
    /// Log a `business` line per request.
    pub(crate) access_log: bool,
    /// Log a `performance` warning for requests slower than this.
    pub(crate) slow: Duration,
}

/// `router` with every request measured by `monitoring` and logged.
pub(crate) fn measured(router: Router, measure: Measure) -> Router {
    router.layer(middleware::from_fn_with_state(measure, measure_request))
}

/// Measures every request as the operation `http <METHOD> <route>` (a 5xx
/// answer counts as a failed call), logs it in the `business` category,
/// and a slow one in the `performance` category too.
async fn measure_request(State(measure): State<Measure>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let name = format!("http {method} {route}");
    let monitor = measure.monitoring.monitor();
    let started = Instant::now();
    let call = monitor.measure(&name);
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() {
        call.fail("http_5xx", status.as_str());
    } else {
        drop(call);
    }
    let elapsed = started.elapsed();
    let millis = elapsed.as_secs_f64() * 1e3;
    if measure.access_log {
        tracing::info!(
            category = "business",
            method = %method,
            path = %path,
            route = %route,
            status = status.as_u16(),
            millis,
            "request"
        );
    }
    if elapsed >= measure.slow {
        tracing::warn!(
            category = "performance",
            method = %method,
            path = %path,
            route = %route,
            status = status.as_u16(),
            millis,
            "slow request"
        );
    }
    response
}

/// Publishes a snapshot of every room's stats on the `stats` topic each
/// `every`, while anyone is subscribed. Runs until aborted.
pub(crate) async fn publish_stats(state: AppState, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        if state.websocket.topic_count(STATS_TOPIC) == 0 {
            continue;
        }
        let message = WebSocketMessage::new("stats", full_snapshot(&state).await);
        if let Err(error) = state.websocket.publish(STATS_TOPIC, &message) {
            tracing::debug!(%error, "stats not published");
        }
    }
}

/// Publishes every alert event on the `alerts` topic, until the
/// monitoring service is gone or the task is aborted.
pub(crate) async fn publish_alerts(
    mut alerts: keel::monitor::AlertSubscription,
    websocket: WebSocketManager,
    webhook: Option<Webhook>,
) {
    while let Some(alert) = alerts.recv().await {
        let body = serde_json::to_value(&alert).unwrap_or_default();
        if let Some(webhook) = &webhook {
            webhook.send(body.clone());
        }
        if let Err(error) = websocket.publish(ALERTS_TOPIC, &WebSocketMessage::new("alert", body)) {
            tracing::debug!(%error, "alert not published");
        }
    }
}

/// Where alerts are POSTed: a background job per alert on the job queue
/// (retried with backoff as `[task_queue]` says), through an HTTP pool of
/// its own, never on a request's path.
#[derive(Clone)]
pub(crate) struct Webhook {
    keel: std::sync::Arc<keel::Keel>,
    pool: keel::pool::HttpConnectionPool,
    path: String,
}

impl Webhook {
    /// A webhook for `url` (`http://host[:port]/path`).
    pub(crate) fn new(keel: std::sync::Arc<keel::Keel>, url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("monitoring.alert_webhook must be an http:// URL"))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let pool = keel::pool::HttpConnectionPool::new(
            "alert-webhook",
            keel::pool::HttpPoolConfig::new([format!("http://{host}")]),
        )
        .map_err(|e| anyhow::anyhow!("monitoring.alert_webhook: {e}"))?;
        Ok(Self {
            keel,
            pool,
            path: format!("/{path}"),
        })
    }

    fn send(&self, body: serde_json::Value) {
        let (pool, path) = (self.pool.clone(), self.path.clone());
        let job = keel::Job::new("alert webhook", move || {
            let (pool, path, body) = (pool.clone(), path.clone(), body.clone());
            async move {
                let response = pool
                    .request(axum::http::Method::POST, path)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if response.status.is_success() {
                    Ok(())
                } else {
                    Err(format!("webhook answered {}", response.status))
                }
            }
        });
        self.keel.spawn_job(job);
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("path", &self.path).finish()
    }
}

/// Every room's stats as JSON.
fn stats_snapshot(state: &AppState) -> serde_json::Value {
    let caches: Vec<serde_json::Value> = state
        .caches
        .reports()
        .into_iter()
        .map(|report| {
            json!({
                "name": report.name,
                "hits": report.local.hits,
                "misses": report.local.misses,
                "hit_ratio": report.local.hit_ratio(),
                "entries": report.entries,
                "l2_hits": report.tiered.l2_hits,
                "loads": report.tiered.loads,
                "degraded": report.degraded,
            })
        })
        .collect();
    // Every HTTP operation together: calls and errors summed, the worst
    // route's percentiles.
    let operations = state.monitoring.monitor().get_metrics().operations;
    let http = operations
        .iter()
        .filter(|op| op.name.starts_with("http "))
        .fold(
            json!({"calls": 0, "errors": 0, "p50_ms": 0.0, "p99_ms": 0.0}),
            |acc, op| {
                json!({
                    "calls": acc["calls"].as_u64().unwrap_or(0) + op.calls,
                    "errors": acc["errors"].as_u64().unwrap_or(0) + op.errors,
                    "p50_ms": acc["p50_ms"].as_f64().unwrap_or(0.0).max(op.p50_ms),
                    "p99_ms": acc["p99_ms"].as_f64().unwrap_or(0.0).max(op.p99_ms),
                })
            },
        );
    let health = state.pools.health();
    let pools: serde_json::Map<String, serde_json::Value> = state
        .pools
        .stats()
        .into_iter()
        .map(|(name, s)| {
            let status = health.get(&name).map_or("unknown", |h| h.as_str());
            let row = json!({
                "status": status,
                "in_use": s.in_use,
                "total": s.total,
                "idle": s.idle,
                "waiters": s.waiters,
            });
            (name, row)
        })
        .collect();
    json!({
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "http": http,
        "cache": { "degraded": state.caches.is_degraded(), "caches": caches },
        "pools": pools,
        "websocket": state.websocket.stats(),
    })
}

/// The stats snapshot with the service's health.
async fn full_snapshot(state: &AppState) -> serde_json::Value {
    let health = state.monitoring.health_status().await.status;
    let mut snapshot = stats_snapshot(state);
    snapshot["health"] = serde_json::to_value(health).unwrap_or_default();
    snapshot
}

/// `GET /stats`: the snapshot the `stats` topic carries (the dashboard's
/// first paint).
async fn stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(full_snapshot(&state).await)
}

/// The dashboard: one self-contained page fed by the `stats` and `alerts`
/// topics over `/ws`.
async fn dashboard(State(state): State<AppState>) -> axum::response::Html<String> {
    let path = serde_json::to_string(&state.websocket.config().path).unwrap_or_default();
    axum::response::Html(include_str!("dashboard.html").replace(
        "const WS_PATH = \"/ws\";",
        &format!("const WS_PATH = {path};"),
    ))
}

#[derive(Debug, Serialize)]
struct Health {
    version: &'static str,
    #[serde(flatten)]
    status: ServiceHealthStatus,
}

/// Every dependency's status; 503 when a critical one is down, 200 when
/// healthy or degraded.
async fn health(State(state): State<AppState>) -> Response {
    let status = state.monitoring.health_status().await;
    let code = StatusCode::from_u16(status.http_status()).unwrap_or(StatusCode::OK);
    (
        code,
        Json(Health {
            version: env!("CARGO_PKG_VERSION"),
            status,
        }),
    )
        .into_response()
}

/// Every series in the Prometheus text format, rendered on the executor.
async fn metrics(State(state): State<AppState>) -> Response {
    let monitoring = state.monitoring.clone();
    match state
        .executor
        .submit(move || monitoring.render_prometheus())
        .await
    {
        Ok(text) => ([(header::CONTENT_TYPE, keel::monitor::CONTENT_TYPE)], text).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot render the metrics: {error}\n"),
        )
            .into_response(),
    }
}

/// The latest performance report (made now if none was made yet).
async fn report(State(state): State<AppState>) -> Response {
    let report = match state.monitoring.latest_report() {
        Some(report) => report,
        None => state.monitoring.report_now(),
    };
    Json(&*report).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel::concurrency::ThreadPoolConfig;
    use keel::monitor::{CheckOutcome, MonitoringConfig, check_fn};

    async fn serve(monitoring: DataMonitoringService) -> String {
        let state = AppState::new(
            CacheManager::new(Default::default()).unwrap(),
            WebSocketManager::new(Default::default()).unwrap(),
            monitoring,
            Executor::new(ThreadPoolConfig::default()).unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn health_is_503_with_a_critical_dependency_down_and_200_when_degraded() {
        let monitoring = DataMonitoringService::new(MonitoringConfig::default()).unwrap();
        monitoring.register_health_check(
            "search",
            false,
            check_fn(|| async { CheckOutcome::unhealthy("connection refused") }),
        );
        let url = serve(monitoring.clone()).await;
        let response = reqwest::get(format!("{url}/health")).await.unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["dependencies"]["search"]["status"], "unhealthy");

        let monitoring = DataMonitoringService::new(MonitoringConfig::default()).unwrap();
        monitoring.register_health_check(
            "db",
            true,
            check_fn(|| async { CheckOutcome::unhealthy("connection refused") }),
        );
        let url = serve(monitoring).await;
        let response = reqwest::get(format!("{url}/health")).await.unwrap();
        assert_eq!(response.status(), 503);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], "unhealthy");
        assert_eq!(body["dependencies"]["db"]["critical"], true);
        assert_eq!(body["dependencies"]["db"]["message"], "connection refused");
    }
}
