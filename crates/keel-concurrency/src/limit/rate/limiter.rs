//! [`RateLimiter`]: one GCRA state shared by every clone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Quota;
use super::counter::StripedCounter;
use super::quota::Gcra;
use crate::Clock;
use crate::error::RateLimited;

/// A rate limit shared by every clone: one atomic word, lock-free.
///
/// [`check`](Self::check) allows a request or says how long until one
/// would be allowed; [`until_ready`](Self::until_ready) waits for that.
/// Refusals and waits are counted ([`stats`](Self::stats)).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The theoretical arrival time, alone on its cache line: allowing a
    /// request writes it, and nothing read on every check may share it.
    tat: CacheAligned<AtomicU64>,
    gcra: Gcra,
    clock: Clock,
    quota: Quota,
    rejected: StripedCounter,
    waited: AtomicU64,
}

/// Keeps a value on its own cache line (128 bytes: adjacent-line prefetch).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CacheAligned<T>(pub(crate) T);

/// Counters of a [`RateLimiter`] or [`KeyedRateLimiter`](crate::KeyedRateLimiter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimiterStats {
    /// `check` calls refused.
    pub rejected: u64,
    /// `until_ready` calls that had to wait.
    pub waited: u64,
}

impl RateLimiter {
    /// A limiter allowing `quota`, on the system clock.
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, Clock::system())
    }

    /// A limiter allowing `quota`, timed by `clock`.
    pub fn with_clock(quota: Quota, clock: Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                tat: CacheAligned(AtomicU64::new(0)),
                gcra: Gcra::new(quota),
                clock,
                quota,
                rejected: StripedCounter::default(),
                waited: AtomicU64::new(0),
            }),
        }
    }

    /// Allows one request now, or refuses it with the time until one would
    /// be allowed (the refusal is counted and uses up nothing).
    #[inline]
    pub fn check(&self) -> Result<(), RateLimited> {
        let inner = &*self.inner;
        match inner.gcra.check(&inner.tat.0, inner.clock.now_nanos()) {
            Ok(()) => Ok(()),
            Err(wait) => {
                inner.rejected.increment();
                Err(RateLimited { wait_nanos: wait })
            }
        }
    }

    /// Waits until a request is allowed, then takes it.
    pub async fn until_ready(&self) {
        let inner = &*self.inner;
        let mut counted = false;
        while let Err(wait) = inner.gcra.check(&inner.tat.0, inner.clock.now_nanos()) {
            if !counted {
                inner.waited.fetch_add(1, Ordering::Relaxed);
                counted = true;
            }
            tokio::time::sleep(Duration::from_nanos(wait)).await;
        }
    }

    /// The quota this limiter enforces.
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }

    /// The counters so far.
    pub fn stats(&self) -> RateLimiterStats {
        RateLimiterStats {
            rejected: self.inner.rejected.sum(),
            waited: self.inner.waited.load(Ordering::Relaxed),
        }
    }
}
