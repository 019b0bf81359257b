//! [`ConcurrencyLimit`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tower::{BoxError, Service};

use super::{ConcurrencyLimiter, ConcurrencyPermit, ResponseFuture};
use crate::WhenLimited;
use crate::error::LimitError;

type Acquire = Pin<Box<dyn Future<Output = Result<ConcurrencyPermit, LimitError>> + Send>>;

/// A service that runs at most the limiter's limit of calls at once.
///
/// With [`WhenLimited::Wait`] it holds a slot from `poll_ready` until the
/// response future completes, so a full limiter is backpressure; with
/// [`WhenLimited::Reject`] a call finding no slot fails at once with
/// [`LimitError::Full`] (boxed). `Clone` gives a handle on the same
/// limiter; a clone holds no slot until it is polled ready.
pub struct ConcurrencyLimit<S> {
    inner: S,
    limiter: ConcurrencyLimiter,
    when_limited: WhenLimited,
    permit: Option<ConcurrencyPermit>,
    acquiring: Option<Acquire>,
}

impl<S> ConcurrencyLimit<S> {
    /// Wraps `inner` in `limiter`.
    pub fn new(inner: S, limiter: ConcurrencyLimiter, when_limited: WhenLimited) -> Self {
        Self {
            inner,
            limiter,
            when_limited,
            permit: None,
            acquiring: None,
        }
    }

    /// The limiter this service draws from.
    pub fn limiter(&self) -> &ConcurrencyLimiter {
        &self.limiter
    }
}

impl<S, Req> Service<Req> for ConcurrencyLimit<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.when_limited == WhenLimited::Wait && self.permit.is_none() {
            let acquiring = match &mut self.acquiring {
                Some(acquiring) => acquiring,
                None => match self.limiter.try_acquire_quiet() {
                    Some(permit) => {
                        self.permit = Some(permit);
                        return self.inner.poll_ready(cx).map_err(Into::into);
                    }
                    None => {
                        let limiter = self.limiter.clone();
                        self.acquiring
                            .insert(Box::pin(async move { limiter.acquire().await }))
                    }
                },
            };
            let permit = ready!(acquiring.as_mut().poll(cx));
            self.acquiring = None;
            self.permit = Some(permit?);
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let permit = match self.permit.take() {
            Some(permit) => permit,
            None => match self.limiter.try_acquire() {
                Ok(permit) => permit,
                Err(error) => return ResponseFuture::rejected(error),
            },
        };
        ResponseFuture::running(self.inner.call(request), permit)
    }
}

impl<S: Clone> Clone for ConcurrencyLimit<S> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.limiter.clone(), self.when_limited)
    }
}

impl<S: fmt::Debug> fmt::Debug for ConcurrencyLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("when_limited", &self.when_limited)
            .field("holds_permit", &self.permit.is_some())
            .finish()
    }
}
