//! The hub's counters reach a `metrics` recorder when published.

use keel_websocket::{WebSocketConfig, WebSocketManager};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test]
async fn hub_counters_are_published_as_totals() {
    let manager = WebSocketManager::new(WebSocketConfig::default()).unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || manager.publish_metrics());
    let recorded: Vec<(String, DebugValue)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
        .collect();
    assert!(
        recorded
            .iter()
            .any(|(n, v)| n == "keel_websocket_connections" && *v == DebugValue::Gauge(0.0.into())),
        "{recorded:?}"
    );
    for family in [
        "keel_websocket_connections_total",
        "keel_websocket_messages_total",
        "keel_websocket_closed_total",
        "keel_websocket_fanout_total",
    ] {
        assert!(recorded.iter().any(|(n, _)| n == family), "{family}");
    }
}
