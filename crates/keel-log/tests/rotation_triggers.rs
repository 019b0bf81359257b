//! Size and time triggers, file names, and retention, with a clock the test moves.

mod support;

use std::sync::Arc;
use std::time::Duration;

use keel_log::{
    LogCategory, LogRotationManager, ManualClock, RotationOptions, RotationPeriod, TimestampOffset,
    list_rotated,
};
use support::{names, read_all_lines, ten_o_clock};

fn line(i: usize) -> Vec<u8> {
    // 100 bytes including the newline.
    let mut l = format!("{{\"n\":{i:>4},\"pad\":\"{}\"}}", "x".repeat(80)).into_bytes();
    l.push(b'\n');
    assert_eq!(l.len(), 100);
    l
}

fn options(dir: &std::path::Path, clock: &ManualClock) -> RotationOptions {
    let mut options = RotationOptions::new(dir);
    options.clock = Arc::new(clock.clone());
    options.compress = false;
    options
}

#[test]
fn size_trigger_rotates_before_a_line_would_overflow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(ten_o_clock());
    let mut opts = options(dir.path(), &clock);
    opts.max_size = Some(1_000);
    let mut manager = LogRotationManager::new(opts).expect("manager");
    for i in 0..10 {
        manager.write(LogCategory::System, &line(i));
    }
    manager.flush();
    assert_eq!(names(dir.path()), ["app.log"]);
    assert_eq!(
        std::fs::metadata(dir.path().join("app.log"))
            .map(|m| m.len())
            .ok(),
        Some(1_000)
    );

    manager.write(LogCategory::System, &line(10));
    clock.advance(Duration::from_secs(1));
    for i in 11..21 {
        manager.write(LogCategory::System, &line(i));
    }
    manager.write(LogCategory::System, &line(21));
    drop(manager);
    // Size-only rotation names files by the time they were opened.
    assert_eq!(
        names(dir.path()),
        [
            "app.2026-11-21T10-00-00.1.log",
            "app.2026-11-21T10-00-00.2.log",
            "app.log"
        ]
    );
    let lines = read_all_lines(dir.path(), "app");
    assert_eq!(lines.len(), 22);
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("{{\"n\":{i:>4},")), "{i}: {l}");
    }
}

#[test]
fn hourly_trigger_fires_at_the_top_of_the_hour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(ten_o_clock() + Duration::from_secs(30 * 60));
    let mut opts = options(dir.path(), &clock);
    opts.period = RotationPeriod::Hourly;
    let mut manager = LogRotationManager::new(opts).expect("manager");
    manager.write(LogCategory::System, &line(0));
    clock.advance(Duration::from_secs(29 * 60 + 59)); // 10:59:59
    manager.write(LogCategory::System, &line(1));
    manager.flush();
    assert_eq!(names(dir.path()), ["app.log"]);
    clock.advance(Duration::from_secs(1)); // 11:00:00
    manager.write(LogCategory::System, &line(2));
    clock.advance(Duration::from_secs(3 * 3600)); // 14:00, two empty hours skipped
    manager.write(LogCategory::System, &line(3));
    drop(manager);
    // Time rotation names files by the start of their period.
    assert_eq!(
        names(dir.path()),
        [
            "app.2026-11-21T10-00-00.1.log",
            "app.2026-11-21T11-00-00.1.log",
            "app.log"
        ]
    );
    assert_eq!(read_all_lines(dir.path(), "app").len(), 4);
}

#[test]
fn daily_trigger_follows_the_configured_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 10:00Z is 23:00 at +13:00: local midnight comes one hour later.
    let clock = ManualClock::new(ten_o_clock());
    let mut opts = options(dir.path(), &clock);
    opts.period = RotationPeriod::Daily;
    opts.timestamp_offset = TimestampOffset::from_hours_minutes(13, 0).expect("offset");
    let mut manager = LogRotationManager::new(opts).expect("manager");
    manager.write(LogCategory::System, &line(0));
    clock.advance(Duration::from_secs(59 * 60));
    manager.write(LogCategory::System, &line(1));
    manager.flush();
    assert_eq!(names(dir.path()), ["app.log"]);
    clock.advance(Duration::from_secs(60));
    manager.write(LogCategory::System, &line(2));
    drop(manager);
    assert_eq!(
        names(dir.path()),
        ["app.2026-11-21T00-00-00.1.log", "app.log"]
    );
}

#[test]
fn size_and_time_share_one_stamp_with_increasing_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(ten_o_clock() + Duration::from_secs(60));
    let mut opts = options(dir.path(), &clock);
    opts.period = RotationPeriod::Hourly;
    opts.max_size = Some(200);
    let mut manager = LogRotationManager::new(opts).expect("manager");
    for i in 0..25 {
        manager.write(LogCategory::System, &line(i));
    }
    drop(manager);
    let rotated = list_rotated(dir.path(), "app").expect("list");
    let rotated: Vec<String> = rotated
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    // 25 lines of 100 bytes, 2 per file: 12 rotated files, listed in
    // numeric order (…9, 10, 11, 12), then the active file holds one.
    let expected: Vec<String> = (1..=12)
        .map(|seq| format!("app.2026-11-21T10-00-00.{seq}.log"))
        .collect();
    assert_eq!(rotated, expected);
    let lines = read_all_lines(dir.path(), "app");
    assert_eq!(lines.len(), 25);
    assert!(lines[24].starts_with("{\"n\":  24,"));
}

#[test]
fn retention_deletes_the_oldest_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(ten_o_clock());
    let mut opts = options(dir.path(), &clock);
    opts.period = RotationPeriod::Hourly;
    opts.max_files = Some(3);
    opts.compress = true;
    let stats = opts.stats.clone();
    let mut manager = LogRotationManager::new(opts).expect("manager");
    for i in 0..7 {
        manager.write(LogCategory::System, &line(i));
        clock.advance(Duration::from_secs(3600));
    }
    drop(manager);
    assert_eq!(
        names(dir.path()),
        [
            "app.2026-11-21T13-00-00.1.log.gz",
            "app.2026-11-21T14-00-00.1.log.gz",
            "app.2026-11-21T15-00-00.1.log.gz",
            "app.log"
        ]
    );
    let lines = read_all_lines(dir.path(), "app");
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("{\"n\":   3,"), "{}", lines[0]);
    assert_eq!(stats.snapshot().deleted, 3);
}

#[test]
fn retention_by_total_size_keeps_the_newest_that_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(ten_o_clock());
    let mut opts = options(dir.path(), &clock);
    opts.max_size = Some(300);
    opts.max_total_bytes = Some(650);
    let mut manager = LogRotationManager::new(opts).expect("manager");
    for i in 0..16 {
        manager.write(LogCategory::System, &line(i));
    }
    drop(manager);
    // Files of 300 bytes: two fit under 650; the active file holds line 15.
    let lines = read_all_lines(dir.path(), "app");
    let firsts: Vec<&str> = lines.iter().map(|l| &l[..10]).collect();
    assert_eq!(firsts.len(), 7);
    assert_eq!(firsts[0], "{\"n\":   9,");
    assert_eq!(
        list_rotated(dir.path(), "app").map(|v| v.len()).ok(),
        Some(2)
    );
}

#[test]
fn leftovers_of_an_earlier_run_are_compressed_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let left = dir.path().join("app.2026-11-20T10-00-00.1.log");
    std::fs::write(&left, "{\"old\":1}\n").expect("leftover");
    std::fs::write(
        dir.path().join("app.2026-11-20T11-00-00.1.log.gz.tmp"),
        b"cut short",
    )
    .expect("tmp");
    std::fs::write(dir.path().join("unrelated.txt"), b"keep").expect("unrelated");
    let clock = ManualClock::new(ten_o_clock());
    let mut opts = options(dir.path(), &clock);
    opts.compress = true;
    let stats = opts.stats.clone();
    let mut manager = LogRotationManager::new(opts).expect("manager");
    manager.write(LogCategory::System, b"{\"new\":1}\n");
    drop(manager);
    assert_eq!(
        names(dir.path()),
        [
            "app.2026-11-20T10-00-00.1.log.gz",
            "app.log",
            "unrelated.txt"
        ]
    );
    assert_eq!(stats.snapshot().compressed, 1);
    assert_eq!(
        read_all_lines(dir.path(), "app"),
        ["{\"old\":1}", "{\"new\":1}"]
    );
}
