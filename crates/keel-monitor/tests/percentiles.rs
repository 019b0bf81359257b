//! Reported percentiles against exact percentiles of known data, through
//! the public API: recorded durations and measured calls.

use std::time::Duration;

use keel_monitor::{DataMonitoringService, MonitoringConfig, RELATIVE_ERROR};

fn exact(sorted: &[u64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

#[test]
fn reported_percentiles_are_within_the_stated_error() {
    let service = DataMonitoringService::new(MonitoringConfig::default()).unwrap();
    // A bimodal latency: most calls near 2 ms, a tail near 80 ms.
    let mut nanos: Vec<u64> = (0..10_000u64)
        .map(|i| {
            if i % 50 == 0 {
                80_000_000 + i * 997
            } else {
                2_000_000 + (i * 7919) % 500_000
            }
        })
        .collect();
    for &n in &nanos {
        service.monitor().record("q", Duration::from_nanos(n));
    }
    nanos.sort_unstable();
    let m = &service.monitor().get_metrics().operations[0];
    assert_eq!(m.calls, 10_000);
    for (q, got_ms) in [(0.5, m.p50_ms), (0.9, m.p90_ms), (0.99, m.p99_ms)] {
        let want_ms = exact(&nanos, q) / 1e6;
        let err = (got_ms - want_ms).abs() / want_ms;
        assert!(err <= RELATIVE_ERROR, "p{q}: {got_ms} vs {want_ms}");
    }
    assert_eq!(m.max_ms, *nanos.last().unwrap() as f64 / 1e6);
    let mean_ms = nanos.iter().sum::<u64>() as f64 / nanos.len() as f64 / 1e6;
    assert!((m.mean_ms - mean_ms).abs() < 1e-9, "the mean is exact");
}

#[test]
fn measured_calls_are_counted_and_timed() {
    let service = DataMonitoringService::new(MonitoringConfig::default()).unwrap();
    for _ in 0..10 {
        let _g = service.monitor().measure("sleepy");
        std::thread::sleep(Duration::from_millis(2));
    }
    let m = &service.monitor().get_metrics().operations[0];
    assert_eq!((m.name.as_str(), m.calls, m.sampled), ("sleepy", 10, 10));
    // Each call slept at least 2 ms (the minimum is a fact, not a timing goal).
    assert!(m.p50_ms >= 2.0 * (1.0 - RELATIVE_ERROR), "{m:?}");
}

#[test]
fn a_report_ranks_operations_and_suggests_from_the_rooms_numbers() {
    let service = DataMonitoringService::new(MonitoringConfig::default()).unwrap();
    for _ in 0..100 {
        service.monitor().record("slow", Duration::from_millis(50));
        service.monitor().record("fast", Duration::from_micros(50));
    }
    for _ in 0..30 {
        service
            .monitor()
            .record_error("fast", "Timeout", "upstream timed out");
    }
    // A cache full at its capacity that misses most lookups, a queue near
    // its bound and shed log lines, as the rooms publish them.
    service
        .gauge("keel_cache_capacity", &[("cache", "users")])
        .set(1000.0);
    service
        .gauge("keel_cache_entries", &[("cache", "users")])
        .set(1000.0);
    service
        .counter("keel_cache_hits_total", &[("cache", "users")])
        .absolute(100);
    service
        .counter("keel_cache_misses_total", &[("cache", "users")])
        .absolute(900);
    service
        .gauge("keel_queue_capacity", &[("queue", "jobs")])
        .set(100.0);
    service
        .gauge("keel_queue_depth", &[("queue", "jobs")])
        .set(95.0);
    service
        .counter("keel_log_dropped_lines_total", &[])
        .absolute(12);
    // A pool whose callers waited 20 ms for a connection, an executor
    // whose queue is nearly full.
    let waits = service.histogram("keel_pool_acquire_wait_seconds", &[("pool", "db.main")]);
    for _ in 0..50 {
        waits.record(0.02);
    }
    service
        .gauge("keel_executor_queue_capacity", &[("executor", "default")])
        .set(64.0);
    service
        .gauge("keel_executor_queued_jobs", &[("executor", "default")])
        .set(60.0);

    let lines = Lines::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(lines.clone())
        .with_ansi(false)
        .finish();
    let report = tracing::subscriber::with_default(subscriber, || service.report_now());
    let logged = lines.text();
    let line = logged
        .lines()
        .find(|l| l.contains("performance report"))
        .unwrap_or_else(|| panic!("no report line in {logged:?}"));
    assert!(line.contains("category=\"performance\""), "{line}");
    assert!(line.contains("\"by_p99\":[\"slow\",\"fast\"]"), "{line}");
    let names: Vec<&str> = report
        .operations
        .iter()
        .map(|o| o.metrics.name.as_str())
        .collect();
    assert_eq!(names, ["slow", "fast"], "by total time");
    assert_eq!(report.by_p99, ["slow", "fast"]);
    assert_eq!(report.by_error_rate, ["fast"]);
    assert_eq!(report.errors.in_interval, 30);
    assert_eq!(report.errors.top_types, [("Timeout".to_owned(), 30)]);
    let subjects: Vec<&str> = report
        .suggestions
        .iter()
        .map(|s| s.subject.as_str())
        .collect();
    for want in [
        "cache:users",
        "queue:jobs",
        "pool:db.main",
        "executor:default",
        "log",
        "operation:fast",
        "operation:slow",
    ] {
        assert!(subjects.contains(&want), "{want} missing from {subjects:?}");
    }
    let cache = report
        .suggestions
        .iter()
        .find(|s| s.subject == "cache:users")
        .unwrap();
    assert!(cache.advice.contains("capacity"), "{cache:?}");
    let pool = report
        .suggestions
        .iter()
        .find(|s| s.subject == "pool:db.main")
        .unwrap();
    assert!(pool.advice.contains("max_connections"), "{pool:?}");
    assert_eq!(service.latest_report().unwrap(), report);

    // The next report covers only what happened since, and says what changed.
    for _ in 0..100 {
        service.monitor().record("slow", Duration::from_millis(200));
    }
    let next = service.report_now();
    assert_eq!(next.operations.len(), 1);
    let change = next.operations[0].change.as_ref().unwrap();
    assert!(change.p99 > 2.5, "{change:?}");
    assert_eq!(next.errors.in_interval, 0);
    assert!(
        !next.suggestions.iter().any(|s| s.subject == "log"),
        "no new drops"
    );
    let json = serde_json::to_value(&*next).unwrap();
    assert!(json["operations"][0]["p99_ms"].as_f64().unwrap() > 190.0);
}

/// A `tracing` writer keeping what it is given.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Lines {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
