//! What a room publishes through the `metrics` facade, caught by a
//! recorder of the test's own.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// (name, labels, value) of every series recorded; a histogram's value is
/// its number of samples.
pub type Recorded = Vec<(String, Vec<(String, String)>, f64)>;

/// Runs `f` with a recorder installed on this thread only and returns what
/// it recorded.
pub fn recorded(f: impl FnOnce()) -> Recorded {
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

/// The value of series `name` carrying at least `labels`.
///
/// # Panics
///
/// When no such series was recorded (the message lists what was).
pub fn value(recorded: &Recorded, name: &str, labels: &[(&str, &str)]) -> f64 {
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
