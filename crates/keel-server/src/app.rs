//! The HTTP routes of the gateway.

use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    started: Instant,
}

impl AppState {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
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
}

async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "healthy",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
    })
}
