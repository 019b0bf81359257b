//! [`Balance`].

use std::task::{Context, Poll};

use tower::{BoxError, Service};

use super::{LoadBalancer, ResponseFuture};

/// A tower service spreading calls over a [`LoadBalancer`] of services.
///
/// Each call picks an endpoint, clones that service, waits for it to be
/// ready, calls it, and reports the outcome (`Err` is a failure) and
/// latency to the balancer, so ejection and latency-aware strategies work
/// unchanged. `poll_ready` is always ready: readiness is awaited on the
/// picked endpoint. Layers compose above it with `ServiceBuilder`
/// (`ServiceBuilder::new().layer(...).service(Balance::new(lb))`).
#[derive(Debug, Clone)]
pub struct Balance<S> {
    balancer: LoadBalancer<S>,
}

impl<S> Balance<S> {
    /// A service over the balancer's endpoints.
    pub fn new(balancer: LoadBalancer<S>) -> Self {
        Self { balancer }
    }

    /// The balancer, for its stats.
    pub fn balancer(&self) -> &LoadBalancer<S> {
        &self.balancer
    }
}

impl<S, Req> Service<Req> for Balance<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self.balancer.pick() {
            Ok(guard) => ResponseFuture::picked(guard, request),
            Err(error) => ResponseFuture::failed(error),
        }
    }
}
