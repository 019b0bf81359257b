//! [`ConcurrencyLimitLayer`].

use tower::Layer;

use super::{ConcurrencyLimit, ConcurrencyLimiter};
use crate::WhenLimited;

/// Wraps services in [`ConcurrencyLimit`], all sharing one [`ConcurrencyLimiter`].
///
/// Unlike tower's `ConcurrencyLimitLayer`, which gives each service it wraps
/// its own semaphore, every service this layer makes draws from the same
/// limiter: one limit across routes, and the limiter's counters see them all.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    limiter: ConcurrencyLimiter,
    when_limited: WhenLimited,
}

impl ConcurrencyLimitLayer {
    /// A layer that waits for a slot ([`WhenLimited::Wait`]).
    pub fn new(limiter: ConcurrencyLimiter) -> Self {
        Self {
            limiter,
            when_limited: WhenLimited::Wait,
        }
    }

    /// Sets what happens to a request when every slot is taken.
    pub fn when_limited(mut self, when_limited: WhenLimited) -> Self {
        self.when_limited = when_limited;
        self
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit::new(inner, self.limiter.clone(), self.when_limited)
    }
}
