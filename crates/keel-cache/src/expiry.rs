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

/// "Never expires".
pub(crate) const NEVER: u64 = u64::MAX;

/// log2 of the bucket width: 2^24 ns, about 17 ms.
const BUCKET_SHIFT: u32 = 24;
/// "Not queued".
const NONE: u64 = u64::MAX;

#[derive(Debug, Default)]
pub(crate) struct ExpiryQueue {
    buckets: BTreeMap<u64, Vec<u32>>,
    /// The bucket each node is queued in (`NONE` if not queued).
    queued: Vec<u64>,
}

impl ExpiryQueue {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    #[inline]
    pub(crate) fn schedule(&mut self, idx: u32, deadline: u64) {
        if deadline == NEVER {
            // Only caches with deadlines pay for the per-node bucket record.
            self.unschedule(idx);
        } else {
            self.schedule_at(idx, deadline);
        }
    }

    fn schedule_at(&mut self, idx: u32, deadline: u64) {
        let i = idx as usize;
        if self.queued.len() <= i {
            self.queued.resize(i + 1, NONE);
        }
        let bucket = deadline >> BUCKET_SHIFT;
        if self.queued[i] == bucket {
            return;
        }
        self.queued[i] = bucket;
        self.buckets.entry(bucket).or_default().push(idx);
    }

    #[inline]
    pub(crate) fn unschedule(&mut self, idx: u32) {
        if let Some(q) = self.queued.get_mut(idx as usize) {
            *q = NONE;
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
        let mut due = Vec::new();
        while let Some(entry) = self.buckets.first_entry() {
            let bucket = *entry.key();
            if bucket > current || (bucket == current && !exact) {
                break;
            }
            let items = entry.remove();
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
                    self.queued[idx as usize] = NONE;
                    self.schedule(idx, real);
                }
            }
            if !keep.is_empty() {
                // Only the current bucket can keep items; stop after it.
                self.buckets.insert(bucket, keep);
                break;
            }
        }
        due
    }

    pub(crate) fn clear(&mut self) {
        self.buckets.clear();
        self.queued.clear();
    }
}
