//! The Redis tier against a real server, a private Redis Cluster and a
//! private primary behind Sentinels (each test that needs no outage runs
//! on all three), and outages of a private server.
#![cfg(feature = "redis")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use keel_cache::{Invalidation, InvalidationBus, InvalidationHandler, RedisCache, RedisConfig};
use keel_test_support::{TestTopology, on_every_topology};

/// The tier on `redis`, under its prefix.
async fn cache(redis: &TestTopology) -> RedisCache {
    RedisCache::connect(RedisConfig::new(redis.url()).key_prefix(redis.prefix()))
        .await
        .expect("connect")
}

on_every_topology!(values_round_trip_with_ttl_and_namespaced_keys);

async fn values_round_trip_with_ttl_and_namespaced_keys(redis: TestTopology) {
    let cache = cache(&redis).await;
    cache
        .set(
            "users",
            "42",
            Some(&("ada".to_owned(), 36u8)),
            Some(Duration::from_secs(60)),
            None,
        )
        .await
        .unwrap();
    let entry = cache
        .get::<(String, u8)>("users", "42")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.value, Some(("ada".to_owned(), 36)));
    let left = entry.remaining_at(SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(55) && left <= Duration::from_secs(60),
        "{left:?}"
    );

    // The key is namespaced and carries the TTL in Redis too.
    let mut conn = redis.connection().await.unwrap();
    let full = format!("{}:users:42", redis.prefix());
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&full)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 55_000 && pttl <= 60_000, "{pttl}");
    assert_eq!(
        cache.get::<(String, u8)>("orders", "42").await.unwrap(),
        None
    );
}

on_every_topology!(corrupt_bytes_are_a_counted_miss);

async fn corrupt_bytes_are_a_counted_miss(redis: TestTopology) {
    let cache = cache(&redis).await;
    let mut conn = redis.connection().await.unwrap();
    for (key, bytes) in [
        ("a", b"not an envelope".to_vec()),
        ("b", vec![0xC7, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("c", vec![0xC7]),
    ] {
        let _: () = redis::cmd("SET")
            .arg(format!("{}:users:{key}", redis.prefix()))
            .arg(bytes)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // A value written under another schema is corrupt too: the same
    // envelope with the tag of `users` at version 2.
    cache
        .set("users", "d", Some(&"text".to_owned()), None, None)
        .await
        .unwrap();
    let d = format!("{}:users:d", redis.prefix());
    let mut bytes: Vec<u8> = redis::cmd("GET")
        .arg(&d)
        .query_async(&mut conn)
        .await
        .unwrap();
    bytes[11..15].copy_from_slice(&keel_cache::Schema::new("users", 2).tag().to_le_bytes());
    let _: () = redis::cmd("SET")
        .arg(&d)
        .arg(bytes)
        .query_async(&mut conn)
        .await
        .unwrap();
    for key in ["a", "b", "c"] {
        assert_eq!(
            cache.get::<String>("users", key).await.unwrap(),
            None,
            "{key}"
        );
    }
    assert_eq!(cache.get::<String>("users", "d").await.unwrap(), None);
    let stats = cache.stats();
    assert_eq!(stats.corrupt, 4);
    assert_eq!(stats.hits, 0);
}

on_every_topology!(batches_read_and_write_many_keys_in_order);

async fn batches_read_and_write_many_keys_in_order(redis: TestTopology) {
    let cache = cache(&redis).await;
    let values: Vec<(String, u64)> = (0..100).map(|i| (format!("k{i}"), i * 10)).collect();
    cache
        .set_many(
            "nums",
            values.iter().map(|(k, v)| (k.as_str(), Some(v))),
            Some(Duration::from_secs(30)),
            None,
        )
        .await
        .unwrap();
    let mut keys: Vec<String> = values.iter().map(|(k, _)| k.clone()).collect();
    keys.insert(50, "missing".into());
    let got = cache.get_many::<u64, _>("nums", &keys).await.unwrap();
    assert_eq!(got.len(), 101);
    assert_eq!(got[50], None);
    assert_eq!(got[0].as_ref().unwrap().value, Some(0));
    assert_eq!(got[100].as_ref().unwrap().value, Some(990));
}

on_every_topology!(corrupt_bytes_in_a_batch_are_counted_misses_among_good_values);

async fn corrupt_bytes_in_a_batch_are_counted_misses_among_good_values(redis: TestTopology) {
    let cache = cache(&redis).await;
    cache
        .set("nums", "1", Some(&1u64), None, None)
        .await
        .unwrap();
    cache
        .set("nums", "3", Some(&3u64), None, None)
        .await
        .unwrap();
    let mut conn = redis.connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{}:nums:2", redis.prefix()))
        .arg(b"not an envelope".to_vec())
        .query_async(&mut conn)
        .await
        .unwrap();
    let keys = ["1", "2", "3", "4"];
    let got = cache.get_many::<u64, _>("nums", &keys).await.unwrap();
    let values: Vec<Option<u64>> = got.into_iter().map(|e| e.and_then(|e| e.value)).collect();
    assert_eq!(values, [Some(1), None, Some(3), None]);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.corrupt), (2, 2, 1));
}

on_every_topology!(absences_clear_and_delete);

async fn absences_clear_and_delete(redis: TestTopology) {
    let cache = cache(&redis).await;
    cache
        .set::<u32>("users", "ghost", None, Some(Duration::from_secs(5)), None)
        .await
        .unwrap();
    let entry = cache.get::<u32>("users", "ghost").await.unwrap().unwrap();
    assert_eq!(entry.value, None, "a cached absence reads back as one");

    cache
        .set("users", "a", Some(&1u32), None, None)
        .await
        .unwrap();
    cache
        .set("other", "a", Some(&2u32), None, None)
        .await
        .unwrap();
    assert_eq!(cache.delete("users", &["a", "nope"]).await.unwrap(), 1);
    cache
        .set("users", "b", Some(&1u32), None, None)
        .await
        .unwrap();
    // `ghost`, `b`, and the deletion markers `delete` left for `a` and `nope`.
    assert_eq!(cache.clear("users").await.unwrap(), 4);
    assert_eq!(cache.get::<u32>("users", "b").await.unwrap(), None);
    assert!(
        cache.get::<u32>("other", "a").await.unwrap().is_some(),
        "clear stays in its namespace"
    );
}

on_every_topology!(a_lock_has_one_holder_and_only_the_holder_releases_it);

async fn a_lock_has_one_holder_and_only_the_holder_releases_it(redis: TestTopology) {
    let cache = cache(&redis).await;
    let first = cache
        .try_lock("users", "42", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert!(
        cache
            .try_lock("users", "42", Duration::from_secs(5))
            .await
            .unwrap()
            .is_none()
    );
    let other = cache
        .try_lock("users", "43", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert!(cache.unlock(&first).await.unwrap());
    assert!(!cache.unlock(&first).await.unwrap(), "released twice");
    let again = cache
        .try_lock("users", "42", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(again.is_some());
    assert!(cache.unlock(&other).await.unwrap());
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Invalidation>>);

impl InvalidationHandler for Recorder {
    fn on_invalidation(&self, invalidation: &Invalidation) {
        self.0.lock().unwrap().push(invalidation.clone());
    }
}

fn recorder(bus: &InvalidationBus, namespace: &str) -> Arc<Recorder> {
    let recorder = Arc::new(Recorder::default());
    let weak = Arc::downgrade(&recorder);
    let weak: std::sync::Weak<dyn InvalidationHandler> = weak;
    bus.register(namespace, weak);
    recorder
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

on_every_topology!(invalidations_reach_other_instances_not_the_sender);

async fn invalidations_reach_other_instances_not_the_sender(redis: TestTopology) {
    let cache = cache(&redis).await;
    let a = InvalidationBus::start(cache.clone());
    let b = InvalidationBus::start(cache.clone());
    let seen_a = recorder(&a, "users");
    let seen_b = recorder(&b, "users");
    let seen_b_orders = recorder(&b, "orders");
    assert!(a.wait_connected(Duration::from_secs(5)).await);
    assert!(b.wait_connected(Duration::from_secs(5)).await);
    assert_ne!(a.instance_id(), b.instance_id());

    a.publish_keys("users", vec!["1".into(), "2".into()])
        .await
        .unwrap();
    a.publish_clear("orders").await.unwrap();
    wait_until("b receives both", || b.stats().received == 2).await;
    wait_until("a sees its own", || a.stats().own == 2).await;
    assert_eq!(
        *seen_b.0.lock().unwrap(),
        [Invalidation::Keys {
            namespace: "users".into(),
            keys: vec!["1".into(), "2".into()]
        }]
    );
    assert_eq!(
        *seen_b_orders.0.lock().unwrap(),
        [Invalidation::Clear {
            namespace: "orders".into()
        }]
    );
    assert!(seen_a.0.lock().unwrap().is_empty());
    assert_eq!(a.stats().sent, 2);
    assert_eq!(b.stats().received, 2);
    assert_eq!(b.stats().applied, 2);
}

#[tokio::test]
async fn an_outage_fails_fast_then_recovers_and_resyncs() {
    let Some(mut server) = keel_test_support::OwnRedis::start() else {
        return;
    };
    let config = RedisConfig::new(server.url());
    let cache = RedisCache::connect(config).await.unwrap();
    let bus = InvalidationBus::start(cache.clone());
    let seen = recorder(&bus, "users");
    assert!(bus.wait_connected(Duration::from_secs(5)).await);
    cache
        .set("users", "1", Some(&1u32), None, None)
        .await
        .unwrap();

    server.stop();
    for _ in 0..20 {
        let started = std::time::Instant::now();
        assert!(cache.get::<u32>("users", "1").await.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a call during an outage must not hang"
        );
    }
    assert!(bus.publish_keys("users", vec!["1".into()]).await.is_err());
    wait_until("bus notices the loss", || !bus.is_connected()).await;

    server.restart();
    let mut recovered = false;
    for _ in 0..200 {
        if cache
            .set("users", "1", Some(&2u32), None, None)
            .await
            .is_ok()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(recovered, "the cache reconnects by itself");
    assert_eq!(
        cache.get::<u32>("users", "1").await.unwrap().unwrap().value,
        Some(2)
    );
    wait_until("resync after resubscribe", || {
        seen.0.lock().unwrap().contains(&Invalidation::Resync)
    })
    .await;
    assert_eq!(bus.stats().resyncs, 1);
    let stats = cache.stats();
    assert!(stats.errors + stats.bypassed >= 20, "{stats:?}");
    assert!(
        stats.breaker_opened >= 1 && stats.bypassed > 0,
        "repeated failures bypass the tier: {stats:?}"
    );
}

#[tokio::test]
async fn a_cache_can_be_made_while_redis_is_down() {
    let Some(mut server) = keel_test_support::OwnRedis::start() else {
        return;
    };
    let url = server.url();
    server.stop();
    let cache = RedisCache::new(RedisConfig::new(url)).unwrap();
    assert!(cache.get::<u32>("x", "1").await.is_err());
    server.restart();
    let mut ok = false;
    for _ in 0..100 {
        if cache.ping().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok);
}

#[tokio::test]
async fn unreachable_servers_are_an_error_naming_the_setting() {
    // Ports nothing listens on: a cluster's seeds, and Sentinels.
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    };
    let (a, b) = (free(), free());
    let cluster = RedisConfig::new(format!("redis+cluster://127.0.0.1:{a},127.0.0.1:{b}"));
    let error = RedisCache::connect(cluster).await.unwrap_err().to_string();
    assert!(error.contains("cache.redis.url"), "{error}");
    let mut sentinels = RedisConfig::new("redis://unused");
    sentinels.sentinels = vec![format!("127.0.0.1:{a}")];
    sentinels.service_name = "main".into();
    let error = RedisCache::connect(sentinels)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("cache.redis.sentinels"), "{error}");
}

#[tokio::test]
async fn a_bad_url_is_a_clear_error() {
    let err = RedisCache::new(RedisConfig::new("http://nope")).unwrap_err();
    assert!(err.to_string().contains("invalid redis url"), "{err}");
}
