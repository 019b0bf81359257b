//! `/admin/...`: cache, pool and queue state, cache invalidation; behind
//! `server.admin_token` when one is set.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use keel::Keel;
use serde_json::json;

use crate::gateway::error;

/// The admin API over `keel`, guarded by `token` when there is one.
pub(crate) fn router(keel: Arc<Keel>, token: Option<String>) -> Router {
    let guard = Arc::new(token);
    Router::new()
        .route("/admin/caches", get(caches))
        .route("/admin/caches/{name}", delete(clear_cache))
        .route("/admin/caches/{name}/{*key}", delete(remove_key))
        .route("/admin/pools", get(pools))
        .route("/admin/queues", get(queues))
        .route("/admin/ws/{topic}", post(publish))
        .with_state(keel)
        .layer(middleware::from_fn_with_state(guard, require_token))
}

async fn require_token(
    State(token): State<Arc<Option<String>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = token.as_deref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return next.run(request).await;
    }
    tracing::warn!(
        category = "security",
        path = %request.uri().path(),
        "admin request refused: missing or wrong bearer token"
    );
    let mut response = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, &x) in b.iter().enumerate() {
        diff |= x ^ a.get(i).copied().unwrap_or(!x);
    }
    diff == 0
}

async fn caches(State(keel): State<Arc<Keel>>) -> Response {
    let reports: Vec<_> = keel
        .caches()
        .reports()
        .into_iter()
        .map(|r| {
            json!({
                "name": r.name,
                "entries": r.entries,
                "degraded": r.degraded,
                "local": {
                    "hits": r.local.hits,
                    "misses": r.local.misses,
                    "hit_ratio": r.local.hit_ratio(),
                },
                "l1_hits": r.tiered.l1_hits,
                "l2_hits": r.tiered.l2_hits,
                "misses": r.tiered.misses,
                "loads": r.tiered.loads,
                "stale_served": r.tiered.stale_served,
                "remote_errors": r.tiered.remote_errors,
            })
        })
        .collect();
    axum::Json(json!({ "caches": reports })).into_response()
}

async fn clear_cache(State(keel): State<Arc<Keel>>, Path(name): Path<String>) -> Response {
    if keel.caches().clear_cache(&name).await {
        tracing::info!(cache = %name, "cache cleared through the admin API");
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, &format!("no cache {name:?} in use"))
    }
}

async fn remove_key(
    State(keel): State<Arc<Keel>>,
    Path((name, key)): Path<(String, String)>,
) -> Response {
    // Route caches are keyed by request path, which starts with '/'.
    let key = if key.starts_with('/') || !name.starts_with("route-") {
        key
    } else {
        format!("/{key}")
    };
    if keel.caches().remove_key(&name, &key).await {
        tracing::info!(cache = %name, key = %key, "key invalidated through the admin API");
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            &format!("no cache {name:?} in use, or {key:?} is not one of its keys"),
        )
    }
}

/// Publishes the JSON body to WebSocket topic `topic` (on every instance
/// sharing the hub's Redis fan-out); answers how many local clients got it.
async fn publish(
    State(keel): State<Arc<Keel>>,
    Path(topic): Path<String>,
    axum::Json(data): axum::Json<serde_json::Value>,
) -> Response {
    let message = keel::websocket::WebSocketMessage::new("admin", data);
    match keel.websocket().publish(&topic, &message) {
        Ok(local) => axum::Json(json!({ "topic": topic, "local_clients": local })).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn pools(State(keel): State<Arc<Keel>>) -> Response {
    let stats = keel.pools().stats();
    let health = keel.pools().health();
    let pools: serde_json::Map<String, serde_json::Value> = stats
        .into_iter()
        .map(|(name, s)| {
            let status = health.get(&name).map_or("unknown", |h| h.as_str());
            (
                name,
                json!({
                    "status": status,
                    "total": s.total,
                    "idle": s.idle,
                    "in_use": s.in_use,
                    "waiters": s.waiters,
                    "acquired": s.acquired,
                    "timed_out": s.timed_out,
                    "errors": s.errors,
                    "retries": s.retries,
                }),
            )
        })
        .collect();
    axum::Json(json!({ "pools": pools })).into_response()
}

async fn queues(State(keel): State<Arc<Keel>>) -> Response {
    let jobs = keel.jobs().stats();
    let executor = keel.executor().stats();
    axum::Json(json!({
        "jobs": {
            "queued": jobs.len,
            "in_flight": jobs.in_flight,
            "accepted": jobs.accepted,
            "rejected": jobs.rejected,
            "succeeded": jobs.succeeded,
            "failed_attempts": jobs.failed_attempts,
            "retried": jobs.retried,
            "dead_lettered": jobs.dead_lettered,
        },
        "executor": {
            "workers": executor.workers,
            "active": executor.active,
            "queued": executor.queued,
            "completed": executor.completed,
            "rejected": executor.rejected,
            "panicked": executor.panicked,
        },
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret-and-more", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
