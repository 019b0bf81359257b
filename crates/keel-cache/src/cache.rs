//! [`LocalCache`], its builder, and the shorthand constructors.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::entry::{CacheEntry, RemovalCause};
use crate::expiry::NEVER;
use crate::flight::Flights;
use crate::policy::CachePolicy;
use crate::shard::{Incoming, Shard, Sink, Timing, slot_bytes};
use crate::stats::{CacheStats, LoadCounters, ReadTally};
use crate::sweeper::{self, Sweep};
use crate::table_alloc::HUGE_TABLE;

type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;
type Listener<K, V> = Arc<dyn Fn(K, V, RemovalCause) + Send + Sync>;

/// An in-process cache: a cheap, cloneable handle (`Send + Sync`) to a
/// sharded map bounded by entry count or total weight.
///
/// Built with [`LocalCache::builder`]; see the crate docs for the guarantees.
pub struct LocalCache<K, V> {
    pub(crate) inner: Arc<Inner<K, V>>,
}

pub(crate) struct Inner<K, V> {
    shards: Box<[Shard<K, V>]>,
    shard_mask: u64,
    hasher: foldhash::fast::RandomState,
    pub(crate) timing: Timing,
    /// Default time-to-live in nanoseconds (0: none).
    ttl: u64,
    jitter: f64,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
    pub(crate) flights: Flights<K, V>,
    pub(crate) loads: LoadCounters,
    /// Hits and misses.
    reads: ReadTally,
    policy: CachePolicy,
    capacity: u64,
}

/// Configures and builds a [`LocalCache`].
pub struct CacheBuilder<K, V> {
    capacity: u64,
    policy: CachePolicy,
    weigher: Option<Weigher<K, V>>,
    ttl: Option<Duration>,
    tti: Option<Duration>,
    jitter: f64,
    listener: Option<Listener<K, V>>,
    clock: Option<Clock>,
    shards: Option<usize>,
    /// `None`: the default for the clock.
    sweep: Option<Option<Duration>>,
    /// The interval of that default on a clock that is not manual.
    default_sweep: Duration,
}

impl<K, V> CacheBuilder<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn new(capacity: u64) -> Self {
        Self {
            capacity,
            policy: CachePolicy::default(),
            weigher: None,
            ttl: None,
            tti: None,
            jitter: 0.0,
            listener: None,
            clock: None,
            shards: None,
            sweep: None,
            default_sweep: DEFAULT_SWEEP,
        }
    }

    /// The eviction policy (default: [`CachePolicy::default()`]).
    pub fn policy(mut self, policy: CachePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Measures entries by weight instead of count: the capacity becomes a
    /// total weight. An entry weighs at least 1.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Every entry expires this long after it was written (unless inserted
    /// with its own time-to-live).
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// An entry expires when it has not been read or written for this long.
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// Shortens each time-to-live by a random share of up to `fraction` (0 to
    /// 1; values outside are clamped, NaN means 0), so entries written
    /// together do not expire together.
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// Called with every entry that leaves the cache and why, outside the
    /// cache's locks, on the thread that caused the removal. A panic in the
    /// listener is caught and logged.
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(K, V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// The clock expiry is measured on (default: [`Clock::system`]).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The number of shards, rounded up to a power of two (default: up to 64
    /// per CPU, four per CPU with a weigher, fewer for small capacities).
    /// One shard makes the policy exact across the whole cache at the cost
    /// of concurrency; each shard holds an equal part of the capacity, and
    /// an entry heavier than its shard's part is not kept.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards.max(1));
        self
    }

    /// How often a background thread reclaims this cache's expired entries
    /// (`None`: never), for caches that go quiet: writes reclaim their
    /// shard's expired entries anyway. Default: every second (`[cache]
    /// sweep_interval` for a builder from `CacheConfig::builder` or a
    /// tiered cache), or never on a [`Clock::manual`] clock, so tests decide
    /// when entries are reclaimed.
    /// The eviction listener hears these removals on the sweeper's thread.
    pub fn sweep_every(mut self, every: Option<Duration>) -> Self {
        self.sweep = Some(every);
        self
    }

    /// The interval of the default sweep (`[cache] sweep_interval`): used
    /// unless [`sweep_every`](Self::sweep_every) says otherwise, and never
    /// on a manual clock.
    pub(crate) fn default_sweep(mut self, every: Duration) -> Self {
        self.default_sweep = every;
        self
    }

    /// Builds the cache.
    pub fn build(self) -> LocalCache<K, V> {
        let count = self
            .shards
            .unwrap_or_else(|| {
                default_shards(
                    self.capacity,
                    self.policy,
                    self.weigher.is_some(),
                    slot_bytes::<K, V>(),
                )
            })
            .next_power_of_two()
            .min(1 << 16);
        let hasher = foldhash::fast::RandomState::default();
        let per = self.capacity / count as u64;
        let extra = self.capacity % count as u64;
        let shards = (0..count as u64)
            .map(|i| {
                let cap = per + u64::from(i < extra);
                let hint = usize::try_from(cap.min(1 << 22)).unwrap_or(1 << 22);
                Shard::new(
                    self.policy,
                    cap,
                    hint,
                    self.weigher.is_some(),
                    hasher.clone(),
                    self.ttl.is_some() || self.tti.is_some(),
                )
            })
            .collect::<Box<[_]>>();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(NEVER - 1);
        let clock = self.clock.unwrap_or_default();
        let sweep = self
            .sweep
            .unwrap_or_else(|| (!clock.is_manual()).then_some(self.default_sweep));
        let cache = LocalCache {
            inner: Arc::new(Inner {
                shards,
                shard_mask: count as u64 - 1,
                hasher,
                timing: Timing {
                    clock,
                    tti: self.tti.map_or(0, |d| nanos(d).max(1)),
                    fixed_ttl: match (self.ttl, self.tti) {
                        (Some(ttl), None) if self.jitter <= 0.0 => nanos(ttl).max(1),
                        _ => 0,
                    },
                },
                ttl: self.ttl.map_or(0, |d| nanos(d).max(1)),
                jitter: self.jitter,
                weigher: self.weigher,
                listener: self.listener,
                flights: Flights::default(),
                loads: LoadCounters::default(),
                reads: ReadTally::default(),
                policy: self.policy,
                capacity: self.capacity,
            }),
        };
        if let Some(every) = sweep {
            sweeper::register(Box::new(WeakCache(Arc::downgrade(&cache.inner))), every);
        }
        cache
    }
}

/// How often the sweeper reclaims a cache's expired entries by default.
const DEFAULT_SWEEP: Duration = Duration::from_secs(1);

/// The sweeper's handle on a cache: it does not keep the cache alive.
struct WeakCache<K, V>(Weak<Inner<K, V>>);

impl<K, V> Sweep for WeakCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn sweep(&self) -> bool {
        match self.0.upgrade() {
            Some(inner) => {
                LocalCache { inner }.purge_expired();
                true
            }
            None => false,
        }
    }
}

/// As many shards as the floor allows, up to 64 per CPU: two threads
/// meeting on one shard's lock cost more than anything else a read or a
/// write does, so the more shards, the rarer that is. No shard is smaller
/// than a policy-dependent floor (small shards make per-shard eviction
/// drift from the whole-cache policy). A cache so big that at least four
/// shards per CPU can each hold a table of [`HUGE_TABLE`] bytes or more
/// keeps its tables that big instead, so that they get huge pages (see
/// `table_alloc.rs`). A weighted cache keeps four shards per CPU: each
/// shard holds an equal part of the total weight, and an entry heavier than
/// that part cannot be kept, so more shards would turn away ever lighter
/// entries. `slot` is the size of one table slot; a weighted cache's
/// capacity counts as entries.
fn default_shards(capacity: u64, policy: CachePolicy, weighted: bool, slot: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
    let floor: u64 = match policy {
        CachePolicy::S3Fifo => 512,
        _ => 4096,
    };
    let per_cpu = if weighted { 4 } else { 64 };
    let mut n = (cpus * per_cpu).next_power_of_two();
    while n > 1 && capacity / (n as u64) < floor {
        n /= 2;
    }
    // The table of a shard holding `capacity / n` entries: hashbrown keeps
    // it at most 7/8 full, in a power of two of slots.
    let table = |n: usize| {
        let entries = (capacity / n as u64).saturating_mul(8) / 7 + 1;
        usize::try_from(entries.next_power_of_two())
            .unwrap_or(usize::MAX)
            .saturating_mul(slot)
    };
    let mut huge = n;
    while huge > 1 && table(huge) < HUGE_TABLE {
        huge /= 2;
    }
    if table(huge) >= HUGE_TABLE && huge < n && huge >= (cpus * 4).next_power_of_two() {
        n = huge;
    }
    n
}

impl<K, V> LocalCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder for a cache holding up to `capacity` entries (or total
    /// weight, with a [`weigher`](CacheBuilder::weigher)).
    pub fn builder(capacity: u64) -> CacheBuilder<K, V> {
        CacheBuilder::new(capacity)
    }

    /// A cache of up to `capacity` entries with the default policy.
    pub fn new(capacity: u64) -> Self {
        Self::builder(capacity).build()
    }

    #[inline]
    fn locate<Q: Hash + ?Sized>(&self, key: &Q) -> (u64, &Shard<K, V>) {
        let hash = self.inner.hasher.hash_one(key);
        // Shard by bits the shard's own table does not lean on (it uses the
        // low bits for the bucket and the top seven as the tag).
        let i = ((hash >> 32) & self.inner.shard_mask) as usize;
        (hash, &self.inner.shards[i])
    }

    /// The value for `key`, if present and not expired. Counts a hit or miss.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        let value = shard.get(hash, key, &self.inner.timing, |f| f.slot.value.clone());
        self.inner.reads.record(value.is_some());
        value
    }

    /// The entry for `key` with its metadata, if present and not expired.
    /// Counts a hit or miss like [`get`](Self::get).
    pub fn get_entry<Q>(&self, key: &Q) -> Option<CacheEntry<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        let clock = &self.inner.timing.clock;
        let entry = shard.get(hash, key, &self.inner.timing, |f| {
            let now = f.now.unwrap_or_else(|| clock.now_nanos());
            let deadline = f.deadline();
            CacheEntry {
                value: f.slot.value.clone(),
                age: Duration::from_nanos(now.saturating_sub(f.written_at(&self.inner.timing))),
                expires_in: (deadline != NEVER)
                    .then(|| Duration::from_nanos(deadline.saturating_sub(now))),
                read_at: Instant::now(),
                hits: f.slot.hits(),
                weight: f.weight(),
            }
        });
        self.inner.reads.record(entry.is_some());
        entry
    }

    /// The value for `key` without counting a hit or miss.
    pub(crate) fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        shard.get(hash, key, &self.inner.timing, |f| f.slot.value.clone())
    }

    /// True if `key` has a live entry. Counts nothing and does not count as a
    /// use of the entry.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        shard.contains(hash, key, &self.inner.timing)
    }

    /// Inserts or replaces the value for `key`, with the default time-to-live.
    pub fn insert(&self, key: K, value: V) {
        let ttl = (self.inner.ttl > 0).then_some(self.inner.ttl);
        self.insert_inner(key, Incoming::Owned(value), ttl, || true);
    }

    /// Inserts or replaces the value for `key`, expiring `ttl` after now
    /// (instead of the default time-to-live; time-to-idle still applies).
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        let ttl = u64::try_from(ttl.as_nanos()).unwrap_or(NEVER - 1);
        self.insert_inner(key, Incoming::Owned(value), Some(ttl), || true);
    }

    /// Inserts or replaces the value for `key`, expiring `ttl` nanoseconds
    /// after now (`None`: the default time-to-live), if `admit`, asked under
    /// the key's shard lock, says yes; returns whether it did. Every write
    /// and removal of the key takes that lock, so nothing they change can
    /// change between the check and the insert. Without an eviction
    /// listener, a copy ([`Incoming::CopyOf`]) reuses the value it displaces,
    /// so filling a full cache allocates nothing for a value of the size the
    /// evicted one had.
    pub(crate) fn insert_nanos_if(
        &self,
        key: K,
        value: Incoming<'_, V>,
        ttl: Option<u64>,
        admit: impl FnOnce() -> bool,
    ) -> bool {
        let ttl = ttl.or((self.inner.ttl > 0).then_some(self.inner.ttl));
        let value = match value {
            // The listener takes every displaced value: copy outside the lock.
            Incoming::CopyOf(value) if self.inner.listener.is_some() => {
                Incoming::Owned(value.clone())
            }
            value => value,
        };
        self.insert_inner(key, value, ttl, admit)
    }

    fn insert_inner(
        &self,
        key: K,
        value: Incoming<'_, V>,
        ttl: Option<u64>,
        admit: impl FnOnce() -> bool,
    ) -> bool {
        let inner = &*self.inner;
        let weight = inner
            .weigher
            .as_ref()
            .map_or(1, |w| w(&key, value.value()).max(1));
        let ttl = ttl.map(|t| {
            if inner.jitter > 0.0 {
                t - (t as f64 * inner.jitter * fastrand::f64()) as u64
            } else {
                t
            }
        });
        let (hash, shard) = self.locate(&key);
        self.with_sink(|sink| {
            shard.insert(hash, key, value, weight, ttl, &inner.timing, sink, admit)
        })
    }

    /// Removes `key`; returns its value if it was present and not expired.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        self.with_sink(|sink| shard.remove(hash, key, &self.inner.timing, sink))
    }

    /// Removes every entry (the listener hears [`RemovalCause::Explicit`]).
    pub fn invalidate_all(&self) {
        for shard in self.inner.shards.iter() {
            self.with_sink(|sink| shard.clear(sink));
        }
    }

    /// Removes every entry for which `predicate` returns true, shard by
    /// shard (entries written meanwhile to shards already visited stay).
    pub fn invalidate_if(&self, mut predicate: impl FnMut(&K, &V) -> bool) {
        for shard in self.inner.shards.iter() {
            let now = self.inner.timing.clock.now_nanos();
            self.with_sink(|sink| shard.retain_not(now, &mut predicate, sink));
        }
    }

    /// Reclaims every expired entry now. Writes reclaim expired entries of
    /// their shard anyway; this is for caches that go quiet.
    pub fn purge_expired(&self) {
        for shard in self.inner.shards.iter() {
            let now = self.inner.timing.clock.now_nanos();
            self.with_sink(|sink| shard.purge_expired(now, sink));
        }
    }

    /// A copy of the live entries, taken shard by shard.
    pub fn iter(&self) -> Snapshot<K, V> {
        let mut all = Vec::new();
        for shard in self.inner.shards.iter() {
            shard.snapshot(self.inner.timing.clock.now_nanos(), &mut all);
        }
        Snapshot {
            entries: all.into_iter(),
        }
    }

    /// Entries held (expired entries count until reclaimed).
    pub fn len(&self) -> u64 {
        self.stats_of_shards().entries
    }

    /// True if no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight held (equals [`len`](Self::len) without a weigher).
    pub fn weighted_size(&self) -> u64 {
        self.stats_of_shards().weight
    }

    /// Publishes this cache's counters through the `metrics` facade as the
    /// `keel_cache_*` families labelled `cache = name` (each counter set to
    /// the cache's total, each gauge to its value now). Hits are counted
    /// per thread and only reach the facade here, never one by one.
    pub fn publish_metrics(&self, name: &str) {
        crate::metrics::describe();
        crate::metrics::publish_local(name, &self.stats(), self.capacity());
    }

    /// The capacity the cache was built with.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// The eviction policy.
    pub fn policy(&self) -> CachePolicy {
        self.inner.policy
    }

    /// The counters since the cache was built.
    pub fn stats(&self) -> CacheStats {
        let mut stats = self.stats_of_shards();
        self.inner.reads.add_to(&mut stats);
        self.inner.loads.add_to(&mut stats);
        stats
    }

    fn stats_of_shards(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        for shard in self.inner.shards.iter() {
            stats.add_shard(&shard.counters);
        }
        stats
    }

    /// Runs `f` with a sink for removed entries, then tells the listener
    /// (outside the shard lock).
    fn with_sink<R>(&self, f: impl FnOnce(Sink<'_, K, V>) -> R) -> R {
        let Some(listener) = &self.inner.listener else {
            return f(None);
        };
        let mut removed = Vec::new();
        let out = f(Some(&mut removed));
        for (k, v, cause) in removed {
            if catch_unwind(AssertUnwindSafe(|| listener(k, v, cause))).is_err() {
                tracing::error!(?cause, "cache eviction listener panicked");
            }
        }
        out
    }
}

impl<K, V> Clone for LocalCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> fmt::Debug for LocalCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCache")
            .field("policy", &self.inner.policy)
            .field("capacity", &self.inner.capacity)
            .field("shards", &self.inner.shards.len())
            .field("clock", &self.inner.timing.clock)
            .finish_non_exhaustive()
    }
}

impl<K, V> fmt::Debug for CacheBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .field("weigher", &self.weigher.is_some())
            .field("time_to_live", &self.ttl)
            .field("time_to_idle", &self.tti)
            .field("ttl_jitter", &self.jitter)
            .field("eviction_listener", &self.listener.is_some())
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

/// The entries of a cache at the time [`LocalCache::iter`] was called.
#[derive(Debug)]
pub struct Snapshot<K, V> {
    entries: std::vec::IntoIter<(K, V)>,
}

impl<K, V> Iterator for Snapshot<K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<Self::Item> {
        self.entries.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl<K, V> ExactSizeIterator for Snapshot<K, V> {}

macro_rules! shorthand {
    ($(#[$doc:meta])* $name:ident, $policy:expr) => {
        $(#[$doc])*
        pub struct $name<K, V>(LocalCache<K, V>);

        impl<K, V> $name<K, V>
        where
            K: Hash + Eq + Clone + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
        {
            /// A cache of up to `capacity` entries.
            pub fn new(capacity: u64) -> Self {
                Self(Self::builder(capacity).build())
            }

            /// A builder with the policy already chosen.
            pub fn builder(capacity: u64) -> CacheBuilder<K, V> {
                LocalCache::builder(capacity).policy($policy)
            }

            /// The underlying [`LocalCache`] handle.
            pub fn into_inner(self) -> LocalCache<K, V> {
                self.0
            }
        }

        impl<K, V> Deref for $name<K, V> {
            type Target = LocalCache<K, V>;

            fn deref(&self) -> &LocalCache<K, V> {
                &self.0
            }
        }

        impl<K, V> Clone for $name<K, V> {
            fn clone(&self) -> Self {
                Self(self.0.clone())
            }
        }

        impl<K, V> fmt::Debug for $name<K, V> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

shorthand!(
    /// A [`LocalCache`] with [`CachePolicy::Lru`].
    LruCache,
    CachePolicy::Lru
);
shorthand!(
    /// A [`LocalCache`] with [`CachePolicy::Lfu`].
    LfuCache,
    CachePolicy::Lfu
);
shorthand!(
    /// A [`LocalCache`] with [`CachePolicy::Fifo`].
    FifoCache,
    CachePolicy::Fifo
);
shorthand!(
    /// A [`LocalCache`] with [`CachePolicy::Ttl`]: when full, the entry
    /// closest to expiry goes first. Give it a time-to-live.
    TtlCache,
    CachePolicy::Ttl
);

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn copies(cache: &LocalCache<u64, String>, keys: std::ops::Range<u64>) {
        for k in keys {
            let value = k.to_string().repeat(k as usize % 7 + 1);
            cache.insert_nanos_if(k, Incoming::CopyOf(&value), None, || true);
            assert_eq!(cache.peek(&k), Some(value), "the copy of {k}");
        }
    }

    #[test]
    fn copies_into_a_full_cache_hold_the_new_values() {
        let cache: LocalCache<u64, String> = LocalCache::builder(8).shards(1).build();
        copies(&cache, 0..100);
        assert!(cache.len() <= 8);
        // Replacing in place copies too.
        copies(&cache, 96..100);
        let ttl = Duration::from_secs(5).as_nanos() as u64;
        cache.insert_nanos_if(99, Incoming::CopyOf(&"short".to_owned()), Some(ttl), || {
            true
        });
        assert_eq!(
            cache.get_entry(&99).map(|e| e.value).as_deref(),
            Some("short")
        );
        let left = cache.get_entry(&99).and_then(|e| e.expires_in);
        assert!(
            left.is_some_and(|d| d <= Duration::from_secs(5)),
            "{left:?}"
        );
    }

    #[test]
    fn with_a_listener_copies_leave_the_displaced_values_to_it() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&heard);
        let cache: LocalCache<u64, String> = LocalCache::builder(4)
            .shards(1)
            .eviction_listener(move |k, v, cause| {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((k, v, cause));
            })
            .build();
        copies(&cache, 0..10);
        copies(&cache, 9..10);
        let heard = heard.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(heard.len(), 7, "{heard:?}");
        for (k, v, cause) in heard.iter() {
            let expected = k.to_string().repeat(*k as usize % 7 + 1);
            assert_eq!(v, &expected, "{cause:?}");
        }
        assert_eq!(heard.last().map(|h| h.2), Some(RemovalCause::Replaced));
    }

    #[test]
    fn shards_are_many_but_never_below_the_floor_and_big_tables_stay_huge() {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        let most = (cpus * 64).next_power_of_two();
        let slot = slot_bytes::<u64, u64>();
        for policy in CachePolicy::ALL {
            let floor = if policy == CachePolicy::S3Fifo {
                512
            } else {
                4096
            };
            for capacity in [0, 1, 511, 512, 10_000, 100_000, 1_000_000, 100_000_000] {
                let n = default_shards(capacity, policy, false, slot);
                assert!(n.is_power_of_two() && n <= most, "{policy} {capacity}: {n}");
                assert!(
                    n == 1 || capacity / n as u64 >= floor,
                    "{policy} {capacity}: {n} shards under the floor"
                );
            }
        }
        // A mid-sized cache spreads as wide as the floor allows.
        let mid = 512 * most as u64;
        assert_eq!(default_shards(mid, CachePolicy::S3Fifo, false, slot), most);
        // A big one keeps tables of at least 2 MiB, with at least four
        // shards per CPU.
        let big = 1_000_000_u64 * cpus as u64;
        let n = default_shards(big, CachePolicy::S3Fifo, false, slot);
        let per = (big / n as u64) * 8 / 7;
        assert!(n >= 4 * cpus, "{n}");
        assert!(per.next_power_of_two() as usize * slot >= HUGE_TABLE, "{n}");
    }

    #[test]
    fn a_weighted_cache_keeps_entries_of_a_quarter_cpus_share_of_its_weight() {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        let capacity: u64 = 1 << 20;
        let cache: LocalCache<u64, Vec<u8>> = LocalCache::builder(capacity)
            .weigher(|_, v: &Vec<u8>| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .build();
        // Four shards per CPU: an entry of a quarter of one CPU's share of
        // the capacity fits its shard.
        let heavy =
            usize::try_from(capacity).unwrap_or(usize::MAX) / (4 * cpus).next_power_of_two();
        cache.insert(1, vec![0; heavy]);
        assert_eq!(cache.get(&1).map(|v| v.len()), Some(heavy));
        assert_eq!(cache.weighted_size(), heavy as u64);
        for policy in CachePolicy::ALL {
            let n = default_shards(capacity, policy, true, slot_bytes::<u64, Vec<u8>>());
            assert!(n <= (4 * cpus).next_power_of_two(), "{policy}: {n}");
        }
    }
}
