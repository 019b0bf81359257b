//! `cache`: million operations per second at 1 and 2 threads, and heap
//! bytes per entry, for Keel and its peers (crates/keel-bench/README.md).
//!
//! Keys are Zipf(0.99) over 1M keys, values `u64`; each thread replays its
//! own pre-generated stream, so no key is drawn inside a timed loop.
//!
//! - `read-*`: capacity 1M, pre-filled with all 1M keys, only `get`s.
//! - `mixed-*`: capacity 100k (10% of the keys), 9 `get`s then 1 `insert`.
//! - `insert-2t`: capacity 100k, only `insert`s.
//! - `memory`: heap bytes the read cache holds once filled, per resident
//!   entry, minus the 16 bytes of key and value.
//!
//! The timed cases run in a child process with allocation counting off
//! (moka allocates per insert and would pay the counter on every one);
//! `memory` runs in the parent, where counting is on (`suites::child`).
//!
//! Within a case every implementation runs for the same wall time, round
//! after round with the order rotated; the median round is reported, so
//! noise from the machine hits every implementation alike. `hashmap` is a
//! `std::collections::HashMap` with foldhash's fast hasher, driven by one
//! thread, never evicting: the ceiling.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use foldhash::fast::RandomState;

use crate::Ctx;
use crate::caches::{
    BenchCache, Contender, KEEL, KEEL_DEFAULT_TTL, MOKA_FOLDHASH, PEERS, Spec, dispatch,
};
use crate::memory::allocated;
use crate::workload::{median, scramble, zipf};

/// The `hashmap` ceiling.
type Map = HashMap<u64, u64, RandomState>;

/// Distinct keys.
const KEYS: usize = 1_000_000;
/// Capacity of the caches the mixed and insert cases run on.
const SMALL: usize = KEYS / 10;
/// Bytes of one key and one value.
const PAYLOAD: f64 = 16.0;
/// Operations between two looks at the stop flag.
const CHUNK: usize = 256;

/// How long the suite measures.
struct Plan {
    rounds: usize,
    run_for: Duration,
    stream_len: usize,
}

/// What each operation of a stream does.
#[derive(Debug, Clone, Copy)]
enum Mix {
    Read,
    /// Every tenth operation inserts.
    Mixed,
    Insert,
}

/// What one thread drives: a shared cache handle or a private map.
trait Target {
    fn get(&mut self, key: u64) -> Option<u64>;
    fn insert(&mut self, key: u64, value: u64);
}

impl<C: BenchCache> Target for &C {
    #[inline]
    fn get(&mut self, key: u64) -> Option<u64> {
        BenchCache::get(*self, key)
    }
    #[inline]
    fn insert(&mut self, key: u64, value: u64) {
        BenchCache::insert(*self, key, value);
    }
}

impl Target for &mut Map {
    #[inline]
    fn get(&mut self, key: u64) -> Option<u64> {
        HashMap::get(self, &key).copied()
    }
    #[inline]
    fn insert(&mut self, key: u64, value: u64) {
        HashMap::insert(self, key, value);
    }
}

/// Runs the suite.
pub(crate) fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let plan = if ctx.quick {
        Plan {
            rounds: 3,
            run_for: Duration::from_millis(150),
            stream_len: 1 << 20,
        }
    } else {
        Plan {
            rounds: 7,
            run_for: Duration::from_millis(400),
            stream_len: 1 << 22,
        }
    };
    let streams = [
        zipf(KEYS as u64, 0.99, plan.stream_len, 11)?,
        zipf(KEYS as u64, 0.99, plan.stream_len, 12)?,
    ];
    let specs = specs();

    // Read cases: every key resident.
    let all_keys: Vec<u64> = (1..=KEYS as u64).map(scramble).collect();
    let mut read_caches = Vec::new();
    for spec in &specs {
        read_caches.push((spec.name, filled(*spec, &all_keys)));
    }
    let mut map: Map = all_keys.iter().map(|k| (*k, *k)).collect();
    drop(all_keys);

    measure(
        ctx,
        &plan,
        "read-1t",
        Mix::Read,
        1,
        &read_caches,
        Some(&mut map),
        &streams,
    )?;
    measure(
        ctx,
        &plan,
        "read-2t",
        Mix::Read,
        2,
        &read_caches,
        None,
        &streams,
    )?;
    occupancy(ctx, "read", &read_caches, KEYS);
    drop(read_caches);

    // Mixed and insert cases: a cache a tenth of the keys, warmed up.
    let mut small_caches = Vec::new();
    for spec in &specs {
        let built = spec.build(SMALL);
        for &key in &streams[0][..plan.stream_len.min(KEYS)] {
            built.as_dyn().insert(key, key);
        }
        built.as_dyn().settle();
        small_caches.push((spec.name, built));
    }
    measure(
        ctx,
        &plan,
        "mixed-1t",
        Mix::Mixed,
        1,
        &small_caches,
        Some(&mut map),
        &streams,
    )?;
    measure(
        ctx,
        &plan,
        "mixed-2t",
        Mix::Mixed,
        2,
        &small_caches,
        None,
        &streams,
    )?;
    measure(
        ctx,
        &plan,
        "insert-2t",
        Mix::Insert,
        2,
        &small_caches,
        None,
        &streams,
    )?;

    occupancy(ctx, "mixed and insert", &small_caches, SMALL);
    Ok(())
}

/// Keel, moka (with its own and with Keel's hasher) and the other peers.
fn specs() -> Vec<Spec> {
    KEEL.iter()
        .copied()
        .chain([KEEL_DEFAULT_TTL, PEERS[0], MOKA_FOLDHASH])
        .chain(PEERS[1..].iter().copied())
        .collect()
}

/// A cache of capacity [`KEYS`] holding every key of `keys`.
fn filled(spec: Spec, keys: &[u64]) -> Contender {
    let built = spec.build(KEYS);
    for &key in keys {
        built.as_dyn().insert(key, key);
    }
    built.as_dyn().settle();
    built
}

/// The `memory` case, in the process that counts allocations (the timed
/// cases run in a child that does not; see `suites::child`): the heap each
/// read-case cache holds once filled, one cache at a time. Then the notes
/// comparing every case.
pub(crate) fn memory(ctx: &mut Ctx) -> anyhow::Result<()> {
    let all_keys: Vec<u64> = (1..=KEYS as u64).map(scramble).collect();
    for spec in specs() {
        let before = allocated();
        let built = filled(spec, &all_keys);
        let bytes = allocated().saturating_sub(before);
        let resident = all_keys
            .iter()
            .filter(|k| built.as_dyn().get(**k).is_some())
            .count();
        drop(built);
        record_memory(ctx, spec.name, bytes, resident);
    }
    let before = allocated();
    let map: Map = all_keys.iter().map(|k| (*k, *k)).collect();
    record_memory(
        ctx,
        "hashmap",
        allocated().saturating_sub(before),
        map.len(),
    );
    notes(ctx);
    Ok(())
}

/// Prints how many entries each cache holds after a case's runs against
/// its capacity, so a cache that keeps fewer (or more) than it was given
/// shows beside its speed.
fn occupancy(ctx: &Ctx, what: &str, caches: &[(&'static str, Contender)], capacity: usize) {
    let mut line = format!("entries held after the {what} cases, of {capacity}:");
    for (name, contender) in caches {
        let cache = contender.as_dyn();
        cache.settle();
        match cache.len() {
            Some(n) => line.push_str(&format!(" {name} {n};")),
            None => line.push_str(&format!(" {name} (cannot say);")),
        }
    }
    ctx.report.note(line.trim_end_matches(';'));
}

fn record_memory(ctx: &mut Ctx, name: &str, bytes: usize, resident: usize) {
    if resident > 0 {
        let per_entry = bytes as f64 / resident as f64 - PAYLOAD;
        ctx.report
            .record("memory", name, "bytes_per_entry", per_entry);
    }
}

/// Times every cache (and the map, if given) on one case and records the
/// median rate.
#[allow(clippy::too_many_arguments)]
fn measure(
    ctx: &mut Ctx,
    plan: &Plan,
    case: &str,
    mix: Mix,
    threads: usize,
    caches: &[(&'static str, Contender)],
    mut map: Option<&mut Map>,
    streams: &[Vec<u64>; 2],
) -> anyhow::Result<()> {
    let entrants = caches.len() + usize::from(map.is_some());
    let mut samples = vec![Vec::with_capacity(plan.rounds); entrants];
    for round in 0..plan.rounds {
        for turn in 0..entrants {
            let i = (turn + round) % entrants;
            let mops = match caches.get(i) {
                Some((_, contender)) => dispatch!(contender, |c| {
                    timed(vec![c; threads], mix, streams, plan.run_for)?
                }),
                None => match map.as_deref_mut() {
                    Some(map) => timed(vec![map], mix, streams, plan.run_for)?,
                    None => continue,
                },
            };
            samples[i].push(mops);
        }
    }
    for (i, values) in samples.iter_mut().enumerate() {
        let name = caches.get(i).map_or("hashmap", |(name, _)| *name);
        ctx.report.record(case, name, "mops", median(values));
    }
    Ok(())
}

/// Runs one target per thread, each over its own stream, for `run_for`;
/// returns million operations per second over all threads.
fn timed<T: Target + Send>(
    targets: Vec<T>,
    mix: Mix,
    streams: &[Vec<u64>; 2],
    run_for: Duration,
) -> anyhow::Result<f64> {
    let stop = AtomicBool::new(false);
    let start_line = Barrier::new(targets.len() + 1);
    thread::scope(|scope| {
        let workers: Vec<_> = targets
            .into_iter()
            .zip(streams.iter())
            .map(|(target, keys)| {
                let (stop, start_line) = (&stop, &start_line);
                scope.spawn(move || {
                    start_line.wait();
                    drive(target, keys, mix, stop)
                })
            })
            .collect();
        start_line.wait();
        let started = Instant::now();
        thread::sleep(run_for);
        stop.store(true, Ordering::Relaxed);
        let mut ops = 0;
        for worker in workers {
            ops += worker
                .join()
                .map_err(|_| anyhow!("a benchmark thread panicked"))?;
        }
        Ok(ops as f64 / started.elapsed().as_secs_f64() / 1e6)
    })
}

/// Replays `keys` (wrapping around) until `stop`; returns the operation
/// count.
fn drive<T: Target>(mut target: T, keys: &[u64], mix: Mix, stop: &AtomicBool) -> u64 {
    let mut ops = 0u64;
    let mut found = 0u64;
    'run: loop {
        for chunk in keys.chunks(CHUNK) {
            if stop.load(Ordering::Relaxed) {
                break 'run;
            }
            match mix {
                Mix::Read => {
                    for &key in chunk {
                        found += u64::from(target.get(key).is_some());
                    }
                }
                Mix::Mixed => {
                    for (i, &key) in chunk.iter().enumerate() {
                        if i % 10 == 9 {
                            target.insert(key, key);
                        } else {
                            found += u64::from(target.get(key).is_some());
                        }
                    }
                }
                Mix::Insert => {
                    for &key in chunk {
                        target.insert(key, key);
                    }
                }
            }
            ops += chunk.len() as u64;
        }
    }
    black_box(found);
    ops
}

/// Ratios under the table: Keel against quick_cache and moka, and what TTL
/// costs.
fn notes(ctx: &Ctx) {
    let report = &ctx.report;
    let cases = ["read-1t", "read-2t", "mixed-1t", "mixed-2t", "insert-2t"];
    let keel: Vec<&str> = KEEL.iter().map(|s| s.name).collect();
    for own in keel.iter().take(1) {
        for peer in ["quick_cache", "moka", "moka-foldhash"] {
            let mut line = format!("{own} / {peer}, mops:");
            for case in cases {
                if let (Some(a), Some(b)) = (
                    report.get(case, own, "mops"),
                    report.get(case, peer, "mops"),
                ) {
                    line.push_str(&format!(" {case} {:.2}×;", a / b));
                }
            }
            if let (Some(a), Some(b)) = (
                report.get("memory", own, "bytes_per_entry"),
                report.get("memory", peer, "bytes_per_entry"),
            ) {
                line.push_str(&format!(" memory {:.2}×", a / b));
            }
            report.note(line.trim_end_matches(';'));
        }
    }
    if let Some(own) = keel.first() {
        let ttl = KEEL_DEFAULT_TTL;
        let mut line = format!("{} / {own}, mops (TTL cost):", ttl.name);
        for case in cases {
            if let (Some(a), Some(b)) = (
                report.get(case, ttl.name, "mops"),
                report.get(case, own, "mops"),
            ) {
                line.push_str(&format!(" {case} {:.2}×;", a / b));
            }
        }
        report.note(line.trim_end_matches(';'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts what `drive` asks for and stops it after `limit` operations.
    struct Counter<'a> {
        gets: u64,
        inserts: u64,
        limit: u64,
        stop: &'a AtomicBool,
    }

    impl Target for &mut Counter<'_> {
        fn get(&mut self, _key: u64) -> Option<u64> {
            self.gets += 1;
            self.tick();
            None
        }
        fn insert(&mut self, _key: u64, _value: u64) {
            self.inserts += 1;
            self.tick();
        }
    }

    impl Counter<'_> {
        fn tick(&mut self) {
            if self.gets + self.inserts == self.limit {
                self.stop.store(true, Ordering::Relaxed);
            }
        }
    }

    fn run_mix(mix: Mix) -> (u64, u64, u64) {
        let stop = AtomicBool::new(false);
        let mut counter = Counter {
            gets: 0,
            inserts: 0,
            limit: 10 * CHUNK as u64,
            stop: &stop,
        };
        // A short stream of whole chunks: drive wraps around it.
        let keys: Vec<u64> = (0..4 * CHUNK as u64).collect();
        let ops = drive(&mut counter, &keys, mix, &stop);
        (ops, counter.gets, counter.inserts)
    }

    #[test]
    fn mixes_issue_the_stated_operations() {
        let limit = 10 * CHUNK as u64;
        assert_eq!(run_mix(Mix::Read), (limit, limit, 0));
        assert_eq!(run_mix(Mix::Insert), (limit, 0, limit));
        let (ops, gets, inserts) = run_mix(Mix::Mixed);
        assert_eq!(ops, gets + inserts);
        let share = inserts as f64 / ops as f64;
        assert!((0.09..0.11).contains(&share), "insert share {share}");
    }

    #[test]
    fn timed_reports_a_positive_rate_for_every_thread_count() {
        let streams = [(0..4_096).collect::<Vec<u64>>(), (0..4_096).rev().collect()];
        let cache = quick_cache::sync::Cache::<u64, u64>::new(1_000);
        for threads in [1, 2] {
            let mops = timed(
                vec![&cache; threads],
                Mix::Mixed,
                &streams,
                Duration::from_millis(20),
            );
            assert!(mops.unwrap() > 0.0);
        }
        let mut map = Map::default();
        let mops = timed(
            vec![&mut map],
            Mix::Insert,
            &streams,
            Duration::from_millis(20),
        );
        assert!(mops.unwrap() > 0.0);
        assert_eq!(map.len(), 4_096);
    }
}
