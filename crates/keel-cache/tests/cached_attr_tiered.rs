//! `#[cached]` on a tiered default manager: results land in Redis, where
//! every instance can read them.
#![cfg(feature = "redis")]

use std::sync::atomic::{AtomicUsize, Ordering};

use keel_cache::{CacheConfig, CacheManager, CacheOptions, RedisConfig};
use keel_macros::cached;

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "api", ttl = "60s", key = "price:{sku}")]
async fn price(sku: u32) -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    u64::from(sku) * 100
}

#[tokio::test]
async fn cached_results_are_shared_through_redis() {
    let Some(redis) = keel_test_support::redis().await else {
        return;
    };
    let mut config = CacheConfig::default();
    config.redis = Some(RedisConfig::new(redis.url()).key_prefix(redis.prefix()));
    config.caches.insert("api".into(), CacheOptions::default());
    let manager = CacheManager::new(config).unwrap();
    assert!(keel_cache::set_default_manager(manager).is_ok());

    assert_eq!(price(7).await, 700);
    assert_eq!(price(7).await, 700);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);

    // The value is in Redis under the cache's namespace, with its TTL.
    let mut conn = redis.connection().await.unwrap();
    let key = format!("{}:api:price:7", redis.prefix());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
}
