//! Counters a caller can read: [`CacheStats`].

use std::time::Duration;

use crate::shard::{Counters, ReadCounters};
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

    pub(crate) fn add_shard(&mut self, r: &ReadCounters, c: &Counters) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.hits += get(&r.hits);
        self.misses += get(&r.misses);
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
