//! Counters a caller can read: [`CacheStats`].

use std::time::Duration;

#[cfg(not(keel_loom))]
use crossbeam_utils::CachePadded;

use crate::shard::Counters;
use crate::sync::{AtomicU64, Ordering};

/// A snapshot of a cache's counters since it was built.
///
/// Counters are summed shard by shard without stopping writers, so a
/// snapshot taken while the cache is busy is not one instant; once the cache
/// is quiet, `hits + misses` equals the number of lookups and
/// `inserts - evictions_* - expirations - invalidations` equals `entries`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups (`get`, `get_entry`, the first look of a load) that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing or an expired entry.
    pub misses: u64,
    /// New keys written.
    pub inserts: u64,
    /// Writes that replaced the value of an existing key.
    pub updates: u64,
    /// Entries evicted to stay within capacity (or rejected as too heavy).
    pub evictions_size: u64,
    /// Entries removed because they expired.
    pub expirations: u64,
    /// Entries removed by `remove`, `invalidate_all` or `invalidate_if`.
    pub invalidations: u64,
    /// Values dropped because an insert replaced them (equals `updates`).
    pub replacements: u64,
    /// Loader calls that returned a value.
    pub loads_ok: u64,
    /// Loader calls that failed or panicked.
    pub loads_failed: u64,
    /// Time spent in loader calls, summed.
    pub total_load_time: Duration,
    /// Entries held now (including expired ones not yet reclaimed).
    pub entries: u64,
    /// Total weight held now.
    pub weight: u64,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 before any lookup.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }

    /// Lookups counted (`hits + misses`).
    pub fn lookups(&self) -> u64 {
        self.hits + self.misses
    }

    pub(crate) fn add_shard(&mut self, c: &Counters) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.inserts += get(&c.inserts);
        self.updates += get(&c.updates);
        self.evictions_size += get(&c.evicted_size);
        self.expirations += get(&c.expired);
        self.invalidations += get(&c.invalidated);
        self.replacements += get(&c.replaced);
        self.entries += get(&c.len);
        self.weight += get(&c.weight);
    }
}

/// The hit and miss counts of one cache.
///
/// Each thread counts into its own pair of counters, which only that thread
/// writes: a plain load and store, no locked instruction (a shared counter
/// would put one more on every read, and serialise the reads of all
/// threads on its cache line). Totals sum every thread's pair, so they are
/// exact once the counting threads are quiet.
#[derive(Default)]
pub(crate) struct ReadTally {
    #[cfg(not(keel_loom))]
    per_thread: thread_local::ThreadLocal<CachePadded<ReadPair>>,
    #[cfg(keel_loom)]
    shared: ReadPair,
}

/// One thread's counts. Per thread they sit in a `CachePadded`, so two
/// threads' counters never share a cache line (nor the pair of lines some
/// CPUs fetch together).
#[derive(Default)]
struct ReadPair {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ReadTally {
    /// Counts one lookup.
    #[inline]
    pub(crate) fn record(&self, hit: bool) {
        #[cfg(not(keel_loom))]
        {
            let pair = match self.per_thread.get() {
                Some(pair) => pair,
                None => self.first_count(),
            };
            let c = if hit { &pair.hits } else { &pair.misses };
            // Only this thread writes its pair.
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        #[cfg(keel_loom)]
        {
            let c = if hit {
                &self.shared.hits
            } else {
                &self.shared.misses
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The calling thread's pair, made on its first count (kept out of line
    /// so lookups stay small).
    #[cfg(not(keel_loom))]
    #[cold]
    #[inline(never)]
    fn first_count(&self) -> &CachePadded<ReadPair> {
        self.per_thread.get_or_default()
    }

    /// Adds the totals to `stats`.
    pub(crate) fn add_to(&self, stats: &mut CacheStats) {
        let mut add = |pair: &ReadPair| {
            stats.hits += pair.hits.load(Ordering::Relaxed);
            stats.misses += pair.misses.load(Ordering::Relaxed);
        };
        #[cfg(not(keel_loom))]
        self.per_thread.iter().for_each(|pair| add(pair));
        #[cfg(keel_loom)]
        add(&self.shared);
    }
}

impl std::fmt::Debug for ReadTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut stats = CacheStats::default();
        self.add_to(&mut stats);
        f.debug_struct("ReadTally")
            .field("hits", &stats.hits)
            .field("misses", &stats.misses)
            .finish()
    }
}

/// Load counters, shared by the whole cache (loads are rare next to reads).
#[derive(Debug, Default)]
pub(crate) struct LoadCounters {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) nanos: AtomicU64,
}

impl LoadCounters {
    pub(crate) fn record(&self, ok: bool, took: Duration) {
        let c = if ok { &self.ok } else { &self.failed };
        c.fetch_add(1, Ordering::Relaxed);
        self.nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn add_to(&self, stats: &mut CacheStats) {
        stats.loads_ok = self.ok.load(Ordering::Relaxed);
        stats.loads_failed = self.failed.load(Ordering::Relaxed);
        stats.total_load_time = Duration::from_nanos(self.nanos.load(Ordering::Relaxed));
    }
}
