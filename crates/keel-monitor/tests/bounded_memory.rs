//! Memory stays bounded: a flood of distinct series names, operation names
//! and error types is capped, and idle series are forgotten.

use std::time::Duration;

use keel_monitor::{DataMonitoringService, MonitoringConfig, OTHER, OTHER_OPERATION};

#[test]
fn a_flood_of_distinct_series_is_capped_and_counted() {
    let service = DataMonitoringService::new({
        let mut c = MonitoringConfig::default();
        c.max_series = 500;
        c
    })
    .unwrap();
    for i in 0..100_000 {
        service
            .counter("requests_total", &[("user", &i.to_string())])
            .increment(1);
        service.gauge(&format!("flood_{i}"), &[]).set(1.0);
    }
    let registry = service.registry();
    assert_eq!(registry.series(), 500);
    assert_eq!(registry.dropped_series(), 200_000 - 500);
    let text = service.render_prometheus();
    assert!(
        text.contains("keel_monitor_series_dropped_total 199500"),
        "{}",
        &text[..200]
    );
    assert!(text.lines().count() < 2_000);
}

#[test]
fn operation_names_and_error_types_past_their_bounds_share_other() {
    let service = DataMonitoringService::new({
        let mut c = MonitoringConfig::default();
        c.max_operations = 10;
        c.max_error_types = 5;
        c.recent_errors = 3;
        c
    })
    .unwrap();
    for i in 0..10_000 {
        let name = format!("op-{i}");
        service.monitor().record(&name, Duration::from_micros(i));
        service
            .monitor()
            .record_error(&name, &format!("Error{i}"), &"x".repeat(10_000));
    }
    let metrics = service.monitor().get_metrics();
    assert_eq!(metrics.operations.len(), 10);
    let other = metrics
        .operations
        .iter()
        .find(|o| o.name == OTHER_OPERATION)
        .unwrap();
    assert_eq!(other.calls, 10_000 - 9);
    let errors = service.errors().snapshot();
    assert_eq!(errors.total, 10_000);
    assert_eq!(errors.by_type.len(), 5);
    assert_eq!(errors.by_type[OTHER], 10_000 - 4);
    assert_eq!(errors.recent.len(), 3);
    assert!(errors.recent.iter().all(|e| e.message.len() <= 512));
}

#[tokio::test(start_paused = true)]
async fn idle_series_are_forgotten_at_reports_and_held_ones_kept() {
    let service = DataMonitoringService::new({
        let mut c = MonitoringConfig::default();
        c.series_idle_timeout = Some(Duration::from_secs(1));
        c
    })
    .unwrap();
    let held = service.counter("held_total", &[]);
    held.increment(1);
    for i in 0..100 {
        service
            .gauge("temporary", &[("id", &i.to_string())])
            .set(1.0);
    }
    assert_eq!(service.registry().series(), 101);
    // The first report sees them touched; after the timeout the next one
    // forgets those nobody updated or holds.
    service.report_now();
    std::thread::sleep(Duration::from_millis(1100));
    service.report_now();
    // The process figures are gauges the report itself refreshes.
    let left: Vec<String> = service
        .render_prometheus()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("temporary"))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(service.render_prometheus().contains("held_total 1"));
    assert!(service.registry().expired_series() >= 100);
}
