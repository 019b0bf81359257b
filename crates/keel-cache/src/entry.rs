//! What a lookup can return besides the value, and why entries leave.

use std::time::{Duration, Instant};

/// One entry as seen by [`LocalCache::get_entry`](crate::LocalCache::get_entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry<V> {
    pub(crate) value: V,
    pub(crate) age: Duration,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) read_at: Instant,
    pub(crate) hits: u32,
    pub(crate) weight: u32,
}

impl<V> CacheEntry<V> {
    /// The cached value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// Takes the value out.
    pub fn into_value(self) -> V {
        self.value
    }

    /// Time since the value was written, on the cache's clock.
    pub fn age(&self) -> Duration {
        self.age
    }

    /// Time left before the entry expires, on the cache's clock (`None`: it
    /// never expires). Includes time-to-idle, measured from this read.
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }

    /// When the value was written, mapped onto the system's monotonic clock
    /// (the moment of the read minus [`age`](Self::age)).
    pub fn inserted_at(&self) -> Instant {
        self.read_at.checked_sub(self.age).unwrap_or(self.read_at)
    }

    /// When the entry expires, mapped onto the system's monotonic clock.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_in.and_then(|d| self.read_at.checked_add(d))
    }

    /// How many reads hit this entry since it was written, this one
    /// included: exact up to 64, an unbiased estimate above (so hot entries
    /// are not written on every read), and concurrent hits may count once.
    pub fn hits(&self) -> u32 {
        self.hits
    }

    /// The entry's weight (1 unless the cache has a weigher).
    pub fn weight(&self) -> u32 {
        self.weight
    }
}

/// Why an entry left the cache, as told to the eviction listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemovalCause {
    /// Evicted by the policy to stay within capacity (or rejected because it
    /// alone weighs more than a shard can hold).
    Size,
    /// Its time-to-live or time-to-idle ran out.
    Expired,
    /// Removed by `remove`, `invalidate_all` or `invalidate_if`.
    Explicit,
    /// Its value was replaced by an `insert` for the same key.
    Replaced,
}
