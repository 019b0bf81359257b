//! A log file that cannot be written falls back to stderr, keeps counting,
//! and comes back once the obstacle is gone and the retry time has come.
//!
//! Tests run as root, where permissions do not stop writes, so the
//! obstacle is something in the way: a regular file where the log
//! directory should be, or a directory where the log file should be.

mod support;

use std::sync::Arc;
use std::time::Duration;

use keel_log::{LogCategory, LogRotationManager, ManualClock, RotationOptions};
use support::ten_o_clock;

fn manager(dir: &std::path::Path, clock: &ManualClock) -> LogRotationManager {
    let mut options = RotationOptions::new(dir);
    options.clock = Arc::new(clock.clone());
    options.retry_interval = Duration::from_secs(5);
    options.compress = false;
    LogRotationManager::new(options).expect("manager")
}

#[test]
fn file_in_place_of_the_directory_falls_back_then_recovers() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("logs");
    std::fs::write(&dir, b"in the way").expect("obstacle");
    let clock = ManualClock::new(ten_o_clock());
    let mut logs = manager(&dir, &clock);
    let stats = logs.stats().clone();

    for i in 0..3 {
        logs.write(LogCategory::System, format!("lost {i}\n").as_bytes());
    }
    assert_eq!(stats.snapshot().fallback, 3);
    assert_eq!(stats.snapshot().written, 0);

    std::fs::remove_file(&dir).expect("remove obstacle");
    // Not retried before the interval has passed.
    clock.advance(Duration::from_secs(4));
    logs.write(LogCategory::System, b"still stderr\n");
    assert_eq!(stats.snapshot().fallback, 4);
    assert!(!dir.exists());

    clock.advance(Duration::from_secs(1));
    logs.write(LogCategory::System, b"back 1\n");
    logs.write(LogCategory::System, b"back 2\n");
    logs.flush();
    assert_eq!(stats.snapshot().written, 2);
    assert_eq!(stats.snapshot().fallback, 4);
    assert_eq!(
        std::fs::read_to_string(dir.join("app.log")).ok().as_deref(),
        Some("back 1\nback 2\n")
    );
}

#[test]
fn directory_in_place_of_the_file_falls_back_then_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    std::fs::create_dir(&log).expect("obstacle");
    let clock = ManualClock::new(ten_o_clock());
    let mut logs = manager(dir.path(), &clock);
    let stats = logs.stats().clone();

    logs.write(LogCategory::Security, b"one\n");
    clock.advance(Duration::from_secs(10));
    logs.write(LogCategory::Security, b"two\n"); // retried, still blocked
    assert_eq!(stats.snapshot().fallback, 2);

    std::fs::remove_dir(&log).expect("remove obstacle");
    clock.advance(Duration::from_secs(10));
    logs.write(LogCategory::Security, b"three\n");
    drop(logs);
    assert_eq!(stats.snapshot().written, 1);
    assert_eq!(
        std::fs::read_to_string(&log).ok().as_deref(),
        Some("three\n")
    );
}

#[test]
fn pipeline_never_fails_while_the_directory_is_blocked() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("logs");
    std::fs::write(&dir, b"in the way").expect("obstacle");
    let config: keel_log::LoggingConfig =
        toml::from_str(&format!("directory = \"{}\"", dir.display())).expect("config");
    let (dispatch, guard) = config
        .build()
        .expect("build works even if the directory does not");
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..5 {
            tracing::error!(i, "nowhere to go");
        }
    });
    guard.flush();
    let snapshot = guard.stats().snapshot();
    assert_eq!(snapshot.fallback, 5);
    assert_eq!(snapshot.written, 0);
    assert_eq!(snapshot.dropped, 0);
}

#[test]
fn full_disk_falls_back_without_losing_lines_then_recovers() {
    // /dev/full accepts the open and fails every write with ENOSPC.
    assert!(
        std::path::Path::new("/dev/full").exists(),
        "/dev/full is needed to simulate a full disk"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    std::os::unix::fs::symlink("/dev/full", &log).expect("symlink");
    let clock = ManualClock::new(ten_o_clock());
    let mut logs = manager(dir.path(), &clock);
    let stats = logs.stats().clone();

    for i in 0..10 {
        logs.write(LogCategory::System, format!("line {i}\n").as_bytes());
    }
    logs.flush(); // the buffered lines hit ENOSPC: they go to stderr
    logs.write(LogCategory::System, b"line 10\n"); // before the retry time
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.written, 0);
    assert_eq!(snapshot.fallback, 11);

    std::fs::remove_file(&log).expect("free the disk");
    clock.advance(Duration::from_secs(5));
    logs.write(LogCategory::System, b"line 11\n");
    drop(logs);
    assert_eq!(stats.snapshot().written, 1);
    assert_eq!(
        std::fs::read_to_string(&log).ok().as_deref(),
        Some("line 11\n")
    );
}
