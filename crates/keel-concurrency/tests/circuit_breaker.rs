//! CircuitBreaker: the closed → open → half-open → closed/open state
//! machine on a moved clock, fail-fast, fallbacks, and the tower layer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_concurrency::{
    BreakerError, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen,
    CircuitState, Clock, SlidingWindow,
};
use tokio::time::advance;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

fn breaker(window: SlidingWindow) -> CircuitBreaker {
    let config = CircuitBreakerConfig {
        failure_rate: 0.5,
        minimum_calls: 10,
        window,
        open_duration: Duration::from_secs(5),
        half_open_probes: 2,
    };
    CircuitBreaker::with_clock("db", config, Clock::tokio()).unwrap()
}

async fn ok(breaker: &CircuitBreaker) -> Result<u32, BreakerError<&'static str>> {
    breaker.call(async { Ok(7) }).await
}

async fn fail(breaker: &CircuitBreaker) -> Result<u32, BreakerError<&'static str>> {
    breaker.call(async { Err("boom") }).await
}

#[tokio::test(start_paused = true)]
async fn opens_at_the_failure_rate_only_after_the_minimum_calls() {
    let breaker = breaker(SlidingWindow::Count(20));
    for _ in 0..9 {
        assert!(matches!(
            fail(&breaker).await,
            Err(BreakerError::Inner("boom"))
        ));
    }
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "9 calls < minimum 10"
    );
    let _ = fail(&breaker).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.stats().opened, 1);
}

#[tokio::test(start_paused = true)]
async fn stays_closed_below_the_failure_rate() {
    let breaker = breaker(SlidingWindow::Count(20));
    // 4 failures in 10 calls: 40% < 50%.
    for i in 0..10 {
        let _ = if i % 5 < 2 {
            fail(&breaker).await
        } else {
            ok(&breaker).await
        };
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    let stats = breaker.stats();
    assert_eq!((stats.window_calls, stats.window_failures), (10, 4));
    // One more failure: 5 in 11 is still under half; two more: 6 in 12 is half.
    let _ = fail(&breaker).await;
    assert_eq!(breaker.state(), CircuitState::Closed);
    let _ = fail(&breaker).await;
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn open_fails_fast_without_making_the_call() {
    let breaker = breaker(SlidingWindow::Count(10));
    for _ in 0..10 {
        let _ = fail(&breaker).await;
    }
    let made = AtomicUsize::new(0);
    let result = breaker
        .call(async {
            made.fetch_add(1, Ordering::SeqCst);
            Ok::<_, &str>(1)
        })
        .await;
    let Err(BreakerError::Open(open)) = result else {
        panic!("expected an open circuit")
    };
    assert_eq!(open.breaker(), "db");
    assert_eq!(open.to_string(), "circuit breaker `db` is open");
    assert_eq!(made.load(Ordering::SeqCst), 0);
    assert_eq!(breaker.stats().rejected, 1);
    // Still open just before the open duration ends.
    advance(Duration::from_millis(4999)).await;
    assert!(matches!(ok(&breaker).await, Err(BreakerError::Open(_))));
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_a_limited_number_of_probes_and_closes_on_success() {
    let breaker = breaker(SlidingWindow::Count(10));
    for _ in 0..10 {
        let _ = fail(&breaker).await;
    }
    advance(Duration::from_secs(5)).await;
    let first = breaker.try_acquire().unwrap();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    let second = breaker.try_acquire().unwrap();
    assert!(breaker.try_acquire().is_err(), "only two probes at once");
    first.success();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert!(
        breaker.try_acquire().is_err(),
        "probe slots are used, not freed, by a result"
    );
    second.success();
    assert_eq!(breaker.state(), CircuitState::Closed);
    let stats = breaker.stats();
    assert_eq!((stats.window_calls, stats.window_failures), (0, 0));
    assert_eq!(ok(&breaker).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_another_open_duration() {
    let breaker = breaker(SlidingWindow::Count(10));
    for _ in 0..10 {
        let _ = fail(&breaker).await;
    }
    advance(Duration::from_secs(5)).await;
    assert!(matches!(fail(&breaker).await, Err(BreakerError::Inner(_))));
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.stats().opened, 2);
    advance(Duration::from_secs(4)).await;
    assert!(matches!(ok(&breaker).await, Err(BreakerError::Open(_))));
    advance(Duration::from_secs(1)).await;
    assert_eq!(ok(&breaker).await.unwrap(), 7);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_frees_its_slot() {
    let breaker = breaker(SlidingWindow::Count(10));
    for _ in 0..10 {
        let _ = fail(&breaker).await;
    }
    advance(Duration::from_secs(5)).await;
    let probes = [
        breaker.try_acquire().unwrap(),
        breaker.try_acquire().unwrap(),
    ];
    assert!(breaker.try_acquire().is_err());
    drop(probes);
    assert!(breaker.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn outcomes_of_calls_from_before_a_transition_are_ignored() {
    let breaker = breaker(SlidingWindow::Count(10));
    let late = breaker.try_acquire().unwrap();
    for _ in 0..10 {
        let _ = fail(&breaker).await;
    }
    advance(Duration::from_secs(5)).await;
    let probe = breaker.try_acquire().unwrap();
    // The call admitted while closed succeeds now: it is no probe.
    late.success();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    probe.failure();
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_old_failures() {
    let breaker = breaker(SlidingWindow::Time(Duration::from_secs(10)));
    for _ in 0..9 {
        let _ = fail(&breaker).await;
    }
    advance(Duration::from_secs(11)).await;
    // The nine failures slid out: one more is 1 of 1, under the minimum.
    let _ = fail(&breaker).await;
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().window_calls, 1);
    for _ in 0..9 {
        let _ = fail(&breaker).await;
    }
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn fallback_answers_failed_and_refused_calls() {
    let breaker = breaker(SlidingWindow::Count(10));
    let value = breaker
        .with_fallback(async { Err::<&str, _>("down") }, |_| "stale")
        .await;
    assert_eq!(value, "stale");
    for _ in 0..10 {
        let _ = fail(&breaker).await;
    }
    let value = breaker
        .with_fallback(async { Ok::<_, &str>("fresh") }, |error| match error {
            BreakerError::Open(_) => "degraded",
            BreakerError::Inner(_) => "stale",
        })
        .await;
    assert_eq!(value, "degraded");
}

#[tokio::test(start_paused = true)]
async fn layer_opens_and_stops_reaching_the_service() {
    let breaker = breaker(SlidingWindow::Count(10));
    let reached = Arc::new(AtomicUsize::new(0));
    let service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn({
            let reached = reached.clone();
            move |fail: bool| {
                reached.fetch_add(1, Ordering::SeqCst);
                async move {
                    if fail {
                        Err::<(), BoxError>("upstream error".into())
                    } else {
                        Ok(())
                    }
                }
            }
        }));
    for _ in 0..10 {
        assert!(service.clone().oneshot(true).await.is_err());
    }
    let error = service.clone().oneshot(false).await.unwrap_err();
    assert!(error.downcast_ref::<CircuitOpen>().is_some());
    assert_eq!(reached.load(Ordering::SeqCst), 10);
    advance(Duration::from_secs(5)).await;
    service.clone().oneshot(false).await.unwrap();
    service.clone().oneshot(false).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[test]
fn config_reads_from_toml_and_is_validated() {
    let config: CircuitBreakerConfig =
        toml::from_str("failure_rate = 0.25\nwindow = { time = \"1m\" }\nopen_duration = \"2s\"")
            .unwrap();
    assert_eq!(config.window, SlidingWindow::Time(Duration::from_secs(60)));
    assert_eq!(config.open_duration, Duration::from_secs(2));
    assert_eq!(config.minimum_calls, 20);
    assert!(toml::from_str::<CircuitBreakerConfig>("failure_ratio = 1.0").is_err());
    let bad = CircuitBreakerConfig {
        failure_rate: 1.5,
        ..CircuitBreakerConfig::default()
    };
    let error = CircuitBreaker::new("x", bad).unwrap_err();
    assert_eq!(error.field, "circuit_breaker.failure_rate");
    assert_eq!(
        error.to_string(),
        "circuit_breaker.failure_rate: must be above 0 and at most 1"
    );
}

#[tokio::test(start_paused = true)]
async fn a_huge_count_window_costs_nothing_up_front() {
    let huge = breaker(SlidingWindow::Count(u32::MAX));
    for _ in 0..10 {
        let _ = fail(&huge).await;
    }
    assert_eq!(huge.state(), CircuitState::Open);
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn every_transition_is_a_tracing_event() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let breaker = breaker(SlidingWindow::Count(10));
    for _ in 0..10 {
        let _ = fail(&breaker).await;
    }
    advance(Duration::from_secs(5)).await;
    ok(&breaker).await.unwrap();
    ok(&breaker).await.unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(lines[0].contains("WARN") && lines[0].contains("circuit breaker opened"));
    assert!(lines[0].contains("breaker=db") && lines[0].contains("window_failures=10"));
    assert!(lines[1].contains("circuit breaker half-open"));
    assert!(lines[2].contains("circuit breaker closed") && lines[2].contains("from=HalfOpen"));
}
