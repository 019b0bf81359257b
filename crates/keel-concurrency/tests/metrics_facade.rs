//! The concurrency room's numbers reach a `metrics` recorder when
//! published.

use std::time::Duration;

use keel_test_support::recorder::{recorded, value};

use keel_concurrency::{
    CircuitBreaker, CircuitBreakerConfig, ConcurrencyLimiter, Executor, Quota, RateLimiter,
    TaskQueue, TaskQueueConfig, ThreadPoolConfig,
};

#[tokio::test]
async fn every_piece_publishes_its_counters() {
    let config = TaskQueueConfig {
        max_size: 4,
        ..TaskQueueConfig::default()
    };
    let queue: TaskQueue<u32> = TaskQueue::new(config).unwrap();
    for i in 0..4 {
        queue.try_put(i, Default::default()).unwrap();
    }
    assert!(queue.try_put(9, Default::default()).is_err());

    let executor = Executor::new(ThreadPoolConfig::default()).unwrap();
    assert_eq!(executor.submit(|| 1).await.unwrap(), 1);

    let breaker = CircuitBreaker::new("upstream", CircuitBreakerConfig::default()).unwrap();
    breaker.try_acquire().unwrap().failure();

    let limiter = RateLimiter::new(Quota::per_second(1).unwrap());
    assert!(limiter.check().is_ok());
    assert!(limiter.check().is_err());

    let permits = ConcurrencyLimiter::new(2).unwrap();
    let _held = permits.try_acquire().unwrap();

    let published = recorded(|| {
        queue.publish_metrics("jobs");
        executor.publish_metrics("pool");
        breaker.publish_metrics();
        limiter.publish_metrics("api");
        permits.publish_metrics("db");
    });
    let jobs = [("queue", "jobs")];
    assert_eq!(value(&published, "keel_queue_depth", &jobs), 4.0);
    assert_eq!(value(&published, "keel_queue_capacity", &jobs), 4.0);
    assert_eq!(
        value(
            &published,
            "keel_queue_tasks_total",
            &[("queue", "jobs"), ("outcome", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &published,
            "keel_executor_jobs_total",
            &[("executor", "pool"), ("outcome", "completed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &published,
            "keel_breaker_calls_total",
            &[("breaker", "upstream"), ("result", "failure")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &published,
            "keel_breaker_state",
            &[("breaker", "upstream"), ("state", "closed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &published,
            "keel_rate_limiter_rejected_total",
            &[("limiter", "api")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &published,
            "keel_concurrency_in_flight",
            &[("limiter", "db")]
        ),
        1.0
    );
    executor.shutdown(Duration::from_secs(5)).await.unwrap();
}
