//! The HTTP routes of the gateway.

use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use keel::cache::CacheManager;
use keel::websocket::{WebSocketManager, WebSocketMessage};
use serde::Serialize;
use serde_json::json;

/// The topic the dashboard subscribes to.
pub(crate) const STATS_TOPIC: &str = "stats";

/// What every handler can reach.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    started: Instant,
    caches: CacheManager,
    websocket: WebSocketManager,
}

impl AppState {
    pub(crate) fn new(caches: CacheManager, websocket: WebSocketManager) -> Self {
        Self {
            started: Instant::now(),
            caches,
            websocket,
        }
    }
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .merge(state.websocket.router())
        .with_state(state)
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
        let message = WebSocketMessage::new("stats", stats_snapshot(&state));
        if let Err(error) = state.websocket.publish(STATS_TOPIC, &message) {
            tracing::debug!(%error, "stats not published");
        }
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
    json!({
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "cache": { "degraded": state.caches.is_degraded(), "caches": caches },
        "websocket": state.websocket.stats(),
    })
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
    /// `healthy`, or `degraded` while the WebSocket fan-out has lost Redis
    /// (clients of this instance are still served).
    websocket: &'static str,
}

/// `healthy` or `degraded` both answer 200: the service serves either way.
async fn health(State(state): State<AppState>) -> Json<Health> {
    let cache_ok = state.caches.probe().await;
    let websocket_ok =
        state.websocket.config().redis.is_none() || state.websocket.fanout_connected();
    let word = |ok: bool| if ok { "healthy" } else { "degraded" };
    Json(Health {
        status: word(cache_ok && websocket_ok),
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        checks: Checks {
            cache: word(cache_ok),
            websocket: word(websocket_ok),
        },
    })
}
