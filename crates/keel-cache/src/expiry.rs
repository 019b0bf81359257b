//! Per-shard reclamation order: which entries are due, in buckets of
//! [`BUCKET_NANOS`] keyed by deadline.
//!
//! Readers never rely on this to hide expired entries (they compare the
//! entry's own deadline with the clock); it only lets writes and
//! `purge_expired` find what to reclaim without scanning. Scheduling is a
//! push onto the bucket's list, or nothing when the entry is already queued
//! no later than its new deadline; unscheduling is lazy (the node forgets
//! its bucket and stale list items are skipped when their bucket comes
//! due), so both are O(1) and a write with a time-to-live costs almost
//! nothing more than one without.
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

/// Where the queue keeps each node's *mark* (the bucket it is queued in)
/// and finds each node's real deadline: the shard keeps marks in the
/// entries' metadata, which a write touches anyway.
pub(crate) trait Marks {
    /// The bucket `node` is queued in ([`ExpiryQueue::UNQUEUED`]: none).
    fn mark(&self, node: u32) -> u64;
    fn set_mark(&mut self, node: u32, bucket: u64);
    /// Marks exist for nodes `0..nodes()`.
    fn nodes(&self) -> u32;
    /// The real deadline of `node`'s entry.
    fn deadline(&self, node: u32) -> u64;
}

#[derive(Debug, Default)]
pub(crate) struct ExpiryQueue {
    buckets: BTreeMap<u64, Vec<u32>>,
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
    /// The mark of a node that is not queued.
    pub(crate) const UNQUEUED: u64 = NONE;

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
    pub(crate) fn schedule(&mut self, marks: &mut impl Marks, idx: u32, deadline: u64) {
        if deadline == NEVER {
            if !self.is_empty() {
                self.unschedule(marks, idx);
            }
        } else {
            self.schedule_at(marks, idx, deadline);
            if self.items > 2 * self.live + SLACK {
                self.compact(marks);
            }
        }
    }

    fn schedule_at(&mut self, marks: &mut impl Marks, idx: u32, deadline: u64) {
        let bucket = deadline >> BUCKET_SHIFT;
        match marks.mark(idx) {
            NONE => self.live += 1,
            // Queued in this bucket or an earlier one: when that comes due
            // the entry moves to its real bucket, so a key rewritten under
            // a long time-to-live is queued again once per time-to-live,
            // not once per bucket it is rewritten in.
            b if b <= bucket => return,
            _ => {}
        }
        marks.set_mark(idx, bucket);
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

    /// Rebuilds the bucket lists from the marks, dropping stale items.
    fn compact(&mut self, marks: &impl Marks) {
        self.buckets.clear();
        self.tail.clear();
        for i in 0..marks.nodes() {
            let bucket = marks.mark(i);
            if bucket != NONE {
                self.buckets.entry(bucket).or_default().push(i);
            }
        }
        self.items = self.live;
        self.reset_earliest();
    }

    #[inline]
    pub(crate) fn unschedule(&mut self, marks: &mut impl Marks, idx: u32) {
        if self.live > 0 && marks.mark(idx) != NONE {
            marks.set_mark(idx, NONE);
            self.live -= 1;
        }
    }

    /// The entries whose real deadline is at or before `now`, from every
    /// bucket that ended by `now` (and, if `exact`, from the current bucket
    /// too). The caller removes them (which unschedules them).
    pub(crate) fn due(&mut self, marks: &mut impl Marks, now: u64, exact: bool) -> Vec<u32> {
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
                if marks.mark(idx) != bucket {
                    continue; // removed or moved since
                }
                let real = marks.deadline(idx);
                if real <= now {
                    due.push(idx);
                } else if real >> BUCKET_SHIFT == bucket {
                    keep.push(idx);
                } else {
                    // Not `schedule`: no compaction while a bucket is out.
                    self.unschedule(marks, idx);
                    self.schedule_at(marks, idx, real);
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
        self.items = 0;
        self.live = 0;
        self.earliest = u64::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUCKET: u64 = 1 << BUCKET_SHIFT;

    /// Marks and deadlines of up to 16 nodes.
    struct Book {
        marks: [u64; 16],
        deadlines: [u64; 16],
    }

    impl Book {
        fn new() -> Self {
            Self {
                marks: [NONE; 16],
                deadlines: [NEVER; 16],
            }
        }

        /// Schedules `node` at `deadline` and records it as its real one.
        fn schedule(&mut self, q: &mut ExpiryQueue, node: u32, deadline: u64) {
            self.deadlines[node as usize] = deadline;
            q.schedule(self, node, deadline);
        }
    }

    impl Marks for Book {
        fn mark(&self, node: u32) -> u64 {
            self.marks[node as usize]
        }
        fn set_mark(&mut self, node: u32, bucket: u64) {
            self.marks[node as usize] = bucket;
        }
        fn nodes(&self) -> u32 {
            16
        }
        fn deadline(&self, node: u32) -> u64 {
            self.deadlines[node as usize]
        }
    }

    /// Ten keys rewritten 100,000 times, round `r` at deadline `at(r)`:
    /// stale items never exceed the slack, and every key comes due once,
    /// at its last deadline. Returns the last deadlines.
    fn rewrite_ten_keys(at: impl Fn(u64) -> u64) -> [u64; 16] {
        let (mut q, mut b) = (ExpiryQueue::default(), Book::new());
        for round in 0..100_000u64 {
            b.schedule(&mut q, (round % 10) as u32, at(round));
            assert!(q.items <= 2 * q.live + SLACK + 1, "{} items", q.items);
        }
        assert_eq!(q.live, 10);
        let deadlines = b.deadlines;
        let last = deadlines[..10].iter().max().copied().unwrap_or(0);
        let mut due = q.due(&mut b, last, true);
        due.sort_unstable();
        assert_eq!(due, (0..10).collect::<Vec<u32>>());
        deadlines
    }

    #[test]
    fn rewrites_under_a_long_ttl_do_not_pile_up_stale_items() {
        // Each rewrite one bucket later than the last.
        let deadlines = rewrite_ten_keys(|round| (1_000 + round) * BUCKET);
        let early = deadlines[..10].iter().min().copied().unwrap_or(0) - 1;
        let (mut q, mut b) = (ExpiryQueue::default(), Book::new());
        for (n, &d) in deadlines[..10].iter().enumerate() {
            b.schedule(&mut q, n as u32, d);
        }
        assert!(q.due(&mut b, early, true).is_empty());
    }

    #[test]
    fn rewrites_to_ever_earlier_deadlines_are_compacted() {
        rewrite_ten_keys(|round| (1_000_000 - round) * BUCKET);
    }

    #[test]
    fn unscheduled_nodes_never_come_due() {
        let (mut q, mut b) = (ExpiryQueue::default(), Book::new());
        b.schedule(&mut q, 1, 5 * BUCKET);
        b.schedule(&mut q, 2, 5 * BUCKET);
        q.unschedule(&mut b, 1);
        b.schedule(&mut q, 3, NEVER);
        assert_eq!(q.due(&mut b, 10 * BUCKET, true), vec![2]);
        assert_eq!(q.live, 1);
    }

    #[test]
    fn out_of_order_deadlines_come_due_in_their_own_buckets() {
        let (mut q, mut b) = (ExpiryQueue::default(), Book::new());
        let deadlines = [
            9 * BUCKET,
            3 * BUCKET,
            9 * BUCKET + 1,
            5 * BUCKET,
            12 * BUCKET,
        ];
        for (n, &d) in deadlines.iter().enumerate() {
            b.schedule(&mut q, n as u32, d);
        }
        assert!(q.due(&mut b, 2 * BUCKET, true).is_empty());
        assert_eq!(q.due(&mut b, 4 * BUCKET, true), vec![1]);
        q.unschedule(&mut b, 1);
        assert_eq!(q.due(&mut b, 6 * BUCKET, true), vec![3]);
        q.unschedule(&mut b, 3);
        let mut due = q.due(&mut b, 10 * BUCKET, true);
        due.sort_unstable();
        assert_eq!(due, vec![0, 2]);
        q.unschedule(&mut b, 0);
        q.unschedule(&mut b, 2);
        // A deadline scheduled later but earlier than the newest still counts.
        b.schedule(&mut q, 7, 11 * BUCKET);
        let mut due = q.due(&mut b, 13 * BUCKET, true);
        due.sort_unstable();
        assert_eq!(due, vec![4, 7]);
    }

    #[test]
    fn a_deadline_moved_later_is_queued_again_in_its_real_bucket() {
        let (mut q, mut b) = (ExpiryQueue::default(), Book::new());
        b.schedule(&mut q, 1, 3 * BUCKET);
        // Time-to-idle moved the real deadline on without a schedule.
        b.deadlines[1] = 7 * BUCKET + 1;
        assert!(q.due(&mut b, 4 * BUCKET, true).is_empty());
        assert_eq!(b.marks[1], 7);
        assert_eq!(q.due(&mut b, 8 * BUCKET, true), vec![1]);
    }

    #[test]
    fn writes_skip_the_reclaim_until_the_earliest_bucket_ends() {
        let (mut q, mut b) = (ExpiryQueue::default(), Book::new());
        b.schedule(&mut q, 1, 8 * BUCKET + 5);
        b.schedule(&mut q, 2, 5 * BUCKET + 5);
        b.deadlines[0] = 0;
        assert!(q.due(&mut b, 3 * BUCKET, false).is_empty());
        assert!(!q.may_have_ended(5 * BUCKET + 9));
        assert!(q.may_have_ended(6 * BUCKET));
        assert_eq!(q.due(&mut b, 6 * BUCKET, false), vec![2]);
        q.unschedule(&mut b, 2);
        assert!(!q.may_have_ended(8 * BUCKET));
        assert!(q.may_have_ended(9 * BUCKET));
        b.schedule(&mut q, 3, 4 * BUCKET);
        assert!(q.may_have_ended(6 * BUCKET));
        q.clear();
        assert!(!q.may_have_ended(u64::MAX - 1));
    }
}
