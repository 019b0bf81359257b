//! Logging an event allocates nothing on the caller's side once warm:
//! the line is formatted into a reused per-thread buffer and copied into
//! the queue's reused buffer. (zap, the usual yardstick, makes 5
//! allocations for a 10-field message.)

use std::alloc::System;

use keel_log::{
    LogRotationManager, NonBlocking, RotationOptions, StructuredFormatter, WriterOptions,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tracing_subscriber::layer::SubscriberExt as _;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn a_ten_field_event_allocates_nothing_once_warm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rotation = RotationOptions::new(dir.path());
    rotation.compress = false;
    let manager = LogRotationManager::new(rotation).expect("manager");
    let options = WriterOptions {
        queue_size: 1 << 16,
        ..WriterOptions::default()
    };
    let (writer, guard) = NonBlocking::new(manager, options).expect("writer");
    let subscriber = tracing_subscriber::registry().with(StructuredFormatter::new(writer));
    let dispatch = tracing::Dispatch::new(subscriber);

    const EVENTS: u64 = 10_000;
    let log = |n: u64| {
        for i in 0..n {
            tracing::info!(
                a = i,
                b = -3i64,
                c = 2.5,
                d = true,
                e = "text \"quoted\"",
                f = "/api/v1/items",
                g = 200u16,
                h = 'x' as u32,
                user = "ada",
                msg_id = i * 7,
                "request {} handled",
                i
            );
        }
    };
    let stats = tracing::dispatcher::with_default(&dispatch, || {
        // Warm up: buffers grow to their working size, the file opens.
        log(EVENTS);
        guard.flush();
        log(EVENTS);
        guard.flush();
        let region = Region::new(GLOBAL);
        log(EVENTS);
        region.change()
    });
    guard.flush();
    drop(dispatch);
    drop(guard);
    // Counted across all threads (the writer's included); a few allow for
    // a queue buffer growing once more under a different interleaving.
    assert!(
        stats.allocations + stats.reallocations < 20,
        "{} allocations and {} reallocations for {EVENTS} events",
        stats.allocations,
        stats.reallocations
    );
    let text = std::fs::read_to_string(dir.path().join("app.log")).expect("log file");
    assert_eq!(text.lines().count() as u64, 3 * EVENTS);
}
