//! `#[cached]` on a cache with a Bloom filter: keys the filter has not been
//! told about are absent without the body running, keys marked through
//! the manager run it, and values the body finds are known from then on.

use std::sync::atomic::{AtomicUsize, Ordering};

use keel_cache::{BloomSettings, CacheConfig, CacheManager, CacheOptions};
use keel_macros::cached;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "user:{id}")]
async fn find_user(id: u64) -> Option<String> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    (id < 100).then(|| format!("user {id}"))
}

#[cached(cache = "users", key = "name:{id}")]
async fn user_name(id: u64) -> String {
    RUNS.fetch_add(1, Ordering::SeqCst);
    format!("name {id}")
}

#[tokio::test]
async fn marked_keys_run_the_body_and_unseen_ones_are_absent() {
    let mut config = CacheConfig::default();
    let mut users = CacheOptions::default();
    users.bloom = Some(BloomSettings::default());
    config.caches.insert("users".into(), users);
    let manager = CacheManager::new(config).unwrap();
    // Marked before the cache is first used: the filter is the manager's.
    assert!(manager.mark_exists("users", "user:7"));
    assert!(!manager.mark_exists("nowhere", "user:7"));
    assert!(keel_cache::set_default_manager(manager).is_ok());
    let manager = keel_cache::default_manager();

    assert_eq!(find_user(7).await.as_deref(), Some("user 7"));
    assert_eq!(find_user(7).await.as_deref(), Some("user 7"));
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "marked, run once, cached");

    assert_eq!(find_user(8).await, None, "never marked");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the body did not run");
    assert!(manager.mark_exists("users", "user:8"));
    assert_eq!(find_user(8).await.as_deref(), Some("user 8"));
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);

    // A function that always returns a value stores what it finds, which
    // marks the key.
    assert_eq!(user_name(3).await, "name 3");
    assert_eq!(user_name(3).await, "name 3");
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);

    let report = manager
        .reports()
        .into_iter()
        .find(|r| r.name == "users")
        .unwrap();
    assert!(report.tiered.bloom_rejections >= 1, "{report:?}");
}
