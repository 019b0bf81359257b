//! Health: checks run concurrently under a timeout, results are cached, a
//! critical dependency down makes the service unhealthy (503), a
//! non-critical one degraded (200).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use keel_monitor::{CheckOutcome, DataMonitoringService, HealthState, MonitoringConfig, check_fn};

fn service() -> DataMonitoringService {
    DataMonitoringService::new({
        let mut c = MonitoringConfig::default();
        c.health_timeout = Duration::from_secs(1);
        c.health_cache = Duration::from_secs(5);
        c
    })
    .unwrap()
}

fn switch(name: &'static str, up: Arc<AtomicBool>) -> impl keel_monitor::HealthCheck {
    check_fn(move || {
        let up = up.load(Ordering::SeqCst);
        async move {
            if up {
                CheckOutcome::healthy()
            } else {
                CheckOutcome::unhealthy(format!("{name} refused the connection"))
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_critical_dependency_down_is_unhealthy_and_a_non_critical_one_degraded() {
    let s = service();
    let db = Arc::new(AtomicBool::new(true));
    let search = Arc::new(AtomicBool::new(true));
    s.register_health_check("db", true, switch("db", db.clone()));
    s.register_health_check("search", false, switch("search", search.clone()));

    let status = s.health_status().await;
    assert_eq!(status.status, HealthState::Healthy);
    assert_eq!(status.http_status(), 200);
    assert!(status.dependencies["db"].last_success.is_some());

    search.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(6)).await;
    let status = s.health_status().await;
    assert_eq!(status.status, HealthState::Degraded);
    assert_eq!(status.http_status(), 200);
    assert_eq!(status.dependencies["search"].status, HealthState::Unhealthy);
    assert!(!status.dependencies["search"].critical);
    assert_eq!(
        status.dependencies["search"].message.as_deref(),
        Some("search refused the connection")
    );

    db.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(6)).await;
    let status = s.health_status().await;
    assert_eq!(status.status, HealthState::Unhealthy);
    assert_eq!(status.http_status(), 503);
    // The last success is kept while the dependency is down.
    assert!(status.dependencies["db"].last_success.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_check_that_does_not_answer_in_time_is_unhealthy() {
    let s = service();
    s.register_health_check(
        "upstream",
        true,
        check_fn(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            CheckOutcome::healthy()
        }),
    );
    s.register_health_check(
        "cache",
        false,
        check_fn(|| async { CheckOutcome::healthy() }),
    );
    let status = s.health_status().await;
    assert_eq!(status.status, HealthState::Unhealthy);
    let upstream = &status.dependencies["upstream"];
    assert_eq!(upstream.status, HealthState::Unhealthy);
    assert!(
        upstream
            .message
            .as_deref()
            .unwrap()
            .contains("no answer within 1s"),
        "{upstream:?}"
    );
    assert!(upstream.last_success.is_none());
    assert_eq!(status.dependencies["cache"].status, HealthState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn results_are_reused_until_they_age_and_checks_run_concurrently() {
    let s = service();
    let runs = Arc::new(AtomicUsize::new(0));
    for name in ["a", "b", "c"] {
        let runs = runs.clone();
        s.register_health_check(
            name,
            true,
            check_fn(move || {
                runs.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    CheckOutcome::healthy()
                }
            }),
        );
    }
    let started = tokio::time::Instant::now();
    let (a, b) = tokio::join!(s.health_status(), s.health_status());
    // Three half-second checks, run together, once for both callers.
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(a.dependencies, b.dependencies);
    tokio::time::advance(Duration::from_secs(1)).await;
    s.health_status().await;
    assert_eq!(runs.load(Ordering::SeqCst), 3, "cached for 5 s");
    tokio::time::advance(Duration::from_secs(5)).await;
    s.health_status().await;
    assert_eq!(runs.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_dependency_reporting_degraded_degrades_the_service() {
    let s = service();
    s.register_health_check(
        "cache",
        true,
        check_fn(|| async { CheckOutcome::degraded("redis tier bypassed") }),
    );
    let status = s.health_status().await;
    assert_eq!(status.status, HealthState::Degraded);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["status"], "degraded");
    assert_eq!(
        json["dependencies"]["cache"]["message"],
        "redis tier bypassed"
    );
}
