//! [`Quota`] and the GCRA step shared by the direct and keyed limiters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::InvalidField;
use crate::limit::duration_nanos;

/// How many requests a [`RateLimiter`](crate::RateLimiter) allows: a
/// sustained rate and a burst.
///
/// `Quota::per_second(100)` allows 100 requests at once after an idle
/// second and then one every 10 ms; [`burst`](Self::burst) changes how many
/// may come back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    interval: Duration,
    burst: u32,
}

impl Quota {
    /// `rate` requests per second, in bursts of up to `rate`.
    pub fn per_second(rate: u32) -> Result<Self, InvalidField> {
        Self::per(rate, Duration::from_secs(1))
    }

    /// `rate` requests per minute, in bursts of up to `rate`.
    pub fn per_minute(rate: u32) -> Result<Self, InvalidField> {
        Self::per(rate, Duration::from_secs(60))
    }

    /// `rate` requests per `period`, in bursts of up to `rate`.
    pub fn per(rate: u32, period: Duration) -> Result<Self, InvalidField> {
        if rate == 0 {
            return Err(InvalidField::new("rate_limit.rate", "must be at least 1"));
        }
        Self::with_period(period / rate).and_then(|quota| quota.burst(rate))
    }

    /// One request per `interval`, no burst.
    pub fn with_period(interval: Duration) -> Result<Self, InvalidField> {
        if interval.is_zero() {
            return Err(InvalidField::new(
                "rate_limit.period",
                "must be longer than 0ns per request",
            ));
        }
        Quota { interval, burst: 1 }.checked()
    }

    /// Allows up to `burst` requests back to back (at least 1).
    pub fn burst(self, burst: u32) -> Result<Self, InvalidField> {
        if burst == 0 {
            return Err(InvalidField::new("rate_limit.burst", "must be at least 1"));
        }
        Quota { burst, ..self }.checked()
    }

    /// A burst window (interval x burst) must fit in the limiter's clock
    /// (2^63 ns, about 292 years).
    fn checked(self) -> Result<Self, InvalidField> {
        let window = duration_nanos(self.interval).checked_mul(u64::from(self.burst));
        if window.is_none_or(|nanos| nanos > u64::MAX / 2) {
            return Err(InvalidField::new(
                "rate_limit.period",
                "interval times burst must be under 292 years",
            ));
        }
        Ok(self)
    }

    /// The time between two requests at the sustained rate.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How many requests may come back to back.
    pub fn burst_size(&self) -> u32 {
        self.burst
    }
}

/// The GCRA parameters in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gcra {
    /// Emission interval.
    interval: u64,
    /// Burst tolerance: how far TAT may run ahead of now.
    tolerance: u64,
}

impl Gcra {
    pub(crate) fn new(quota: Quota) -> Self {
        let interval = duration_nanos(quota.interval).max(1);
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(quota.burst) - 1),
        }
    }

    /// Allows a request at `now` (moving TAT) or says how many nanoseconds
    /// until one would be allowed. `tat == 0` is a fresh state.
    #[inline]
    pub(crate) fn check(&self, tat: &impl TatWord, now: u64) -> Result<(), u64> {
        let mut prev = tat.load(Ordering::Relaxed);
        loop {
            let start = prev.max(now);
            let ahead = start - now;
            if ahead > self.tolerance {
                return Err(ahead - self.tolerance);
            }
            match tat.compare_exchange_weak(
                prev,
                start.saturating_add(self.interval),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => prev = actual,
            }
        }
    }
}

/// The atomic word holding a TAT: std's in the limiters, loom's in the
/// model test of [`Gcra::check`].
pub(crate) trait TatWord {
    fn load(&self, order: Ordering) -> u64;
    fn compare_exchange_weak(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64>;
}

impl TatWord for AtomicU64 {
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        AtomicU64::load(self, order)
    }

    #[inline]
    fn compare_exchange_weak(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        AtomicU64::compare_exchange_weak(self, current, new, success, failure)
    }
}

#[cfg(test)]
mod loom_model {
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicU64 as LoomU64;

    use super::*;

    impl TatWord for LoomU64 {
        fn load(&self, order: Ordering) -> u64 {
            LoomU64::load(self, order)
        }

        fn compare_exchange_weak(
            &self,
            current: u64,
            new: u64,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u64, u64> {
            LoomU64::compare_exchange_weak(self, current, new, success, failure)
        }
    }

    /// Every interleaving (up to `preemptions` forced switches, when
    /// bounded) of `threads` threads checking once at the same instant:
    /// exactly `burst` are allowed, and TAT moved once per allowed check.
    fn model(threads: usize, burst: u32, preemptions: Option<usize>) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = preemptions;
        builder.check(move || {
            let quota = Quota::with_period(Duration::from_nanos(10))
                .and_then(|q| q.burst(burst))
                .unwrap();
            let gcra = Gcra::new(quota);
            let tat = Arc::new(LoomU64::new(0));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let tat = tat.clone();
                    loom::thread::spawn(move || gcra.check(&*tat, 5).is_ok())
                })
                .collect();
            let allowed = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|&ok| ok)
                .count();
            let expected = threads.min(burst as usize);
            assert_eq!(allowed, expected);
            assert_eq!(tat.load(Ordering::Relaxed), 5 + 10 * expected as u64);
        });
    }

    #[test]
    fn two_threads_one_slot() {
        model(2, 1, None);
    }

    #[test]
    fn two_threads_two_slots() {
        model(2, 2, None);
    }

    #[test]
    fn three_threads_two_slots() {
        // Unbounded, three threads' weak-CAS retries take about a minute.
        model(3, 2, Some(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// GCRA in its other textbook form, the continuous-state leaky bucket:
    /// the bucket drains one unit per nanosecond, each request adds one
    /// interval, and a request that would overflow the limit is refused.
    struct LeakyBucket {
        level: u64,
        last: u64,
        interval: u64,
        limit: u64,
    }

    impl LeakyBucket {
        fn check(&mut self, now: u64) -> bool {
            let level = self.level.saturating_sub(now - self.last);
            if level > self.limit {
                return false;
            }
            self.level = level + self.interval;
            self.last = now;
            true
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_leaky_bucket(
            interval in 1u64..1_000,
            burst in 1u32..20,
            gaps in proptest::collection::vec(0u64..3_000, 1..300),
        ) {
            let quota = Quota::with_period(Duration::from_nanos(interval))
                .and_then(|q| q.burst(burst))
                .unwrap();
            let gcra = Gcra::new(quota);
            let tat = AtomicU64::new(0);
            let mut bucket = LeakyBucket {
                level: 0,
                last: 0,
                interval,
                limit: interval * (u64::from(burst) - 1),
            };
            let mut now = 0;
            for gap in gaps {
                now += gap;
                prop_assert_eq!(gcra.check(&tat, now).is_ok(), bucket.check(now));
            }
        }
    }
}
