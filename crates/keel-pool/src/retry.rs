//! Retry timing: the jittered backoff curve and the HTTP retry budget.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

const BASE: Duration = Duration::from_millis(20);
const CAP: Duration = Duration::from_secs(1);

/// The wait before retry number `attempt` (1 for the first retry):
/// `d = min(1 s, 20 ms × 2^(attempt-1))`, then uniformly in `[d/2, d]`, so
/// waits grow and callers that failed together do not retry together.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    let d = BASE.saturating_mul(1 << exp).min(CAP);
    let half = d / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// Whether a retry after `wait` still ends before `deadline`.
pub(crate) fn fits(wait: Duration, deadline: Instant) -> bool {
    Instant::now() + wait < deadline
}

/// Retries allowed before any request was made.
const RESERVE: i64 = 10;
/// The most retries that can be saved up.
const MAX_SAVED: i64 = 100;
const UNIT: i64 = 1000;

/// Retries as a share of requests: every request deposits `ratio` of a
/// retry, every retry withdraws one, starting from a reserve of ten. A
/// failing upstream thus sees at most `1 + ratio` times the request rate
/// (plus the reserve), however many retries each request may make.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    per_request: i64,
    balance: AtomicI64,
}

impl RetryBudget {
    pub(crate) fn new(ratio: f64) -> Self {
        Self {
            per_request: (ratio.clamp(0.0, 1.0) * UNIT as f64) as i64,
            balance: AtomicI64::new(RESERVE * UNIT),
        }
    }

    /// A request was made.
    pub(crate) fn deposit(&self) {
        if self.per_request == 0 {
            return;
        }
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b < MAX_SAVED * UNIT).then(|| (b + self.per_request).min(MAX_SAVED * UNIT))
            });
    }

    /// Takes one retry from the budget, if there is one.
    pub(crate) fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= UNIT).then_some(b - UNIT)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for attempt in 1..40 {
            let exp = (attempt - 1).min(16);
            let d = BASE.saturating_mul(1 << exp).min(CAP);
            for _ in 0..50 {
                let w = backoff(attempt);
                assert!(w >= d / 2 && w <= d, "attempt {attempt}: {w:?} vs {d:?}");
            }
        }
        assert!(backoff(100) <= CAP);
    }

    #[test]
    fn the_budget_allows_the_reserve_then_a_share_of_requests() {
        let budget = RetryBudget::new(0.2);
        for _ in 0..RESERVE {
            assert!(budget.withdraw());
        }
        assert!(!budget.withdraw(), "the reserve is spent");
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(!budget.withdraw(), "four requests earn 0.8 of a retry");
        budget.deposit();
        assert!(budget.withdraw(), "five requests earn one");
        assert!(!budget.withdraw());
    }

    #[test]
    fn savings_are_capped() {
        let budget = RetryBudget::new(1.0);
        for _ in 0..1000 {
            budget.deposit();
        }
        let mut allowed = 0;
        while budget.withdraw() {
            allowed += 1;
        }
        assert_eq!(allowed, MAX_SAVED);
        let none = RetryBudget::new(0.0);
        for _ in 0..1000 {
            none.deposit();
        }
        assert_eq!(
            (0..1000).filter(|_| none.withdraw()).count() as i64,
            RESERVE
        );
    }
}
