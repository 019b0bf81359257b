//! Exact least-recently-used: every hit moves the entry to the front, the
//! back is evicted. Reads take the shard's write lock.

use super::list::{Links, List};

#[derive(Debug, Default)]
pub(crate) struct Lru {
    list: List,
}

impl Lru {
    #[inline]
    pub(crate) fn on_insert(&mut self, links: &mut Links, idx: u32) {
        self.list.push_front(links, idx);
    }

    #[inline]
    pub(crate) fn on_access(&mut self, links: &mut Links, idx: u32) {
        self.list.move_to_front(links, idx);
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
