//! ConcurrencyLimiter: the limit holds under many tasks, waits and
//! rejections are counted, and the layer shares one limit across services.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keel_concurrency::{
    ConcurrencyLimitLayer, ConcurrencyLimiter, KeyedConcurrencyLimiter, LimitError, WhenLimited,
};
use tokio::sync::Notify;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

/// Tracks how many bodies run at once and the most ever seen.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn yield_until(mut done: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition not reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn never_more_in_flight_than_the_limit_under_many_tasks() {
    let limiter = ConcurrencyLimiter::new(3).unwrap();
    let gauge = Arc::new(Gauge::default());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..400 {
        let limiter = limiter.clone();
        let gauge = gauge.clone();
        tasks.spawn(async move {
            let _permit = limiter.acquire().await.unwrap();
            gauge.enter();
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            gauge.leave();
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    let stats = limiter.stats();
    assert!(
        gauge.max.load(Ordering::SeqCst) <= 3,
        "ran more than the limit at once"
    );
    assert!(stats.high_water <= 3);
    assert_eq!(stats.acquired, 400);
    assert_eq!(stats.in_flight, 0);
    assert_eq!(limiter.available(), 3);
}

#[tokio::test]
async fn waiters_are_counted_and_proceed_as_permits_free_up() {
    let limiter = ConcurrencyLimiter::new(2).unwrap();
    let held = [
        limiter.try_acquire().unwrap(),
        limiter.try_acquire().unwrap(),
    ];
    let mut waiters = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let limiter = limiter.clone();
        waiters.spawn(async move { limiter.acquire().await.map(drop) });
    }
    yield_until(|| limiter.stats().waited == 5).await;
    assert_eq!(limiter.stats().in_flight, 2);
    drop(held);
    while let Some(joined) = waiters.join_next().await {
        joined.unwrap().unwrap();
    }
    let stats = limiter.stats();
    assert_eq!((stats.acquired, stats.waited, stats.rejected), (7, 5, 0));
}

#[tokio::test]
async fn try_acquire_rejects_when_full_and_counts_it() {
    let limiter = ConcurrencyLimiter::new(1).unwrap();
    let permit = limiter.try_acquire().unwrap();
    assert_eq!(limiter.try_acquire().unwrap_err(), LimitError::Full);
    assert_eq!(limiter.try_acquire().unwrap_err(), LimitError::Full);
    assert_eq!(limiter.stats().rejected, 2);
    drop(permit);
    assert!(limiter.try_acquire().is_ok());
}

#[tokio::test]
async fn close_fails_waiters_and_later_calls() {
    let limiter = ConcurrencyLimiter::new(1).unwrap();
    let _held = limiter.try_acquire().unwrap();
    let waiter = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.acquire().await.map(drop) }
    });
    yield_until(|| limiter.stats().waited == 1).await;
    limiter.close();
    assert_eq!(waiter.await.unwrap(), Err(LimitError::Closed));
    assert_eq!(limiter.try_acquire().unwrap_err(), LimitError::Closed);
}

#[test]
fn a_zero_limit_is_a_config_error() {
    let error = ConcurrencyLimiter::new(0).unwrap_err();
    assert_eq!(error.field, "concurrency.limit");
}

/// Doubles its input, yielding a few times while counted in `gauge`.
fn doubler(
    gauge: Arc<Gauge>,
) -> impl Service<
    u32,
    Response = u32,
    Error = BoxError,
    Future = impl Future<Output = Result<u32, BoxError>> + Send,
> + Clone {
    service_fn(move |n: u32| {
        let gauge = gauge.clone();
        async move {
            gauge.enter();
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            gauge.leave();
            Ok::<_, BoxError>(n * 2)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_layer_limits_two_services_together() {
    let limiter = ConcurrencyLimiter::new(2).unwrap();
    let layer = ConcurrencyLimitLayer::new(limiter.clone());
    let gauge = Arc::new(Gauge::default());
    let users = ServiceBuilder::new()
        .layer(layer.clone())
        .service(doubler(gauge.clone()));
    let orders = ServiceBuilder::new()
        .layer(layer)
        .service(doubler(gauge.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..100u32 {
        let users = users.clone();
        let orders = orders.clone();
        tasks.spawn(async move {
            let a = users.oneshot(n).await.unwrap();
            let b = orders.oneshot(n).await.unwrap();
            assert_eq!((a, b), (n * 2, n * 2));
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    assert!(gauge.max.load(Ordering::SeqCst) <= 2);
    assert_eq!(limiter.stats().acquired, 200);
    assert_eq!(limiter.stats().in_flight, 0);
}

#[tokio::test]
async fn rejecting_layer_fails_fast_when_full() {
    let limiter = ConcurrencyLimiter::new(1).unwrap();
    let release = Arc::new(Notify::new());
    let mut service = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(limiter.clone()).when_limited(WhenLimited::Reject))
        .service(service_fn({
            let release = release.clone();
            move |()| {
                let release = release.clone();
                async move {
                    release.notified().await;
                    Ok::<_, BoxError>("done")
                }
            }
        }));
    let first = service.ready().await.unwrap().call(());
    let first = tokio::spawn(first);
    yield_until(|| limiter.stats().in_flight == 1).await;
    let error = service.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(error.downcast_ref::<LimitError>(), Some(&LimitError::Full));
    assert_eq!(limiter.stats().rejected, 1);
    release.notify_one();
    assert_eq!(first.await.unwrap().unwrap(), "done");
    assert_eq!(limiter.stats().in_flight, 0);
    // A freed slot serves the next call.
    release.notify_one();
    assert_eq!(service.oneshot(()).await.unwrap(), "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_limiter_limits_each_key_and_forgets_idle_ones() {
    let limiter = KeyedConcurrencyLimiter::new(2).unwrap();
    let gauges: Arc<[Gauge; 3]> = Arc::new(Default::default());
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..300usize {
        let limiter = limiter.clone();
        let gauges = gauges.clone();
        tasks.spawn(async move {
            let key = n % 3;
            let permit = limiter.acquire(&key).await.unwrap();
            assert_eq!(*permit.key(), key);
            gauges[key].enter();
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            gauges[key].leave();
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    for gauge in gauges.iter() {
        assert!(
            gauge.max.load(Ordering::SeqCst) <= 2,
            "a key ran more than its limit"
        );
    }
    let stats = limiter.stats();
    assert_eq!((stats.acquired, stats.in_flight, stats.keys), (300, 0, 0));
}

#[tokio::test]
async fn keyed_try_acquire_is_refused_only_for_the_full_key() {
    let limiter = KeyedConcurrencyLimiter::new(1).unwrap();
    let alice = limiter.try_acquire(&"alice").unwrap();
    assert_eq!(limiter.try_acquire(&"alice").unwrap_err(), LimitError::Full);
    let bob = limiter.try_acquire(&"bob").unwrap();
    assert_eq!(limiter.stats().keys, 2);
    assert_eq!(limiter.stats().rejected, 1);
    drop(alice);
    assert_eq!(limiter.stats().keys, 1, "an idle key is forgotten");
    drop(bob);
    assert_eq!(limiter.stats().keys, 0);
    assert!(KeyedConcurrencyLimiter::<u32>::new(0).is_err());
}
