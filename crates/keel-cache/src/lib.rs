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
//! None yet: the local engines need no optional backend (`default = []`).
//!
//! # Implementation details and guarantees
//!
//! - **Sharding.** Keys are spread over a power-of-two number of shards (four
//!   per CPU by default, fewer for small capacities) by their hash; each
//!   shard has its own capacity (the total split evenly) and runs the policy
//!   on its own entries. A shard is a hash table of slot indices, a slab of
//!   slots, the policy's queues and an expiry order, behind one
//!   reader-writer lock.
//! - **Reads.** With `S3Fifo`, `Fifo` and `Ttl` a hit takes only the shard's
//!   read lock: it records the access with a relaxed store of a 2-bit
//!   frequency (S3-FIFO) and bumps the entry's hit count. `Lru` and `Lfu` must
//!   reorder on every hit, so their reads take the write lock; only the
//!   default policy has speed goals.
//! - **Consistency.** Each operation on one key is linearizable: a `get`
//!   after an `insert` returns it (unless evicted or expired), and a `remove`
//!   is final. Operations over many keys (`invalidate_all`, `invalidate_if`,
//!   `iter`, `len`, `stats`) visit shards one at a time and are not a single
//!   snapshot across shards.
//! - **Expiry** is exact from the caller's view: an entry whose deadline has
//!   passed is never returned, even before it is reclaimed. Memory is
//!   reclaimed by every write to the shard (which pops due entries from the
//!   shard's deadline order) and by [`LocalCache::purge_expired`]; until then
//!   an expired entry still counts in `len`. Time comes from a [`Clock`]:
//!   by default the monotonic clock read with a resolution of [`TICK`] (1
//!   ms) through a process-wide ticker thread, so a hit costs an atomic load
//!   rather than a clock call; [`Clock::precise`] reads the clock every time
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
//! `cache` suites): see the README's cache section for the tables. S3-FIFO
//! keeps hits free of reordering (a relaxed store at most, none once the
//! frequency saturates), so reads share the lock, and its small probationary
//! queue with ghost memory filters one-hit wonders, which gives it a hit
//! ratio at or above W-TinyLFU on the Zipf and e-commerce traces measured.

#![forbid(unsafe_code)]

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
mod loader;
mod manager;
mod policy;
mod protect;
#[cfg(feature = "redis")]
mod remote;
mod shard;
mod stats;
mod sync;
mod tiered;

pub use cache::{CacheBuilder, FifoCache, LfuCache, LocalCache, LruCache, Snapshot, TtlCache};
pub use clock::{Clock, ManualClock, TICK};
pub use codec::{CODEC_VERSION, DecodeError, Envelope};
pub use config::{CacheConfig, NamedCacheConfig, RedisConfig};
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
    BloomSettings, CacheKey, CacheSettings, CacheValue, LockSettings, TieredBuilder, TieredCache,
    TieredStats, WarmSummary,
};
