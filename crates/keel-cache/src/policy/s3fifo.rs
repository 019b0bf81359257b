//! S3-FIFO: a small probationary FIFO queue (a twentieth of the capacity),
//! a main FIFO queue, and a ghost table remembering the hashes of entries
//! recently evicted from the small queue.
//!
//! A new key enters the small queue, or the main queue if its hash is in the
//! ghost queue. A hit only bumps a saturating 2-bit frequency kept in the
//! entry's access word (see `shard::Access`), so reads need only the shard's
//! read lock. Eviction from the small
//! queue promotes entries that were hit to the main queue and forgets the
//! others into the ghost queue; the main queue gives entries with a non-zero
//! frequency another round (decrementing it), CLOCK-style.

use super::SlotInfo;
use super::list::{Links, List};

/// The small queue's target: 1/20 of the shard's capacity. The paper uses
/// 1/10; on the `hitratio` suite 1/20 gains at small capacities (+0.3 points
/// at 0.1% of the keys) and loses a little on the traces' smallest
/// capacities, still well ahead of the peers there.
const SMALL_SHARE: u64 = 20;
/// The links' per-node flag: set while the node is in the main queue.
const IN_MAIN: bool = true;

#[derive(Debug)]
pub(crate) struct S3Fifo {
    small: List,
    main: List,
    small_weight: u64,
    small_target: u64,
    ghost: Ghost,
}

impl S3Fifo {
    pub(crate) fn new(capacity: u64, entries_hint: usize) -> Self {
        Self {
            small: List::default(),
            main: List::default(),
            small_weight: 0,
            small_target: (capacity / SMALL_SHARE).max(1),
            ghost: Ghost::new(entries_hint),
        }
    }

    #[inline]
    pub(crate) fn on_insert(&mut self, links: &mut Links, idx: u32, hash: u64, weight: u32) {
        if self.ghost.take(hash) {
            links.set_flag(idx, IN_MAIN);
            self.main.push_front(links, idx);
        } else {
            links.set_flag(idx, !IN_MAIN);
            self.small.push_front(links, idx);
            self.small_weight += u64::from(weight);
        }
    }

    #[inline]
    pub(crate) fn on_update(&mut self, links: &Links, idx: u32, old_weight: u32, weight: u32) {
        if old_weight != weight && links.flag(idx) != IN_MAIN {
            self.small_weight = self.small_weight - u64::from(old_weight) + u64::from(weight);
        }
    }

    #[inline]
    pub(crate) fn on_remove(&mut self, links: &mut Links, idx: u32, weight: u32) {
        if links.flag(idx) == IN_MAIN {
            self.main.remove(links, idx);
        } else {
            self.small.remove(links, idx);
            self.small_weight -= u64::from(weight);
        }
    }

    /// Picks the entry to evict, moving survivors between queues on the way.
    /// The caller removes the victim (through [`Self::on_remove`]).
    pub(crate) fn victim<'a>(
        &mut self,
        links: &mut Links,
        info: impl Fn(&Links, u32) -> SlotInfo<'a>,
        hash_of: impl Fn(&Links, u32) -> u64,
    ) -> Option<u32> {
        loop {
            let from_small = self.small_weight >= self.small_target || self.main.len() == 0;
            if from_small && let Some(t) = self.small.back() {
                let slot = info(links, t);
                if let Some(access) = slot.access.filter(|a| a.freq() > 0) {
                    self.small.remove(links, t);
                    self.small_weight -= u64::from(slot.weight);
                    access.set_freq(0);
                    links.set_flag(t, IN_MAIN);
                    self.main.push_front(links, t);
                    continue;
                }
                self.ghost.put(hash_of(links, t));
                return Some(t);
            }
            let t = self.main.back()?;
            let slot = info(links, t);
            let freq = slot.access.map_or(0, |a| a.freq());
            if let Some(access) = slot.access.filter(|_| freq > 0) {
                access.set_freq(freq - 1);
                self.main.move_to_front(links, t);
                continue;
            }
            return Some(t);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.small.clear();
        self.main.clear();
        self.small_weight = 0;
    }
}

/// Hashes of keys recently evicted from the small queue: a direct-mapped
/// table of 32-bit fingerprints, the shard's capacity rounded down to a
/// power of two (between half of it and all of it). A newer hash that lands
/// on an older one's place replaces it, so a ghost is forgotten after about
/// as many evictions as the table has places, and both `put` and `take`
/// touch one word. Sizes measured on the `hitratio` suite: rounded down,
/// the default averages 67.04% and is at worst 0.20 points under the best
/// peer; rounded up, 66.95% and 0.50; twice that, 66.78% and 1.18. The
/// table is allocated at the first eviction.
#[derive(Debug)]
struct Ghost {
    prints: Vec<u32>,
    size: usize,
}

impl Ghost {
    fn new(limit: usize) -> Self {
        Self {
            prints: Vec::new(),
            size: (limit.max(2).next_power_of_two() / 2).max(1),
        }
    }

    /// The place and the non-zero fingerprint of `hash`: the place from the
    /// low bits (random within a shard), the print from the high ones.
    #[inline]
    fn locate(&self, hash: u64) -> (usize, u32) {
        let place = (hash as usize) & (self.size - 1);
        (place, ((hash >> 32) as u32) | 1)
    }

    #[inline]
    fn put(&mut self, hash: u64) {
        if self.prints.is_empty() {
            self.prints = vec![0; self.size];
        }
        let (place, print) = self.locate(hash);
        self.prints[place] = print;
    }

    /// True if `hash` was remembered (and forgets it).
    #[inline]
    fn take(&mut self, hash: u64) -> bool {
        let (place, print) = self.locate(hash);
        match self.prints.get_mut(place) {
            Some(p) if *p == print => {
                *p = 0;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ghost_remembers_a_hash_once_until_another_takes_its_place() {
        // 1,500 entries: 1,024 places.
        let mut ghost = Ghost::new(1_500);
        assert_eq!(ghost.size, 1_024);
        let (a, b) = (0xAAAA_0000_0000_0007_u64, 0xBBBB_0000_0000_0007_u64);
        assert!(!ghost.take(a), "nothing is remembered before a put");
        ghost.put(a);
        assert!(!ghost.take(b), "another hash in the same place is not a");
        assert!(ghost.take(a));
        assert!(!ghost.take(a), "a take forgets");
        ghost.put(a);
        ghost.put(b); // same place: b replaces a
        assert!(!ghost.take(a));
        assert!(ghost.take(b));
        ghost.put(a);
        ghost.put(a + 1); // another place
        assert!(ghost.take(a) && ghost.take(a + 1));
    }
}
