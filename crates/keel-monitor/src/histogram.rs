//! Log-linear histograms: HdrHistogram's bucket layout with 32 sub-buckets
//! per power of two, so every bucket is at most 1/32 of its lower bound wide
//! and a quantile read at a bucket's midpoint is within
//! [`RELATIVE_ERROR`] (1/64) of the recorded value it stands for.
//!
//! Values are `u64` (nanoseconds for latencies; other facade values are
//! scaled by 10⁹ first). Buckets are allocated one power of two at a time,
//! when a value first lands there, so a latency histogram spanning a few
//! orders of magnitude holds a few kilobytes.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-bucket bits: 2⁵ = 32 buckets per power of two.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Group 0 holds 0..32 exactly; group g ≥ 1 holds [2^(g+4), 2^(g+5)).
const GROUPS: usize = 64 - SUB_BITS as usize + 1;

/// The largest relative difference between a quantile this histogram
/// reports and the exact value at that rank: 1/64 (about 1.6%).
pub const RELATIVE_ERROR: f64 = 1.0 / 64.0;

/// Bucket index of `v`: (group, sub-bucket).
#[inline]
fn index(v: u64) -> (usize, usize) {
    if v < SUB as u64 {
        (0, v as usize)
    } else {
        let msb = 63 - v.leading_zeros();
        let group = (msb - SUB_BITS + 1) as usize;
        let sub = ((v >> (msb - SUB_BITS)) as usize) & (SUB - 1);
        (group, sub)
    }
}

/// Lower bound and width of a bucket.
fn bounds(group: usize, sub: usize) -> (u64, u64) {
    if group == 0 {
        (sub as u64, 1)
    } else {
        let width = 1u64 << (group - 1);
        (((SUB + sub) as u64) << (group - 1), width)
    }
}

/// The value a bucket stands for: its midpoint (its value when exact).
fn representative(flat: usize) -> f64 {
    let (lo, width) = bounds(flat / SUB, flat % SUB);
    lo as f64 + (width as f64 - 1.0) / 2.0
}

/// The largest value a bucket holds.
fn upper_bound(flat: usize) -> u64 {
    let (lo, width) = bounds(flat / SUB, flat % SUB);
    lo.saturating_add(width - 1)
}

type Group = Box<[AtomicU64; SUB]>;

/// Atomic bucket counts, count, sum, min and max.
///
/// [`record`](Self::record) may be called from any thread;
/// [`record_owned`](Self::record_owned) only by the one thread that owns
/// this histogram (a per-thread shard), which makes it plain loads and
/// stores. Readers take a [`HistogramSnapshot`] at any time.
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    groups: [OnceLock<Group>; GROUPS],
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self {
            groups: std::array::from_fn(|_| OnceLock::new()),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }
}

impl AtomicHistogram {
    #[inline]
    fn bucket(&self, v: u64) -> &AtomicU64 {
        let (g, s) = index(v);
        let group =
            self.groups[g].get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
        &group[s]
    }

    /// Records `v` from any thread.
    pub(crate) fn record(&self, v: u64) {
        self.bucket(v).fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        if v < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(v, Ordering::Relaxed);
        }
        if v > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(v, Ordering::Relaxed);
        }
    }

    /// Records `v`; only the owning thread may call this.
    #[inline]
    pub(crate) fn record_owned(&self, v: u64) {
        let add = |a: &AtomicU64, n: u64| {
            a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed)
        };
        add(self.bucket(v), 1);
        add(&self.count, 1);
        add(&self.sum, v);
        if v < self.min.load(Ordering::Relaxed) {
            self.min.store(v, Ordering::Relaxed);
        }
        if v > self.max.load(Ordering::Relaxed) {
            self.max.store(v, Ordering::Relaxed);
        }
    }

    /// Adds this histogram's buckets into `into`.
    pub(crate) fn add_to(&self, into: &mut HistogramSnapshot) {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return;
        }
        into.ensure_dense();
        for (g, group) in self.groups.iter().enumerate() {
            if let Some(group) = group.get() {
                for (s, c) in group.iter().enumerate() {
                    into.buckets[g * SUB + s] += c.load(Ordering::Relaxed);
                }
            }
        }
        into.count += count;
        into.sum += self.sum.load(Ordering::Relaxed) as u128;
        into.min = into.min.min(self.min.load(Ordering::Relaxed));
        into.max = into.max.max(self.max.load(Ordering::Relaxed));
    }

    /// A copy of the counts.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut s = HistogramSnapshot::default();
        self.add_to(&mut s);
        s
    }
}

/// A histogram's counts at one moment, summed across shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistogramSnapshot {
    /// Dense counts (`GROUPS * SUB`), or empty while nothing is counted.
    buckets: Vec<u64>,
    /// Values recorded.
    pub(crate) count: u64,
    /// Sum of the values.
    pub(crate) sum: u128,
    /// Smallest value (`u64::MAX` when empty).
    pub(crate) min: u64,
    /// Largest value.
    pub(crate) max: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        Self {
            buckets: Vec::new(),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl HistogramSnapshot {
    fn ensure_dense(&mut self) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; GROUPS * SUB];
        }
    }

    /// The estimated value at quantile `q` (0..=1) by nearest rank: the
    /// value of the `⌈q·n⌉`-th smallest sample, within [`RELATIVE_ERROR`].
    /// `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (flat, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let v = representative(flat);
                return Some(v.clamp(self.min as f64, self.max as f64));
            }
        }
        Some(self.max as f64)
    }

    /// Mean of the values, `None` when empty.
    pub(crate) fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// Counts of values at most each of `bounds` (ascending), as Prometheus
    /// cumulative buckets: a bucket of this histogram counts toward a
    /// bound when its midpoint is at most the bound.
    pub(crate) fn cumulative(&self, bounds: &[u64], out: &mut Vec<u64>) {
        out.clear();
        let mut flat = 0;
        let mut seen = 0u64;
        for &b in bounds {
            while flat < self.buckets.len() && representative(flat) <= b as f64 {
                seen += self.buckets[flat];
                flat += 1;
            }
            out.push(seen);
        }
    }

    /// The counts recorded after `earlier` (a snapshot of the same
    /// histogram): for per-interval figures. Min and max are this
    /// snapshot's, as they cannot be subtracted.
    pub(crate) fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let mut out = self.clone();
        if !earlier.buckets.is_empty() && !out.buckets.is_empty() {
            for (a, b) in out.buckets.iter_mut().zip(&earlier.buckets) {
                *a = a.saturating_sub(*b);
            }
        }
        out.count = self.count.saturating_sub(earlier.count);
        out.sum = self.sum.saturating_sub(earlier.sum);
        if out.count == 0 {
            out.buckets.clear();
            return out;
        }
        // The interval's extremes, to within a bucket.
        if let Some(last) = out.buckets.iter().rposition(|&c| c > 0) {
            out.max = upper_bound(last).min(self.max);
        }
        if let Some(first) = out.buckets.iter().position(|&c| c > 0) {
            out.min = bounds(first / SUB, first % SUB).0.max(self.min);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_range_without_gaps() {
        let mut next = 0u64;
        for flat in 0..GROUPS * SUB {
            let (lo, width) = bounds(flat / SUB, flat % SUB);
            assert_eq!(lo, next, "bucket {flat}");
            assert_eq!(index(lo), (flat / SUB, flat % SUB));
            assert!(width as f64 <= (lo.max(1) as f64) / 32.0 || lo < 64);
            next = lo.wrapping_add(width);
        }
        assert_eq!(index(u64::MAX), (GROUPS - 1, SUB - 1));
    }

    fn exact(sorted: &[u64], q: f64) -> f64 {
        let n = sorted.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        sorted[rank - 1] as f64
    }

    #[test]
    fn quantiles_are_within_the_stated_error_of_exact_ones() {
        // Log-uniform latencies from 1 µs to 10 s, plus a few spikes.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut values: Vec<u64> = (0..200_000)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let u = (rng >> 11) as f64 / (1u64 << 53) as f64;
                (1_000.0 * 10f64.powf(u * 7.0)) as u64
            })
            .collect();
        values.extend([3, 17, 31, 32, 33, u64::MAX / 2]);
        let h = AtomicHistogram::default();
        for &v in &values {
            h.record(v);
        }
        values.sort_unstable();
        let snap = h.snapshot();
        assert_eq!(snap.count, values.len() as u64);
        for q in [0.0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let want = exact(&values, q);
            let got = snap.quantile(q).unwrap();
            let err = (got - want).abs() / want;
            assert!(
                err <= RELATIVE_ERROR,
                "q{q}: got {got}, exact {want}, error {err}"
            );
        }
        assert_eq!(snap.max, *values.last().unwrap());
        assert_eq!(snap.min, values[0]);
    }

    #[test]
    fn owned_and_shared_recording_agree() {
        let a = AtomicHistogram::default();
        let b = AtomicHistogram::default();
        for v in [0, 1, 5, 100, 12_345, 99_999_999] {
            a.record(v);
            b.record_owned(v);
        }
        assert_eq!(a.snapshot(), b.snapshot());
    }

    #[test]
    fn an_interval_subtracts_the_earlier_snapshot() {
        let h = AtomicHistogram::default();
        for v in 0..100 {
            h.record(v);
        }
        let first = h.snapshot();
        for _ in 0..10 {
            h.record(1_000_000);
        }
        let interval = h.snapshot().since(&first);
        assert_eq!(interval.count, 10);
        let p50 = interval.quantile(0.5).unwrap();
        assert!((p50 - 1e6).abs() / 1e6 <= RELATIVE_ERROR);
    }

    #[test]
    fn cumulative_buckets_never_decrease_and_end_at_the_count() {
        let h = AtomicHistogram::default();
        for v in [500, 1_000, 2_000_000, 3_000_000_000] {
            h.record(v);
        }
        let mut out = Vec::new();
        h.snapshot()
            .cumulative(&[1_000, 1_000_000, 5_000_000_000, u64::MAX], &mut out);
        assert_eq!(out, [2, 2, 4, 4]);
    }
}
