//! The cache room's numbers reach a `metrics` recorder when published, and
//! only then: lookups themselves never call the facade.

use keel_test_support::recorder::{recorded, value};

use keel_cache::{CacheConfig, CacheManager, LocalCache};

#[test]
fn lookups_are_published_as_totals_and_not_one_by_one() {
    let cache: LocalCache<u64, u64> = LocalCache::builder(100).build();
    let during = recorded(|| {
        cache.insert(1, 1);
        for _ in 0..10 {
            assert_eq!(cache.get(&1), Some(1));
        }
        assert_eq!(cache.get(&2), None);
    });
    assert!(during.is_empty(), "lookups called the facade: {during:?}");

    let published = recorded(|| cache.publish_metrics("users"));
    let users = [("cache", "users")];
    assert_eq!(value(&published, "keel_cache_hits_total", &users), 10.0);
    assert_eq!(value(&published, "keel_cache_misses_total", &users), 1.0);
    assert_eq!(value(&published, "keel_cache_inserts_total", &users), 1.0);
    assert_eq!(value(&published, "keel_cache_entries", &users), 1.0);
    assert_eq!(value(&published, "keel_cache_capacity", &users), 100.0);
}

#[tokio::test]
async fn a_manager_publishes_every_cache_with_its_tier_counters() {
    let manager = CacheManager::new(CacheConfig::default()).unwrap();
    manager.set("k", &"v", None).await.unwrap();
    let _: Option<String> = manager.get("k").await.unwrap();
    let _: Option<String> = manager.get("absent").await.unwrap();
    let published = recorded(|| manager.publish_metrics());
    let default = [("cache", "default")];
    assert_eq!(
        value(
            &published,
            "keel_cache_requests_total",
            &[("cache", "default"), ("outcome", "l1_hit")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &published,
            "keel_cache_requests_total",
            &[("cache", "default"), ("outcome", "miss")]
        ),
        1.0
    );
    assert_eq!(value(&published, "keel_cache_degraded", &default), 0.0);
    assert!(
        published
            .iter()
            .all(|(name, _, _)| name.starts_with("keel_cache_"))
    );
}
