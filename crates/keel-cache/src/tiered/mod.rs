//! [`TieredCache`]: a local tier in process, an optional Redis tier shared
//! by every instance, and a loader behind both, with the protections that
//! keep a hot key, a missing key or a mass expiry from reaching the loader
//! all at once.

mod key;
mod load;
mod local;
mod lookup;
mod versions;
mod warm;
mod write;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::LocalCache;
use crate::clock::Clock;
use crate::codec::Schema;
use crate::error::CacheError;
use crate::flight::SingleFlight;
use crate::protect::bloom::BloomFilter;
#[cfg(feature = "redis")]
use crate::remote::{
    bus::{InvalidationBus, InvalidationHandler},
    redis::{Expect, RedisCache},
};
use local::Slot;
use versions::{Ticket, Versions};

/// What a fill of Redis must find there (without the Redis tier nothing
/// is ever expected: the type has no values).
#[cfg(not(feature = "redis"))]
#[derive(Debug)]
enum Expect {}

use crate::config::CacheSettings;
pub use key::CacheKey;
pub use warm::WarmSummary;

/// What a loader of [`TieredCache::try_get_or_load_with`] found, and how
/// long the tiers may keep it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Loaded<V> {
    /// The value, or `None` for "does not exist".
    pub value: Option<V>,
    /// How long it may be kept.
    pub keep: Keep,
}

impl<V> Loaded<V> {
    /// `value`, kept as the cache's settings say.
    pub fn new(value: Option<V>) -> Self {
        Self {
            value,
            keep: Keep::Default,
        }
    }

    /// `value`, kept as `keep` says.
    pub fn keep(value: Option<V>, keep: Keep) -> Self {
        Self { value, keep }
    }
}

/// How long the tiers keep a loaded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The cache's `ttl` (or `negative_ttl` for an absence, which is not
    /// kept without one).
    Default,
    /// This long, whatever the settings say (an absence too).
    For(Duration),
    /// The cache's `ttl` or this, whichever is shorter (an upstream's
    /// `max-age`).
    ForAtMost(Duration),
    /// Not at all: the callers get it, no tier keeps it.
    Never,
}

/// What [`TieredCache::try_get_or_load_with`] returned.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Lookup<V> {
    /// The value, or `None` for "does not exist".
    pub value: Option<V>,
    /// Where it came from.
    pub served: Served,
}

/// Where a value of [`TieredCache::try_get_or_load_with`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// A tier had it fresh.
    Cached,
    /// A load: this call's, or one it waited for.
    Loaded,
    /// A stale copy, because the load failed (`max_stale`).
    Stale,
}

/// What a [`TieredCache`] value must be: cloneable for the local tier,
/// serializable for Redis and snapshots.
pub trait CacheValue: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> CacheValue for T {}

/// A cache of two tiers and a loader: reads go L1 → L2 → loader and fill
/// the tiers they missed; writes and deletes go to both tiers and tell the
/// other instances (through the `InvalidationBus`) to drop their copies.
///
/// Without Redis it is a local cache with the same protections: one load
/// per key at a time, negative caching, a Bloom filter, TTL jitter,
/// refresh-ahead and stale-if-error.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use keel_cache::{CacheSettings, TieredCache};
///
/// let mut settings = CacheSettings::default();
/// settings.ttl = Some(Duration::from_secs(300));
/// settings.negative_ttl = Some(Duration::from_secs(30));
/// let users: TieredCache<u64, String> = TieredCache::builder("users", settings).build().unwrap();
///
/// let name = users
///     .try_get_or_load(7, || async { Ok::<_, std::io::Error>(Some("ada".to_owned())) })
///     .await
///     .unwrap();
/// assert_eq!(name.as_deref(), Some("ada"));
/// assert_eq!(users.get(&7).await.as_deref(), Some("ada"));
/// # }
/// ```
///
/// # Consistency
///
/// - **A write is visible at once on the instance that made it**, and on
///   the others as soon as they receive its invalidation (well under a
///   millisecond on a LAN). A read that was already in flight when a write,
///   delete, invalidation or resubscription flush landed returns what it
///   read, but never puts that older value into the local tier: each read
///   takes a ticket of its key's change counter before asking Redis and
///   back-fills only if the ticket still holds.
/// - **A load never overwrites a newer write.** A value a loader found fills
///   Redis with a compare-and-set against what the read that missed saw (a
///   delete leaves a unique marker for a minute), and the local tier under
///   the same ticket; otherwise the callers get it and neither tier keeps it.
/// - **If the bus is down**, another instance may serve its local copy until
///   the bus comes back (then every local copy is dropped) or for at most
///   `local_ttl`.
/// - **If Redis is down or stalled**, reads and loads keep working from the
///   local tier and the loader. A call waits at most `command_timeout`;
///   after `failure_threshold` failures in a row the tier is bypassed at once
///   and probed every `probe_interval`. Writes and deletes reach the local
///   tier only and are remembered (up to `max_pending_keys`, then the whole
///   cache is cleared instead): when Redis answers again they are deleted
///   there and invalidated on every instance, the writer included, before
///   the tier is used again, so every instance reloads from the source
///   rather than serve the value from before the outage. Until then another
///   instance that still reaches Redis may serve that older value: for the
///   outage plus one `probe_interval`. [`TieredCache::is_degraded`] is true
///   from the first failure until reconciliation is done.
pub struct TieredCache<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for TieredCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> std::fmt::Debug for TieredCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("name", &self.inner.name)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TieredCache`].
#[must_use]
pub struct TieredBuilder<K, V> {
    name: String,
    settings: CacheSettings,
    /// `None`: the system clock, made at build (not before, so a builder
    /// given a manual clock starts no upkeep thread).
    clock: Option<Clock>,
    bloom: Option<Arc<BloomFilter>>,
    #[cfg(feature = "redis")]
    remote: Option<(RedisCache, Option<InvalidationBus>)>,
    _types: std::marker::PhantomData<fn(K, V)>,
}

impl<K, V> std::fmt::Debug for TieredBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Counters of a [`TieredCache`] beyond its local tier's [`CacheStats`](crate::CacheStats).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TieredStats {
    /// Reads answered by the local tier.
    pub l1_hits: u64,
    /// Reads answered by Redis.
    pub l2_hits: u64,
    /// Reads answered by neither.
    pub misses: u64,
    /// Loader calls.
    pub loads: u64,
    /// Loader calls that failed or panicked.
    pub load_failures: u64,
    /// Stale values served because the loader failed.
    pub stale_served: u64,
    /// Background refreshes started (refresh-ahead).
    pub refreshes: u64,
    /// Reads answered "absent" from a cached absence.
    pub negative_hits: u64,
    /// Reads answered "absent" by the Bloom filter.
    pub bloom_rejections: u64,
    /// Loads that waited for another instance holding the lock.
    pub lock_waits: u64,
    /// Redis operations that failed or were skipped while the tier was
    /// bypassed (each degrades to the local tier).
    pub remote_errors: u64,
    /// Values read or loaded that did not enter a tier because a write,
    /// delete, invalidation or flush of their key came first.
    pub fills_refused: u64,
}

#[derive(Debug, Default)]
struct Counters {
    l1_hits: AtomicU64,
    l2_hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    load_failures: AtomicU64,
    stale_served: AtomicU64,
    refreshes: AtomicU64,
    negative_hits: AtomicU64,
    bloom_rejections: AtomicU64,
    lock_waits: AtomicU64,
    remote_errors: AtomicU64,
    fills_refused: AtomicU64,
}

const NEVER: u64 = u64::MAX;

struct Inner<K, V> {
    name: String,
    settings: CacheSettings,
    l1: LocalCache<K, Slot<V>>,
    clock: Clock,
    /// Wall-clock time at clock zero, in nanoseconds since the Unix epoch,
    /// to compare freshness read from Redis with the clock.
    wall_origin_nanos: u64,
    flights: Arc<SingleFlight<K, Option<V>>>,
    bloom: Option<Arc<BloomFilter>>,
    versions: Versions,
    /// What its Redis entries and snapshots are tagged with.
    schema: Schema,
    #[cfg(feature = "redis")]
    remote: Option<Remote>,
    counters: Counters,
}

#[cfg(feature = "redis")]
struct Remote {
    redis: RedisCache,
    bus: Option<InvalidationBus>,
    /// `{prefix}:{name}:`, the start of this cache's Redis keys.
    head: String,
}

/// What a lookup found.
enum Found<V> {
    /// A fresh value, or a fresh cached absence (`None`).
    Fresh {
        value: Option<V>,
        /// Old enough for refresh-ahead: serve it and reload it behind.
        refresh: bool,
    },
    /// A stale copy still kept for stale-if-error.
    Stale {
        value: Option<V>,
        /// Clock time (nanoseconds) it was fresh until.
        fresh_until: u64,
        /// What the read saw, for the load that follows.
        seen: Seen,
    },
    /// Nothing fresh or stale, and what was seen.
    Miss(Seen),
}

/// What a read saw before a load: a ticket taken before it asked Redis,
/// and what Redis held (`None`: not known). The load fills the tiers only
/// if both still hold when it is done.
#[derive(Debug)]
struct Seen {
    ticket: Ticket,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    redis: Option<Expect>,
}

impl<K: CacheKey, V: CacheValue> TieredBuilder<K, V> {
    /// Uses `clock` for freshness (tests move a [`Clock::manual`]).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Uses `bloom` as the cache's Bloom filter (one a [`CacheManager`](crate::CacheManager)
    /// keeps by name, so keys can be marked before the cache is first used).
    /// Without it the cache makes its own when its settings ask for one.
    pub(crate) fn bloom_filter(mut self, bloom: Arc<BloomFilter>) -> Self {
        self.bloom = Some(bloom);
        self
    }

    /// Adds the Redis tier; with `bus`, invalidations reach the other
    /// instances and theirs reach this cache.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, redis: RedisCache, bus: Option<InvalidationBus>) -> Self {
        self.remote = Some((redis, bus));
        self
    }

    /// Builds the cache. Fails if the settings cannot work.
    pub fn build(self) -> Result<TieredCache<K, V>, CacheError> {
        let s = &self.settings;
        if let (Some(local), Some(ttl)) = (s.local_ttl, s.ttl)
            && local > ttl
        {
            return Err(CacheError::Config(format!(
                "cache {:?}: local_ttl ({local:?}) must not exceed ttl ({ttl:?})",
                self.name
            )));
        }
        if !(0.0..=1.0).contains(&s.ttl_jitter) {
            return Err(CacheError::Config(format!(
                "cache {:?}: ttl_jitter must be from 0 to 1",
                self.name
            )));
        }
        let clock = self.clock.unwrap_or_default();
        let mut l1 = LocalCache::builder(s.capacity)
            .policy(s.policy)
            .clock(clock.clone())
            .default_sweep(s.sweep_interval);
        if let Some(tti) = s.tti {
            l1 = l1.time_to_idle(tti);
        }
        let now = clock.now_nanos();
        let wall_origin_nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .saturating_sub(now);
        let bloom = match (s.bloom, self.bloom) {
            (Some(_), Some(shared)) => Some(shared),
            (Some(b), None) => Some(Arc::new(BloomFilter::new(
                b.expected_items,
                b.false_positive_rate,
            ))),
            (None, _) => None,
        };
        #[cfg(feature = "redis")]
        let remote = self.remote.filter(|_| s.tiered).map(|(redis, bus)| Remote {
            head: redis.key_head(&self.name, 0),
            redis,
            bus,
        });
        let schema = Schema::new(s.schema.as_deref().unwrap_or(&self.name), s.schema_version);
        let inner = Arc::new(Inner {
            schema,
            name: self.name,
            settings: self.settings,
            l1: l1.build(),
            clock,
            wall_origin_nanos,
            flights: Arc::default(),
            bloom,
            versions: Versions::new(),
            #[cfg(feature = "redis")]
            remote,
            counters: Counters::default(),
        });
        #[cfg(feature = "redis")]
        if let Some(bus) = inner.remote.as_ref().and_then(|r| r.bus.as_ref()) {
            let weak = Arc::downgrade(&inner);
            let weak: std::sync::Weak<dyn InvalidationHandler> = weak;
            bus.register(&inner.name, weak);
        }
        Ok(TieredCache { inner })
    }
}

impl<K: CacheKey, V: CacheValue> TieredCache<K, V> {
    /// A builder for cache `name` (the Redis namespace) with `settings`.
    pub fn builder(name: impl Into<String>, settings: CacheSettings) -> TieredBuilder<K, V> {
        TieredBuilder {
            name: name.into(),
            settings,
            clock: None,
            bloom: None,
            #[cfg(feature = "redis")]
            remote: None,
            _types: std::marker::PhantomData,
        }
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &CacheSettings {
        &self.inner.settings
    }

    /// The local tier's statistics.
    pub fn local_stats(&self) -> crate::CacheStats {
        self.inner.l1.stats()
    }

    /// The tiered counters.
    pub fn stats(&self) -> TieredStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TieredStats {
            l1_hits: get(&c.l1_hits),
            l2_hits: get(&c.l2_hits),
            misses: get(&c.misses),
            loads: get(&c.loads),
            load_failures: get(&c.load_failures),
            stale_served: get(&c.stale_served),
            refreshes: get(&c.refreshes),
            negative_hits: get(&c.negative_hits),
            bloom_rejections: get(&c.bloom_rejections),
            lock_waits: get(&c.lock_waits),
            remote_errors: get(&c.remote_errors),
            fills_refused: get(&c.fills_refused),
        }
    }

    /// Whether the Redis tier is configured but failing (the cache is
    /// serving from the local tier and the loader).
    pub fn is_degraded(&self) -> bool {
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.inner.remote {
            return !remote.redis.is_healthy()
                || remote.bus.as_ref().is_some_and(|b| !b.is_connected());
        }
        false
    }

    /// Tells the Bloom filter that `key` exists (no-op without one).
    pub fn mark_exists(&self, key: &K) {
        if let Some(bloom) = &self.inner.bloom {
            bloom.insert(key.to_key().as_ref());
        }
    }

    /// Number of entries in the local tier.
    pub fn local_len(&self) -> u64 {
        self.inner.l1.len()
    }
}

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    fn wall(&self, now: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.wall_origin_nanos.saturating_add(now))
    }

    /// The clock time of a wall-clock time written in Redis (milliseconds
    /// since the Unix epoch, `0` = never): [`NEVER`] for never, `0` for a
    /// time before the clock's origin.
    #[cfg(feature = "redis")]
    fn clock_time(&self, wall_ms: u64) -> u64 {
        if wall_ms == 0 {
            return NEVER;
        }
        wall_ms
            .saturating_mul(1_000_000)
            .saturating_sub(self.wall_origin_nanos)
            .min(NEVER - 1)
    }

    /// Counts `hits` reads answered by Redis and `misses` answered by
    /// neither tier (one add each, not one per key).
    fn count_reads(&self, hits: u64, misses: u64) {
        if hits > 0 {
            self.counters.l2_hits.fetch_add(hits, Ordering::Relaxed);
        }
        if misses > 0 {
            self.counters.misses.fetch_add(misses, Ordering::Relaxed);
        }
    }

    #[cfg(feature = "redis")]
    fn remote_up(&self) -> Option<&Remote> {
        self.remote.as_ref()
    }

    /// Counts a failed Redis operation; the caller carries on without it
    /// (the Redis tier logs the outage once).
    #[cfg(feature = "redis")]
    fn remote_failed(&self, error: &CacheError) {
        self.counters.remote_errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(cache = %self.name, %error, "redis operation failed");
    }
}

fn add(now: u64, d: Duration) -> u64 {
    now.saturating_add(nanos(d)).min(NEVER - 1)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(NEVER)
}
