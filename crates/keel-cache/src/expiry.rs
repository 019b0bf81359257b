//! Per-shard reclamation order: which entries are due, in buckets of
//! [`BUCKET_NANOS`] keyed by deadline.
//!
//! Readers never rely on this to hide expired entries (they compare the
//! entry's own deadline with the clock); it only lets writes and
//! `purge_expired` find what to reclaim without scanning. Scheduling is a
//! push onto the bucket's list; unscheduling is lazy (the node forgets its
//! bucket and stale list items are skipped when their bucket comes due), so
//! both are O(1) and a write with a time-to-live costs almost nothing more
//! than one without.
//!
//! Time-to-idle moves an entry's deadline later on reads, under the shard's
//! *read* lock, so a bucket may hold an entry whose real deadline is later;
//! it is moved to its real bucket when its old one comes due. A queued
//! deadline is never later than the real one, so nothing is reclaimed late
//! by more than a bucket.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

/// "Never expires".
pub(crate) const NEVER: u64 = u64::MAX;

/// log2 of the bucket width: 2^24 ns, about 17 ms.
const BUCKET_SHIFT: u32 = 24;
/// "Not queued".
const NONE: u64 = u64::MAX;
/// Marks a node whose item `compact` kept. Buckets (deadlines shifted
/// right by [`BUCKET_SHIFT`]) never have this bit.
const KEPT: u64 = 1 << 63;

#[derive(Debug, Default)]
pub(crate) struct ExpiryQueue {
    buckets: BTreeMap<u64, Vec<u32>>,
    /// The bucket each node is queued in (`NONE` if not queued).
    queued: Vec<u64>,
    /// Items in all bucket lists, stale ones included.
    items: usize,
    /// Nodes queued (items that are not stale).
    live: usize,
    /// The newest bucket's list, kept out of the map until a later bucket
    /// starts or it comes due: deadlines set by one time-to-live land in the
    /// newest bucket, so most schedules are a push, not a map lookup.
    tail: Vec<u32>,
    tail_bucket: u64,
    /// No bucket before this one holds anything (a lower bound: 0 until the
    /// first `due`), so a write can skip `due` while nothing has ended.
    earliest: u64,
}

/// Stale items allowed beyond twice the live ones before the lists are
/// rebuilt: rewriting a key under a long time-to-live leaves one stale
/// item per bucket it moved out of, which would otherwise stay until that
/// bucket came due.
const SLACK: usize = 1024;

impl ExpiryQueue {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.tail.is_empty()
    }

    /// Whether a bucket may have ended by `now` (what a write reclaims).
    #[inline]
    pub(crate) fn may_have_ended(&self, now: u64) -> bool {
        !self.is_empty() && self.earliest < now >> BUCKET_SHIFT
    }

    /// Recomputes [`Self::earliest`] from the map and the tail.
    fn reset_earliest(&mut self) {
        let first = self.buckets.keys().next().copied().unwrap_or(u64::MAX);
        let tail = if self.tail.is_empty() {
            u64::MAX
        } else {
            self.tail_bucket
        };
        self.earliest = first.min(tail);
    }

    #[inline]
    pub(crate) fn schedule(&mut self, idx: u32, deadline: u64) {
        if deadline == NEVER {
            // Only caches with deadlines pay for the per-node bucket record.
            self.unschedule(idx);
        } else {
            self.schedule_at(idx, deadline);
            if self.items > 2 * self.live + SLACK {
                self.compact();
            }
        }
    }

    fn schedule_at(&mut self, idx: u32, deadline: u64) {
        let i = idx as usize;
        if self.queued.len() <= i {
            self.queued.resize(i + 1, NONE);
        }
        let bucket = deadline >> BUCKET_SHIFT;
        match self.queued[i] {
            b if b == bucket => return,
            NONE => self.live += 1,
            _ => {}
        }
        self.queued[i] = bucket;
        self.earliest = self.earliest.min(bucket);
        if !self.tail.is_empty() && bucket == self.tail_bucket {
            self.tail.push(idx);
        } else if self.tail.is_empty() || bucket > self.tail_bucket {
            self.flush_tail(true);
            self.tail_bucket = bucket;
            self.tail.push(idx);
        } else {
            self.buckets.entry(bucket).or_default().push(idx);
        }
        self.items += 1;
    }

    /// Moves the tail list into the map. With `keep_room`, the next tail
    /// starts with room for as many items (deadlines set at a steady rate
    /// fill buckets alike), so it does not grow from nothing.
    fn flush_tail(&mut self, keep_room: bool) {
        if self.tail.is_empty() {
            return;
        }
        let room = if keep_room {
            Vec::with_capacity(self.tail.len())
        } else {
            Vec::new()
        };
        let list = std::mem::replace(&mut self.tail, room);
        match self.buckets.entry(self.tail_bucket) {
            Entry::Vacant(v) => {
                v.insert(list);
            }
            Entry::Occupied(o) => o.into_mut().extend(list),
        }
    }

    /// Drops stale items from the bucket lists, in place: an item stays if
    /// its node is queued in the item's bucket and no earlier item of that
    /// node stayed (a node unscheduled and scheduled again into the same
    /// bucket has two).
    fn compact(&mut self) {
        let queued = &mut self.queued;
        let mut items = 0;
        let mut keep = |bucket: u64, list: &mut Vec<u32>| {
            list.retain(|&idx| match queued.get_mut(idx as usize) {
                Some(q) if *q == bucket => {
                    *q |= KEPT;
                    true
                }
                _ => false,
            });
            items += list.len();
        };
        self.buckets.retain(|&bucket, list| {
            keep(bucket, list);
            !list.is_empty()
        });
        keep(self.tail_bucket, &mut self.tail);
        for q in queued.iter_mut().filter(|q| **q != NONE) {
            *q &= !KEPT;
        }
        self.items = items;
        self.reset_earliest();
    }

    #[inline]
    pub(crate) fn unschedule(&mut self, idx: u32) {
        if let Some(q) = self.queued.get_mut(idx as usize)
            && *q != NONE
        {
            *q = NONE;
            self.live -= 1;
        }
    }

    /// The entries whose real deadline is at or before `now`, from every
    /// bucket that ended by `now` (and, if `exact`, from the current bucket
    /// too). The caller removes them (which unschedules them).
    pub(crate) fn due(
        &mut self,
        now: u64,
        exact: bool,
        deadline_of: impl Fn(u32) -> u64,
    ) -> Vec<u32> {
        let current = now >> BUCKET_SHIFT;
        if self.tail_bucket <= current {
            self.flush_tail(false);
        }
        let mut due = Vec::new();
        while let Some(entry) = self.buckets.first_entry() {
            let bucket = *entry.key();
            if bucket > current || (bucket == current && !exact) {
                break;
            }
            let items = entry.remove();
            self.items -= items.len();
            let mut keep = Vec::new();
            for idx in items {
                if self.queued.get(idx as usize) != Some(&bucket) {
                    continue; // removed or moved since
                }
                let real = deadline_of(idx);
                if real <= now {
                    due.push(idx);
                } else if real >> BUCKET_SHIFT == bucket {
                    keep.push(idx);
                } else {
                    // Not `schedule`: no compaction while a bucket is out.
                    self.unschedule(idx);
                    self.schedule_at(idx, real);
                }
            }
            if !keep.is_empty() {
                // Only the current bucket can keep items; stop after it.
                self.items += keep.len();
                self.buckets.insert(bucket, keep);
                break;
            }
        }
        self.reset_earliest();
        due
    }

    pub(crate) fn clear(&mut self) {
        self.buckets.clear();
        self.tail.clear();
        self.queued.clear();
        self.items = 0;
        self.live = 0;
        self.earliest = u64::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUCKET: u64 = 1 << BUCKET_SHIFT;

    #[test]
    fn rewrites_under_a_long_ttl_do_not_pile_up_stale_items() {
        let mut q = ExpiryQueue::default();
        let mut deadlines = [0u64; 10];
        // Ten keys rewritten 100,000 times, each time one bucket later.
        for round in 0..100_000u64 {
            let node = (round % 10) as u32;
            let deadline = (1_000 + round) * BUCKET;
            deadlines[node as usize] = deadline;
            q.schedule(node, deadline);
            assert!(q.items <= 2 * q.live + SLACK + 1, "{} items", q.items);
        }
        assert_eq!(q.live, 10);
        // Everything still comes due, each node once, at its last deadline.
        let last = *deadlines.iter().max().unwrap_or(&0);
        let mut due = q.due(last, true, |n| deadlines[n as usize]);
        due.sort_unstable();
        assert_eq!(due, (0..10).collect::<Vec<u32>>());
        let early = deadlines.iter().min().copied().unwrap_or(0) - 1;
        let mut q2 = ExpiryQueue::default();
        for (n, &d) in deadlines.iter().enumerate() {
            q2.schedule(n as u32, d);
        }
        assert!(q2.due(early, true, |n| deadlines[n as usize]).is_empty());
    }

    #[test]
    fn compaction_keeps_one_item_per_queued_node() {
        let mut q = ExpiryQueue::default();
        // Node 1 leaves and comes back into the same bucket: two items.
        q.schedule(1, 5 * BUCKET);
        q.unschedule(1);
        q.schedule(1, 5 * BUCKET + 1);
        q.schedule(2, 6 * BUCKET);
        q.unschedule(2);
        q.schedule(3, 7 * BUCKET);
        q.compact();
        assert_eq!((q.items, q.live), (2, 2));
        let deadlines = |n: u32| [0, 5 * BUCKET + 1, 0, 7 * BUCKET][n as usize];
        assert_eq!(q.due(6 * BUCKET, true, deadlines), vec![1]);
        q.unschedule(1);
        assert_eq!(q.due(8 * BUCKET, true, deadlines), vec![3]);
    }

    #[test]
    fn unscheduled_nodes_never_come_due() {
        let mut q = ExpiryQueue::default();
        q.schedule(1, 5 * BUCKET);
        q.schedule(2, 5 * BUCKET);
        q.unschedule(1);
        q.schedule(3, NEVER);
        assert_eq!(q.due(10 * BUCKET, true, |_| 5 * BUCKET), vec![2]);
        assert_eq!(q.live, 1);
    }

    #[test]
    fn out_of_order_deadlines_come_due_in_their_own_buckets() {
        let mut q = ExpiryQueue::default();
        let deadlines = [
            9 * BUCKET,
            3 * BUCKET,
            9 * BUCKET + 1,
            5 * BUCKET,
            12 * BUCKET,
        ];
        for (n, &d) in deadlines.iter().enumerate() {
            q.schedule(n as u32, d);
        }
        let of = |n: u32| deadlines[n as usize];
        assert!(q.due(2 * BUCKET, true, of).is_empty());
        assert_eq!(q.due(4 * BUCKET, true, of), vec![1]);
        q.unschedule(1);
        assert_eq!(q.due(6 * BUCKET, true, of), vec![3]);
        q.unschedule(3);
        let mut due = q.due(10 * BUCKET, true, of);
        due.sort_unstable();
        assert_eq!(due, vec![0, 2]);
        q.unschedule(0);
        q.unschedule(2);
        // A deadline scheduled later but earlier than the newest still counts.
        q.schedule(7, 11 * BUCKET);
        let mut due = q.due(
            13 * BUCKET,
            true,
            |n| if n == 7 { 11 * BUCKET } else { of(n) },
        );
        due.sort_unstable();
        assert_eq!(due, vec![4, 7]);
    }

    #[test]
    fn writes_skip_the_reclaim_until_the_earliest_bucket_ends() {
        let mut q = ExpiryQueue::default();
        q.schedule(1, 8 * BUCKET + 5);
        q.schedule(2, 5 * BUCKET + 5);
        assert!(q.due(3 * BUCKET, false, |_| NEVER).is_empty());
        assert!(!q.may_have_ended(5 * BUCKET + 9));
        assert!(q.may_have_ended(6 * BUCKET));
        assert_eq!(
            q.due(6 * BUCKET, false, |n| [0, 8 * BUCKET + 5, 5 * BUCKET + 5]
                [n as usize]),
            vec![2]
        );
        q.unschedule(2);
        assert!(!q.may_have_ended(8 * BUCKET));
        assert!(q.may_have_ended(9 * BUCKET));
        q.schedule(3, 4 * BUCKET);
        assert!(q.may_have_ended(6 * BUCKET));
        q.clear();
        assert!(!q.may_have_ended(u64::MAX - 1));
    }
}
