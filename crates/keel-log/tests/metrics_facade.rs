//! The log pipeline's counters reach a `metrics` recorder when published.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[test]
fn log_counters_are_published_as_totals() {
    let stats = keel_log::LogStats::default();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || stats.publish_metrics());
    let names: Vec<(String, DebugValue)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
        .collect();
    for family in [
        "keel_log_lines_total",
        "keel_log_dropped_lines_total",
        "keel_log_rotations_total",
        "keel_log_files_total",
    ] {
        assert!(
            names.iter().any(|(n, _)| n == family),
            "{family} in {names:?}"
        );
    }
    assert!(
        names
            .iter()
            .any(|(n, v)| n == "keel_log_dropped_lines_total" && *v == DebugValue::Counter(0))
    );
}
