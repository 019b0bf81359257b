//! Exact least-frequently-used with a recency tie-break: the entry with the
//! fewest accesses is evicted, and among equals the one used longest ago.
//! Reads take the shard's write lock.

use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub(crate) struct Lfu {
    /// (frequency, last-use tick) per node.
    meta: Vec<(u64, u64)>,
    order: BTreeSet<(u64, u64, u32)>,
    tick: u64,
}

impl Lfu {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    pub(crate) fn on_insert(&mut self, idx: u32) {
        let tick = self.next_tick();
        let i = idx as usize;
        if self.meta.len() <= i {
            self.meta.resize(i + 1, (0, 0));
        }
        self.meta[i] = (1, tick);
        self.order.insert((1, tick, idx));
    }

    pub(crate) fn on_access(&mut self, idx: u32) {
        let tick = self.next_tick();
        let (freq, last) = self.meta[idx as usize];
        self.order.remove(&(freq, last, idx));
        let freq = freq.saturating_add(1);
        self.meta[idx as usize] = (freq, tick);
        self.order.insert((freq, tick, idx));
    }

    pub(crate) fn on_remove(&mut self, idx: u32) {
        let (freq, last) = self.meta[idx as usize];
        self.order.remove(&(freq, last, idx));
    }

    pub(crate) fn victim(&mut self) -> Option<u32> {
        self.order.first().map(|&(_, _, idx)| idx)
    }

    pub(crate) fn clear(&mut self) {
        self.order.clear();
    }
}
