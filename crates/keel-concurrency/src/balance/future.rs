//! The response future of [`Balance`](super::Balance).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::{BoxError, Service};

use super::EndpointGuard;
use crate::error::BalanceError;

pin_project! {
    /// Readies the picked service, calls it, and reports the outcome.
    pub struct ResponseFuture<S: Service<Req>, Req> {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<Req>, Req> {
        Readying { service: S, request: Option<Req>, guard: Option<EndpointGuard<S>> },
        Called { #[pin] future: S::Future, guard: Option<EndpointGuard<S>> },
        Failed { error: Option<BalanceError> },
    }
}

impl<S: Service<Req> + Clone, Req> ResponseFuture<S, Req> {
    pub(crate) fn picked(guard: EndpointGuard<S>, request: Req) -> Self {
        Self {
            state: State::Readying {
                service: guard.endpoint().clone(),
                request: Some(request),
                guard: Some(guard),
            },
        }
    }

    pub(crate) fn failed(error: BalanceError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Readying {
                    service,
                    request,
                    guard,
                } => {
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        if let Some(guard) = guard.take() {
                            guard.failure();
                        }
                        return Poll::Ready(Err(error.into()));
                    }
                    let (Some(request), guard) = (request.take(), guard.take()) else {
                        return Poll::Ready(Err("balance future polled after completion".into()));
                    };
                    let future = service.call(request);
                    this.state.set(State::Called { future, guard });
                }
                StateProj::Called { future, guard } => {
                    let output = ready!(future.poll(cx));
                    if let Some(guard) = guard.take() {
                        match &output {
                            Ok(_) => guard.success(),
                            Err(_) => guard.failure(),
                        }
                    }
                    return Poll::Ready(output.map_err(Into::into));
                }
                StateProj::Failed { error } => {
                    let error = error.take().unwrap_or(BalanceError::NoHealthyEndpoint);
                    return Poll::Ready(Err(error.into()));
                }
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Readying { .. } => "readying",
            State::Called { .. } => "called",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
