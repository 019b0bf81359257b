//! Alert rules on tokio's paused clock: a threshold must hold for the
//! rule's duration before the alert is raised, and the alert resolves
//! when the value comes back; subscribers see both events.

use std::time::Duration;

use futures_util::StreamExt as _;
use keel_monitor::{AlertRule, AlertState, DataMonitoringService, MonitoringConfig};

#[tokio::test(start_paused = true)]
async fn an_alert_is_raised_after_its_hold_and_resolved_when_the_value_returns() {
    let service = DataMonitoringService::new({
        let mut c = MonitoringConfig::default();
        c.alerts = vec![
            AlertRule::above("deep-queue", "jobs_waiting", 100.0, Duration::from_secs(30))
                .label("queue", "mail"),
        ];
        c
    })
    .unwrap();
    let mut events = service.subscribe_alerts();
    let waiting = service.gauge("jobs_waiting", &[("queue", "mail")]);
    let other = service.gauge("jobs_waiting", &[("queue", "sms")]);
    other.set(1000.0); // another queue's series does not count

    waiting.set(50.0);
    assert!(service.evaluate_alerts().is_empty());
    waiting.set(150.0);
    assert!(service.evaluate_alerts().is_empty(), "not held yet");
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(service.evaluate_alerts().is_empty(), "held 29 s of 30");
    tokio::time::advance(Duration::from_secs(1)).await;
    let raised = service.evaluate_alerts();
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].state, AlertState::Firing);
    assert_eq!(raised[0].value, Some(150.0));
    let event = events.recv().await.unwrap();
    assert_eq!(
        (event.name.as_str(), event.state),
        ("deep-queue", AlertState::Firing)
    );

    // Still firing: no new event.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(service.evaluate_alerts().is_empty());

    waiting.set(10.0);
    let resolved = service.evaluate_alerts();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].state, AlertState::Resolved);
    let event = events.recv().await.unwrap();
    assert_eq!(event.state, AlertState::Resolved);
    assert!(events.try_recv().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_dip_before_the_hold_restarts_it() {
    let service = DataMonitoringService::new(MonitoringConfig::default()).unwrap();
    service.add_alert_rule(AlertRule::below(
        "low-hits",
        "hit_ratio",
        0.5,
        Duration::from_secs(10),
    ));
    let ratio = service.gauge("hit_ratio", &[]);
    ratio.set(0.2);
    service.evaluate_alerts();
    tokio::time::advance(Duration::from_secs(8)).await;
    ratio.set(0.9);
    service.evaluate_alerts();
    ratio.set(0.2);
    service.evaluate_alerts();
    tokio::time::advance(Duration::from_secs(8)).await;
    assert!(service.evaluate_alerts().is_empty());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(service.evaluate_alerts().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_background_task_raises_latency_alerts_to_a_stream() {
    let service = DataMonitoringService::new({
        let mut c = MonitoringConfig::default();
        c.alert_interval = Duration::from_secs(5);
        c.alerts = vec![
            AlertRule::above(
                "slow-db",
                "keel_operation_duration_seconds",
                0.1,
                Duration::from_secs(10),
            )
            .label("operation", "db.query")
            .quantile(0.99),
        ];
        c
    })
    .unwrap();
    let mut stream = Box::pin(service.subscribe_alerts().into_stream());
    for _ in 0..100 {
        service
            .monitor()
            .record("db.query", Duration::from_millis(250));
    }
    service.start().unwrap();
    let alert = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("raised within a minute of (paused) time")
        .unwrap();
    assert_eq!(alert.name, "slow-db");
    let p99 = alert.value.unwrap();
    assert!(
        (p99 - 0.25).abs() / 0.25 <= keel_monitor::RELATIVE_ERROR,
        "{p99}"
    );
    service.stop();
}

#[tokio::test(start_paused = true)]
async fn a_latency_alert_looks_at_the_latest_interval_and_resolves_when_calls_are_fast_again() {
    let service = DataMonitoringService::new(MonitoringConfig::default()).unwrap();
    service.add_alert_rule(
        AlertRule::above(
            "slow-db",
            "keel_operation_duration_seconds",
            0.1,
            Duration::ZERO,
        )
        .label("operation", "db.query")
        .quantile(0.99),
    );
    service.add_alert_rule(
        AlertRule::above("slow-upstream", "upstream_seconds", 0.1, Duration::ZERO).quantile(0.5),
    );
    let upstream = service.histogram("upstream_seconds", &[]);
    for _ in 0..100 {
        service
            .monitor()
            .record("db.query", Duration::from_millis(250));
        upstream.record(0.25);
    }
    let raised = service.evaluate_alerts();
    assert_eq!(raised.len(), 2, "{raised:?}");
    assert!(raised.iter().all(|a| a.state == AlertState::Firing));

    // No calls in the next interval: the latest samples still stand.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(service.evaluate_alerts().is_empty());

    // Ten times as many fast calls as slow ones overall would leave an
    // all-time p99 at 250 ms; the interval's is fast.
    for _ in 0..1000 {
        service
            .monitor()
            .record("db.query", Duration::from_millis(2));
        upstream.record(0.002);
    }
    let resolved = service.evaluate_alerts();
    assert_eq!(resolved.len(), 2, "{resolved:?}");
    for alert in &resolved {
        assert_eq!(alert.state, AlertState::Resolved);
        assert!(alert.value.unwrap() < 0.01, "{alert:?}");
    }
}
