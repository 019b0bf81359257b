//! The background task of a database pool: the health check (which also
//! restores `min_connections`) and leak detection.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection as _, Database, Pool};

use super::{Inner, Pools, Shared};
use crate::config::PoolConfig;
use crate::stats::Counters;

/// Starts the task. It holds the pool only weakly, and stops when the pool
/// is closed (`stop`) or its last handle is dropped (`Inner::drop` notifies
/// `stop`).
pub(super) fn spawn(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    let stop = Arc::clone(&inner.stop);
    let every = inner.config.health_check_interval;
    let leak_every = inner
        .shared
        .leaks
        .as_ref()
        .map(|l| (l.threshold / 4).max(Duration::from_millis(10)));
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut health = tokio::time::interval_at(start + every, every);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leaks = tokio::time::interval(leak_every.unwrap_or(Duration::from_secs(3600)));
        leaks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.notified() => break,
                _ = health.tick() => {
                    let Some(inner) = weak.upgrade() else { break };
                    if inner.shared.health.is_closed() {
                        break;
                    }
                    let passed = tokio::select! {
                        passed = inner.health_check() => passed,
                        () = stop.notified() => break,
                    };
                    inner.shared.health.checked(passed);
                }
                _ = leaks.tick(), if leak_every.is_some() => {
                    let Some(inner) = weak.upgrade() else { break };
                    report_leaks(&inner.shared);
                }
            }
        }
    });
}

fn report_leaks(shared: &Shared) {
    let Some(leaks) = &shared.leaks else { return };
    for (held_for, at) in leaks.overdue() {
        Counters::add(&shared.counters.leaked);
        tracing::warn!(
            pool = %shared.name,
            held_for = %humantime::format_duration(crate::error::whole_millis(held_for)),
            acquired_at = %at,
            "connection held longer than leak_threshold {}: possible leak",
            humantime::format_duration(leaks.threshold)
        );
    }
}

impl Inner {
    /// One health check; whether the database answered.
    async fn health_check(&self) -> bool {
        super::each_backend!(&self.pools, Pools, p => check(p, &self.shared, &self.config).await)
    }
}

/// When the pool is at its minimum, pings its idle connections (pinging
/// marks a connection as just used, so a pool above its minimum is left
/// alone for the idle timeout to shrink, its connections being checked
/// before use); closes dead ones; opens connections up to the minimum; and,
/// when no connection was pinged or opened, probes the server with a
/// connection of its own.
async fn check<DB: Database>(pool: &Pool<DB>, shared: &Shared, config: &PoolConfig) -> bool {
    let min = config.min_connections() as usize;
    let wait = config
        .connection_timeout
        .min(config.health_check_interval)
        .max(Duration::from_millis(100));
    let mut budget = if pool.size() as usize <= min {
        pool.num_idle()
    } else {
        0
    };
    let mut live = Vec::new();
    let mut dead = 0usize;
    while budget > 0 {
        let Some(mut conn) = pool.try_acquire() else {
            break;
        };
        budget -= 1;
        match tokio::time::timeout(wait, conn.ping()).await {
            Ok(Ok(())) => live.push(conn),
            _ => {
                dead += 1;
                drop(conn.detach());
            }
        }
    }
    let pinged = live.len();
    drop(live);
    if dead > 0 {
        tracing::info!(pool = %shared.name, dead, "closed dead idle connections");
        shared.lost_connection();
    }
    let mut opened = Vec::new();
    let max = config.max_connections as usize;
    while (pool.size() as usize) < min && opened.len() < max {
        match tokio::time::timeout(wait, pool.acquire()).await {
            Ok(Ok(conn)) => opened.push(conn),
            Ok(Err(error)) => {
                tracing::warn!(pool = %shared.name, %error, "cannot restore min_connections");
                break;
            }
            Err(_) => break,
        }
    }
    let restored = !opened.is_empty();
    drop(opened);
    if pinged > 0 || restored {
        return true;
    }
    let options = pool.connect_options();
    let probe = async {
        let mut conn = DB::Connection::connect_with(&options).await?;
        conn.ping().await?;
        conn.close().await
    };
    match tokio::time::timeout(wait, probe).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(pool = %shared.name, %error, "health check failed");
            false
        }
        Err(_) => {
            tracing::warn!(pool = %shared.name, "health check timed out");
            false
        }
    }
}
