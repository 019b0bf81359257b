//! [`Versions`]: what keeps a value read from Redis from entering the local
//! tier after a newer write, delete, invalidation or flush of its key.
//!
//! Every key hashes to one of [`STRIPES`] counters; every change of a key
//! (a write, a delete, an invalidation from another instance) adds one to
//! its counter, and a flush of the whole local tier (a clear, a
//! resubscription after a lost bus) adds one to the epoch. A read takes a
//! [`Ticket`] (the key's counter and the epoch) *before* it asks Redis, and
//! its copy enters the local tier only if the ticket still holds, checked
//! under the key's shard lock (`LocalCache::insert_nanos_if`). A change
//! adds to the counter *after* its Redis command has completed and *before*
//! it touches the local tier, so for a read that saw an older value:
//!
//! - if its check runs after the change's add, the ticket fails;
//! - if it runs before, the read's insert comes first, and the change's own
//!   write or removal, which takes the same shard lock later, replaces it.
//!
//! A read whose ticket was taken after the add asked Redis after the change
//! completed, so it saw the change. Two keys sharing a counter only cost a
//! skipped back-fill (the next read asks Redis again).

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters per cache: enough that keys changing while one read is in
/// flight rarely share one (32 KiB).
const STRIPES: usize = 4096;

/// The change counters of one tiered cache.
pub(super) struct Versions {
    stripes: Box<[AtomicU64]>,
    epoch: AtomicU64,
    hasher: foldhash::fast::FixedState,
}

/// A key's counter and the epoch as one read or write saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ticket {
    stripe: usize,
    version: u64,
    epoch: u64,
}

impl Versions {
    pub(super) fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
            hasher: foldhash::fast::FixedState::with_seed(0x6b65_656c),
        }
    }

    fn stripe<K: Hash + ?Sized>(&self, key: &K) -> usize {
        (self.hasher.hash_one(key) as usize) & (STRIPES - 1)
    }

    /// The ticket of a read of `key` starting now.
    pub(super) fn ticket<K: Hash + ?Sized>(&self, key: &K) -> Ticket {
        let stripe = self.stripe(key);
        Ticket {
            stripe,
            version: self.stripes[stripe].load(Ordering::SeqCst),
            epoch: self.epoch.load(Ordering::SeqCst),
        }
    }

    /// Records a change of `key`; returns the ticket right after it.
    pub(super) fn bump<K: Hash + ?Sized>(&self, key: &K) -> Ticket {
        let stripe = self.stripe(key);
        let version = self.stripes[stripe].fetch_add(1, Ordering::SeqCst) + 1;
        Ticket {
            stripe,
            version,
            epoch: self.epoch.load(Ordering::SeqCst),
        }
    }

    /// Records a change of every key (a flush of the local tier).
    pub(super) fn bump_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether nothing changed the ticket's key (or everything) since.
    pub(super) fn still(&self, ticket: Ticket) -> bool {
        self.stripes[ticket.stripe].load(Ordering::SeqCst) == ticket.version
            && self.epoch.load(Ordering::SeqCst) == ticket.epoch
    }

    /// Whether `after` is the very next change after `before` (nothing
    /// else changed the key in between).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn consecutive(before: Ticket, after: Ticket) -> bool {
        before.stripe == after.stripe && after.version == before.version + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_the_key_or_a_flush_voids_a_ticket() {
        let v = Versions::new();
        let t = v.ticket(&7u64);
        assert!(v.still(t));
        v.bump(&7u64);
        assert!(!v.still(t));
        let t = v.ticket(&7u64);
        v.bump_all();
        assert!(!v.still(t));
    }

    #[test]
    fn only_keys_of_the_same_stripe_interfere() {
        let v = Versions::new();
        let t = v.ticket(&1u64);
        let other = (2u64..)
            .find(|k| v.stripe(k) != v.stripe(&1u64))
            .unwrap_or(2);
        v.bump(&other);
        assert!(v.still(t), "a change of another stripe leaves the ticket");
    }

    #[test]
    fn consecutive_changes_are_told_apart_from_interleaved_ones() {
        let v = Versions::new();
        let a = v.bump(&5u64);
        let b = v.bump(&5u64);
        assert!(Versions::consecutive(a, b));
        let c = v.bump(&5u64);
        v.bump(&5u64);
        let d = v.bump(&5u64);
        assert!(!Versions::consecutive(c, d));
    }
}
