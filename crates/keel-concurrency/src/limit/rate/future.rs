//! The response future of [`RateLimit`](super::RateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{BoxError, Service};

use super::RequestLimit;
use crate::error::RateLimited;

pin_project! {
    /// Waits for the limiter if it must, then runs the inner call.
    pub struct ResponseFuture<S: Service<Req>, L, Req> {
        #[pin]
        state: State<S, L, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<Req>, L, Req> {
        Waiting {
            #[pin]
            sleep: Sleep,
            service: Option<S>,
            limit: L,
            request: Option<Req>,
        },
        Called { #[pin] future: S::Future },
        Rejected { limited: RateLimited },
    }
}

impl<S: Service<Req>, L, Req> ResponseFuture<S, L, Req> {
    pub(crate) fn called(future: S::Future) -> Self {
        Self {
            state: State::Called { future },
        }
    }

    pub(crate) fn rejected(limited: RateLimited) -> Self {
        Self {
            state: State::Rejected { limited },
        }
    }

    pub(crate) fn waiting(service: S, limit: L, request: Req, limited: RateLimited) -> Self {
        Self {
            state: State::Waiting {
                sleep: tokio::time::sleep(limited.wait_time()),
                service: Some(service),
                limit,
                request: Some(request),
            },
        }
    }
}

impl<S, L, Req> Future for ResponseFuture<S, L, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    L: RequestLimit<Req>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting {
                    mut sleep,
                    service,
                    limit,
                    request,
                } => {
                    ready!(sleep.as_mut().poll(cx));
                    let Some(req) = request.as_ref() else {
                        return Poll::Ready(
                            Err("rate limit future polled after completion".into()),
                        );
                    };
                    if let Err(limited) = limit.check_request(req) {
                        let deadline = tokio::time::Instant::now() + limited.wait_time();
                        sleep.reset(deadline);
                        continue;
                    }
                    let (Some(mut service), Some(req)) = (service.take(), request.take()) else {
                        return Poll::Ready(
                            Err("rate limit future polled after completion".into()),
                        );
                    };
                    let future = service.call(req);
                    this.state.set(State::Called { future });
                }
                StateProj::Called { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                StateProj::Rejected { limited } => return Poll::Ready(Err((*limited).into())),
            }
        }
    }
}

impl<S: Service<Req>, L, Req> fmt::Debug for ResponseFuture<S, L, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Waiting { .. } => "waiting",
            State::Called { .. } => "called",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
