//! Two managers on one real Redis behave as two instances of a service:
//! on one server, on a private Redis Cluster and behind private Sentinels
//! (each test that needs no outage runs on all three).
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_cache::{
    CacheConfig, CacheManager, CacheOptions, CacheSettings, Clock, LockSettings, RedisCache,
    RedisConfig, TieredCache,
};
use keel_test_support::{TestTopology, on_every_topology};

fn config(url: &str, prefix: &str) -> CacheConfig {
    let mut config = CacheConfig::default();
    config.defaults.ttl = Some(Duration::from_secs(300));
    config.redis = Some(RedisConfig::new(url).key_prefix(prefix));
    config
        .caches
        .insert("users".into(), CacheOptions::default());
    config
}

async fn two_instances(config: CacheConfig) -> (CacheManager, CacheManager) {
    let a = CacheManager::new(config.clone()).unwrap();
    let b = CacheManager::new(config).unwrap();
    (a, b)
}

async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn users(m: &CacheManager) -> TieredCache<u64, String> {
    m.cache("users").unwrap()
}

async fn bus_ready(caches: &[&TieredCache<u64, String>]) {
    for c in caches {
        eventually("bus subscribed", async || !c.is_degraded()).await;
    }
}

on_every_topology!(a_write_on_one_instance_is_seen_on_the_other);

async fn a_write_on_one_instance_is_seen_on_the_other(redis: TestTopology) {
    let (a, b) = two_instances(config(&redis.url(), redis.prefix())).await;
    let (ua, ub) = (users(&a), users(&b));
    bus_ready(&[&ua, &ub]).await;

    ua.insert(1, "v1".into()).await;
    // A's invalidation reaching B while B's read is in flight would (rightly)
    // keep that read's copy out of B's local tier: let it arrive first.
    let bus = b.bus().unwrap();
    eventually("b hears the write", async || bus.stats().received >= 1).await;
    assert_eq!(ub.get(&1).await.as_deref(), Some("v1"), "read through L2");
    assert_eq!(ub.stats().l2_hits, 1);
    assert_eq!(ub.get(&1).await.as_deref(), Some("v1"));
    assert_eq!(ub.stats().l1_hits, 1, "back-filled into L1");

    ua.insert(1, "v2".into()).await;
    eventually("b drops its stale copy", async || {
        ub.get(&1).await.as_deref() == Some("v2")
    })
    .await;

    ua.remove(&1).await;
    eventually("b sees the delete", async || ub.get(&1).await.is_none()).await;

    // The string-keyed API is shared the same way.
    a.set("greeting", &"hello", None).await.unwrap();
    let got: Option<String> = b.get("greeting").await.unwrap();
    assert_eq!(got.as_deref(), Some("hello"));
    b.clear().await.unwrap();
    eventually("a sees the clear", async || {
        a.get::<String>("greeting").await.unwrap().is_none()
    })
    .await;
}

/// A cache of `users` on `redis` with `ttl`, reading its time from `clock`.
fn on_clock(
    redis: &RedisCache,
    clock: Clock,
    ttl: Duration,
    local_ttl: Option<Duration>,
    capacity: u64,
) -> TieredCache<u64, String> {
    let mut settings = CacheSettings::default();
    settings.ttl = Some(ttl);
    settings.local_ttl = local_ttl;
    settings.capacity = capacity;
    TieredCache::builder("users", settings)
        .clock(clock)
        .redis(redis.clone(), None)
        .build()
        .unwrap()
}

on_every_topology!(a_back_filled_copy_is_fresh_only_as_long_as_the_redis_entry);

async fn a_back_filled_copy_is_fresh_only_as_long_as_the_redis_entry(redis: TestTopology) {
    let remote = RedisCache::new(RedisConfig::new(redis.url()).key_prefix(redis.prefix())).unwrap();
    let ttl = Duration::from_secs(10);
    let writer = on_clock(&remote, Clock::system(), ttl, None, 100);
    writer.insert(1, "v".into()).await;

    // A reader with a longer TTL of its own still keeps its copy only for
    // what is left of the entry's freshness.
    let (clock, time) = Clock::manual();
    let reader = on_clock(&remote, clock, Duration::from_secs(60), None, 100);
    assert_eq!(reader.get(&1).await.as_deref(), Some("v"));
    assert_eq!(reader.stats().l2_hits, 1);
    time.advance(Duration::from_secs(9));
    assert_eq!(reader.get(&1).await.as_deref(), Some("v"));
    assert_eq!(reader.stats().l1_hits, 1, "back-filled into L1");
    time.advance(Duration::from_secs(2));
    assert_eq!(reader.get(&1).await, None, "stale with the Redis entry");
    assert_eq!(reader.stats().l1_hits, 1);

    // With a shorter local TTL the copy ends first, and Redis answers again.
    let (clock, time) = Clock::manual();
    let reader = on_clock(&remote, clock, ttl, Some(Duration::from_secs(2)), 100);
    assert_eq!(reader.get(&1).await.as_deref(), Some("v"));
    time.advance(Duration::from_secs(1));
    assert_eq!(reader.get(&1).await.as_deref(), Some("v"));
    time.advance(Duration::from_secs(2));
    assert_eq!(reader.get(&1).await.as_deref(), Some("v"));
    let stats = reader.stats();
    assert_eq!((stats.l1_hits, stats.l2_hits), (1, 2));
}

on_every_topology!(back_fills_into_a_full_local_tier_keep_every_value_intact);

async fn back_fills_into_a_full_local_tier_keep_every_value_intact(redis: TestTopology) {
    let remote = RedisCache::new(RedisConfig::new(redis.url()).key_prefix(redis.prefix())).unwrap();
    let ttl = Duration::from_secs(60);
    let writer = on_clock(&remote, Clock::system(), ttl, None, 100);
    // Values of different sizes: a copy made into an evicted value's memory
    // must still be exactly the new value.
    let value = |k: u64| "x".repeat((k as usize * 37) % 200);
    for k in 0..50u64 {
        writer.insert(k, value(k)).await;
    }
    let reader = on_clock(&remote, Clock::system(), ttl, None, 4);
    for round in 0..3 {
        for k in 0..50u64 {
            assert_eq!(reader.get(&k).await, Some(value(k)), "round {round}");
        }
    }
    assert!(reader.local_len() <= 4, "{}", reader.local_len());
    let keys: Vec<u64> = (0..50).collect();
    let got = reader.get_many(&keys).await;
    for (k, v) in keys.iter().zip(got) {
        assert_eq!(v, Some(value(*k)));
    }
    // What the local tier kept is the value, not the one it replaced.
    for k in 46..50u64 {
        assert_eq!(reader.get(&k).await, Some(value(k)));
    }
    assert!(reader.stats().l1_hits > 0);
}

on_every_topology!(corrupt_bytes_in_redis_are_a_miss_that_reloads);

async fn corrupt_bytes_in_redis_are_a_miss_that_reloads(redis: TestTopology) {
    let (a, _) = two_instances(config(&redis.url(), redis.prefix())).await;
    let users = users(&a);
    let mut conn = redis.connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{}:users:7", redis.prefix()))
        .arg(b"\xff\x00garbage".as_slice())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(users.get(&7).await, None);
    let v = users
        .get_or_load(7, || async { "fresh".to_owned() })
        .await
        .unwrap();
    assert_eq!(v, "fresh");
    assert_eq!(users.stats().loads, 1);
    assert_eq!(
        users.stats().remote_errors,
        0,
        "corruption is a miss, not an error"
    );
}

on_every_topology!(a_hundred_callers_load_each_key_once_per_instance);

async fn a_hundred_callers_load_each_key_once_per_instance(redis: TestTopology) {
    let (a, _) = two_instances(config(&redis.url(), redis.prefix())).await;
    let users = users(&a);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..100u64 {
        let users = users.clone();
        let calls = Arc::clone(&calls);
        tasks.push(tokio::spawn(async move {
            let key = i % 10;
            users
                .get_or_load(key, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    format!("v{key}")
                })
                .await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), format!("v{}", i % 10));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
}

on_every_topology!(with_the_lock_one_instance_loads_for_the_cluster);

async fn with_the_lock_one_instance_loads_for_the_cluster(redis: TestTopology) {
    let mut config = config(&redis.url(), redis.prefix());
    config.defaults.lock = Some(LockSettings::default());
    let (a, b) = two_instances(config).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let users = users(if i % 2 == 0 { &a } else { &b });
        let calls = Arc::clone(&calls);
        tasks.push(tokio::spawn(async move {
            users
                .get_or_load(42, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    "hot".to_owned()
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "hot");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one load across both instances"
    );
    let waits = users(&a).stats().lock_waits + users(&b).stats().lock_waits;
    assert_eq!(waits, 1, "the other instance waited for the holder");
}

on_every_topology!(get_many_reads_the_misses_in_one_batch);

async fn get_many_reads_the_misses_in_one_batch(redis: TestTopology) {
    let (a, b) = two_instances(config(&redis.url(), redis.prefix())).await;
    let (ua, ub) = (users(&a), users(&b));
    for k in 0..100u64 {
        ua.insert(k, format!("v{k}")).await;
    }
    ub.insert(5, "local".into()).await;
    let keys: Vec<u64> = (0..101).collect();
    let got = ub.get_many(&keys).await;
    assert_eq!(got.len(), 101);
    assert_eq!(got[5].as_deref(), Some("local"));
    assert_eq!(got[99].as_deref(), Some("v99"));
    assert_eq!(got[100], None);
    let stats = ub.stats();
    assert_eq!((stats.l1_hits, stats.l2_hits, stats.misses), (1, 99, 1));
}

on_every_topology!(insert_many_writes_a_batch_every_instance_sees_and_drops_old_copies_of);

async fn insert_many_writes_a_batch_every_instance_sees_and_drops_old_copies_of(
    redis: TestTopology,
) {
    let (a, b) = two_instances(config(&redis.url(), redis.prefix())).await;
    let (ua, ub) = (users(&a), users(&b));
    bus_ready(&[&ua, &ub]).await;
    ub.insert(3, "old".into()).await;
    assert_eq!(ub.get(&3).await.as_deref(), Some("old"));

    ua.insert_many((0..50u64).map(|k| (k, format!("v{k}"))))
        .await;
    eventually("b drops its copy of 3", async || {
        ub.get(&3).await.as_deref() == Some("v3")
    })
    .await;
    let got = ub.get_many(&(0..50).collect::<Vec<u64>>()).await;
    assert!(
        got.iter()
            .enumerate()
            .all(|(k, v)| v.as_deref() == Some(format!("v{k}").as_str())),
        "{got:?}"
    );
    assert_eq!(
        ua.get(&49).await.as_deref(),
        Some("v49"),
        "the writer's own copy"
    );

    // Each entry has the cache's TTL in Redis.
    let mut conn = redis.connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}:users:7", redis.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 290_000 && ttl <= 300_000, "{ttl}");

    // The string-keyed form.
    a.insert_many([("x", &1u32), ("y", &2u32)], None)
        .await
        .unwrap();
    assert_eq!(b.get::<u32>("y").await.unwrap(), Some(2));
}

on_every_topology!(get_many_and_get_agree_on_keys_the_bloom_filter_has_not_seen);

async fn get_many_and_get_agree_on_keys_the_bloom_filter_has_not_seen(redis: TestTopology) {
    let mut with_bloom = config(&redis.url(), redis.prefix());
    let users = with_bloom.caches.get_mut("users").unwrap();
    users.bloom = Some(keel_cache::BloomSettings::default());
    let writer = CacheManager::new(config(&redis.url(), redis.prefix())).unwrap();
    let reader = CacheManager::new(with_bloom).unwrap();
    let (uw, ur) = (self::users(&writer), self::users(&reader));
    // Written by an instance whose filter the reader does not share.
    uw.insert(1, "one".into()).await;
    uw.insert(2, "two".into()).await;
    assert!(reader.mark_exists("users", "2"));

    assert_eq!(ur.get(&1).await, None, "never marked here");
    assert_eq!(
        ur.get_many(&[1, 2]).await,
        [None, Some("two".to_owned())],
        "get_many answers as get does"
    );
    let stats = ur.stats();
    assert_eq!(stats.bloom_rejections, 2, "{stats:?}");
    assert_eq!(stats.l2_hits, 1, "only the marked key reached redis");
}

#[tokio::test]
async fn a_redis_outage_degrades_without_caller_errors_and_recovers() {
    let Some(mut server) = keel_test_support::OwnRedis::start() else {
        return;
    };
    let (a, b) = two_instances(config(&server.url(), "keel")).await;
    let (ua, ub) = (users(&a), users(&b));
    bus_ready(&[&ua, &ub]).await;
    ua.insert(1, "before".into()).await;
    assert_eq!(ub.get(&1).await.as_deref(), Some("before"));

    server.stop();
    // Reads, loads and writes keep working from L1 and the loader.
    for k in 100..120u64 {
        let v = ua
            .get_or_load(k, move || async move { format!("loaded{k}") })
            .await
            .unwrap();
        assert_eq!(v, format!("loaded{k}"));
    }
    ua.insert(2, "during".into()).await;
    assert_eq!(ua.get(&2).await.as_deref(), Some("during"));
    assert_eq!(ua.get(&1).await.as_deref(), Some("before"));
    assert!(
        ua.is_degraded() && a.is_degraded(),
        "health reports degraded"
    );

    server.restart();
    // Once the bus resubscribes, every local copy is dropped: invalidations
    // sent during the outage may have been missed.
    eventually("resync clears L1", async || {
        ua.local_len() == 0 && ub.local_len() == 0
    })
    .await;
    eventually("recovered", async || a.probe().await && b.probe().await).await;
    ua.insert(3, "after".into()).await;
    assert_eq!(ub.get(&3).await.as_deref(), Some("after"));
}

#[tokio::test]
async fn the_manager_names_unknown_caches_and_type_mismatches() {
    let manager = CacheManager::new(CacheConfig::default()).unwrap();
    let err = manager
        .cache::<u64, String>("nope")
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"nope\"") && err.contains("default"), "{err}");
    let mut config = CacheConfig::default();
    config
        .caches
        .insert("users".into(), CacheOptions::default());
    let manager = CacheManager::new(config).unwrap();
    manager.cache::<u64, String>("users").unwrap();
    let err = manager
        .cache::<String, String>("users")
        .unwrap_err()
        .to_string();
    assert!(err.contains("(u64, alloc::string::String)"), "{err}");
}

on_every_topology!(the_manager_removes_a_key_or_clears_a_cache_by_name_on_every_instance);

async fn the_manager_removes_a_key_or_clears_a_cache_by_name_on_every_instance(
    redis: TestTopology,
) {
    let (a, b) = two_instances(config(&redis.url(), redis.prefix())).await;
    let (ua, ub) = (users(&a), users(&b));
    bus_ready(&[&ua, &ub]).await;
    ua.insert(1, "one".into()).await;
    ua.insert(2, "two".into()).await;
    assert_eq!(ub.get(&1).await.as_deref(), Some("one"));

    assert!(a.remove_key("users", "1").await);
    eventually("b drops key 1", async || ub.get(&1).await.is_none()).await;
    assert!(
        !a.remove_key("users", "not-a-number").await,
        "not a u64 key"
    );
    assert!(!a.remove_key("nope", "1").await, "no such cache");

    assert_eq!(ub.get(&2).await.as_deref(), Some("two"));
    assert!(a.clear_cache("users").await);
    eventually("b sees the clear", async || ub.get(&2).await.is_none()).await;
    assert!(!a.clear_cache("nope").await);
}

on_every_topology!(a_manager_takes_its_redis_from_a_config_file);

async fn a_manager_takes_its_redis_from_a_config_file(redis: TestTopology) {
    let text = format!(
        "ttl = \"5m\"\n[redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\n[caches.users]\n",
        redis.url(),
        redis.prefix()
    );
    let config: CacheConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    let (a, b) = two_instances(config).await;
    let (ua, ub) = (users(&a), users(&b));
    bus_ready(&[&ua, &ub]).await;
    ua.insert(1, "one".into()).await;
    assert_eq!(ub.get(&1).await.as_deref(), Some("one"));
    assert!(a.remove_key("users", "1").await);
    eventually("b drops key 1", async || ub.get(&1).await.is_none()).await;
}
