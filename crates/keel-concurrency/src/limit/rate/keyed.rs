//! [`KeyedRateLimiter`]: one GCRA state per key in a sharded map.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::counter::StripedCounter;
use super::limiter::CacheAligned;
use super::quota::Gcra;
use super::{Quota, RateLimiterStats};
use crate::Clock;
use crate::error::RateLimited;

const SHARDS: usize = 64;
/// A shard is swept of idle keys when it grows past this many (and past
/// twice its size after the last sweep).
const MIN_SWEEP: usize = 1024;

/// A rate limit per key (client address, API token, tenant), shared by
/// every clone.
///
/// Each key has its own GCRA word, created on first sight. Keys whose
/// state has fully recovered (they would be treated exactly like a new key)
/// are forgotten: a shard sweeps them when it has doubled since its last
/// sweep, and [`retain_recent`](Self::retain_recent) sweeps all shards.
/// Memory therefore tracks the keys active within about one burst window.
pub struct KeyedRateLimiter<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    gcra: Gcra,
    quota: Quota,
    clock: Clock,
    hasher: RandomState,
    shards: Box<[CacheAligned<Shard<K>>]>,
    rejected: StripedCounter,
    waited: AtomicU64,
}

struct Shard<K> {
    /// Each key with its TAT, found by the limiter's own hash.
    states: RwLock<HashTable<(K, AtomicU64)>>,
    sweep_at: AtomicUsize,
}

impl<K> KeyedRateLimiter<K>
where
    K: Hash + Eq + Clone,
{
    /// A limiter allowing `quota` per key, on the system clock.
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, Clock::system())
    }

    /// A limiter allowing `quota` per key, timed by `clock`.
    pub fn with_clock(quota: Quota, clock: Clock) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                CacheAligned(Shard {
                    states: RwLock::new(HashTable::new()),
                    sweep_at: AtomicUsize::new(MIN_SWEEP),
                })
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                gcra: Gcra::new(quota),
                quota,
                clock,
                hasher: RandomState::default(),
                shards,
                rejected: StripedCounter::default(),
                waited: AtomicU64::new(0),
            }),
        }
    }

    /// Allows one request for `key` now, or refuses it with the time until
    /// one would be allowed (counted; uses up nothing).
    pub fn check_key(&self, key: &K) -> Result<(), RateLimited> {
        self.decide(key).map_err(|wait| {
            self.inner.rejected.increment();
            RateLimited { wait_nanos: wait }
        })
    }

    /// Waits until a request for `key` is allowed, then takes it.
    pub async fn until_key_ready(&self, key: &K) {
        let mut counted = false;
        while let Err(wait) = self.decide(key) {
            if !counted {
                self.inner.waited.fetch_add(1, Ordering::Relaxed);
                counted = true;
            }
            tokio::time::sleep(Duration::from_nanos(wait)).await;
        }
    }

    /// Forgets every key whose state has fully recovered.
    pub fn retain_recent(&self) {
        let now = self.inner.clock.now_nanos();
        for shard in self.inner.shards.iter() {
            let mut states = shard
                .0
                .states
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            sweep(&mut states, &shard.0.sweep_at, now);
        }
    }

    /// How many keys are tracked right now.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| {
                shard
                    .0
                    .states
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The quota each key gets.
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }

    /// The counters so far, over all keys.
    pub fn stats(&self) -> RateLimiterStats {
        RateLimiterStats {
            rejected: self.inner.rejected.sum(),
            waited: self.inner.waited.load(Ordering::Relaxed),
        }
    }

    fn decide(&self, key: &K) -> Result<(), u64> {
        let inner = &*self.inner;
        let hash = inner.hasher.hash_one(key);
        // Bits 40..46 pick the shard: the table uses the low bits for the
        // bucket and the top 7 for its tags, so these stay independent.
        let shard = &inner.shards[(hash >> 40) as usize % SHARDS].0;
        let now = inner.clock.now_nanos();
        {
            let states = shard.states.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, tat)) = states.find(hash, |(k, _)| k == key) {
                return inner.gcra.check(tat, now);
            }
        }
        let mut states = shard.states.write().unwrap_or_else(PoisonError::into_inner);
        if states.len() >= shard.sweep_at.load(Ordering::Relaxed) {
            sweep(&mut states, &shard.sweep_at, now);
        }
        let (_, tat) = states
            .entry(hash, |(k, _)| k == key, |(k, _)| inner.hasher.hash_one(k))
            .or_insert_with(|| (key.clone(), AtomicU64::new(0)))
            .into_mut();
        inner.gcra.check(tat, now)
    }
}

/// Drops recovered keys (TAT in the past: same as a fresh state) and sets
/// the size of the next sweep.
fn sweep<K>(states: &mut HashTable<(K, AtomicU64)>, sweep_at: &AtomicUsize, now: u64) {
    states.retain(|(_, tat)| *tat.get_mut() > now);
    sweep_at.store((states.len() * 2).max(MIN_SWEEP), Ordering::Relaxed);
}

impl<K> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("quota", &self.inner.quota)
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}
