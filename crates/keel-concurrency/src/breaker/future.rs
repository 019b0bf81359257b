//! The response future of [`CircuitBreakerService`](super::CircuitBreakerService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::BoxError;

use super::BreakerPermit;
use crate::error::CircuitOpen;

pin_project! {
    /// Runs the inner call and reports its outcome to the breaker.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Called { #[pin] future: F, permit: Option<BreakerPermit> },
        Rejected { open: Option<CircuitOpen> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, permit: BreakerPermit) -> Self {
        Self {
            state: State::Called {
                future,
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn rejected(open: CircuitOpen) -> Self {
        Self {
            state: State::Rejected { open: Some(open) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future, permit } => {
                let output = ready!(future.poll(cx));
                if let Some(permit) = permit.take() {
                    match &output {
                        Ok(_) => permit.success(),
                        Err(_) => permit.failure(),
                    }
                }
                Poll::Ready(output.map_err(Into::into))
            }
            StateProj::Rejected { open } => Poll::Ready(Err(match open.take() {
                Some(open) => open.into(),
                None => "circuit breaker future polled after completion".into(),
            })),
        }
    }
}
