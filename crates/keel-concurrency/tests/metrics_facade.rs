//! The concurrency room's numbers reach a `metrics` recorder when
//! published.

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

use keel_concurrency::{
    CircuitBreaker, CircuitBreakerConfig, ConcurrencyLimiter, Executor, Quota, RateLimiter,
    TaskQueue, TaskQueueConfig, ThreadPoolConfig,
};

/// (name, labels, value) of every series recorded.
type Recorded = Vec<(String, Vec<(String, String)>, f64)>;

fn recorded(f: impl FnOnce()) -> Recorded {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, f);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            let value = match value {
                DebugValue::Counter(c) => c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            };
            (key.name().to_owned(), labels, value)
        })
        .collect()
}

fn value(recorded: &Recorded, name: &str, labels: &[(&str, &str)]) -> f64 {
    recorded
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .unwrap_or_else(|| panic!("{name} {labels:?} not in {recorded:?}"))
        .2
}

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
