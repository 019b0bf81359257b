//! `#[cached]` (keel-macros) on the real runtime: the default manager's
//! caches, one body run per key, `Ok`-only and negative caching.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_cache::{CacheConfig, CacheManager, CacheOptions};
use keel_macros::cached;

static CALLS: AtomicUsize = AtomicUsize::new(0);
static FAILS: AtomicUsize = AtomicUsize::new(0);
static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "api_cache", ttl = "300s")]
async fn expensive_api_call(param: String) -> String {
    CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    format!("result for {param}")
}

#[cached(cache = "users", key = "user:{user_id}")]
async fn load_user(user_id: u64, attempt_fails: bool) -> Result<String, String> {
    FAILS.fetch_add(1, Ordering::SeqCst);
    if attempt_fails {
        Err("database down".into())
    } else {
        Ok(format!("user {user_id}"))
    }
}

#[cached(cache = "users", prefix = "find")]
async fn find_user(name: String) -> Option<u64> {
    LOOKUPS.fetch_add(1, Ordering::SeqCst);
    (name == "ada").then_some(36)
}

fn install_manager() {
    let mut config = CacheConfig::default();
    config
        .caches
        .insert("api_cache".into(), CacheOptions::default());
    let mut users = CacheOptions::default();
    users.negative_ttl = Some(Duration::from_secs(60));
    config.caches.insert("users".into(), users);
    let _ = keel_cache::set_default_manager(CacheManager::new(config).expect("valid config"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attribute_caches_through_the_default_manager() {
    install_manager();

    // Concurrent first calls share one body run; later calls hit.
    let calls: Vec<_> = (0..20)
        .map(|_| tokio::spawn(expensive_api_call("q".to_owned())))
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), "result for q");
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(expensive_api_call("other".into()).await, "result for other");
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        2,
        "another argument is another key"
    );

    // Err is returned and not cached; Ok is cached under the template key.
    assert!(load_user(7, true).await.is_err());
    assert_eq!(load_user(7, false).await.as_deref(), Ok("user 7"));
    assert_eq!(
        load_user(7, true).await.as_deref(),
        Ok("user 7"),
        "served from the cache"
    );
    assert_eq!(FAILS.load(Ordering::SeqCst), 2);

    // None is cached where the cache has negative caching on.
    assert_eq!(find_user("bob".into()).await, None);
    assert_eq!(find_user("bob".into()).await, None);
    assert_eq!(find_user("ada".into()).await, Some(36));
    assert_eq!(LOOKUPS.load(Ordering::SeqCst), 2);

    let manager = keel_cache::default_manager();
    let names: Vec<String> = manager.reports().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["api_cache", "users"]);
}
