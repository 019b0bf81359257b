//! [`CircuitBreakerLayer`].

use tower::Layer;

use super::{CircuitBreaker, CircuitBreakerService};

/// Wraps services in [`CircuitBreakerService`], all sharing one breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    breaker: CircuitBreaker,
}

impl CircuitBreakerLayer {
    /// A layer over `breaker`.
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self { breaker }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreakerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(inner, self.breaker.clone())
    }
}
