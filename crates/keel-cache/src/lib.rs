//! In-process caches for async services.
//!
//! [`LocalCache`] is a sharded, bounded map with a choice of eviction policy
//! ([`CachePolicy`]): exact LRU, exact LFU, FIFO, TTL order, and S3-FIFO, the
//! default. It expires entries by time-to-live (per cache or per entry, with
//! jitter) and time-to-idle, tells an eviction listener why each entry left,
//! coalesces concurrent loads of one key into one loader call, and counts
//! what it does ([`CacheStats`]).
//!
//! ```
//! use std::time::Duration;
//! use keel_cache::{CachePolicy, Clock, LocalCache};
//!
//! let (clock, time) = Clock::manual();
//! let cache: LocalCache<u64, String> = LocalCache::builder(10_000)
//!     .policy(CachePolicy::default())
//!     .time_to_live(Duration::from_secs(60))
//!     .clock(clock)
//!     .build();
//!
//! cache.insert(1, "one".to_owned());
//! assert_eq!(cache.get(&1).as_deref(), Some("one"));
//!
//! time.advance(Duration::from_secs(61));
//! assert_eq!(cache.get(&1), None);
//!
//! let stats = cache.stats();
//! assert_eq!((stats.hits, stats.misses), (1, 1));
//! ```
//!
//! `LruCache`, `LfuCache`, `FifoCache` and `TtlCache` build a `LocalCache`
//! with that policy: `LruCache::<u64, u64>::new(1000)`.
//!
//! # Feature flags
//!
//! - `redis` (off by default): the Redis tier of [`TieredCache`]
//!   (`RedisCache`), the `InvalidationBus` that keeps instances' local
//!   tiers in step, the cluster-wide load lock, and the circuit breaker
//!   (from `keel-concurrency`) that bypasses a failing Redis. The local
//!   engines need no optional backend.
//!
//! # Implementation details and guarantees
//!
//! - **Sharding.** Keys are spread over a power-of-two number of shards (up
//!   to 64 per CPU by default, four with a weigher, fewer for small
//!   capacities and for caches big enough to give every shard a table on
//!   huge pages) by their hash; each shard has its own capacity (the total
//!   split evenly; an entry heavier than its shard's part is not kept) and
//!   runs the policy on its own entries. A shard is a hash table that holds
//!   the entries themselves (a hit reads the table's control bytes, then the
//!   entry: two memory accesses), per-entry metadata only writes need, the
//!   policy's queues and an expiry order, behind one reader-writer lock.
//! - **Reads.** With `S3Fifo`, `Fifo` and `Ttl` a hit takes only the shard's
//!   read lock: it records the access in one word of the entry (a 2-bit
//!   frequency for S3-FIFO and the hit count), stored only when it changes. `Lru` and `Lfu` must
//!   reorder on every hit, so their reads take the write lock; only the
//!   default policy has speed goals.
//! - **Consistency.** Each operation on one key is linearizable: a `get`
//!   after an `insert` returns it (unless evicted or expired), and a `remove`
//!   is final. Operations over many keys (`invalidate_all`, `invalidate_if`,
//!   `iter`, `len`, `stats`) visit shards one at a time and are not a single
//!   snapshot across shards.
//! - **Expiry** is exact from the caller's view: an entry whose deadline has
//!   passed is never returned, even before it is reclaimed. Memory is
//!   reclaimed by every write to the shard (which takes the entries of the
//!   shard's deadline buckets, about 17 ms wide, that have ended), by a
//!   process-wide sweeper thread every second for caches nobody writes to
//!   ([`CacheBuilder::sweep_every`], `[cache] sweep_interval`), and exactly by
//!   [`LocalCache::purge_expired`]; until then
//!   an expired entry still counts in `len`. Time comes from a [`Clock`]:
//!   by default the monotonic clock read with a resolution of [`TICK`] (1
//!   ms) through quanta's upkeep thread, so a hit costs an atomic load
//!   rather than a clock call; both threads run only while a cache exists; [`Clock::precise`] reads the clock every time
//!   and [`Clock::manual`] gives tests a clock they move.
//! - **What can be dropped.** Any entry, at any time, for capacity; a value
//!   heavier than one shard's capacity is rejected at once (the listener
//!   hears [`RemovalCause::Size`]). Nothing else: loads, listener calls and
//!   counters are not sampled.
//! - **Loads** ([`LocalCache::get_or_load`], [`LocalCache::try_get_or_load`])
//!   run in a spawned tokio task shared by every concurrent caller of the
//!   key, so a cancelled caller does not cancel the load; errors and panics
//!   reach every waiter and are not cached.
//! - **Statistics** are per-shard atomics beside the shard lock: counting a
//!   read touches no lock or counter shared by the whole cache.
//! - **Listener** calls happen after the shard lock is released, on the
//!   thread whose operation removed the entry.
//!
//! # Why S3-FIFO is the default
//!
//! The default is chosen by measurement in `keel-bench` (`hitratio` and
//! `cache` suites; the README's cache section has the full tables). Two
//! things decided it:
//!
//! - **Hit ratio.** Replaying Zipf 0.8/0.99/1.2 over 1M keys at 0.1%, 1% and
//!   10% capacity and the cache2k `web07` and `orm-busy` traces at three
//!   capacities each (`cargo run --release -p keel-bench -- hitratio`),
//!   S3-FIFO averages 67.04% against 66.81% for quick_cache (also
//!   S3-FIFO-like), 63.62% for TinyUFO, 63.10% for moka (W-TinyLFU) and
//!   62.58% for exact LRU, closing 39% of the gap between exact LRU and
//!   Belady's optimum. Its worst case is 0.20 points under TinyUFO (Zipf 1.2
//!   at 1,000 entries); on the traces it leads every peer (web07 at 2,000
//!   entries: 58.01% against 57.89%, 54.87% and 52.16%). The small queue
//!   holds 1/20 of the capacity rather than the paper's 1/10: that measured
//!   +0.3 points at the smallest Zipf capacities and kept the trace lead.
//! - **Read path.** A hit never reorders anything: it stores a 2-bit
//!   frequency (only while it is below 3), so reads take only the shard's
//!   read lock. Exact LRU and LFU must reorder on every hit and take the
//!   write lock; W-TinyLFU must update a frequency sketch on every hit (moka
//!   buffers those updates and measures 8 to 17 times slower than this
//!   cache in the `cache` suite).

#![deny(unsafe_code)]

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
mod cache;
mod clock;
mod codec;
mod config;
mod entry;
mod error;
mod expiry;
mod flight;
mod loader;
mod manager;
mod metrics;
mod policy;
mod protect;
#[cfg(feature = "redis")]
mod remote;
mod shard;
mod stats;
mod sweeper;
mod sync;
mod table_alloc;
mod tiered;

pub use cache::{CacheBuilder, FifoCache, LfuCache, LocalCache, LruCache, Snapshot, TtlCache};
pub use clock::{Clock, ManualClock, TICK};
pub use codec::{CODEC_VERSION, DecodeError, Envelope, Schema};
pub use config::{
    BloomSettings, CacheConfig, CacheOptions, CacheSettings, InvalidField, LockSettings,
    RedisConfig,
};
pub use entry::{CacheEntry, RemovalCause};
pub use error::{CacheError, LoadError, ParsePolicyError};
pub use manager::{CacheManager, CacheReport, default_manager, set_default_manager};
pub use policy::CachePolicy;
pub use protect::bloom::BloomFilter;
#[cfg(feature = "redis")]
pub use redis;
#[cfg(feature = "redis")]
pub use remote::{
    bus::{BusStats, Invalidation, InvalidationBus, InvalidationHandler},
    redis::{LockToken, RedisCache, RedisStats, RemoteEntry},
};
pub use stats::CacheStats;
pub use tiered::{
    CacheKey, CacheValue, Keep, Loaded, Lookup, Served, TieredBuilder, TieredCache, TieredStats,
    WarmSummary,
};
