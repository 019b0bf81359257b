//! The local copies: what a slot holds, how long it is fresh and kept,
//! jitter.

use std::time::Duration;

use super::{CacheKey, CacheValue, Inner, NEVER, add, nanos};
use crate::shard::Incoming;

/// A local copy: the value (or a cached absence) and when it goes stale.
#[derive(Debug)]
pub(super) struct Slot<V> {
    pub(super) value: Option<V>,
    /// Clock nanoseconds; `u64::MAX` = never.
    pub(super) fresh_until: u64,
    /// Clock nanoseconds after which a hit triggers a refresh.
    pub(super) refresh_at: u64,
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

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    /// Stores a local copy fresh for `fresh_for`, kept `max_stale` longer,
    /// if `admit` (asked under the key's shard lock) says yes.
    pub(super) fn put_local(
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
    pub(super) fn slot(&self, value: Option<V>, fresh_until: u64, now: u64) -> Slot<V> {
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
    pub(super) fn keep(&self, fresh_until: u64, now: u64) -> Option<u64> {
        (fresh_until != NEVER).then(|| {
            let stale = self.settings.max_stale.map_or(0, nanos);
            fresh_until.saturating_sub(now).saturating_add(stale).max(1)
        })
    }

    pub(super) fn within_max_stale(&self, fresh_until: u64) -> bool {
        let Some(max_stale) = self.settings.max_stale else {
            return false;
        };
        self.clock.now_nanos() < add(fresh_until, max_stale)
    }

    /// A TTL shortened by up to `ttl_jitter` of itself.
    pub(super) fn jitter(&self, ttl: Duration) -> Duration {
        let j = self.settings.ttl_jitter;
        if j <= 0.0 {
            return ttl;
        }
        ttl.mul_f64(1.0 - j * fastrand::f64())
    }

    /// The freshness of a local copy of a value fresh for `ttl`.
    pub(super) fn local_ttl(&self, ttl: Option<Duration>) -> Option<Duration> {
        match (ttl, self.settings.local_ttl) {
            (Some(t), Some(l)) => Some(t.min(l)),
            (t, l) => t.or(l),
        }
    }
}
