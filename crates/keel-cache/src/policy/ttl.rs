//! Time-to-live order: when full, the entry closest to expiry is evicted
//! (entries without a deadline go last, oldest first). The deadline order
//! itself is the shard's [`ExpiryQueue`]. Reads take only the read lock.

use super::list::{Links, List};
use crate::expiry::ExpiryQueue;

#[derive(Debug, Default)]
pub(crate) struct Ttl {
    links: Links,
    /// Entries that never expire, in insertion order.
    never: List,
    in_never: Vec<bool>,
}

impl Ttl {
    pub(crate) fn on_insert(&mut self, idx: u32, expires: bool) {
        let i = idx as usize;
        if self.in_never.len() <= i {
            self.in_never.resize(i + 1, false);
        }
        self.in_never[i] = !expires;
        if !expires {
            self.never.push_front(&mut self.links, idx);
        }
    }

    pub(crate) fn on_update(&mut self, idx: u32, expires: bool) {
        if self.in_never[idx as usize] != expires {
            return;
        }
        self.on_remove(idx);
        self.on_insert(idx, expires);
    }

    pub(crate) fn on_remove(&mut self, idx: u32) {
        let i = idx as usize;
        if self.in_never[i] {
            self.never.remove(&mut self.links, idx);
            self.in_never[i] = false;
        }
    }

    pub(crate) fn victim(
        &mut self,
        expiry: &mut ExpiryQueue,
        deadline_of: impl Fn(u32) -> u64,
    ) -> Option<u32> {
        expiry.earliest(deadline_of).or_else(|| self.never.back())
    }

    pub(crate) fn clear(&mut self) {
        self.never.clear();
        self.in_never.clear();
    }
}
