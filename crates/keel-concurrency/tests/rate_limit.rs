//! RateLimiter / KeyedRateLimiter: exact burst and spacing on a moved
//! clock, per-key independence, idle-key cleanup, and the tower layer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_concurrency::{
    Clock, KeyedRateLimiter, Quota, RateLimitLayer, RateLimited, RateLimiter, WhenLimited,
};
use tokio::time::{Instant, advance};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn allows_exactly_the_burst_then_one_per_interval() {
    let limiter = RateLimiter::with_clock(
        Quota::per_second(10).unwrap().burst(3).unwrap(),
        Clock::tokio(),
    );
    for _ in 0..3 {
        limiter.check().unwrap();
    }
    assert_eq!(limiter.check().unwrap_err().wait_time(), ms(100));
    advance(ms(99)).await;
    assert_eq!(limiter.check().unwrap_err().wait_time(), ms(1));
    advance(ms(1)).await;
    limiter.check().unwrap();
    assert_eq!(limiter.check().unwrap_err().wait_time(), ms(100));
    // After a long idle time the burst is back, but no more than it.
    advance(Duration::from_secs(60)).await;
    for _ in 0..3 {
        limiter.check().unwrap();
    }
    assert!(limiter.check().is_err());
    assert_eq!(limiter.stats().rejected, 4);
}

#[tokio::test(start_paused = true)]
async fn spacing_follows_the_rate_over_many_intervals() {
    let limiter = RateLimiter::with_clock(Quota::per_second(50).unwrap(), Clock::tokio());
    let mut allowed = 0;
    // One check per ms from 0 to 10 s inclusive: the burst of 50, plus one
    // per 20 ms of elapsed time.
    for _ in 0..=10_000 {
        if limiter.check().is_ok() {
            allowed += 1;
        }
        advance(ms(1)).await;
    }
    assert_eq!(allowed, 50 + 500);
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_limit() {
    let limiter = RateLimiter::with_clock(Quota::per_minute(2).unwrap(), Clock::tokio());
    let other = limiter.clone();
    limiter.check().unwrap();
    other.check().unwrap();
    assert!(limiter.check().is_err());
    assert!(other.check().is_err());
    assert_eq!(limiter.stats().rejected, 2);
}

#[test]
fn threads_sharing_a_limiter_get_exactly_the_burst() {
    let limiter = RateLimiter::new(Quota::per(100, Duration::from_secs(3600)).unwrap());
    let allowed = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let limiter = limiter.clone();
            let allowed = allowed.clone();
            scope.spawn(move || {
                for _ in 0..10_000 {
                    if limiter.check().is_ok() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(allowed.load(Ordering::Relaxed), 100);
    assert_eq!(limiter.stats().rejected, 40_000 - 100);
}

#[tokio::test(start_paused = true)]
async fn until_ready_waits_for_the_next_slot() {
    let limiter = RateLimiter::with_clock(Quota::per_second(2).unwrap(), Clock::tokio());
    let start = Instant::now();
    for _ in 0..5 {
        limiter.until_ready().await;
    }
    // Two at once, then one every 500 ms.
    assert_eq!(start.elapsed(), ms(1500));
    assert_eq!(limiter.stats().waited, 3);
    assert_eq!(limiter.stats().rejected, 0);
}

#[tokio::test(start_paused = true)]
async fn keys_are_limited_independently() {
    let limiter = KeyedRateLimiter::with_clock(Quota::per_minute(1).unwrap(), Clock::tokio());
    limiter.check_key(&"alice").unwrap();
    let refused = limiter.check_key(&"alice").unwrap_err();
    assert_eq!(refused.wait_time(), Duration::from_secs(60));
    limiter.check_key(&"bob").unwrap();
    assert!(limiter.check_key(&"bob").is_err());
    advance(Duration::from_secs(60)).await;
    limiter.check_key(&"alice").unwrap();
    assert_eq!(limiter.stats().rejected, 2);
}

#[tokio::test(start_paused = true)]
async fn recovered_keys_are_forgotten() {
    let limiter = KeyedRateLimiter::with_clock(Quota::per_second(1).unwrap(), Clock::tokio());
    for key in 0..10u32 {
        limiter.check_key(&key).unwrap();
    }
    assert_eq!(limiter.len(), 10);
    limiter.retain_recent();
    assert_eq!(limiter.len(), 10, "keys still limited must stay");
    advance(Duration::from_secs(1)).await;
    limiter.retain_recent();
    assert!(limiter.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_growing_map_sweeps_idle_keys_by_itself() {
    let limiter = KeyedRateLimiter::with_clock(Quota::per_second(1).unwrap(), Clock::tokio());
    for key in 0..100_000u32 {
        limiter.check_key(&key).unwrap();
    }
    advance(Duration::from_secs(1)).await;
    for key in 100_000..200_000u32 {
        limiter.check_key(&key).unwrap();
    }
    // Every shard swept the first 100k idle keys while taking the next.
    assert!(
        limiter.len() < 150_000,
        "idle keys were not swept: {} tracked",
        limiter.len()
    );
    // A key swept away starts fresh: allowed again.
    limiter.check_key(&0).unwrap();
}

#[test]
fn bad_quotas_are_config_errors() {
    assert_eq!(Quota::per_second(0).unwrap_err().field, "rate_limit.rate");
    assert_eq!(
        Quota::with_period(Duration::ZERO).unwrap_err().field,
        "rate_limit.period"
    );
    assert_eq!(
        Quota::per_second(5).unwrap().burst(0).unwrap_err().field,
        "rate_limit.burst"
    );
    let quota = Quota::per_minute(30).unwrap();
    assert_eq!(
        (quota.interval(), quota.burst_size()),
        (Duration::from_secs(2), 30)
    );
}

fn echo() -> impl tower::Service<
    u32,
    Response = u32,
    Error = BoxError,
    Future = impl Future<Output = Result<u32, BoxError>> + Send,
> + Clone {
    service_fn(|n: u32| async move { Ok::<_, BoxError>(n) })
}

#[tokio::test(start_paused = true)]
async fn rejecting_layer_fails_over_the_limit_with_the_wait() {
    let limiter = RateLimiter::with_clock(Quota::per_minute(2).unwrap(), Clock::tokio());
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone()).when_limited(WhenLimited::Reject))
        .service(echo());
    assert_eq!(service.clone().oneshot(1).await.unwrap(), 1);
    assert_eq!(service.clone().oneshot(2).await.unwrap(), 2);
    let error = service.clone().oneshot(3).await.unwrap_err();
    let limited = error.downcast_ref::<RateLimited>().unwrap();
    assert_eq!(limited.wait_time(), Duration::from_secs(30));
    assert_eq!(limiter.stats().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn waiting_layer_spaces_requests_at_the_rate() {
    let limiter = RateLimiter::with_clock(Quota::per_second(1).unwrap(), Clock::tokio());
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter))
        .service(echo());
    let start = Instant::now();
    let mut answers = Vec::new();
    for n in 0..4 {
        answers.push(service.clone().oneshot(n).await.unwrap());
    }
    assert_eq!(answers, [0, 1, 2, 3]);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn keyed_layer_limits_each_client_on_its_own() {
    let limiter = KeyedRateLimiter::with_clock(Quota::per_minute(1).unwrap(), Clock::tokio());
    // Requests are client ids; odd and even clients alternate.
    let service = ServiceBuilder::new()
        .layer(
            RateLimitLayer::keyed(limiter.clone(), |client: &u32| *client)
                .when_limited(WhenLimited::Reject),
        )
        .service(echo());
    assert!(service.clone().oneshot(1).await.is_ok());
    assert!(service.clone().oneshot(2).await.is_ok());
    assert!(service.clone().oneshot(1).await.is_err());
    assert!(service.clone().oneshot(2).await.is_err());
    assert!(service.clone().oneshot(3).await.is_ok());
    assert_eq!(limiter.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn extreme_quotas_answer_or_are_refused_without_overflow() {
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    let slow = RateLimiter::with_clock(Quota::per(2, century).unwrap(), Clock::tokio());
    slow.check().unwrap();
    slow.check().unwrap();
    assert_eq!(slow.check().unwrap_err().wait_time(), century / 2);
    // Windows the nanosecond clock cannot hold are config errors, not overflows.
    assert_eq!(
        Quota::per(3, Duration::MAX).unwrap_err().field,
        "rate_limit.period"
    );
    assert!(
        Quota::with_period(century)
            .unwrap()
            .burst(u32::MAX)
            .is_err()
    );
    // Faster than one per nanosecond cannot be expressed either.
    assert_eq!(
        Quota::per(2, Duration::from_nanos(1)).unwrap_err().field,
        "rate_limit.period"
    );
    let fastest =
        RateLimiter::with_clock(Quota::per_second(1_000_000_000).unwrap(), Clock::tokio());
    for _ in 0..1000 {
        fastest.check().unwrap();
    }
}
