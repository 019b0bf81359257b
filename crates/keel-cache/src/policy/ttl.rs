//! Time-to-live order: when full, the entry closest to expiry is evicted
//! (entries without a deadline go last, oldest first). Reads take only the
//! read lock.
//!
//! Time-to-idle moves deadlines later under the read lock, so the order may
//! hold an entry under an earlier deadline than its real one; it is
//! corrected when it reaches the front.

use std::collections::BTreeSet;

use super::list::{Links, List};
use crate::expiry::NEVER;

#[derive(Debug, Default)]
pub(crate) struct Ttl {
    /// Entries that never expire, in insertion order.
    never: List,
    /// Entries with a deadline, by (deadline, node).
    order: BTreeSet<(u64, u32)>,
    /// Per node: the deadline it is ordered under (`NEVER`: in `never`).
    queued: Vec<u64>,
    /// Per node: true if present.
    present: Vec<bool>,
}

impl Ttl {
    pub(crate) fn on_insert(&mut self, links: &mut Links, idx: u32, deadline: u64) {
        let i = idx as usize;
        if self.queued.len() <= i {
            self.queued.resize(i + 1, NEVER);
            self.present.resize(i + 1, false);
        }
        self.present[i] = true;
        self.queued[i] = deadline;
        if deadline == NEVER {
            self.never.push_front(links, idx);
        } else {
            self.order.insert((deadline, idx));
        }
    }

    pub(crate) fn on_update(&mut self, links: &mut Links, idx: u32, deadline: u64) {
        self.on_remove(links, idx);
        self.on_insert(links, idx, deadline);
    }

    pub(crate) fn on_remove(&mut self, links: &mut Links, idx: u32) {
        let i = idx as usize;
        if !self.present[i] {
            return;
        }
        self.present[i] = false;
        if self.queued[i] == NEVER {
            self.never.remove(links, idx);
        } else {
            self.order.remove(&(self.queued[i], idx));
        }
    }

    pub(crate) fn victim(&mut self, deadline_of: impl Fn(u32) -> u64) -> Option<u32> {
        while let Some(&(queued, idx)) = self.order.first() {
            let real = deadline_of(idx);
            if real == queued {
                return Some(idx);
            }
            self.order.remove(&(queued, idx));
            self.queued[idx as usize] = real;
            self.order.insert((real, idx));
        }
        self.never.back()
    }

    pub(crate) fn clear(&mut self) {
        self.never.clear();
        self.order.clear();
        self.queued.clear();
        self.present.clear();
    }
}
