//! [`TieredCache`]: a local tier in process, an optional Redis tier shared
//! by every instance, and a loader behind both, with the protections that
//! keep a hot key, a missing key or a mass expiry from reaching the loader
//! all at once.

mod key;
mod settings;
mod versions;
mod warm;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::LocalCache;
use crate::clock::Clock;
use crate::codec::Schema;
use crate::error::{CacheError, LoadError};
use crate::flight::{Failure, SingleFlight};
use crate::protect::bloom::BloomFilter;
#[cfg(feature = "redis")]
use crate::remote::{
    bus::{Invalidation, InvalidationBus, InvalidationHandler},
    redis::{Expect, Fetched, RedisCache},
};
use crate::shard::Incoming;
use versions::{Ticket, Versions};

/// What a fill of Redis must find there (without the Redis tier nothing
/// is ever expected: the type has no values).
#[cfg(not(feature = "redis"))]
#[derive(Debug)]
enum Expect {}

pub use key::CacheKey;
pub use settings::{BloomSettings, CacheSettings, LockSettings};
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

/// A local copy: the value (or a cached absence) and when it goes stale.
#[derive(Debug)]
struct Slot<V> {
    value: Option<V>,
    /// Clock nanoseconds; `u64::MAX` = never.
    fresh_until: u64,
    /// Clock nanoseconds after which a hit triggers a refresh.
    refresh_at: u64,
}

impl<V: Clone> Clone for Slot<V> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            fresh_until: self.fresh_until,
            refresh_at: self.refresh_at,
        }
    }

    /// Reuses the memory `self.value` owns (a back-fill copies into the
    /// slot it evicts).
    fn clone_from(&mut self, source: &Self) {
        self.value.clone_from(&source.value);
        self.fresh_until = source.fresh_until;
        self.refresh_at = source.refresh_at;
    }
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
            .clock(clock.clone());
        if let Some(tti) = s.tti {
            l1 = l1.time_to_idle(tti);
        }
        if !clock.is_manual() {
            l1 = l1.sweep_every(Some(s.sweep_interval));
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

    /// The value of `key` if a tier has it fresh. Never calls a loader.
    pub async fn get(&self, key: &K) -> Option<V> {
        match self.inner.lookup(key).await {
            Found::Fresh { value, .. } => value,
            Found::Stale { .. } | Found::Miss(_) => None,
        }
    }

    /// `Some(Some(v))`: a fresh value; `Some(None)`: a fresh cached
    /// absence; `None`: no tier knows.
    pub(crate) async fn lookup_cached(&self, key: &K) -> Option<Option<V>> {
        match self.inner.lookup(key).await {
            Found::Fresh { value, .. } => Some(value),
            Found::Stale { .. } | Found::Miss(_) => None,
        }
    }

    /// Caches "`key` does not exist" for `negative_ttl`; false (and
    /// nothing stored) when negative caching is off.
    pub(crate) async fn insert_absent(&self, key: K) -> bool {
        let Some(ttl) = self.inner.settings.negative_ttl else {
            return false;
        };
        self.inner.write(key, None, Some(ttl)).await;
        true
    }

    /// The values of many keys, in order: local hits first, then one Redis
    /// `MGET` for the rest, back-filling the local tier. Keys the Bloom
    /// filter has never seen are absent without a lookup, as with
    /// [`get`](Self::get).
    pub async fn get_many(&self, keys: &[K]) -> Vec<Option<V>> {
        let inner = &self.inner;
        let now = inner.clock.now_nanos();
        let mut out: Vec<Option<V>> = Vec::with_capacity(keys.len());
        let mut missing: Vec<usize> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if inner.bloom_rejects(key) {
                out.push(None);
                continue;
            }
            match inner.local(key, now) {
                Found::Fresh { value, .. } => out.push(value),
                _ => {
                    out.push(None);
                    missing.push(i);
                }
            }
        }
        #[cfg(feature = "redis")]
        if let Some(remote) = inner.remote_up()
            && !missing.is_empty()
        {
            // Taken before the read, as for a single key.
            let tickets: Vec<Ticket> = missing
                .iter()
                .map(|&i| inner.versions.ticket(&keys[i]))
                .collect();
            let found = remote
                .redis
                .get_many_with::<V, _>(&inner.name, &missing, inner.schema, |&i, out| {
                    keys[i].write_key(out);
                })
                .await;
            match found {
                Ok(found) => {
                    let mut hits = 0;
                    for ((&i, entry), ticket) in missing.iter().zip(found).zip(tickets) {
                        if let Some(e) = entry {
                            let until = inner.clock_time(e.fresh_until_ms);
                            if now < until {
                                hits += 1;
                                out[i] = inner.backfill(&keys[i], e.value, until, now, ticket);
                            }
                        }
                    }
                    inner.count_reads(hits, missing.len() as u64 - hits);
                    return out;
                }
                Err(error) => inner.remote_failed(&error),
            }
        }
        inner.count_reads(0, missing.len() as u64);
        out
    }

    /// The value of `key`, loading it with `loader` when no tier has it.
    /// `Ok(None)` from the loader means "does not exist" and is cached for
    /// `negative_ttl` when negative caching is on.
    ///
    /// One load per key runs at a time on this instance, as a task of its
    /// own: callers that arrive meanwhile wait for it, and a caller that is
    /// cancelled does not cancel it. A loader error reaches every waiter
    /// and is not cached; with `max_stale`, a stale value is served instead.
    /// A loaded value fills the tiers only if nothing changed its key
    /// since the read that missed (see "Consistency" above); the callers get
    /// it either way.
    pub async fn try_get_or_load<F, Fut, E>(
        &self,
        key: K,
        loader: F,
    ) -> Result<Option<V>, LoadError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let lookup = self
            .try_get_or_load_with(key, move || {
                let fut = loader();
                async move { fut.await.map(Loaded::new) }
            })
            .await?;
        Ok(lookup.value)
    }

    /// [`try_get_or_load`](Self::try_get_or_load) with a loader that also
    /// says how long its value may be kept ([`Keep`]: a response's
    /// `Cache-Control`, say), and an answer that says where the value came
    /// from ([`Served`]: a tier, a load, or a stale copy after a failed
    /// load).
    pub async fn try_get_or_load_with<F, Fut, E>(
        &self,
        key: K,
        loader: F,
    ) -> Result<Lookup<V>, LoadError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let inner = &self.inner;
        let (stale, seen) = match inner.lookup(&key).await {
            Found::Fresh { value, refresh } => {
                if refresh {
                    inner.refresh(&key, loader);
                }
                return Ok(Lookup {
                    value,
                    served: Served::Cached,
                });
            }
            Found::Stale {
                value,
                fresh_until,
                seen,
            } => (Some((value, fresh_until)), seen),
            Found::Miss(seen) => (None, seen),
        };
        let Some((done, _)) = inner.flights.join_or_start(&key, || {
            let this = Arc::clone(inner);
            let fut = loader();
            let key = key.clone();
            async move { this.load(key, fut, Some(seen)).await }
        }) else {
            return Err(LoadError::NoRuntime);
        };
        match done.await {
            Ok(value) => Ok(Lookup {
                value,
                served: Served::Loaded,
            }),
            Err(failure) => {
                if let Some((value, fresh_until)) = stale
                    && inner.within_max_stale(fresh_until)
                {
                    inner.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(cache = %inner.name, "loader failed; serving a stale value");
                    return Ok(Lookup {
                        value,
                        served: Served::Stale,
                    });
                }
                Err(match failure {
                    Failure::Loader(e) => e
                        .downcast::<E>()
                        .map_or(LoadError::Aborted, LoadError::Loader),
                    Failure::Panicked => LoadError::Panicked,
                    Failure::Aborted => LoadError::Aborted,
                })
            }
        }
    }

    /// [`try_get_or_load`](Self::try_get_or_load) with a loader that always
    /// finds a value. A key the Bloom filter has never seen (or whose
    /// absence is cached) is [`LoadError::NotFound`]: mark keys that exist
    /// before loading them through a cache with a Bloom filter.
    pub async fn get_or_load<F, Fut>(&self, key: K, loader: F) -> Result<V, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let loaded = self
            .try_get_or_load(key, move || {
                let fut = loader();
                async move { Ok(Some(fut.await)) }
            })
            .await?;
        loaded.ok_or(LoadError::NotFound)
    }

    /// Writes `value` to both tiers with the cache's TTL and tells the
    /// other instances to drop their copies. A Redis failure degrades to
    /// the local tier and is not returned: the key is remembered, and once
    /// Redis is back it is deleted there and invalidated on every instance.
    pub async fn insert(&self, key: K, value: V) {
        let ttl = self.inner.settings.ttl;
        self.inner.write(key, Some(value), ttl).await;
    }

    /// [`insert`](Self::insert) for many entries: one Redis pipeline and
    /// one invalidation message for the batch, each entry's TTL jittered
    /// on its own (so a batch does not expire at one moment).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use keel_cache::{CacheSettings, TieredCache};
    ///
    /// let prices: TieredCache<String, u64> =
    ///     TieredCache::builder("prices", CacheSettings::default()).build().unwrap();
    /// prices
    ///     .insert_many([("AAPL".to_owned(), 190), ("MSFT".to_owned(), 410)])
    ///     .await;
    /// assert_eq!(prices.get(&"MSFT".to_owned()).await, Some(410));
    /// # }
    /// ```
    pub async fn insert_many(&self, entries: impl IntoIterator<Item = (K, V)>) {
        let ttl = self.inner.settings.ttl;
        self.insert_many_for(entries, ttl).await;
    }

    /// [`insert_many`](Self::insert_many) with `ttl` (`None`: the cache's).
    pub(crate) async fn insert_many_for(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
        ttl: Option<Duration>,
    ) {
        let ttl = ttl.or(self.inner.settings.ttl);
        let entries: Vec<_> = entries
            .into_iter()
            .map(|(key, value)| (key, Some(value), ttl))
            .collect();
        if !entries.is_empty() {
            self.inner.write_many(entries).await;
        }
    }

    /// [`insert`](Self::insert) with a TTL of its own.
    pub async fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.inner.write(key, Some(value), Some(ttl)).await;
    }

    /// Removes `key` from both tiers and from the other instances. With
    /// Redis failing, the key is remembered and deleted there once it is
    /// back.
    pub async fn remove(&self, key: &K) {
        let inner = &self.inner;
        inner.l1.remove(key);
        #[cfg(feature = "redis")]
        if let Some(remote) = &inner.remote {
            let name = key.to_key();
            let result = remote.redis.delete(&inner.name, &[name.as_ref()]).await;
            // After Redis, before the local tier: see `versions.rs`.
            inner.versions.bump(key);
            inner.l1.remove(key);
            match result {
                Ok(_) => inner.publish(remote, vec![name.into_owned()]).await,
                Err(error) => {
                    inner.remote_failed(&error);
                    remote.redis.remember(&inner.name, [name.into_owned()]);
                }
            }
            return;
        }
        inner.versions.bump(key);
        inner.l1.remove(key);
    }

    /// Removes every entry of this cache, in both tiers and on the other
    /// instances.
    pub async fn clear(&self) {
        let inner = &self.inner;
        inner.l1.invalidate_all();
        #[cfg(feature = "redis")]
        if let Some(remote) = &inner.remote {
            let result = remote.redis.clear(&inner.name).await;
            inner.versions.bump_all();
            inner.l1.invalidate_all();
            if let Err(error) = result {
                inner.remote_failed(&error);
                remote.redis.remember_clear(&inner.name);
                return;
            }
            if let Some(bus) = &remote.bus
                && let Err(error) = bus.publish_clear(&inner.name).await
            {
                tracing::warn!(cache = %inner.name, %error, "cannot publish a clear; it is sent again once redis is back");
                remote.redis.remember_clear(&inner.name);
            }
            return;
        }
        inner.versions.bump_all();
        inner.l1.invalidate_all();
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

    /// The local tier's view of `key`. What a miss saw in Redis is filled
    /// in by [`lookup`](Self::lookup).
    fn local(&self, key: &K, now: u64) -> Found<V> {
        let unseen = || Seen {
            ticket: self.versions.ticket(key),
            redis: None,
        };
        let Some(slot) = self.l1.get(key) else {
            return Found::Miss(unseen());
        };
        if now < slot.fresh_until {
            self.counters.l1_hits.fetch_add(1, Ordering::Relaxed);
            if slot.value.is_none() {
                self.counters.negative_hits.fetch_add(1, Ordering::Relaxed);
            }
            Found::Fresh {
                value: slot.value,
                refresh: now >= slot.refresh_at,
            }
        } else {
            Found::Stale {
                value: slot.value,
                fresh_until: slot.fresh_until,
                seen: unseen(),
            }
        }
    }

    /// Whether the Bloom filter has never seen `key` (counted).
    fn bloom_rejects(&self, key: &K) -> bool {
        let rejected = self
            .bloom
            .as_ref()
            .is_some_and(|bloom| !bloom.contains(key.to_key().as_ref()));
        if rejected {
            self.counters
                .bloom_rejections
                .fetch_add(1, Ordering::Relaxed);
        }
        rejected
    }

    async fn lookup(&self, key: &K) -> Found<V> {
        let now = self.clock.now_nanos();
        if self.bloom_rejects(key) {
            return Found::Fresh {
                value: None,
                refresh: false,
            };
        }
        #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
        let mut local = self.local(key, now);
        if matches!(local, Found::Fresh { .. }) {
            return local;
        }
        #[cfg(feature = "redis")]
        if let Some(remote) = self.remote_up() {
            let ticket = self.versions.ticket(key);
            let found = remote
                .redis
                .get_with::<V>(&remote.head, self.schema, |out| key.write_key(out))
                .await;
            match found {
                Ok(Fetched { entry, raw }) => {
                    let seen = |raw: Option<Vec<u8>>| Seen {
                        ticket,
                        redis: Some(raw.map_or(Expect::Absent, Expect::Bytes)),
                    };
                    if let Some(entry) = entry {
                        let until = self.clock_time(entry.fresh_until_ms);
                        if now < until {
                            self.counters.l2_hits.fetch_add(1, Ordering::Relaxed);
                            let value = self.backfill(key, entry.value, until, now, ticket);
                            return Found::Fresh {
                                value,
                                refresh: false,
                            };
                        }
                        if matches!(local, Found::Miss(_)) {
                            // Kept in Redis past freshness for stale-if-error
                            // (`NEVER` if it went stale before the clock's origin).
                            let stale_since = entry
                                .fresh_until_ms
                                .checked_mul(1_000_000)
                                .and_then(|n| n.checked_sub(self.wall_origin_nanos))
                                .unwrap_or(NEVER);
                            self.counters.misses.fetch_add(1, Ordering::Relaxed);
                            return Found::Stale {
                                value: entry.value,
                                fresh_until: stale_since,
                                seen: seen(raw),
                            };
                        }
                    }
                    local = match local {
                        Found::Stale {
                            value, fresh_until, ..
                        } => Found::Stale {
                            value,
                            fresh_until,
                            seen: seen(raw),
                        },
                        _ => Found::Miss(seen(raw)),
                    };
                }
                Err(error) => self.remote_failed(&error),
            }
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        local
    }

    /// Fills the local tier from Redis with the freshness left (the entry
    /// is fresh until clock time `until`) unless `ticket` no longer holds,
    /// and hands `value` back: the local tier keeps a copy.
    #[cfg(feature = "redis")]
    fn backfill(
        &self,
        key: &K,
        value: Option<V>,
        until: u64,
        now: u64,
        ticket: Ticket,
    ) -> Option<V> {
        let local_ttl = self.settings.local_ttl.or(self.settings.ttl);
        let fresh_until = local_ttl.map_or(until, |l| until.min(add(now, l)));
        let slot = self.slot(value, fresh_until, now);
        let keep = self.keep(fresh_until, now);
        let filled = self
            .l1
            .insert_nanos_if(key.clone(), Incoming::CopyOf(&slot), keep, || {
                self.versions.still(ticket)
            });
        if !filled {
            self.counters.fills_refused.fetch_add(1, Ordering::Relaxed);
        }
        slot.value
    }

    /// Stores a local copy fresh for `fresh_for`, kept `max_stale` longer,
    /// if `admit` (asked under the key's shard lock) says yes.
    fn put_local(
        &self,
        key: K,
        value: Option<V>,
        fresh_for: Option<Duration>,
        now: u64,
        admit: impl FnOnce() -> bool,
    ) -> bool {
        let fresh_until = fresh_for.map_or(NEVER, |d| add(now, d));
        let slot = self.slot(value, fresh_until, now);
        let keep = self.keep(fresh_until, now);
        self.l1
            .insert_nanos_if(key, Incoming::Owned(slot), keep, admit)
    }

    /// The local copy of `value`, fresh until clock time `fresh_until`.
    #[inline]
    fn slot(&self, value: Option<V>, fresh_until: u64, now: u64) -> Slot<V> {
        Slot {
            value,
            fresh_until,
            refresh_at: self.settings.refresh_after.map_or(NEVER, |r| add(now, r)),
        }
    }

    /// How long (in nanoseconds from `now`) the local tier keeps a copy
    /// fresh until `fresh_until`: `max_stale` longer, at least 1 (`None`:
    /// no expiry).
    #[inline]
    fn keep(&self, fresh_until: u64, now: u64) -> Option<u64> {
        (fresh_until != NEVER).then(|| {
            let stale = self.settings.max_stale.map_or(0, nanos);
            fresh_until.saturating_sub(now).saturating_add(stale).max(1)
        })
    }

    fn within_max_stale(&self, fresh_until: u64) -> bool {
        let Some(max_stale) = self.settings.max_stale else {
            return false;
        };
        self.clock.now_nanos() < add(fresh_until, max_stale)
    }

    /// A TTL shortened by up to `ttl_jitter` of itself.
    fn jitter(&self, ttl: Duration) -> Duration {
        let j = self.settings.ttl_jitter;
        if j <= 0.0 {
            return ttl;
        }
        ttl.mul_f64(1.0 - j * fastrand::f64())
    }

    /// The freshness of a local copy of a value fresh for `ttl`.
    fn local_ttl(&self, ttl: Option<Duration>) -> Option<Duration> {
        match (ttl, self.settings.local_ttl) {
            (Some(t), Some(l)) => Some(t.min(l)),
            (t, l) => t.or(l),
        }
    }

    /// What a load that starts now must find when it is done: a ticket,
    /// and what Redis holds (one read, when the tier is up).
    async fn observe(&self, key: &K) -> Seen {
        let ticket = self.versions.ticket(key);
        #[cfg(feature = "redis")]
        if let Some(remote) = self.remote_up() {
            let found = remote
                .redis
                .get_with::<V>(&remote.head, self.schema, |out| key.write_key(out))
                .await;
            return match found {
                Ok(fetched) => Seen {
                    ticket,
                    redis: Some(fetched.raw.map_or(Expect::Absent, Expect::Bytes)),
                },
                Err(error) => {
                    self.remote_failed(&error);
                    Seen {
                        ticket,
                        redis: None,
                    }
                }
            };
        }
        Seen {
            ticket,
            redis: None,
        }
    }

    /// Runs a load (on the flight's task) and stores what it found. `seen`
    /// is what the read that missed saw (`None`: a refresh, which reads
    /// Redis itself before calling the loader).
    async fn load<E: Send + Sync + 'static>(
        self: Arc<Self>,
        key: K,
        fut: impl Future<Output = Result<Loaded<V>, E>>,
        seen: Option<Seen>,
    ) -> Result<Option<V>, Failure> {
        #[cfg(feature = "redis")]
        let mut lock = None;
        #[cfg(feature = "redis")]
        if let (Some(settings), Some(remote)) = (self.settings.lock, self.remote_up()) {
            match remote
                .redis
                .try_lock(&self.name, &key.to_key(), settings.ttl)
                .await
            {
                Ok(Some(token)) => lock = Some(token),
                Ok(None) => {
                    self.counters.lock_waits.fetch_add(1, Ordering::Relaxed);
                    if let Some(value) = self.wait_for_holder(&key, settings.wait).await {
                        return Ok(value);
                    }
                }
                Err(error) => self.remote_failed(&error),
            }
        }
        let seen = match seen {
            Some(seen) => seen,
            None => self.observe(&key).await,
        };
        self.counters.loads.fetch_add(1, Ordering::Relaxed);
        let outcome = fut.await;
        let result = match outcome {
            Ok(Loaded { value, keep }) => {
                let ttl = match (&value, keep) {
                    (_, Keep::For(ttl)) => Some(ttl),
                    (_, Keep::ForAtMost(ttl)) => {
                        Some(self.settings.ttl.map_or(ttl, |own| own.min(ttl)))
                    }
                    (Some(_), _) => self.settings.ttl,
                    (None, _) => self.settings.negative_ttl,
                };
                let cacheable = value.is_some()
                    || self.settings.negative_ttl.is_some()
                    || matches!(keep, Keep::For(_) | Keep::ForAtMost(_));
                if keep != Keep::Never && cacheable {
                    self.fill(key.clone(), value.clone(), ttl, seen).await;
                }
                if value.is_some()
                    && let Some(bloom) = &self.bloom
                {
                    bloom.insert(key.to_key().as_ref());
                }
                Ok(value)
            }
            Err(e) => {
                self.counters.load_failures.fetch_add(1, Ordering::Relaxed);
                Err(Failure::Loader(Arc::new(e)))
            }
        };
        #[cfg(feature = "redis")]
        if let (Some(token), Some(remote)) = (lock, &self.remote)
            && let Err(error) = remote.redis.unlock(&token).await
        {
            tracing::debug!(cache = %self.name, %error, "cannot release a load lock; it expires by itself");
        }
        result
    }

    /// Another instance holds the load lock: poll Redis for its value.
    #[cfg(feature = "redis")]
    async fn wait_for_holder(&self, key: &K, wait: Duration) -> Option<Option<V>> {
        let remote = self.remote.as_ref()?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            let now = self.clock.now_nanos();
            let ticket = self.versions.ticket(key);
            let found = remote
                .redis
                .get_with::<V>(&remote.head, self.schema, |out| key.write_key(out))
                .await;
            if let Ok(Fetched {
                entry: Some(entry), ..
            }) = found
            {
                let until = self.clock_time(entry.fresh_until_ms);
                if now < until {
                    return Some(self.backfill(key, entry.value, until, now, ticket));
                }
            }
        }
        None
    }

    /// Stores a loaded value in both tiers, only if nothing changed the key
    /// since `seen` was taken: locally (a write, delete, invalidation or
    /// flush moved the key's ticket) or in Redis (it no longer holds what
    /// the read saw; a delete leaves a unique marker, so it counts). No
    /// invalidation: nothing changed that other instances could hold.
    async fn fill(&self, key: K, value: Option<V>, ttl: Option<Duration>, seen: Seen) {
        let refused = || {
            self.counters.fills_refused.fetch_add(1, Ordering::Relaxed);
        };
        if !self.versions.still(seen.ticket) {
            return refused();
        }
        let ttl = ttl.map(|t| self.jitter(t));
        let now = self.clock.now_nanos();
        #[cfg(feature = "redis")]
        if let (Some(remote), Some(expect)) = (self.remote_up(), &seen.redis) {
            let keep = ttl.map(|t| t + self.settings.max_stale.unwrap_or_default());
            let full = format!("{}{}", remote.head, key.to_key());
            let filled = remote
                .redis
                .fill(&full, value.as_ref(), self.schema, ttl, keep, expect)
                .await;
            match filled {
                Ok(true) => {}
                Ok(false) => return refused(),
                // Redis is out of reach: keep the value locally only.
                Err(error) => self.remote_failed(&error),
            }
        }
        let local = self.local_ttl(ttl);
        if !self.put_local(key, value, local, now, || self.versions.still(seen.ticket)) {
            refused();
        }
    }

    /// A write by the application: Redis, the local tier, then the other
    /// instances.
    async fn write(&self, key: K, value: Option<V>, ttl: Option<Duration>) {
        self.write_many(vec![(key, value, ttl)]).await;
    }

    /// Writes by the application: one Redis pipeline, the local tier, then
    /// one message to the other instances. Each key's version moves before
    /// and after the Redis write; if anything else moved it in between (a
    /// concurrent write, an invalidation of the same key, or another key of
    /// the batch sharing its counter), the order of the two in Redis is not
    /// known, so the local copy is dropped instead of written and the next
    /// read asks Redis. Each TTL is jittered on its own.
    async fn write_many(&self, entries: Vec<(K, Option<V>, Option<Duration>)>) {
        if let Some(bloom) = &self.bloom {
            for (key, value, _) in &entries {
                if value.is_some() {
                    bloom.insert(key.to_key().as_ref());
                }
            }
        }
        let entries = entries
            .into_iter()
            .map(|(key, value, ttl)| (key, value, ttl.map(|t| self.jitter(t))));
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.remote {
            let stale = self.settings.max_stale.unwrap_or_default();
            let entries: Vec<_> = entries
                .map(|(key, value, ttl)| {
                    let before = self.versions.bump(&key);
                    (key.to_key().into_owned(), key, value, ttl, before)
                })
                .collect();
            let result = remote
                .redis
                .set_many_tagged(
                    &self.name,
                    entries.iter().map(|(name, _, value, ttl, _)| {
                        (name, value.as_ref(), *ttl, ttl.map(|t| t + stale))
                    }),
                    self.schema,
                )
                .await;
            let mut names = Vec::with_capacity(entries.len());
            for (name, key, value, ttl, before) in entries {
                let after = self.versions.bump(&key);
                let now = self.clock.now_nanos();
                let local = self.local_ttl(ttl);
                if result.is_ok() {
                    let alone = Versions::consecutive(before, after);
                    if !(alone
                        && self.put_local(key.clone(), value, local, now, || {
                            self.versions.still(after)
                        }))
                    {
                        self.l1.remove(&key);
                    }
                } else {
                    // Redis holds an older value (or will not say): this
                    // instance serves the new one, and once Redis is back
                    // the key is deleted there and on every instance.
                    self.put_local(key, value, local, now, || true);
                }
                names.push(name);
            }
            match result {
                Ok(()) => self.publish(remote, names).await,
                Err(error) => {
                    self.remote_failed(&error);
                    remote.redis.remember(&self.name, names);
                }
            }
            return;
        }
        for (key, value, ttl) in entries {
            self.versions.bump(&key);
            let now = self.clock.now_nanos();
            self.put_local(key, value, self.local_ttl(ttl), now, || true);
        }
    }

    /// Starts a background reload of `key` unless one is running.
    fn refresh<F, Fut, E>(self: &Arc<Self>, key: &K, loader: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        if self.flights.is_running(key) {
            return;
        }
        let started = self.flights.join_or_start(key, || {
            let this = Arc::clone(self);
            let fut = loader();
            let key = key.clone();
            async move { this.load(key, fut, None).await }
        });
        if let Some((_, true)) = started {
            self.counters.refreshes.fetch_add(1, Ordering::Relaxed);
        }
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

    /// Tells the other instances that `keys` changed. If that fails, the
    /// keys are remembered and invalidated (and deleted in Redis) once
    /// Redis is back.
    #[cfg(feature = "redis")]
    async fn publish(&self, remote: &Remote, keys: Vec<String>) {
        if let Some(bus) = &remote.bus
            && let Err(error) = bus.publish_keys(&self.name, keys.clone()).await
        {
            tracing::debug!(cache = %self.name, %error, "cannot publish an invalidation");
            remote.redis.remember(&self.name, keys);
        }
    }
}

#[cfg(feature = "redis")]
impl<K: CacheKey, V: CacheValue> InvalidationHandler for Inner<K, V> {
    fn on_invalidation(&self, invalidation: &Invalidation) {
        match invalidation {
            Invalidation::Keys { keys, .. } => {
                for key in keys {
                    if let Some(key) = K::from_key(key) {
                        self.versions.bump(&key);
                        self.l1.remove(&key);
                    }
                }
            }
            Invalidation::Clear { .. } | Invalidation::Resync => {
                self.versions.bump_all();
                self.l1.invalidate_all();
            }
        }
    }
}

fn add(now: u64, d: Duration) -> u64 {
    now.saturating_add(nanos(d)).min(NEVER - 1)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(NEVER)
}
