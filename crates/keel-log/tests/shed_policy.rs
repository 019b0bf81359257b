//! Under the shed policy a full queue drops DEBUG and INFO, counts them,
//! says so in the log, and keeps every WARN and ERROR.
//!
//! The log file is a named pipe: the writer thread blocks opening it until
//! the test starts reading, which holds the queue full deterministically.

mod support;

use std::io::Read;

use keel_log::{
    LogLevel, LogRotationManager, NonBlocking, OverflowPolicy, RotationOptions,
    StructuredFormatter, WriterOptions,
};
use support::parse;
use tracing_subscriber::layer::SubscriberExt as _;

#[test]
fn shed_drops_low_levels_counts_them_and_keeps_every_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("app.log");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());

    let mut rotation = RotationOptions::new(dir.path());
    rotation.compress = false;
    let manager = LogRotationManager::new(rotation).expect("manager");
    let options = WriterOptions {
        queue_size: 8,
        overflow: OverflowPolicy::Shed,
        ..WriterOptions::default()
    };
    let stats = options.stats.clone();
    let (writer, guard) = NonBlocking::new(manager, options).expect("writer");
    let subscriber = tracing_subscriber::registry().with(StructuredFormatter::new(writer));
    let dispatch = tracing::Dispatch::new(subscriber);

    const LOW: u64 = 200;
    const HIGH: u64 = 100;
    let mut reader = None;
    tracing::dispatcher::with_default(&dispatch, || {
        // The writer is stuck opening the pipe: the queue fills, and
        // DEBUG/INFO beyond it are shed without waiting.
        for i in 0..LOW / 2 {
            tracing::debug!(i, "debug");
            tracing::info!(i, "info");
        }
        assert!(stats.dropped() >= LOW - 16, "dropped {}", stats.dropped());
        let path = fifo.clone();
        reader = Some(std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .expect("read pipe");
            text
        }));
        // WARN and ERROR wait for room instead.
        for i in 0..HIGH / 2 {
            tracing::warn!(i, "warn");
            tracing::error!(i, "error");
        }
    });
    drop(dispatch);
    drop(guard);
    let text = reader.expect("reader").join().expect("reader thread");

    let entries: Vec<_> = text.lines().map(parse).collect();
    let count = |level: LogLevel, message: &str| {
        entries
            .iter()
            .filter(|e| e.level == level && e.message == message)
            .count() as u64
    };
    assert_eq!(count(LogLevel::Warning, "warn"), HIGH / 2);
    assert_eq!(count(LogLevel::Error, "error"), HIGH / 2);
    let kept_low = count(LogLevel::Debug, "debug") + count(LogLevel::Info, "info");
    let dropped = stats.snapshot().dropped;
    assert!(dropped > 0);
    assert_eq!(kept_low + dropped, LOW);
    // Debug goes first: it is shed at three-quarters full, info only when full.
    assert!(count(LogLevel::Debug, "debug") <= count(LogLevel::Info, "info"));

    let reported: u64 = entries
        .iter()
        .filter(|e| e.message.starts_with("dropped "))
        .map(|e| {
            assert_eq!(e.message, format!("dropped {} lines", e.fields["dropped"]));
            e.fields["dropped"].as_u64().expect("count")
        })
        .sum();
    assert_eq!(reported, dropped);
}
