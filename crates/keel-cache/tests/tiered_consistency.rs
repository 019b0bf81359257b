//! The two-level cache never lets an older value win: a read in flight does
//! not undo a write, a write that misses Redis is reconciled when it is
//! back, and a stalled Redis is bypassed after a few timeouts.
//!
//! A [`Proxy`] between an instance and Redis holds one connection's
//! replies, so "a read is in flight while a write lands" happens every
//! time, not by luck.
#![cfg(feature = "redis")]

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use keel_cache::{
    CacheSettings, InvalidationBus, RedisCache, RedisConfig, TieredCache, TieredStats,
};
use keel_test_support::{OwnRedis, Proxy};

/// The bytes of a Redis `GET` command.
const GET: &[u8] = b"$3\r\nGET\r\n";

fn addr(url: &str) -> SocketAddr {
    let host = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default();
    match host.to_socket_addrs().ok().and_then(|mut a| a.next()) {
        Some(addr) => addr,
        None => panic!("cannot resolve {url}"),
    }
}

fn config(url: &str, prefix: &str) -> RedisConfig {
    let mut config = RedisConfig::new(url).key_prefix(prefix).pool_size(4);
    config.probe_interval = Duration::from_millis(50);
    config
}

/// An instance: a cache of `users` whose data goes through `data_url` and
/// whose invalidation bus goes through `bus_url`.
async fn instance(
    data_url: &str,
    bus_url: &str,
    prefix: &str,
) -> (TieredCache<u64, String>, RedisCache, InvalidationBus) {
    let bus_redis = RedisCache::new(config(bus_url, prefix)).unwrap();
    let bus = InvalidationBus::start(bus_redis);
    assert!(bus.wait_connected(Duration::from_secs(5)).await, "bus up");
    let (cache, redis) = instance_on(data_url, prefix, Some(bus.clone()));
    (cache, redis, bus)
}

/// An instance with the given bus (`None`: it hears no invalidations).
fn instance_on(
    data_url: &str,
    prefix: &str,
    bus: Option<InvalidationBus>,
) -> (TieredCache<u64, String>, RedisCache) {
    let redis = RedisCache::new(config(data_url, prefix)).unwrap();
    let mut settings = CacheSettings::default();
    settings.ttl = Some(Duration::from_secs(600));
    let cache = TieredCache::builder("users", settings)
        .redis(redis.clone(), bus)
        .build()
        .unwrap();
    (cache, redis)
}

async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Starts `cache.get(key)` and returns once its `GET` has reached Redis
/// and the reply is held by `proxy`: the read is in flight.
async fn read_held(
    proxy: &Proxy,
    cache: &TieredCache<u64, String>,
    key: u64,
) -> tokio::task::JoinHandle<Option<String>> {
    proxy.hold_next(GET);
    let read = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get(&key).await }
    });
    assert!(
        proxy.wait_held(Duration::from_secs(5)).await,
        "the read's reply is held"
    );
    read
}

fn refused(stats: TieredStats) -> u64 {
    stats.fills_refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_flight_does_not_undo_a_write_on_the_same_instance() {
    let Some(redis) = keel_test_support::redis().await else {
        return;
    };
    let proxy = Proxy::start(addr(redis.url()));
    let (a, _, _) = instance(&proxy.redis_url(), redis.url(), redis.prefix()).await;
    let (b, _, _) = instance(redis.url(), redis.url(), redis.prefix()).await;
    b.insert(1, "v1".into()).await;

    // A's read reaches Redis and sees v1; its reply is held back.
    let read = read_held(&proxy, &a, 1).await;
    // Meanwhile A writes v2 (on its other connections) and returns.
    a.insert(1, "v2".into()).await;
    proxy.release();
    assert_eq!(
        read.await.unwrap().as_deref(),
        Some("v1"),
        "the read began first"
    );

    assert_eq!(a.get(&1).await.as_deref(), Some("v2"), "the write stays");
    // B hears of it when A's invalidation arrives.
    eventually("B drops its copy", async || {
        b.get(&1).await.as_deref() == Some("v2")
    })
    .await;
    assert_eq!(refused(a.stats()), 1, "the late reply was kept out of L1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_flight_does_not_undo_another_instances_write() {
    let Some(redis) = keel_test_support::redis().await else {
        return;
    };
    let proxy = Proxy::start(addr(redis.url()));
    let (a, _, a_bus) = instance(&proxy.redis_url(), redis.url(), redis.prefix()).await;
    let (b, _, _) = instance(redis.url(), redis.url(), redis.prefix()).await;
    b.insert(1, "v1".into()).await;

    let read = read_held(&proxy, &a, 1).await;
    let received = a_bus.stats().received;
    b.insert(1, "v2".into()).await;
    // The invalidation reaches A before the slow reply does.
    eventually("A hears B's invalidation", async || {
        a_bus.stats().received > received
    })
    .await;
    proxy.release();
    assert_eq!(read.await.unwrap().as_deref(), Some("v1"));

    assert_eq!(a.get(&1).await.as_deref(), Some("v2"));
    assert_eq!(refused(a.stats()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_flight_does_not_survive_a_resync_flush() {
    let Some(redis) = keel_test_support::redis().await else {
        return;
    };
    let data = Proxy::start(addr(redis.url()));
    let bus = Proxy::start(addr(redis.url()));
    let (a, _, a_bus) = instance(&data.redis_url(), &bus.redis_url(), redis.prefix()).await;
    let (b, _, _) = instance(redis.url(), redis.url(), redis.prefix()).await;
    b.insert(1, "v1".into()).await;

    let read = read_held(&data, &a, 1).await;
    // A's subscription is lost while B writes: A misses the invalidation,
    // and flushes its local tier when the subscription is back.
    bus.cut();
    eventually("A's bus notices", async || !a_bus.is_connected()).await;
    b.insert(1, "v2".into()).await;
    bus.restore();
    eventually("A resubscribes", async || a_bus.stats().resyncs == 1).await;
    data.release();
    assert_eq!(read.await.unwrap().as_deref(), Some("v1"));

    assert_eq!(a.get(&1).await.as_deref(), Some("v2"));
    assert_eq!(refused(a.stats()), 1, "the flush voided the read in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_does_not_fill_a_key_written_or_deleted_while_it_ran() {
    let Some(redis) = keel_test_support::redis().await else {
        return;
    };
    // A hears no invalidations, so only Redis can tell its load that the
    // key changed: the fill must compare what Redis holds with what the
    // read that missed saw.
    let (a, remote) = instance_on(redis.url(), redis.prefix(), None);
    let (b, _, _) = instance(redis.url(), redis.url(), redis.prefix()).await;
    // The loader says when it runs (the read that missed is done by then)
    // and waits to be let go.
    let slow = |value: &'static str| {
        let started = Arc::new(tokio::sync::Notify::new());
        let go = Arc::new(tokio::sync::Notify::new());
        let (s, g) = (Arc::clone(&started), Arc::clone(&go));
        let loader = move || async move {
            s.notify_one();
            g.notified().await;
            Ok::<_, std::io::Error>(Some(value.to_owned()))
        };
        (loader, started, go)
    };

    // Written on another instance while A's loader runs: the write wins in
    // Redis and on A.
    let (loader, started, go) = slow("old");
    let load = tokio::spawn({
        let a = a.clone();
        async move { a.try_get_or_load(1, loader).await }
    });
    started.notified().await;
    b.insert(1, "new".into()).await;
    go.notify_one();
    assert_eq!(load.await.unwrap().unwrap().as_deref(), Some("old"));
    let stored = remote.get::<String>("users", "1").await.unwrap();
    assert_eq!(stored.and_then(|e| e.value).as_deref(), Some("new"));
    assert_eq!(a.get(&1).await.as_deref(), Some("new"));

    // Deleted on another instance while A's loader runs: the key stays
    // deleted, in Redis and on A.
    let (loader, started, go) = slow("old");
    let load = tokio::spawn({
        let a = a.clone();
        async move { a.try_get_or_load(2, loader).await }
    });
    started.notified().await;
    b.remove(&2).await;
    go.notify_one();
    assert_eq!(load.await.unwrap().unwrap().as_deref(), Some("old"));
    let stored = remote.get::<String>("users", "2").await.unwrap();
    assert!(stored.is_none(), "the delete holds: {stored:?}");
    assert_eq!(a.get(&2).await, None);
    assert_eq!(refused(a.stats()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_an_outage_is_reconciled_when_redis_returns() {
    let Some(redis) = keel_test_support::redis().await else {
        return;
    };
    let proxy = Proxy::start(addr(redis.url()));
    let url = proxy.redis_url();
    let (a, a_redis, _) = instance(&url, &url, redis.prefix()).await;
    let (b, b_redis, _) = instance(redis.url(), redis.url(), redis.prefix()).await;
    a.insert(1, "before".into()).await;
    assert_eq!(b.get(&1).await.as_deref(), Some("before"));

    // Only A loses Redis; Redis keeps its data.
    proxy.cut();
    a.insert(1, "during".into()).await;
    a.remove(&2).await;
    assert_eq!(
        a.get(&1).await.as_deref(),
        Some("during"),
        "A serves its write"
    );
    assert!(a.is_degraded());
    assert!(a_redis.stats().pending >= 2, "{:?}", a_redis.stats());

    proxy.restore();
    // Before A reports healthy, the keys it changed are deleted in Redis
    // and invalidated everywhere: every instance reloads from the source
    // rather than serve the value from before the outage.
    eventually("A reconciled", async || !a.is_degraded()).await;
    assert_eq!(a_redis.stats().pending, 0);
    assert!(a_redis.stats().reconciled >= 2);
    assert!(b_redis.get::<String>("users", "1").await.unwrap().is_none());
    eventually("B drops its pre-outage copy", async || {
        b.get(&1).await.is_none()
    })
    .await;
    let loaded = b
        .try_get_or_load(1, || async {
            Ok::<_, std::io::Error>(Some("source".to_owned()))
        })
        .await
        .unwrap();
    assert_eq!(loaded.as_deref(), Some("source"));
    eventually("A reads what B loaded", async || {
        a.get(&1).await.as_deref() == Some("source")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_costs_a_few_timeouts_then_is_bypassed_until_it_answers() {
    let Some(server) = OwnRedis::start_with(&["--enable-debug-command", "local"]) else {
        return;
    };
    let mut config = config(&server.url(), "keel");
    config.command_timeout = Duration::from_millis(200);
    config.failure_threshold = 3;
    let redis = RedisCache::new(config).unwrap();
    let bus = InvalidationBus::start(redis.clone());
    assert!(bus.wait_connected(Duration::from_secs(5)).await);
    let mut settings = CacheSettings::default();
    settings.ttl = Some(Duration::from_secs(600));
    let cache: TieredCache<u64, String> = TieredCache::builder("users", settings)
        .redis(redis.clone(), Some(bus))
        .build()
        .unwrap();
    cache.insert(0, "hot".into()).await;
    // Every connection made: the stall meets commands, not handshakes.
    for _ in 0..8 {
        redis.ping().await.unwrap();
    }

    // Redis stops answering for two seconds.
    let sleeper = RedisCache::new(RedisConfig::new(server.url())).unwrap();
    let stall = tokio::spawn(async move {
        let mut conn = redis::Client::open(sleeper.config().url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        // The client gives up waiting; the server sleeps on.
        let _: redis::RedisResult<()> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(2)
            .query_async(&mut conn)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    for k in 1..=30u64 {
        cache.insert(k, format!("v{k}")).await;
        assert_eq!(cache.get(&k).await, Some(format!("v{k}")), "served from L1");
    }
    // Three writes waited for a timeout each; the breaker then opened and
    // the other 27 did not wait at all (a failed write skips its publish).
    let stats = redis.stats();
    assert_eq!(stats.breaker_opened, 1, "{stats:?}");
    assert_eq!(stats.bypassed, 27, "{stats:?}");
    assert_eq!(stats.pending, 30, "every write is remembered: {stats:?}");
    assert!(cache.is_degraded());
    assert_eq!(cache.get(&0).await.as_deref(), Some("hot"), "L1 hits go on");

    stall.await.unwrap();
    eventually("redis back and reconciled", async || !cache.is_degraded()).await;
    let stats = redis.stats();
    assert_eq!(stats.pending, 0);
    assert!(stats.reconciled >= 30, "{stats:?}");
    // The writes made during the stall were deleted in Redis, so a read
    // goes to the source instead of whatever Redis ran late.
    for k in 1..=30u64 {
        let stored = redis.get::<String>("users", &k.to_string()).await.unwrap();
        assert!(stored.is_none(), "key {k}: {stored:?}");
    }
    cache.insert(1, "after".into()).await;
    let stored = redis.get::<String>("users", "1").await.unwrap();
    assert_eq!(stored.and_then(|e| e.value).as_deref(), Some("after"));
}
