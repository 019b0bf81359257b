//! [`RateLimit`].

use std::task::{Context, Poll};

use tower::{BoxError, Service};

use super::{RequestLimit, ResponseFuture};
use crate::WhenLimited;

/// A service that lets requests through at the limiter's rate.
///
/// Each request is checked when it is called (so a keyed limit can look at
/// it). Over the limit, [`WhenLimited::Wait`] delays the request until the
/// limiter allows it and [`WhenLimited::Reject`] fails it at once with
/// [`RateLimited`](crate::RateLimited) (boxed), which carries the time to
/// wait (a `Retry-After`). `Clone` gives a handle on the same limiter.
#[derive(Debug, Clone)]
pub struct RateLimit<S, L> {
    inner: S,
    limit: L,
    when_limited: WhenLimited,
}

impl<S, L> RateLimit<S, L> {
    /// Wraps `inner` in `limit`.
    pub fn new(inner: S, limit: L, when_limited: WhenLimited) -> Self {
        Self {
            inner,
            limit,
            when_limited,
        }
    }
}

impl<S, L, Req> Service<Req> for RateLimit<S, L>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    L: RequestLimit<Req> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, L, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self.limit.check_request(&request) {
            Ok(()) => ResponseFuture::called(self.inner.call(request)),
            Err(limited) => match self.when_limited {
                WhenLimited::Reject => ResponseFuture::rejected(limited),
                WhenLimited::Wait => {
                    // The ready service goes with the request; this handle
                    // keeps a fresh clone, polled ready before its next call.
                    let clone = self.inner.clone();
                    let ready = std::mem::replace(&mut self.inner, clone);
                    ResponseFuture::waiting(ready, self.limit.clone(), request, limited)
                }
            },
        }
    }
}
