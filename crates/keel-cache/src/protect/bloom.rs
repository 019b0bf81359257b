//! [`BloomFilter`]: a set of keys that never forgets one it was told about.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A concurrent Bloom filter: `contains` is `false` only for keys never
/// inserted (no false negatives) and `true` for an absent key with about
/// the configured false-positive rate.
///
/// Used against cache penetration: a lookup for a key the filter has never
/// seen is answered "absent" without touching Redis or the loader. Insert
/// is lock-free (`fetch_or` on 64-bit words); the filter never shrinks, so
/// after many deletions rebuild it from the key source.
#[derive(Debug)]
pub struct BloomFilter {
    words: Box<[AtomicU64]>,
    bits: u64,
    hashes: u32,
}

impl BloomFilter {
    /// A filter sized for `expected_items` keys at `false_positive_rate`
    /// (clamped to 1e-9..0.5).
    pub fn new(expected_items: usize, false_positive_rate: f64) -> Self {
        let n = expected_items.max(1) as f64;
        let p = false_positive_rate.clamp(1e-9, 0.5);
        let ln2 = std::f64::consts::LN_2;
        let bits = (-(n * p.ln()) / (ln2 * ln2)).ceil().max(64.0) as u64;
        let hashes = ((bits as f64 / n) * ln2).round().clamp(1.0, 32.0) as u32;
        let words = bits.div_ceil(64) as usize;
        Self {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            bits: words as u64 * 64,
            hashes,
        }
    }

    /// Adds `key`.
    pub fn insert<K: Hash + ?Sized>(&self, key: &K) {
        for bit in self.positions(key) {
            self.words[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Relaxed);
        }
    }

    /// `false`: `key` was never inserted. `true`: it probably was.
    pub fn contains<K: Hash + ?Sized>(&self, key: &K) -> bool {
        self.positions(key).all(|bit| {
            self.words[(bit / 64) as usize].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0
        })
    }

    /// Forgets every key.
    pub fn clear(&self) {
        for word in self.words.iter() {
            word.store(0, Ordering::Relaxed);
        }
    }

    /// Size of the bit array.
    pub fn bits(&self) -> u64 {
        self.bits
    }

    /// Number of hash functions.
    pub fn hashes(&self) -> u32 {
        self.hashes
    }

    /// Bit positions of `key`: double hashing over one 64-bit hash.
    fn positions<K: Hash + ?Sized>(&self, key: &K) -> impl Iterator<Item = u64> + use<K> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let h = hasher.finish();
        let h1 = h & 0xFFFF_FFFF;
        let h2 = (h >> 32) | 1;
        let bits = self.bits;
        (0..u64::from(self.hashes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_about_the_asked_false_positive_rate() {
        let filter = BloomFilter::new(10_000, 0.01);
        for i in 0..10_000u64 {
            filter.insert(&format!("user:{i}"));
        }
        for i in 0..10_000u64 {
            assert!(
                filter.contains(&format!("user:{i}")),
                "false negative for {i}"
            );
        }
        let false_positives = (10_000..110_000u64)
            .filter(|i| filter.contains(&format!("user:{i}")))
            .count();
        let rate = false_positives as f64 / 100_000.0;
        assert!(rate < 0.02, "false-positive rate {rate}");
    }

    #[test]
    fn clear_forgets_everything() {
        let filter = BloomFilter::new(100, 0.01);
        filter.insert("a");
        assert!(filter.contains("a"));
        filter.clear();
        assert!(!filter.contains("a"));
    }
}
