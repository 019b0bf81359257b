//! First-in first-out: the oldest insertion is evicted; hits and value
//! replacements do not move an entry. Reads take only the shard's read lock.

use super::list::{Links, List};

#[derive(Debug, Default)]
pub(crate) struct Fifo {
    list: List,
}

impl Fifo {
    #[inline]
    pub(crate) fn on_insert(&mut self, links: &mut Links, idx: u32) {
        self.list.push_front(links, idx);
    }

    #[inline]
    pub(crate) fn on_remove(&mut self, links: &mut Links, idx: u32) {
        self.list.remove(links, idx);
    }

    #[inline]
    pub(crate) fn victim(&mut self) -> Option<u32> {
        self.list.back()
    }

    pub(crate) fn clear(&mut self) {
        self.list.clear();
    }
}
