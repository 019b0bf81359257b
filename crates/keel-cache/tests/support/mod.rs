//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_cache::RemovalCause;

/// Records what an eviction listener hears.
#[derive(Clone, Default)]
pub(crate) struct Heard<K, V>(Arc<Mutex<Vec<(K, V, RemovalCause)>>>);

impl<K: Clone + Send + 'static, V: Clone + Send + 'static> Heard<K, V> {
    pub(crate) fn listener(&self) -> impl Fn(K, V, RemovalCause) + Send + Sync + 'static
    where
        K: Sync,
        V: Sync,
    {
        let inner = Arc::clone(&self.0);
        move |k, v, c| {
            inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((k, v, c))
        }
    }

    /// Everything heard since the last call.
    pub(crate) fn take(&self) -> Vec<(K, V, RemovalCause)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Waits until `check` holds, trying every 20 ms; panics naming `what`
/// after `timeout`.
pub(crate) async fn eventually<F: AsyncFnMut() -> bool>(
    what: &str,
    timeout: Duration,
    mut check: F,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// An instance on the Redis `config` names: a `users` cache (TTL 10 min)
/// and its invalidation bus, subscribed.
#[cfg(feature = "redis")]
pub(crate) async fn instance_on(
    config: keel_cache::RedisConfig,
) -> (
    keel_cache::TieredCache<u64, String>,
    keel_cache::InvalidationBus,
) {
    use keel_cache::{CacheSettings, InvalidationBus, RedisCache, TieredCache};
    let redis = RedisCache::new(config).unwrap();
    let bus = InvalidationBus::start(redis.clone());
    assert!(bus.wait_connected(Duration::from_secs(5)).await, "bus up");
    let mut settings = CacheSettings::default();
    settings.ttl = Some(Duration::from_secs(600));
    let cache = TieredCache::builder("users", settings)
        .redis(redis, Some(bus.clone()))
        .build()
        .unwrap();
    (cache, bus)
}

/// After the Redis primary behind instances `a` and `b` was replaced (and
/// `a`'s subscription was on it): `b`'s writes land on the new primary and
/// reach `a`, both stop reporting degraded, invalidations flow again, and
/// `a` resynced (dropped its local copies, since it may have missed
/// invalidations).
#[cfg(feature = "redis")]
pub(crate) async fn recovered_after_failover(
    a: &keel_cache::TieredCache<u64, String>,
    b: &keel_cache::TieredCache<u64, String>,
    a_bus: &keel_cache::InvalidationBus,
) {
    eventually(
        "a write reaches the new primary and crosses",
        Duration::from_secs(20),
        async || {
            b.insert(1, "v2".into()).await;
            a.get(&1).await.as_deref() == Some("v2")
        },
    )
    .await;
    eventually("both recover", Duration::from_secs(10), async || {
        !a.is_degraded() && !b.is_degraded()
    })
    .await;
    b.insert(1, "v3".into()).await;
    eventually(
        "invalidations flow again",
        Duration::from_secs(5),
        async || a.get(&1).await.as_deref() == Some("v3"),
    )
    .await;
    assert!(
        a_bus.stats().resyncs >= 1,
        "a resubscribed on the new primary and dropped its local copies: {:?}",
        a_bus.stats()
    );
}
