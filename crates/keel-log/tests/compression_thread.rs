//! Rotated files are compressed by the background thread, never by the
//! thread that writes.

mod support;

use std::sync::Arc;
use std::time::Duration;

use keel_log::{LogCategory, LogRotationManager, ManualClock, RotationOptions, RotationPeriod};
use support::{Capture, names, read_all_lines, ten_o_clock};
use tracing_subscriber::layer::SubscriberExt as _;

#[test]
fn compression_runs_on_its_own_thread() {
    // Global, so the compressor thread's events are seen too.
    let capture = Capture::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture.clone()))
        .expect("install capture");

    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(ten_o_clock());
    let mut options = RotationOptions::new(dir.path());
    options.clock = Arc::new(clock.clone());
    options.period = RotationPeriod::Hourly;
    let stats = options.stats.clone();
    let mut manager = LogRotationManager::new(options).expect("manager");
    for i in 0..4 {
        manager.write(LogCategory::System, format!("{{\"i\":{i}}}\n").as_bytes());
        clock.advance(Duration::from_secs(3600));
    }
    drop(manager); // waits for the compressor

    let writer = std::thread::current().name().unwrap_or("").to_owned();
    let compressed: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| e.field("message") == Some("compressed rotated log file"))
        .collect();
    assert_eq!(compressed.len(), 3);
    for event in &compressed {
        assert_eq!(event.thread, "keel-log-compress");
        assert_ne!(event.thread, writer);
        assert!(event.field("file").is_some_and(|f| f.ends_with(".log.gz")));
    }
    assert_eq!(stats.snapshot().compressed, 3);
    assert_eq!(
        names(dir.path()),
        [
            "app.2026-11-21T10-00-00.1.log.gz",
            "app.2026-11-21T11-00-00.1.log.gz",
            "app.2026-11-21T12-00-00.1.log.gz",
            "app.log"
        ]
    );
    assert_eq!(
        read_all_lines(dir.path(), "app"),
        ["{\"i\":0}", "{\"i\":1}", "{\"i\":2}", "{\"i\":3}"]
    );
}
