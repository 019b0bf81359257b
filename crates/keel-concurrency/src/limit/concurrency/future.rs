//! The response future of [`ConcurrencyLimit`](super::ConcurrencyLimit).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::BoxError;

use super::ConcurrencyPermit;
use crate::error::LimitError;

pin_project! {
    /// Runs the inner call while holding its slot; frees it on completion or drop.
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
        Running { #[pin] future: F, permit: Option<ConcurrencyPermit> },
        Rejected { error: Option<LimitError> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn running(future: F, permit: ConcurrencyPermit) -> Self {
        Self {
            state: State::Running {
                future,
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn rejected(error: LimitError) -> Self {
        Self {
            state: State::Rejected { error: Some(error) },
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
            StateProj::Running { future, permit } => {
                let output = ready!(future.poll(cx));
                permit.take();
                Poll::Ready(output.map_err(Into::into))
            }
            StateProj::Rejected { error } => {
                Poll::Ready(Err(error.take().unwrap_or(LimitError::Full).into()))
            }
        }
    }
}
