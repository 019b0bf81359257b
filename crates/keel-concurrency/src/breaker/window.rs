//! The sliding window of call outcomes.

use std::collections::VecDeque;

use super::SlidingWindow;
use crate::limit::duration_nanos;

const BUCKETS: u64 = 10;

/// Outcomes of recent calls, by count or by time.
#[derive(Debug)]
pub(crate) enum Window {
    Count {
        size: usize,
        outcomes: VecDeque<bool>,
        failures: u32,
    },
    Time {
        bucket_nanos: u64,
        buckets: Vec<Bucket>,
    },
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bucket {
    epoch: u64,
    calls: u32,
    failures: u32,
}

impl Window {
    pub(crate) fn new(kind: SlidingWindow) -> Self {
        match kind {
            SlidingWindow::Count(size) => {
                let size = size as usize;
                Window::Count {
                    size,
                    // Grows with the calls; a huge window costs nothing up front.
                    outcomes: VecDeque::with_capacity(size.min(1024)),
                    failures: 0,
                }
            }
            SlidingWindow::Time(period) => Window::Time {
                bucket_nanos: (duration_nanos(period) / BUCKETS).max(1),
                buckets: vec![Bucket::default(); BUCKETS as usize],
            },
        }
    }

    pub(crate) fn record(&mut self, now: u64, failed: bool) {
        match self {
            Window::Count {
                size,
                outcomes,
                failures,
            } => {
                if outcomes.len() == *size && outcomes.pop_front() == Some(true) {
                    *failures -= 1;
                }
                outcomes.push_back(failed);
                *failures += u32::from(failed);
            }
            Window::Time {
                bucket_nanos,
                buckets,
            } => {
                // Epochs start at 1 so a zeroed bucket is never current.
                let epoch = now / *bucket_nanos + 1;
                let bucket = &mut buckets[(epoch % BUCKETS) as usize];
                if bucket.epoch != epoch {
                    *bucket = Bucket {
                        epoch,
                        calls: 0,
                        failures: 0,
                    };
                }
                bucket.calls = bucket.calls.saturating_add(1);
                bucket.failures = bucket.failures.saturating_add(u32::from(failed));
            }
        }
    }

    /// (calls, failures) in the window at `now`.
    pub(crate) fn totals(&self, now: u64) -> (u32, u32) {
        match self {
            Window::Count {
                outcomes, failures, ..
            } => (outcomes.len() as u32, *failures),
            Window::Time {
                bucket_nanos,
                buckets,
            } => {
                let epoch = now / *bucket_nanos + 1;
                buckets
                    .iter()
                    .filter(|b| b.epoch != 0 && epoch.saturating_sub(b.epoch) < BUCKETS)
                    .fold((0, 0), |(calls, failures), b| {
                        (
                            calls.saturating_add(b.calls),
                            failures.saturating_add(b.failures),
                        )
                    })
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        match self {
            Window::Count {
                outcomes, failures, ..
            } => {
                outcomes.clear();
                *failures = 0;
            }
            Window::Time { buckets, .. } => buckets.fill(Bucket::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn count_window_keeps_the_last_n_outcomes() {
        let mut window = Window::new(SlidingWindow::Count(3));
        for failed in [true, true, false, false] {
            window.record(0, failed);
        }
        // The first failure fell out.
        assert_eq!(window.totals(0), (3, 1));
        window.record(0, false);
        assert_eq!(window.totals(0), (3, 0));
        window.clear();
        assert_eq!(window.totals(0), (0, 0));
    }

    #[test]
    fn time_window_slides_by_tenths() {
        let second = 1_000_000_000;
        let mut window = Window::new(SlidingWindow::Time(Duration::from_secs(10)));
        window.record(0, true);
        window.record(5 * second, false);
        window.record(9 * second, true);
        assert_eq!(window.totals(9 * second), (3, 2));
        // At 10 s the bucket of 0..1 s has left the window.
        assert_eq!(window.totals(10 * second), (2, 1));
        assert_eq!(window.totals(15 * second), (1, 1));
        // A bucket reused 10 s later starts empty.
        window.record(20 * second, false);
        assert_eq!(window.totals(20 * second), (1, 0));
    }
}
