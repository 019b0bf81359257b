//! `hitratio`: the share of accesses each cache answers, on Zipf workloads,
//! synthetic access patterns and real traces, for every Keel policy, the
//! peers, exact LRU and FIFO references and Belady's offline optimum
//! (crates/keel-bench/README.md).
//!
//! The workloads, each named `<workload>@<capacity>`:
//!
//! - `zipf0.8`, `zipf0.99`, `zipf1.2`: Zipf over 1M keys (4M accesses, 1M
//!   with `--quick`) at 0.1%, 1% and 10% of the keys.
//! - Patterns, each generated for its capacity `C` (1,000 and 10,000
//!   entries; 1M accesses, 250k with `--quick`) with a fixed seed:
//!   - `loop1.2x`, `loop2x`, `loop4x`: keys `0..L` over and over, `L` = 1.2,
//!     2 or 4 × `C`; every reuse distance is exactly `L`, so LRU and FIFO
//!     never hit.
//!   - `zipf+scan`: Zipf 0.99 over 1M keys; after every `4 × C` Zipf
//!     accesses a scan of `C` keys that are never accessed again (a fifth
//!     of all accesses), each scan enough to flush an LRU.
//!   - `shift`: 90% of accesses draw uniformly from a hot set of `C / 2`
//!     keys, 10% from 1M cold keys; every `10 × C` accesses the hot set
//!     moves to `C / 2` keys never used before.
//!   - `recency`: a quarter of accesses are a key never seen before, the
//!     rest draw uniformly from the last `C / 2` new keys. Every key has the
//!     same chance of reuse (4 accesses on average), is reused only while
//!     it is among the last `C / 2` new keys (about `2 × C` accesses) and
//!     never after, with at most `C − 2` other keys between two of its
//!     accesses: an LRU of `C` hits every reuse, and frequency counts say
//!     nothing about the next access.
//!   - `phase`: the first half is Zipf 0.99 over 1M keys, the second half a
//!     `recency` stream for the same `C` on new keys: the keys that were
//!     hot stop recurring, and what pays becomes recency.
//! - `web07` and `orm-busy`: cache2k's traces, when present.
//!
//! Every cache replays the same key stream single-threaded: a `get`, and on
//! a miss an `insert`. Cold misses count. moka applies its policy in
//! batches: left alone it holds up to 64 inserts above its capacity until
//! the next batch, a bonus at small capacities. So the replay calls
//! `run_pending_tasks` every `capacity / 1000` inserts (every insert below
//! 2,000 entries): moka never holds more than 0.1% above its capacity, and
//! its admission sees every earlier access. The other caches apply their
//! policy inline and need nothing.
//!
//! Replays are independent and not timed, so they run one per core,
//! longest first.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::bail;

use crate::Ctx;
use crate::caches::{KEEL, PEERS, Spec};
use crate::reference::{belady_hits, fifo_hits, lru_hits, next_use};
use crate::workload::{
    looping, read_trace, shifting_hot_set, short_reuse, trace_name, zipf, zipf_with_scans,
};

/// Zipf workloads draw from this many distinct keys, and `shift` its cold
/// keys.
const KEYS: u64 = 1_000_000;
/// Zipf exponents.
const EXPONENTS: [f64; 3] = [0.8, 0.99, 1.2];
/// Capacities of the Zipf cases, as a share of [`KEYS`].
const SHARES: [(&str, usize); 3] = [("0.1%", 1_000), ("1%", 10_000), ("10%", 100_000)];
/// The development traces (cache2k format), the capacities they run at, and
/// the one `--quick` keeps.
const TRACES: [(&str, &[usize], usize); 2] = [
    ("web07", &[500, 2_000, 8_000], 2_000),
    ("orm-busy", &[2_000, 5_000, 20_000], 20_000),
];
/// Peers a Keel policy is compared with.
const PEER_NAMES: [&str; 3] = ["moka", "quick_cache", "tinyufo"];
/// keel-default's goal on every case: at most this many points below the
/// best of the peers and `lru-exact`.
const GOAL_POINTS: f64 = 1.0;
/// The smallest lru-exact→belady gap (0.5 points) whose share closed is
/// reported and averaged; a share of a smaller gap is mostly noise.
const MIN_GAP: f64 = 0.005;
/// Capacities the synthetic patterns are generated for, in entries.
const PATTERN_CAPACITIES: [usize; 2] = [1_000, 10_000];

/// A synthetic access pattern, generated for one capacity (module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pattern {
    /// Keys `0..L` repeated, `L` = this factor × the capacity.
    Loop(&'static str, f64),
    ZipfScan,
    Shift,
    Recency,
    Phase,
}

/// Every pattern, in the order the table lists them.
const PATTERNS: [Pattern; 7] = [
    Pattern::Loop("1.2", 1.2),
    Pattern::Loop("2", 2.0),
    Pattern::Loop("4", 4.0),
    Pattern::ZipfScan,
    Pattern::Shift,
    Pattern::Recency,
    Pattern::Phase,
];

impl Pattern {
    fn name(self) -> String {
        match self {
            Pattern::Loop(factor, _) => format!("loop{factor}x"),
            Pattern::ZipfScan => "zipf+scan".to_owned(),
            Pattern::Shift => "shift".to_owned(),
            Pattern::Recency => "recency".to_owned(),
            Pattern::Phase => "phase".to_owned(),
        }
    }

    /// `len` accesses of this pattern, scaled to `capacity`.
    fn keys(self, capacity: usize, len: usize) -> anyhow::Result<Vec<u64>> {
        let c = capacity as u64;
        Ok(match self {
            Pattern::Loop(_, factor) => looping((factor * capacity as f64).round() as u64, len),
            Pattern::ZipfScan => zipf_with_scans(KEYS, 0.99, 4 * capacity, capacity, len, 10)?,
            Pattern::Shift => shifting_hot_set(c / 2, 0.9, KEYS, 10 * capacity, len, 11),
            Pattern::Recency => short_reuse(c / 2, 0.25, len, 12),
            Pattern::Phase => {
                let mut keys = zipf(KEYS, 0.99, len / 2, 13)?;
                keys.extend(short_reuse(c / 2, 0.25, len - len / 2, 14));
                keys
            }
        })
    }
}

/// One key stream and the capacities to replay it at.
struct Workload {
    name: String,
    keys: Vec<u64>,
    capacities: Vec<(String, usize)>,
}

/// What replays a stream: a cache, or one of the references.
#[derive(Debug, Clone, Copy)]
enum Replayer {
    Cache(Spec),
    LruExact,
    FifoExact,
    Belady,
}

impl Replayer {
    fn name(self) -> &'static str {
        match self {
            Replayer::Cache(spec) => spec.name,
            Replayer::LruExact => "lru-exact",
            Replayer::FifoExact => "fifo-exact",
            Replayer::Belady => "belady",
        }
    }

    fn hits(self, keys: &[u64], next: &[usize], capacity: usize) -> u64 {
        match self {
            Replayer::Cache(spec) => {
                let built = spec.build(capacity);
                let cache = built.as_dyn();
                let settle_every = (capacity / 1000).max(1);
                let (mut hits, mut pending) = (0, 0);
                for &key in keys {
                    if cache.get(key).is_some() {
                        hits += 1;
                    } else {
                        cache.insert(key, key);
                        pending += 1;
                        if pending == settle_every {
                            cache.settle();
                            pending = 0;
                        }
                    }
                }
                hits
            }
            Replayer::LruExact => lru_hits(keys, capacity),
            Replayer::FifoExact => fifo_hits(keys, capacity),
            Replayer::Belady => belady_hits(keys, next, capacity),
        }
    }
}

/// Runs the suite.
pub(crate) fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let workloads = workloads(ctx)?;
    let replayers: Vec<Replayer> = KEEL
        .iter()
        .chain(&PEERS)
        .map(|spec| Replayer::Cache(*spec))
        .chain([Replayer::LruExact, Replayer::FifoExact, Replayer::Belady])
        .collect();
    let nexts: Vec<Vec<usize>> = workloads.iter().map(|w| next_use(&w.keys)).collect();
    let mut cases = Vec::new();
    let mut jobs = Vec::new();
    for (workload, next) in workloads.iter().zip(&nexts) {
        for (label, capacity) in &workload.capacities {
            cases.push(format!("{}@{label}", workload.name));
            for replayer in &replayers {
                jobs.push(Job {
                    case: cases.len() - 1,
                    replayer: *replayer,
                    keys: &workload.keys,
                    next,
                    capacity: *capacity,
                });
            }
        }
    }
    let ratios = replay_all(&jobs);
    for (i, case) in cases.iter().enumerate() {
        for (job, ratio) in jobs.iter().zip(&ratios) {
            if job.case == i {
                ctx.report
                    .record(case, job.replayer.name(), "hit_ratio", *ratio);
            }
        }
    }
    let names: Vec<&str> = replayers.iter().map(|r| r.name()).collect();
    notes(ctx, &cases, &names);
    Ok(())
}

/// The built-in workloads, or the one trace given with `--trace`.
fn workloads(ctx: &Ctx) -> anyhow::Result<Vec<Workload>> {
    if let Some(path) = &ctx.trace {
        if ctx.capacities.is_empty() {
            bail!("--trace needs at least one --capacity N (entries)");
        }
        return Ok(vec![Workload {
            name: trace_name(path),
            keys: read_trace(path, ctx.format)?,
            capacities: ctx.capacities.iter().map(|c| (c.to_string(), *c)).collect(),
        }]);
    }
    if !ctx.capacities.is_empty() {
        bail!("--capacity applies to a trace given with --trace FILE");
    }
    let len = if ctx.quick { 1_000_000 } else { 4_000_000 };
    let mut workloads = Vec::new();
    for (seed, s) in EXPONENTS.into_iter().enumerate() {
        workloads.push(Workload {
            name: format!("zipf{s}"),
            keys: zipf(KEYS, s, len, seed as u64)?,
            capacities: SHARES
                .iter()
                .map(|(label, c)| ((*label).to_owned(), *c))
                .collect(),
        });
    }
    let pattern_len = if ctx.quick { 250_000 } else { 1_000_000 };
    for pattern in PATTERNS {
        for capacity in PATTERN_CAPACITIES {
            workloads.push(Workload {
                name: pattern.name(),
                keys: pattern.keys(capacity, pattern_len)?,
                capacities: vec![(capacity.to_string(), capacity)],
            });
        }
    }
    let dir = traces_dir();
    for (name, capacities, quick) in TRACES {
        let path = dir.join(format!("{name}.trace.xz"));
        if !path.exists() {
            ctx.report.note(&format!(
                "note: {} not found, skipping the {name} cases",
                path.display()
            ));
            continue;
        }
        let keys = read_trace(&path, crate::TraceFormat::U32be)?;
        let capacities = if ctx.quick { &[quick][..] } else { capacities };
        workloads.push(Workload {
            name: name.to_owned(),
            keys,
            capacities: capacities.iter().map(|c| (c.to_string(), *c)).collect(),
        });
    }
    Ok(workloads)
}

/// `../shared/traces` beside the workspace root.
fn traces_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/traces")
}

/// One replay: a replayer, a stream and a capacity.
struct Job<'a> {
    case: usize,
    replayer: Replayer,
    keys: &'a [u64],
    next: &'a [usize],
    capacity: usize,
}

/// Every job's hit ratio, in `jobs` order; one job per core at a time,
/// longest streams and moka first so that no core idles at the end.
fn replay_all(jobs: &[Job<'_>]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| {
        let job = &jobs[i];
        let moka = job.replayer.name() == "moka";
        std::cmp::Reverse((job.keys.len(), moka))
    });
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let claimed = AtomicUsize::new(0);
    let ratios = Mutex::new(vec![0.0; jobs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..workers.min(jobs.len()) {
            scope.spawn(|| {
                while let Some(&i) = order.get(claimed.fetch_add(1, Ordering::Relaxed)) {
                    let job = &jobs[i];
                    let hits = job.replayer.hits(job.keys, job.next, job.capacity);
                    let ratio = hits as f64 / job.keys.len() as f64;
                    if let Ok(mut ratios) = ratios.lock() {
                        ratios[i] = ratio;
                    }
                }
            });
        }
    });
    ratios.into_inner().unwrap_or_default()
}

/// The summary under the table: averages, keel-default's share of the
/// LRU→optimum gap, its margin over the best of the peers and `lru-exact`
/// per case, and the cases where it misses its goal by more than
/// [`GOAL_POINTS`].
fn notes(ctx: &Ctx, cases: &[String], names: &[&str]) {
    let report = &ctx.report;
    let ratio = |case: &str, name: &str| report.get(case, name, "hit_ratio");
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;

    let mut line = String::from("average hit ratio:");
    for name in names {
        let values: Vec<f64> = cases.iter().filter_map(|c| ratio(c, name)).collect();
        line.push_str(&format!(" {name} {:.2}%;", mean(&values) * 100.0));
    }
    report.note(line.trim_end_matches(';'));

    for (own, exact) in [("keel-lru", "lru-exact"), ("keel-fifo", "fifo-exact")] {
        let worst = cases
            .iter()
            .filter_map(|c| Some((ratio(c, own)? - ratio(c, exact)?) * 100.0))
            .max_by(|a, b| a.abs().total_cmp(&b.abs()));
        if let Some(points) = worst {
            report.note(&format!(
                "{own} vs {exact}: largest difference over all cases {points:+.2} points"
            ));
        }
    }

    if !names.contains(&"keel-default") {
        report.note("keel-default not measured: no gap or deficit figures");
        return;
    }
    report.note(
        "\nkeel-default per case: share of the lru-exact→belady gap it closes; points above (+) or below (−) the best of the peers and lru-exact:",
    );
    let (mut gaps, mut margins, mut short) = (Vec::new(), Vec::new(), Vec::new());
    for case in cases {
        let (Some(own), Some(lru), Some(optimum)) = (
            ratio(case, "keel-default"),
            ratio(case, "lru-exact"),
            ratio(case, "belady"),
        ) else {
            continue;
        };
        let mut line = format!("- {case}:");
        if optimum - lru >= MIN_GAP {
            let gap = (own - lru) / (optimum - lru);
            gaps.push(gap);
            line.push_str(&format!(" closes {:.0}% of the gap;", gap * 100.0));
        } else if optimum - lru > 1e-9 {
            line.push_str(&format!(
                " lru-exact within {:.2} points of belady;",
                (optimum - lru) * 100.0
            ));
        } else {
            line.push_str(" no gap (lru-exact is optimal);");
        }
        let (best, rival) = PEER_NAMES
            .iter()
            .filter_map(|p| ratio(case, p).map(|r| (r, *p)))
            .fold((lru, "lru-exact"), |best, next| {
                if next.0 > best.0 { next } else { best }
            });
        let points = (own - best) * 100.0;
        margins.push(points);
        if points < -GOAL_POINTS {
            short.push(format!("{case} ({points:+.2} vs {rival})"));
        }
        line.push_str(&format!(" {points:+.2} points vs {rival}"));
        report.note(&line);
    }
    let worst = margins.iter().copied().fold(f64::INFINITY, f64::min);
    report.note(&format!(
        "keel-default on average closes {:.0}% of the lru-exact→belady gap; worst case vs the best of the peers and lru-exact: {worst:+.2} points",
        mean(&gaps) * 100.0
    ));
    report.note(&format!(
        "keel-default more than {GOAL_POINTS:.1} point below the best of the peers and lru-exact: {}",
        if short.is_empty() {
            "none".to_owned()
        } else {
            short.join(", ")
        }
    ));
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::reference::{NEVER, lru_hits, next_use};

    #[test]
    fn pattern_names_are_the_case_names() {
        let names: Vec<String> = PATTERNS.iter().map(|p| p.name()).collect();
        assert_eq!(
            names,
            [
                "loop1.2x",
                "loop2x",
                "loop4x",
                "zipf+scan",
                "shift",
                "recency",
                "phase"
            ]
        );
    }

    #[test]
    fn patterns_are_reproducible_and_scaled_to_the_capacity() {
        for pattern in PATTERNS {
            let a = pattern.keys(100, 20_000).unwrap();
            assert_eq!(a.len(), 20_000, "{}", pattern.name());
            assert_eq!(a, pattern.keys(100, 20_000).unwrap(), "{}", pattern.name());
        }
        for (pattern, period) in [(PATTERNS[0], 120), (PATTERNS[1], 200), (PATTERNS[2], 400)] {
            let keys = pattern.keys(100, 20_000).unwrap();
            let next = next_use(&keys);
            assert!(
                next.iter()
                    .enumerate()
                    .all(|(i, n)| *n == i + period || (*n == NEVER && i + period >= keys.len())),
                "{}",
                pattern.name()
            );
        }
        // recency at capacity C: an LRU of C hits every reuse.
        let recency = Pattern::Recency.keys(100, 20_000).unwrap();
        let distinct = recency.iter().collect::<HashSet<_>>().len();
        assert_eq!(lru_hits(&recency, 100), (recency.len() - distinct) as u64);
    }

    #[test]
    fn phase_is_zipf_then_recency_on_new_keys() {
        let keys = Pattern::Phase.keys(100, 20_000).unwrap();
        let (first, second) = keys.split_at(10_000);
        assert_eq!(first, zipf(KEYS, 0.99, 10_000, 13).unwrap());
        assert_eq!(second, short_reuse(50, 0.25, 10_000, 14));
        let early: HashSet<u64> = first.iter().copied().collect();
        assert!(second.iter().all(|k| !early.contains(k)));
    }
}
