//! Errors of every piece of the room, one enum per piece.

use thiserror::Error;

/// Why the [`Executor`](crate::Executor) did not produce a task's result.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExecutorError {
    /// `try_submit` found `queue_size` tasks already waiting.
    #[error("executor queue is full")]
    Full,
    /// The executor is shutting down (or gone) and takes no more work.
    #[error("executor is shut down")]
    Shutdown,
    /// The task panicked; the message is the panic payload when it was a string.
    #[error("task panicked: {0}")]
    Panicked(String),
    /// `shutdown` gave up waiting; this many tasks were still queued or running.
    #[error("executor shutdown timed out with {0} tasks unfinished")]
    ShutdownTimeout(usize),
}

/// Why a [`TaskQueue`](crate::TaskQueue) operation failed.
///
/// Non-exhaustive: the `redis` feature adds variants, so a match needs a `_` arm.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum QueueError {
    /// `try_put` found `max_size` tasks already queued.
    #[error("task queue is full")]
    Full,
    /// The queue was closed (its processor shut down) and takes no more tasks.
    #[error("task queue is closed")]
    Closed,
    /// The Redis backend failed to answer.
    #[cfg(feature = "redis")]
    #[error("redis task queue command failed")]
    Redis(#[source] redis::RedisError),
    /// A task could not be encoded or decoded.
    #[cfg(feature = "redis")]
    #[error("task could not be (de)serialized")]
    Codec(#[source] serde_json::Error),
    /// The Redis address or the options cannot work (the field is named),
    /// such as a stream and a dead-letter stream in different slots of a
    /// Redis Cluster.
    #[cfg(feature = "redis")]
    #[error("invalid redis task queue setting: {0}")]
    Config(keel_core::InvalidField),
    /// A stream entry read from Redis does not have the shape this queue writes.
    #[cfg(feature = "redis")]
    #[error("malformed stream entry {0}")]
    Malformed(String),
}

/// A task that [`TaskQueue::put`](crate::TaskQueue::put) or
/// [`try_put`](crate::TaskQueue::try_put) did not queue, handed back.
#[derive(Debug, Error)]
#[error("task was not queued")]
pub struct PutError<T> {
    /// The task, unchanged.
    pub task: T,
    /// Why: [`QueueError::Full`] or [`QueueError::Closed`].
    #[source]
    pub reason: QueueError,
}

#[cfg(feature = "redis")]
impl From<redis::RedisError> for QueueError {
    fn from(error: redis::RedisError) -> Self {
        QueueError::Redis(error)
    }
}

/// Why a [`ConcurrencyLimiter`](crate::ConcurrencyLimiter) gave no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum LimitError {
    /// Every permit is taken (`try_acquire`, or a rejecting layer).
    #[error("concurrency limit reached")]
    Full,
    /// The limiter was closed and gives no more permits.
    #[error("concurrency limiter is closed")]
    Closed,
}

/// A rate limiter's refusal: the earliest time a retry can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("rate limit exceeded, retry in {:?}", self.wait_time())]
pub struct RateLimited {
    /// Kept in nanoseconds: a refusal must stay as cheap as a load, and
    /// building a `Duration` divides.
    pub(crate) wait_nanos: u64,
}

impl RateLimited {
    /// How long from the refusal until a request would be allowed.
    pub fn wait_time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.wait_nanos)
    }
}

/// A call refused because its circuit is open (or its half-open probes are taken).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("circuit breaker `{name}` is open")]
pub struct CircuitOpen {
    pub(crate) name: std::sync::Arc<str>,
}

impl CircuitOpen {
    /// The name of the breaker that refused the call.
    pub fn breaker(&self) -> &str {
        &self.name
    }
}

/// Why a call through a [`CircuitBreaker`](crate::CircuitBreaker) failed.
#[derive(Debug, Error)]
pub enum BreakerError<E> {
    /// The circuit is open: the call was not made.
    #[error(transparent)]
    Open(CircuitOpen),
    /// The call was made and failed (counted as a failure).
    #[error("call through the circuit breaker failed")]
    Inner(#[source] E),
}

/// Why a [`LoadBalancer`](crate::LoadBalancer) picked no endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BalanceError {
    /// Every endpoint is ejected and none is due for a probe yet.
    #[error("no healthy endpoint: all are ejected")]
    NoHealthyEndpoint,
}
