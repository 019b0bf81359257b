//! Concurrency control for async services.
//!
//! # Bounded work: executor, task queue, scheduler
//!
//! - [`Executor`] runs blocking or CPU-heavy closures on threads of its
//!   own (`[thread_pool]`, [`ThreadPoolConfig`]): `submit` awaits one
//!   result, `map` returns many in input order.
//! - [`TaskQueue`] is a bounded in-process priority queue
//!   (`[task_queue]`, [`TaskQueueConfig`]) with batches and a worker pool
//!   (`process`) that times out, retries with jittered exponential backoff
//!   and dead-letters; [`RedisTaskQueue`] (feature `redis`) is its durable
//!   counterpart on Redis Streams.
//! - [`Scheduler`] runs async jobs after a delay or every period, with
//!   jitter and a [`MissedTickPolicy`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use keel_concurrency::{Executor, Priority, TaskQueue, TaskQueueConfig, ThreadPoolConfig};
//!
//! let pool = Executor::new(ThreadPoolConfig { min_workers: 1, max_workers: 2, ..Default::default() })?;
//! let squares = pool.map(|x: u64| x * x, 0..1000).await?;
//! assert_eq!(squares[999], 998_001);
//!
//! let queue = TaskQueue::new(TaskQueueConfig::default())?;
//! let workers = queue.process(4, |n: u64| async move {
//!     if n % 2 == 0 { Ok(()) } else { Err(format!("odd task {n}")) }
//! });
//! queue.put(2, Priority::High).await?;
//! let unstarted = workers.shutdown().await; // finishes in-flight work, hands back the rest
//! # let _ = unstarted;
//! # Ok(())
//! # }
//! ```
//!
//! ## Guarantees
//!
//! - `Executor`: never more than `max_workers` tasks run at once and never
//!   more than `queue_size` wait; `try_submit` beyond that is rejected (and
//!   counted), `submit` waits. A panic is caught and returned as
//!   [`ExecutorError::Panicked`]; the worker survives. `shutdown` runs
//!   everything already queued before the workers exit.
//! - `TaskQueue`: a task `put` returned `Ok` for is handed to exactly one
//!   `get`/`get_batch` caller, or returned by `ProcessHandle::shutdown`, or
//!   (after `retry_limit` retries) kept as a [`DeadLetter`]. Higher
//!   priorities are taken first; one priority is FIFO (per producer). It
//!   lives in memory: a process crash loses what it holds. The dead-letter
//!   queue keeps the newest `max_size` letters; older ones are dropped and
//!   counted (`QueueStats::dead_dropped`).
//! - `RedisTaskQueue`: at least once. A task whose `enqueue` returned is
//!   handed out again, after `visibility_timeout`, until a worker `ack`s
//!   it, even if workers are killed mid-task; a handler must therefore be
//!   idempotent. A task handed out more than `max_deliveries` times (or
//!   one that does not decode) is moved to a dead-letter stream, not
//!   dropped. Durability across a Redis restart is Redis's own (AOF).
//! - `Scheduler`: runs of one job never overlap; a run's error or panic is
//!   counted and logged and the schedule goes on; `cancel` stops future
//!   runs and lets a run in progress finish. Time is tokio's clock, so
//!   `tokio::time::pause` drives it in tests.
//!
//! # Limits, balancing, circuit breaking
//!
//! - [`ConcurrencyLimiter`]: at most N units of work in flight;
//!   `acquire().await` waits for a [`ConcurrencyPermit`], `try_acquire`
//!   refuses at once. [`KeyedConcurrencyLimiter`] applies the limit per
//!   key (client, tenant).
//! - [`RateLimiter`] (one limit) and [`KeyedRateLimiter`] (one per client):
//!   GCRA over a [`Quota`] (rate and burst) in one atomic word per limited
//!   thing; `check` answers at once with [`RateLimited`] carrying the wait,
//!   `until_ready` waits.
//! - [`LoadBalancer`]: picks among endpoints by a [`BalanceStrategy`]
//!   (round robin, smooth weighted, least in flight, power of two choices on
//!   EWMA latency); the [`EndpointGuard`] it returns reports the call's
//!   outcome and latency; endpoints failing repeatedly are ejected and
//!   probed back.
//! - [`CircuitBreaker`]: closed / open / half-open over the failure rate of
//!   a [`SlidingWindow`]; `call` fails fast with [`CircuitOpen`] while open,
//!   `with_fallback` answers with a degraded value instead.
//!
//! Each is a cheap `Clone` handle on state shared by all clones, and each
//! counts what it refused (`stats()`). Time comes from a [`Clock`]: the
//! system's by default, tokio's (pausable in tests) on request.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use keel_concurrency::{
//!     CircuitBreaker, CircuitBreakerConfig, ConcurrencyLimiter, LoadBalancer,
//!     LoadBalancerConfig, Quota, RateLimiter,
//! };
//!
//! let limiter = ConcurrencyLimiter::new(64)?;
//! let _permit = limiter.acquire().await?;
//!
//! let rate = RateLimiter::new(Quota::per_second(100)?.burst(10)?);
//! assert!(rate.check().is_ok());
//!
//! let upstreams = LoadBalancer::new(
//!     LoadBalancerConfig::default(),
//!     ["http://10.0.0.1:8080", "http://10.0.0.2:8080"],
//! )?;
//! let breaker = CircuitBreaker::new("upstreams", CircuitBreakerConfig::default())?;
//! let guard = upstreams.pick()?; // pick, call, report
//! let url = guard.endpoint().to_string();
//! let page = breaker
//!     .with_fallback(async { Ok::<_, std::io::Error>(format!("fetched {url}")) }, |_| {
//!         "cached copy".to_string()
//!     })
//!     .await;
//! guard.success();
//! assert_eq!(page, "fetched http://10.0.0.1:8080");
//! # Ok(())
//! # }
//! ```
//!
//! The same pieces are tower middleware, composed with `ServiceBuilder`
//! (or an axum `Router::layer`). The layers are `Clone` and every service
//! they make shares one limiter or breaker; [`Balance`] is a service over a
//! [`LoadBalancer`] of services.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use keel_concurrency::{
//!     CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, ConcurrencyLimitLayer,
//!     ConcurrencyLimiter, Quota, RateLimitLayer, RateLimiter, WhenLimited,
//! };
//! use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
//!
//! let service = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(CircuitBreaker::new("api", CircuitBreakerConfig::default())?))
//!     .layer(RateLimitLayer::new(RateLimiter::new(Quota::per_second(1000)?)).when_limited(WhenLimited::Reject))
//!     .layer(ConcurrencyLimitLayer::new(ConcurrencyLimiter::new(32)?))
//!     .service(service_fn(|name: String| async move { Ok::<_, BoxError>(format!("hello {name}")) }));
//! assert_eq!(service.oneshot("keel".to_string()).await.map_err(|e| e.to_string())?, "hello keel");
//! # Ok(())
//! # }
//! ```
//!
//! ## Guarantees
//!
//! - `ConcurrencyLimiter`: never more than `limit` permits held at once
//!   (a tokio semaphore; waiters served first come, first served). Its
//!   counters are relaxed atomics: exact once the work is quiet.
//! - `RateLimiter`: exact GCRA across all threads: over any span `t`, at
//!   most `burst + t / interval` checks are allowed. A refusal uses up
//!   nothing. `KeyedRateLimiter` gives each key the same guarantee and
//!   forgets a key only when its state has fully recovered, so forgetting
//!   never lets a request through that would have been refused. A waiting
//!   `RateLimitLayer` counts its first refusal of a request in `rejected`.
//! - `LoadBalancer`: in-flight counts are exact; smooth weighted round
//!   robin gives each endpoint exactly its weight per cycle; at most one
//!   probe is in flight per ejected endpoint; when every endpoint is
//!   ejected and no probe is due, `pick` fails ([`BalanceError`]) rather
//!   than send traffic to a failing endpoint. Latency averages are updated
//!   lock-free and may miss an interleaved sample.
//! - `CircuitBreaker`: transitions are serialised; a call admitted before
//!   a transition does not count after it; half-open admits at most
//!   `half_open_probes` calls. State changes, ejections and restorations
//!   are `tracing` events.
//!
//! # Feature flags
//!
//! - `redis`: [`RedisTaskQueue`], the durable queue on Redis Streams
//!   (re-exports the [`redis`] crate). Off by default.
//!
//! The tower integration (layers and services, on `tower` without its
//! default features: only the `Service` and `Layer` traits) is always on;
//! the [`tower`] crate is re-exported.

#![forbid(unsafe_code)]

// One error.rs for the room: each piece adds its enum there.
mod error;

// Executor, TaskQueue, Scheduler:
mod executor;
mod metrics;
mod queue;
mod scheduler;

// The field error of every room (`keel-core`): what `validate()` and the
// constructors that check their arguments return.
pub use keel_core::InvalidField;

pub use error::{ExecutorError, PutError, QueueError};
pub use executor::{Executor, ExecutorStats, TaskHandle, ThreadPoolConfig};
#[cfg(feature = "redis")]
pub use queue::redis::{Delivery, RedisQueueOptions, RedisTaskQueue};
pub use queue::{DeadLetter, Priority, ProcessHandle, QueueStats, TaskQueue, TaskQueueConfig};
/// The Redis client crate, whose `Client` [`RedisTaskQueue::connect`] takes.
#[cfg(feature = "redis")]
pub use redis;
pub use scheduler::{JobHandle, MissedTickPolicy, Schedule, Scheduler};

// ConcurrencyLimiter, RateLimiter, LoadBalancer, CircuitBreaker:
mod balance;
mod breaker;
mod limit;

pub use balance::{
    Balance, BalanceStrategy, EndpointGuard, EndpointStats, LoadBalancer, LoadBalancerBuilder,
    LoadBalancerConfig, ResponseFuture as BalanceFuture,
};
pub use breaker::{
    BreakerPermit, BreakerStats, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer,
    CircuitBreakerService, CircuitState, ResponseFuture as CircuitBreakerFuture, SlidingWindow,
};
pub use error::{BalanceError, BreakerError, CircuitOpen, LimitError, RateLimited};
pub use limit::concurrency::{
    ConcurrencyLimit, ConcurrencyLimitLayer, ConcurrencyLimiter, ConcurrencyPermit,
    ConcurrencyStats, KeyedConcurrencyLimiter, KeyedConcurrencyPermit, KeyedConcurrencyStats,
    ResponseFuture as ConcurrencyLimitFuture,
};
pub use limit::rate::{
    KeyedBy, KeyedRateLimiter, Quota, RateLimit, RateLimitLayer, RateLimiter, RateLimiterStats,
    RequestLimit, ResponseFuture as RateLimitFuture,
};
pub use limit::{Clock, WhenLimited};
/// The tower crate, whose `Service` and `Layer` traits the middleware implements.
pub use tower;
