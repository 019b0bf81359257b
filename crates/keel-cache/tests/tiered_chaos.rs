//! Three instances share one Redis under random writes, deletes and reads
//! while Redis is cut off from one instance, loses its subscribers, stalls
//! and is killed. Every operation is recorded with its start and end;
//! afterwards the history is checked:
//!
//! - no read returned a value older than the latest write or delete that
//!   completed before the read began, beyond [`WINDOW`] outside faults and
//!   beyond the fault's length plus [`FAULT_GRACE`] during one;
//! - after a quiet period, every instance and Redis hold the source's value
//!   for every key (or nothing).
//!
//! The run takes [`ROUND`] by default; `KEEL_SOAK_SECS=600` runs the fault
//! cycle over and over for ten minutes.
#![cfg(feature = "redis")]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keel_cache::{CacheSettings, InvalidationBus, RedisCache, RedisConfig, TieredCache};
use keel_test_support::{OwnRedis, Proxy};
use parking_lot::Mutex;

const KEYS: u64 = 200;
const INSTANCES: usize = 3;
const WORKERS_PER_INSTANCE: usize = 2;
/// One cycle of faults.
const ROUND: Duration = Duration::from_secs(14);
/// How stale a read may be outside faults: the time an invalidation takes
/// to reach the other instances, with room for a loaded two-core machine.
const WINDOW: Duration = Duration::from_millis(500);
/// How much longer than a fault a read may be stale: the bus's resubscribe
/// backoff (up to 1 s) and the tier's probe and reconciliation.
const FAULT_GRACE: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Wrote `Some(seq)` or deleted (`None`); `seq` orders a key's writes.
    Write { seq: u64, value: Option<u64> },
    /// Read this.
    Read(Option<u64>),
}

#[derive(Debug, Clone, Copy)]
struct Op {
    key: u64,
    instance: usize,
    kind: Kind,
    start: Instant,
    end: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    what: &'static str,
    start: Instant,
    end: Instant,
}

/// The database the caches front: a write updates it, then the cache.
#[derive(Default)]
struct Source {
    values: Mutex<HashMap<u64, Option<u64>>>,
}

impl Source {
    fn get(&self, key: u64) -> Option<u64> {
        self.values.lock().get(&key).copied().flatten()
    }
}

struct Instance {
    cache: TieredCache<u64, u64>,
    redis: RedisCache,
    proxy: Proxy,
}

fn instance(server: &OwnRedis) -> Instance {
    let proxy = Proxy::start(server.addr());
    let mut config = RedisConfig::new(proxy.redis_url()).key_prefix("chaos");
    config.command_timeout = Duration::from_millis(250);
    config.connect_timeout = Duration::from_millis(250);
    config.probe_interval = Duration::from_millis(100);
    let redis = RedisCache::new(config).unwrap();
    let bus = InvalidationBus::start(redis.clone());
    let mut settings = CacheSettings::default();
    settings.ttl = Some(Duration::from_secs(60));
    settings.capacity = 1000;
    let cache = TieredCache::builder("chaos", settings)
        .redis(redis.clone(), Some(bus))
        .build()
        .unwrap();
    Instance {
        cache,
        redis,
        proxy,
    }
}

fn soak() -> Duration {
    std::env::var("KEEL_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(ROUND, Duration::from_secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_is_staler_than_the_stated_window_under_faults() {
    let Some(server) = OwnRedis::start_with(&["--enable-debug-command", "local"]) else {
        return;
    };
    let server = Arc::new(Mutex::new(server));
    let instances: Arc<Vec<Instance>> =
        Arc::new((0..INSTANCES).map(|_| instance(&server.lock())).collect());
    for i in instances.iter() {
        for _ in 0..50 {
            if !i.cache.is_degraded() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let source = Arc::new(Source::default());
    let locks: Arc<Vec<tokio::sync::Mutex<()>>> =
        Arc::new((0..KEYS).map(|_| tokio::sync::Mutex::new(())).collect());
    let seq = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let run_for = soak();
    let until = started + run_for;

    let mut workers = Vec::new();
    for n in 0..INSTANCES * WORKERS_PER_INSTANCE {
        let (instances, source, locks, seq) = (
            instances.clone(),
            source.clone(),
            locks.clone(),
            seq.clone(),
        );
        workers.push(tokio::spawn(async move {
            let at = n % INSTANCES;
            let cache = &instances[at].cache;
            let mut rng = fastrand::Rng::with_seed(n as u64);
            let mut ops = Vec::new();
            while Instant::now() < until {
                // Skewed: a few hot keys see most of the traffic.
                let x = rng.f64();
                let key = ((x * x) * KEYS as f64) as u64;
                let roll = rng.u32(0..100);
                if roll < 20 {
                    let _guard = locks[key as usize].lock().await;
                    let seq = seq.fetch_add(1, Ordering::SeqCst) + 1;
                    let value = (roll >= 4).then_some(seq);
                    let start = Instant::now();
                    source.values.lock().insert(key, value);
                    match value {
                        Some(v) => cache.insert(key, v).await,
                        None => cache.remove(&key).await,
                    }
                    ops.push(Op {
                        key,
                        instance: at,
                        kind: Kind::Write { seq, value },
                        start,
                        end: Instant::now(),
                    });
                } else {
                    let start = Instant::now();
                    let src = source.clone();
                    let read = cache
                        .try_get_or_load(key, move || async move {
                            Ok::<_, std::io::Error>(src.get(key))
                        })
                        .await;
                    let end = Instant::now();
                    if let Ok(value) = read {
                        ops.push(Op {
                            key,
                            instance: at,
                            kind: Kind::Read(value),
                            start,
                            end,
                        });
                    }
                }
                if rng.u32(0..8) == 0 {
                    tokio::task::yield_now().await;
                }
            }
            ops
        }));
    }

    let faults = run_faults(&server, &instances, started, until).await;
    let mut ops: Vec<Op> = Vec::new();
    for w in workers {
        ops.extend(w.await.unwrap());
    }

    // A quiet period: every instance back, reconciled and resubscribed.
    let quiet = Instant::now() + Duration::from_secs(20);
    while instances.iter().any(|i| i.cache.is_degraded()) && Instant::now() < quiet {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        instances.iter().all(|i| !i.cache.is_degraded()),
        "every instance recovers by itself"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let report = check(&ops, &faults);
    println!(
        "{} ops ({} reads, {} writes) over {:?}; stale reads: {} outside faults (max {:?}), {} during faults (max {:?} past the fault's start); by fault (stale reads, max staleness): {:?}",
        ops.len(),
        report.reads,
        ops.len() - report.reads,
        run_for,
        report.stale_outside,
        report.max_outside,
        report.stale_during,
        report.max_during,
        report.by_fault,
    );
    assert!(
        report.violations.is_empty(),
        "{} reads staler than allowed, first: {:?}",
        report.violations.len(),
        &report.violations[..report.violations.len().min(5)]
    );
    assert!(report.reads > 1000, "the run did work: {}", report.reads);

    // Final state: what any instance or Redis holds is the source's value.
    let mut differing = Vec::new();
    for key in 0..KEYS {
        let truth = source.get(key);
        for (n, i) in instances.iter().enumerate() {
            if let Some(v) = i.cache.get(&key).await
                && Some(v) != truth
            {
                differing.push((key, format!("instance {n}"), v, truth));
            }
        }
        let stored = instances[0]
            .redis
            .get::<u64>("chaos", &key.to_string())
            .await
            .unwrap();
        if let Some(Some(v)) = stored.map(|e| e.value)
            && Some(v) != truth
        {
            differing.push((key, "redis".into(), v, truth));
        }
    }
    assert!(differing.is_empty(), "keys off the source: {differing:?}");
}

/// Runs the fault cycle until `until`; returns when each fault happened.
async fn run_faults(
    server: &Arc<Mutex<OwnRedis>>,
    instances: &[Instance],
    started: Instant,
    until: Instant,
) -> Vec<Fault> {
    let mut faults = Vec::new();
    let mut round = 0u32;
    let direct = || {
        let url = server.lock().url();
        async move {
            redis::Client::open(url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
        }
    };
    let at = |round: u32, secs: f64| started + ROUND * round + Duration::from_secs_f64(secs);
    let sleep_until = |t: Instant| tokio::time::sleep(t.saturating_duration_since(Instant::now()));
    while at(round, 13.0) <= until {
        // One instance is cut off from Redis, which keeps its data.
        sleep_until(at(round, 1.0)).await;
        let start = Instant::now();
        instances[0].proxy.cut();
        tokio::time::sleep(Duration::from_secs(1)).await;
        instances[0].proxy.restore();
        faults.push(Fault {
            what: "one instance cut off",
            start,
            end: Instant::now(),
        });

        // Every instance loses its subscription.
        sleep_until(at(round, 5.0)).await;
        let start = Instant::now();
        if let Ok(mut conn) = direct().await {
            let _: redis::RedisResult<u64> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut conn)
                .await;
        }
        faults.push(Fault {
            what: "pub/sub clients killed",
            start,
            end: Instant::now(),
        });

        // Redis stalls for a second.
        sleep_until(at(round, 8.0)).await;
        let start = Instant::now();
        if let Ok(mut conn) = direct().await {
            let _: redis::RedisResult<()> = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(1)
                .query_async(&mut conn)
                .await;
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(start.elapsed())).await;
        faults.push(Fault {
            what: "redis stalled",
            start,
            end: Instant::now(),
        });

        // Redis is killed and restarted empty.
        sleep_until(at(round, 11.5)).await;
        let start = Instant::now();
        tokio::task::block_in_place(|| server.lock().stop());
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::task::block_in_place(|| server.lock().restart());
        faults.push(Fault {
            what: "redis killed and restarted",
            start,
            end: Instant::now(),
        });
        round += 1;
    }
    sleep_until(until).await;
    faults
}

#[derive(Debug, Default)]
struct Report {
    reads: usize,
    stale_outside: usize,
    stale_during: usize,
    max_outside: Duration,
    max_during: Duration,
    /// Per fault: stale reads and the largest staleness.
    by_fault: HashMap<&'static str, (usize, Duration)>,
    violations: Vec<String>,
}

/// Checks every read against the writes of its key.
fn check(ops: &[Op], faults: &[Fault]) -> Report {
    let mut writes: HashMap<u64, Vec<&Op>> = HashMap::new();
    for op in ops {
        if let Kind::Write { .. } = op.kind {
            writes.entry(op.key).or_default().push(op);
        }
    }
    let seq_of = |op: &Op| match op.kind {
        Kind::Write { seq, .. } => seq,
        Kind::Read(_) => 0,
    };
    for list in writes.values_mut() {
        list.sort_by_key(|op| seq_of(op));
    }
    // Per key: where each write sits in its history, and which are deletes
    // (a key's writes never overlap, so their starts increase with seq).
    let index: HashMap<u64, (HashMap<u64, usize>, Vec<usize>)> = writes
        .iter()
        .map(|(&key, list)| {
            let by_seq = list
                .iter()
                .enumerate()
                .map(|(i, w)| (seq_of(w), i))
                .collect();
            let deletes = list
                .iter()
                .enumerate()
                .filter(|(_, w)| matches!(w.kind, Kind::Write { value: None, .. }))
                .map(|(i, _)| i)
                .collect();
            (key, (by_seq, deletes))
        })
        .collect();
    let mut report = Report::default();
    for read in ops {
        let Kind::Read(got) = read.kind else { continue };
        report.reads += 1;
        let history = writes.get(&read.key).map_or(&[][..], Vec::as_slice);
        let (by_seq, deletes) = match index.get(&read.key) {
            Some((by_seq, deletes)) => (Some(by_seq), deletes.as_slice()),
            None => (None, &[][..]),
        };
        // Which write the read returned (index into history; None = the
        // initial absence).
        let version: Option<usize> = match got {
            Some(v) => match by_seq.and_then(|m| m.get(&v)) {
                Some(&i) => Some(i),
                None => {
                    report.violations.push(format!(
                        "read of key {} returned {v}, never written",
                        read.key
                    ));
                    continue;
                }
            },
            // The most favourable absence: the latest delete begun before
            // the read ended.
            None => {
                let n = deletes.partition_point(|&i| history[i].start < read.end);
                n.checked_sub(1).map(|j| deletes[j])
            }
        };
        if let Some(i) = version
            && history[i].start > read.end
        {
            report.violations.push(format!(
                "read on instance {} returned a value written after it ended: {:?}",
                read.instance, read
            ));
            continue;
        }
        let next = version.map_or(0, |i| i + 1);
        let Some(newer) = history.get(next) else {
            continue;
        };
        if newer.end >= read.start {
            continue;
        }
        let age = read.start - newer.end;
        let fault = faults.iter().find(|f| {
            read.end >= f.start && read.start <= f.end + FAULT_GRACE
                || newer.end >= f.start && newer.start <= f.end + FAULT_GRACE
        });
        match fault {
            None => {
                report.stale_outside += 1;
                report.max_outside = report.max_outside.max(age);
                if age > WINDOW {
                    report.violations.push(format!(
                        "key {} on instance {}: stale by {age:?} outside faults (read {:?}, newer write on instance {} ended {:?} before)",
                        read.key, read.instance, got, newer.instance, age
                    ));
                }
            }
            Some(f) => {
                report.stale_during += 1;
                let entry = report.by_fault.entry(f.what).or_default();
                entry.0 += 1;
                entry.1 = entry.1.max(age);
                let since = read.start.saturating_duration_since(f.start);
                report.max_during = report.max_during.max(since);
                let allowed = (f.end - f.start) + FAULT_GRACE;
                if age > allowed {
                    report.violations.push(format!(
                        "key {} on instance {}: stale by {age:?} during '{}' (allowed {allowed:?})",
                        read.key, read.instance, f.what
                    ));
                }
            }
        }
    }
    report
}
