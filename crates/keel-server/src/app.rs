//! The HTTP routes of the gateway.

use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use keel::cache::CacheManager;
use serde::Serialize;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    started: Instant,
    caches: CacheManager,
}

impl AppState {
    pub(crate) fn new(caches: CacheManager) -> Self {
        Self {
            started: Instant::now(),
            caches,
        }
    }
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    uptime_seconds: f64,
    checks: Checks,
}

#[derive(Debug, Serialize)]
struct Checks {
    /// `healthy`, or `degraded` while the Redis tier is failing (the caches
    /// serve from their local tier).
    cache: &'static str,
}

/// `healthy` or `degraded` both answer 200: the service serves either way.
async fn health(State(state): State<AppState>) -> Json<Health> {
    let cache_ok = state.caches.probe().await;
    Json(Health {
        status: if cache_ok { "healthy" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        checks: Checks {
            cache: if cache_ok { "healthy" } else { "degraded" },
        },
    })
}
