//! `tiered`: the two-level cache on a real Redis, against the raw `redis`
//! client doing the same work on the same connection setup.
//!
//! Cases: `l1-hit`, `l2-hit` (64 spawned tasks, each making one request
//! at a time), `get-many-100` vs
//! `get-100-sequential` (keys per second; `get-many-100` also against the
//! raw client's MGET of the same 100 keys, pre-built, each value decoded,
//! one request at a time on a `ConnectionManager` made with the client's
//! defaults), `invalidation` (write on one instance → the other instance
//! has dropped its copy, p50/p99, vs a raw PUBLISH → subscriber round
//! trip), `stampede` (loader calls when 1000 callers ask two instances for
//! one missing key; the raw client's column is cache-aside behind a
//! per-process single flight on each of the two instances), `stall` (caller latency while a private Redis sleeps
//! in `DEBUG SLEEP`, against the configured command timeout, and local hits
//! per second meanwhile against before it).
//!
//! On a private 3-primary Redis Cluster the bench starts itself
//! (`tiered_cluster.rs`; skipped with a note when it cannot start):
//! `l2-hit-cluster` (as `l2-hit`, against raw GET + decode on as many
//! cluster connections), `get-many-100-cluster` (as `get-many-100`,
//! against the raw client's MGET per hash slot of the batch, all in flight
//! at once, reassembled in order and decoded), `invalidation-cluster` and
//! `write-invalidation-cluster` (as `invalidation`, with the receiving
//! instance subscribed on a node other than the one the publish goes to,
//! vs a raw PUBLISH through a cluster connection → a subscriber on another
//! node, and vs a raw SPUBLISH → a RESP3 sharded subscriber,
//! `redis-sharded`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use keel_cache::{
    CacheConfig, CacheManager, CacheOptions, Invalidation, InvalidationHandler, LockSettings,
    RedisConfig, TieredCache,
};

use crate::Ctx;
use crate::workload::median;

pub(super) const IN_FLIGHT: usize = 64;
pub(super) const POOL: usize = 4;

pub(crate) fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(ctx))
}

fn redis_url() -> String {
    std::env::var("KEEL_BENCH_REDIS_URL")
        .or_else(|_| std::env::var("KEEL_TEST_REDIS_URL"))
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub(super) fn config(url: &str, prefix: &str, local_capacity: u64) -> CacheConfig {
    let mut config = CacheConfig::default();
    config.defaults.ttl = Some(Duration::from_secs(600));
    config.defaults.capacity = Some(local_capacity);
    config.redis = Some(RedisConfig::new(url).key_prefix(prefix).pool_size(POOL));
    config
        .caches
        .insert("bench".into(), CacheOptions::default());
    config
}

async fn run_async(ctx: &mut Ctx) -> anyhow::Result<()> {
    let url = redis_url();
    let client = redis::Client::open(url.as_str())?;
    let mut probe = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| {
            format!("the tiered suite needs Redis at {url} (set KEEL_BENCH_REDIS_URL)")
        })?;
    let prefix = format!("keel-bench-{}", std::process::id());
    let keys: u64 = if ctx.quick { 20_000 } else { 100_000 };
    let rounds: usize = if ctx.quick { 3 } else { 5 };
    let value = "x".repeat(100);

    // Fill Redis through one instance.
    let writer = CacheManager::new(config(&url, &prefix, 1_000))?;
    let cache: TieredCache<u64, String> = writer.cache("bench")?;
    let all: Vec<u64> = (0..keys).collect();
    for chunk in all.chunks(1_000) {
        for &k in chunk {
            cache.insert(k, value.clone()).await;
        }
    }

    // l1-hit: one hot key set that fits the local tier.
    {
        let manager = CacheManager::new(config(&url, &prefix, 100_000))?;
        let c: TieredCache<u64, String> = manager.cache("bench")?;
        for k in 0..1_000 {
            c.get(&k).await;
        }
        let mut samples = Vec::new();
        for _ in 0..rounds {
            samples.push(
                throughput(IN_FLIGHT, 2_000_000 / rounds as u64, {
                    let c = c.clone();
                    move |i| {
                        let c = c.clone();
                        async move {
                            std::hint::black_box(c.get(&(i % 1_000)).await);
                        }
                    }
                })
                .await?,
            );
        }
        ctx.report
            .record("l1-hit", "keel", "ops_per_s", median(&mut samples));
    }

    // l2-hit: a local tier of 1% of the keys read uniformly, so 99% of
    // reads go to Redis and back-fill (as on a real instance); against raw
    // GET + decode on the same connections: as many reconnecting
    // multiplexed `ConnectionManager`s. Both sides' managers bound every
    // command with a response timeout (keel's `command_timeout`, 1 s; the
    // client's default, 500 ms), so both pay for its timer.
    let mut conns = Vec::new();
    for _ in 0..POOL {
        // The same connection type keel's Redis tier uses: a reconnecting
        // multiplexed connection.
        conns.push(client.get_connection_manager().await?);
    }
    l2_hit(
        ctx,
        "l2-hit",
        "raw redis",
        &url,
        &prefix,
        keys,
        rounds,
        conns,
    )
    .await?;

    // get-many-100 vs get-100-sequential, in keys per second.
    {
        let manager = CacheManager::new(config(&url, &prefix, 1))?;
        let c: TieredCache<u64, String> = manager.cache("bench")?;
        let batches = if ctx.quick { 200 } else { 1_000 };
        let mut conn = client.get_connection_manager().await?;
        let raw_keys: Vec<String> = (0..keys).map(|k| format!("{prefix}:bench:{k}")).collect();
        let (mut many, mut raw, mut seq) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let started = Instant::now();
            for b in 0..batches {
                let batch: Vec<u64> = (0..100).map(|i| uniform(b * 100 + i, keys)).collect();
                std::hint::black_box(c.get_many(&batch).await);
            }
            many.push((batches * 100) as f64 / started.elapsed().as_secs_f64());
            // The raw client: one MGET of the same keys, each value decoded
            // as a typed read does.
            let started = Instant::now();
            for b in 0..batches {
                let batch: Vec<&str> = (0..100)
                    .map(|i| raw_keys[uniform(b * 100 + i, keys) as usize].as_str())
                    .collect();
                let found: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg(&batch)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                std::hint::black_box(decode_all(&found));
            }
            raw.push((batches * 100) as f64 / started.elapsed().as_secs_f64());
            let started = Instant::now();
            for b in 0..batches / 10 {
                for i in 0..100 {
                    std::hint::black_box(c.get(&uniform(b * 100 + i, keys)).await);
                }
            }
            seq.push((batches / 10 * 100) as f64 / started.elapsed().as_secs_f64());
        }
        let (m, r, s) = (median(&mut many), median(&mut raw), median(&mut seq));
        ctx.report.record("get-many-100", "keel", "ops_per_s", m);
        ctx.report.record("get-many-100", "redis", "ops_per_s", r);
        ctx.report
            .record("get-100-sequential", "keel", "ops_per_s", s);
        ctx.report.note(&format!(
            "get_many(100) / 100 sequential gets = {:.1}x",
            m / s
        ));
        ctx.report.note(&format!(
            "get_many(100): keel / raw MGET + decode = {:.2}",
            m / r
        ));
    }

    invalidation(ctx, &url, &prefix, &client).await?;
    stampede(ctx, &url, &prefix).await?;
    stall(ctx).await?;
    super::tiered_cluster::run(ctx, &prefix, keys, rounds, &value).await?;

    cache.clear().await;
    let _: () = redis::cmd("PING")
        .query_async(&mut probe)
        .await
        .unwrap_or(());
    Ok(())
}

/// The values of raw `MGET` replies, decoded as a typed read decodes
/// them (the same work keel's `get_many` does).
pub(super) fn decode_all(found: &[Option<Vec<u8>>]) -> Vec<Option<String>> {
    found
        .iter()
        .map(|bytes| {
            let envelope = keel_cache::Envelope::<String>::decode(
                bytes.as_deref()?,
                keel_cache::Schema::new("bench", 1),
            );
            envelope.ok()?.value
        })
        .collect()
}

/// An `l2-hit` case: a local tier of 1% of the keys read uniformly from
/// 64 tasks, so 99% of reads go to Redis and back-fill (as on a real
/// instance); against raw GET + decode spread over `conns`, the connection
/// type keel's tier uses on that topology.
#[allow(clippy::too_many_arguments)]
pub(super) async fn l2_hit<C>(
    ctx: &mut Ctx,
    case: &str,
    raw_name: &str,
    url: &str,
    prefix: &str,
    keys: u64,
    rounds: usize,
    conns: Vec<C>,
) -> anyhow::Result<()>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    let ops = if ctx.quick { 100_000 } else { 400_000 };
    let manager = CacheManager::new(config(url, prefix, keys / 100))?;
    let c: TieredCache<u64, String> = manager.cache("bench")?;
    let conns = Arc::new(conns);
    let raw_keys: Arc<Vec<String>> =
        Arc::new((0..keys).map(|k| format!("{prefix}:bench:{k}")).collect());
    let (mut keel, mut raw) = (Vec::new(), Vec::new());
    let raw_errors = Arc::new(AtomicU64::new(0));
    let keel_errors_before = c.stats().remote_errors;
    for round in 0..rounds {
        // Which side goes first alternates, so neither always meets a
        // warmer (or more tired) machine.
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                keel.push(
                    throughput(IN_FLIGHT, ops, {
                        let c = c.clone();
                        move |i| {
                            let c = c.clone();
                            async move {
                                std::hint::black_box(c.get(&uniform(i, keys)).await);
                            }
                        }
                    })
                    .await?,
                );
                continue;
            }
            raw.push(
                throughput(IN_FLIGHT, ops, {
                    let (conns, raw_keys, raw_errors) = (
                        Arc::clone(&conns),
                        Arc::clone(&raw_keys),
                        Arc::clone(&raw_errors),
                    );
                    move |i| {
                        let mut conn = conns[i as usize % conns.len()].clone();
                        let raw_keys = Arc::clone(&raw_keys);
                        let raw_errors = Arc::clone(&raw_errors);
                        async move {
                            let found: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("GET")
                                .arg(&raw_keys[uniform(i, keys) as usize])
                                .query_async(&mut conn)
                                .await;
                            let bytes = found.unwrap_or_else(|_| {
                                raw_errors.fetch_add(1, Ordering::Relaxed);
                                None
                            });
                            // The same work a typed read does: decode the envelope.
                            if let Some(bytes) = bytes {
                                std::hint::black_box(
                                    keel_cache::Envelope::<String>::decode(
                                        &bytes,
                                        keel_cache::Schema::new("bench", 1),
                                    )
                                    .ok(),
                                );
                            }
                        }
                    }
                })
                .await?,
            );
        }
    }
    let keel_errors = c.stats().remote_errors - keel_errors_before;
    ctx.report
        .record(case, "keel", "errors", keel_errors as f64);
    ctx.report.record(
        case,
        "redis",
        "errors",
        raw_errors.load(Ordering::Relaxed) as f64,
    );
    let (k, r) = (median(&mut keel), median(&mut raw));
    ctx.report.record(case, "keel", "ops_per_s", k);
    ctx.report.record(case, "redis", "ops_per_s", r);
    ctx.report
        .note(&format!("{case}: keel / {raw_name} = {:.2}", k / r));
    Ok(())
}

/// Runs `n` operations from `in_flight` spawned tasks, as a service runs
/// its requests, each task taking the next operation when its last one is
/// done; ops/s. An operation that panics fails the measurement.
pub(super) async fn throughput<F, Fut>(in_flight: usize, n: u64, op: F) -> anyhow::Result<f64>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (op, next) = (Arc::clone(&op), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    op(i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.context("a timed operation panicked")?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Records when an invalidation arrives, and wakes the waiting measurer.
#[derive(Default)]
struct Arrivals {
    seen: Mutex<Vec<(String, Instant)>>,
    arrived: tokio::sync::Notify,
}

impl InvalidationHandler for Arrivals {
    fn on_invalidation(&self, invalidation: &Invalidation) {
        if let Invalidation::Keys { keys, .. } = invalidation {
            let now = Instant::now();
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            for k in keys {
                seen.push((k.clone(), now));
            }
            self.arrived.notify_waiters();
        }
    }
}

async fn invalidation(
    ctx: &mut Ctx,
    url: &str,
    prefix: &str,
    client: &redis::Client,
) -> anyhow::Result<()> {
    let a = CacheManager::new(config(url, prefix, 10_000))?;
    let b = CacheManager::new(config(url, prefix, 10_000))?;
    let publisher = client.get_multiplexed_async_connection().await?;
    let channel = format!("{prefix}:raw-bench");
    invalidation_between(ctx, "", [&a, &b], client, publisher, &channel, None).await
}

/// A raw sharded pub/sub pair on a cluster: `SPUBLISH` through
/// `publisher` → the pushes of a RESP3 connection that `SSUBSCRIBE`d.
pub(super) struct Sharded {
    pub(super) publisher: redis::cluster_async::ClusterConnection,
    pub(super) pushes: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
    /// Holds the subscription.
    pub(super) _subscriber: redis::cluster_async::ClusterConnection,
}

/// The `invalidation{suffix}` and `write-invalidation{suffix}` cases:
/// instance `a` writes and publishes, instance `b`'s bus delivers; against
/// a raw `PUBLISH` on `channel` through `publisher` → a subscriber made
/// from `subscriber`.
pub(super) async fn invalidation_between<C>(
    ctx: &mut Ctx,
    suffix: &str,
    [a, b]: [&CacheManager; 2],
    subscriber: &redis::Client,
    mut publisher: C,
    channel: &str,
    mut sharded: Option<Sharded>,
) -> anyhow::Result<()>
where
    C: redis::aio::ConnectionLike + Send,
{
    let samples = if ctx.quick { 500 } else { 2_000 };
    let ca: TieredCache<u64, String> = a.cache("bench")?;
    let cb: TieredCache<u64, String> = b.cache("bench")?;
    let arrivals = Arc::new(Arrivals::default());
    let bus = b
        .bus()
        .context("the bench config has Redis, so the manager has a bus")?;
    let weak = Arc::downgrade(&arrivals);
    let weak: std::sync::Weak<dyn InvalidationHandler> = weak;
    bus.register("bench", weak);
    for _ in 0..200 {
        if a.probe().await && b.probe().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Raw: PUBLISH on one connection → a subscriber on another.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut pubsub = subscriber.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    let listener = tokio::spawn(async move {
        let mut messages = pubsub.on_message();
        while messages.next().await.is_some() {
            if tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    let bus_a = a
        .bus()
        .context("the bench config has Redis, so the manager has a bus")?;
    let (bus_case, write_case) = (
        format!("invalidation{suffix}"),
        format!("write-invalidation{suffix}"),
    );

    // The three measurements alternate so load on the machine hits all.
    let (mut bus_us, mut write_us, mut raw_us) = (Vec::new(), Vec::new(), Vec::new());
    let mut sharded_us = Vec::new();
    // Messages that did not arrive within a second, per side.
    let (mut bus_lost, mut write_lost, mut raw_lost) = (0u64, 0u64, 0u64);
    let mut sharded_lost = 0u64;
    for i in 0..samples as u64 {
        // keel, the bus alone: publish → the other instance's handler ran.
        let key = format!("bus-{i}");
        let started = Instant::now();
        bus_a.publish_keys("bench", vec![key.clone()]).await?;
        match arrival(&arrivals, &key).await {
            Some(t) => bus_us.push(t.duration_since(started).as_secs_f64() * 1e6),
            None => bus_lost += 1,
        }
        // keel, a whole write: L2 SET, then publish → the other instance
        // dropped its copy.
        cb.get(&i).await;
        let started = Instant::now();
        ca.insert(i, "changed".into()).await;
        match arrival(&arrivals, &i.to_string()).await {
            Some(t) => write_us.push(t.duration_since(started).as_secs_f64() * 1e6),
            None => write_lost += 1,
        }
        // raw PUBLISH → subscriber
        let started = Instant::now();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(i)
            .query_async(&mut publisher)
            .await?;
        match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            Ok(Some(t)) => raw_us.push(t.duration_since(started).as_secs_f64() * 1e6),
            _ => raw_lost += 1,
        }
        // raw SPUBLISH → sharded subscriber (a cluster only)
        if let Some(Sharded {
            publisher, pushes, ..
        }) = sharded.as_mut()
        {
            let started = Instant::now();
            let _: i64 = redis::cmd("SPUBLISH")
                .arg(channel)
                .arg(i)
                .query_async(publisher)
                .await?;
            let message = async {
                while let Some(push) = pushes.recv().await {
                    if push.kind == redis::PushKind::SMessage {
                        return Some(Instant::now());
                    }
                }
                None
            };
            match tokio::time::timeout(Duration::from_secs(1), message).await {
                Ok(Some(t)) => sharded_us.push(t.duration_since(started).as_secs_f64() * 1e6),
                _ => sharded_lost += 1,
            }
        }
    }
    listener.abort();
    if sharded.is_some() {
        ctx.report
            .record(&bus_case, "redis-sharded", "timed_out", sharded_lost as f64);
        sharded_us.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            sharded_us
                .get(((sharded_us.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        ctx.report
            .record(&bus_case, "redis-sharded", "p50_us", pick(0.5));
        ctx.report
            .record(&bus_case, "redis-sharded", "p99_us", pick(0.99));
    }
    for (case, name, lost) in [
        (&bus_case, "keel", bus_lost),
        (&bus_case, "redis", raw_lost),
        (&write_case, "keel", write_lost),
    ] {
        ctx.report.record(case, name, "timed_out", lost as f64);
    }
    if bus_lost + raw_lost + write_lost > 0 {
        ctx.report.note(&format!(
            "invalidations{suffix} not seen within 1 s: keel {bus_lost}, raw {raw_lost}, keel write {write_lost}"
        ));
    }
    for (case, name, mut v) in [
        (&bus_case, "keel", bus_us),
        (&bus_case, "redis", raw_us),
        (&write_case, "keel", write_us),
    ] {
        v.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            v.get(((v.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        ctx.report.record(case, name, "p50_us", pick(0.5));
        ctx.report.record(case, name, "p99_us", pick(0.99));
    }
    if let (Some(k), Some(r)) = (
        ctx.report.get(&bus_case, "keel", "p99_us"),
        ctx.report.get(&bus_case, "redis", "p99_us"),
    ) {
        ctx.report.note(&format!(
            "{bus_case}: keel publish → other instance's local copy dropped, p99 = {:.2}x a raw PUBLISH → subscriber",
            k / r
        ));
    }
    let _ = ca.clear().await;
    Ok(())
}

/// Waits (at most a second) for the invalidation of `key` to arrive.
/// When the invalidation of `key` arrived (within a second). Waits the
/// way the raw subscriber's measurement does, asleep until woken, so
/// neither side spins on the two cores the other needs.
async fn arrival(arrivals: &Arrivals, key: &str) -> Option<Instant> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let find = || {
        arrivals
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, t)| *t)
    };
    loop {
        // Registered before the look, so an arrival in between still wakes.
        let woken = arrivals.arrived.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if let Some(t) = find() {
            return Some(t);
        }
        if tokio::time::timeout_at(deadline, woken).await.is_err() {
            return find();
        }
    }
}

async fn stampede(ctx: &mut Ctx, url: &str, prefix: &str) -> anyhow::Result<()> {
    let callers = 1_000;
    for (name, lock) in [("keel", true), ("keel-nolock", false)] {
        let mut cfg = config(url, &format!("{prefix}-{name}"), 10_000);
        cfg.defaults.lock = lock.then(LockSettings::default);
        let a = CacheManager::new(cfg.clone())?;
        let b = CacheManager::new(cfg)?;
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..callers {
            let c: TieredCache<u64, String> = if i % 2 == 0 {
                a.cache("bench")?
            } else {
                b.cache("bench")?
            };
            let loads = Arc::clone(&loads);
            tasks.push(tokio::spawn(async move {
                c.get_or_load(1, move || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    "v".to_owned()
                })
                .await
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        ctx.report.record(
            "stampede",
            name,
            "loads",
            loads.load(Ordering::SeqCst) as f64,
        );
        let c: TieredCache<u64, String> = a.cache("bench")?;
        c.clear().await;
    }
    // Cache-aside on the raw client as a careful user writes it: GET, and
    // on a miss join the process's one load of that key (a single flight
    // per instance), which loads and SETs. Two instances, each with its own
    // connection and its own flights, so the floor is one load each.
    let client = redis::Client::open(url)?;
    let key = format!("{prefix}-raw:stampede");
    let raw_loads = Arc::new(AtomicU64::new(0));
    let mut instances = Vec::new();
    for _ in 0..2 {
        let conn = client.get_multiplexed_async_connection().await?;
        instances.push((conn, Arc::new(SingleFlight::default())));
    }
    let mut tasks = Vec::new();
    for i in 0..callers {
        let raw_loads = Arc::clone(&raw_loads);
        let (conn, flights) = &instances[i % 2];
        let mut conn = conn.clone();
        let flights = Arc::clone(flights);
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let found: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .ok()?;
            if found.is_none() {
                flights
                    .run(&key, async {
                        raw_loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _: Option<()> = redis::cmd("SET")
                            .arg(&key)
                            .arg("v")
                            .arg("EX")
                            .arg(60)
                            .query_async(&mut conn)
                            .await
                            .ok();
                        "v".to_owned()
                    })
                    .await;
            }
            Some(())
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut conn = instances[0].0.clone();
    let _: Option<()> = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .ok();
    ctx.report.record(
        "stampede",
        "redis",
        "loads",
        raw_loads.load(Ordering::SeqCst) as f64,
    );
    Ok(())
}

/// One load per key at a time within a process: callers that miss while
/// a load of their key runs wait for its value instead of loading again.
#[derive(Default)]
struct SingleFlight {
    flights: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<String>>>>,
}

impl SingleFlight {
    async fn run(&self, key: &str, load: impl Future<Output = String>) -> String {
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(flights.entry(key.to_owned()).or_default())
        };
        let value = flight.get_or_init(|| load).await.clone();
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(key);
        }
        value
    }
}

/// `stall`: 64 callers write and read keys the local tier does not hold
/// while Redis sleeps for two seconds; their latency against the
/// configured command timeout, and local hits per second once the breaker
/// has opened against before the stall.
async fn stall(ctx: &mut Ctx) -> anyhow::Result<()> {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let Some(server) =
        keel_test_support::OwnRedis::start_with(&["--enable-debug-command", "local"])
    else {
        ctx.report
            .note("stall: skipped (redis-server cannot be started here)");
        return Ok(());
    };
    let mut cfg = config(&server.url(), "stall", 10_000);
    if let Some(redis) = cfg.redis.as_mut() {
        redis.command_timeout = TIMEOUT;
    }
    let manager = CacheManager::new(cfg)?;
    let c: TieredCache<u64, String> = manager.cache("bench")?;
    for k in 0..1_000u64 {
        c.insert(k, "x".repeat(100)).await;
    }
    let hits = |c: TieredCache<u64, String>| async move {
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            for k in 0..1_000u64 {
                std::hint::black_box(c.get(&k).await);
            }
            n += 1_000;
        }
        n as f64 / started.elapsed().as_secs_f64()
    };
    let before = hits(c.clone()).await;

    let client = redis::Client::open(server.url().as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let sleeper = tokio::spawn(async move {
        let _: redis::RedisResult<()> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(2)
            .query_async(&mut conn)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    futures_util::stream::iter(0..u64::MAX)
        .take_while(|_| std::future::ready(started.elapsed() < Duration::from_secs(1)))
        .map(|i| {
            let (c, latencies) = (c.clone(), Arc::clone(&latencies));
            async move {
                let t = Instant::now();
                let key = 1_000_000 + i;
                if i % 2 == 0 {
                    c.insert(key, "y".into()).await;
                } else {
                    std::hint::black_box(c.get(&key).await);
                }
                if let Ok(mut l) = latencies.lock() {
                    l.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .for_each(|()| async {})
        .await;
    let during = hits(c.clone()).await;
    let mut l = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_by(f64::total_cmp);
    if l.is_empty() {
        return Ok(());
    }
    let pick = |q: f64| l[((l.len() - 1) as f64 * q) as usize];
    let timeout_us = TIMEOUT.as_secs_f64() * 1e6;
    ctx.report.record("stall", "keel", "p99_us", pick(0.99));
    ctx.report.record("stall", "keel", "max_us", pick(1.0));
    ctx.report.record("stall", "floor", "p99_us", timeout_us);
    ctx.report
        .record("l1-hit-stalled", "keel", "ops_per_s", during);
    ctx.report
        .record("l1-hit-calm", "keel", "ops_per_s", before);
    ctx.report.note(&format!(
        "stall: {} calls in the first second of a 2 s DEBUG SLEEP, p99 {:.0} us, max {:.0} us, command_timeout {:.0} us; local hits with the breaker open / before = {:.2}",
        l.len(),
        pick(0.99),
        pick(1.0),
        timeout_us,
        during / before
    ));
    sleeper.await.ok();
    drop(server);
    Ok(())
}

/// The `i`-th key of a uniform random sequence over `0..keys` (the same
/// for every side of a case): splitmix64 of `i`.
pub(super) fn uniform(i: u64, keys: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn throughput_runs_each_operation_once_across_its_tasks() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tasks = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let rate = throughput(8, 1_000, {
            let (seen, tasks) = (Arc::clone(&seen), Arc::clone(&tasks));
            move |i| {
                let (seen, tasks) = (Arc::clone(&seen), Arc::clone(&tasks));
                async move {
                    seen.lock().unwrap().push(i);
                    tasks.lock().unwrap().insert(tokio::task::try_id());
                    tokio::task::yield_now().await;
                }
            }
        })
        .await
        .unwrap();
        assert!(rate > 0.0);
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..1_000).collect::<Vec<_>>());
        assert_eq!(
            tasks.lock().unwrap().len(),
            8,
            "every operation runs in one of the spawned tasks"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_operation_fails_the_measurement() {
        let result = throughput(2, 10, |i| async move {
            assert_ne!(i, 5, "operation 5 fails");
        })
        .await;
        assert!(result.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_flight_loads_once_for_concurrent_callers() {
        let flights = Arc::new(SingleFlight::default());
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (flights, loads) = (Arc::clone(&flights), Arc::clone(&loads));
            tasks.push(tokio::spawn(async move {
                flights
                    .run("k", async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        "v".to_owned()
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), "v");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(
            flights.flights.lock().unwrap().is_empty(),
            "a finished flight is forgotten"
        );
    }
}
