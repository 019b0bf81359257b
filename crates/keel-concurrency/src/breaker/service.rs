//! [`CircuitBreakerService`].

use std::task::{Context, Poll};

use tower::{BoxError, Service};

use super::{CircuitBreaker, ResponseFuture};

/// A service whose calls go through a [`CircuitBreaker`].
///
/// The inner service's `Err` counts as a failure, `Ok` as a success (map
/// error responses such as HTTP 5xx to `Err` below this layer to count
/// them). While the circuit is open, calls fail at once with
/// [`CircuitOpen`](crate::CircuitOpen) (boxed) without reaching the inner
/// service. (Named `...Service` because [`CircuitBreaker`] is the shared
/// state.)
#[derive(Debug, Clone)]
pub struct CircuitBreakerService<S> {
    inner: S,
    breaker: CircuitBreaker,
}

impl<S> CircuitBreakerService<S> {
    /// Wraps `inner` in `breaker`.
    pub fn new(inner: S, breaker: CircuitBreaker) -> Self {
        Self { inner, breaker }
    }
}

impl<S, Req> Service<Req> for CircuitBreakerService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self.breaker.try_acquire() {
            Ok(permit) => ResponseFuture::called(self.inner.call(request), permit),
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}
