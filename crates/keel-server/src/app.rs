//! The HTTP routes of the gateway.

use axum::Json;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keel::concurrency::Executor;
use keel::monitor::{DataMonitoringService, ServiceHealthStatus};
use serde::Serialize;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) monitoring: DataMonitoringService,
    /// Blocking and CPU-heavy work (rendering `/metrics`).
    pub(crate) executor: Executor,
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/monitoring/report", get(report))
        .layer(middleware::from_fn_with_state(state.clone(), measure))
        .with_state(state)
}

/// Measures every request as the operation `http <METHOD> <route>`; a 5xx
/// answer counts as a failed call.
async fn measure(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let name = format!("http {} {route}", request.method());
    let monitor = state.monitoring.monitor();
    let call = monitor.measure(&name);
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() {
        call.fail("http_5xx", status.as_str());
    } else {
        drop(call);
    }
    response
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
        let state = AppState {
            monitoring,
            executor: Executor::new(ThreadPoolConfig::default()).unwrap(),
        };
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
