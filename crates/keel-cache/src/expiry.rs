//! Per-shard deadline order: which entries expire first.
//!
//! Time-to-idle moves an entry's deadline later on every read, under the
//! shard's *read* lock, so the queue may hold a deadline earlier than the
//! entry's real one; it is corrected lazily when it reaches the front. The
//! queued deadline is never later than the real one, so nothing expires late.

use std::collections::BTreeSet;

/// "Never expires".
pub(crate) const NEVER: u64 = u64::MAX;

#[derive(Debug, Default)]
pub(crate) struct ExpiryQueue {
    order: BTreeSet<(u64, u32)>,
    /// The deadline each slot is queued under (`NEVER` if not queued).
    queued: Vec<u64>,
}

impl ExpiryQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub(crate) fn schedule(&mut self, idx: u32, deadline: u64) {
        self.unschedule(idx);
        if deadline == NEVER {
            return;
        }
        let i = idx as usize;
        if self.queued.len() <= i {
            self.queued.resize(i + 1, NEVER);
        }
        self.queued[i] = deadline;
        self.order.insert((deadline, idx));
    }

    pub(crate) fn unschedule(&mut self, idx: u32) {
        if let Some(q) = self.queued.get_mut(idx as usize)
            && *q != NEVER
        {
            self.order.remove(&(*q, idx));
            *q = NEVER;
        }
    }

    /// The next entry whose real deadline is at or before `now`, if any. The
    /// caller removes it (which unschedules it).
    pub(crate) fn next_due(&mut self, now: u64, deadline_of: impl Fn(u32) -> u64) -> Option<u32> {
        while let Some(&(queued, idx)) = self.order.first() {
            if queued > now {
                return None;
            }
            let real = deadline_of(idx);
            if real <= now {
                return Some(idx);
            }
            self.schedule(idx, real);
        }
        None
    }

    /// The entry with the earliest real deadline.
    pub(crate) fn earliest(&mut self, deadline_of: impl Fn(u32) -> u64) -> Option<u32> {
        while let Some(&(queued, idx)) = self.order.first() {
            let real = deadline_of(idx);
            if real == queued {
                return Some(idx);
            }
            self.schedule(idx, real);
        }
        None
    }

    pub(crate) fn clear(&mut self) {
        self.order.clear();
        self.queued.clear();
    }
}
