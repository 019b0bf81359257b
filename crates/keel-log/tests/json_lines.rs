//! Every line is one valid JSON object carrying what the event carried,
//! whatever the message holds.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_log::{
    LogCategory, LogLevel, ManualClock, StructuredFormatter, TimestampOffset, get_logger,
};
use serde_json::{Value, json};
use support::{parse, ten_o_clock};
use tracing_subscriber::layer::SubscriberExt as _;

/// A `Write` the test reads back after logging.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` under a subscriber with the formatter writing to memory; returns the lines.
fn capture(offset: TimestampOffset, f: impl FnOnce()) -> Vec<String> {
    let out = Shared::default();
    let clock = ManualClock::new(ten_o_clock() + Duration::from_micros(123_456));
    let layer = StructuredFormatter::new(Mutex::new(out.clone()))
        .with_clock(Arc::new(clock))
        .with_offset(offset);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, f);
    let bytes = out.0.lock().expect("lock").clone();
    let text = String::from_utf8(bytes).expect("output is utf-8");
    assert!(text.ends_with('\n'));
    text.lines().map(str::to_owned).collect()
}

struct Hostile;

impl std::fmt::Display for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tab\t nul\0 esc\x1b \"quoted\" back\\slash\nsecond line\r\n\u{2028}")
    }
}

#[derive(Debug)]
struct Failure;
impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("disk \"full\"\n")
    }
}
impl std::error::Error for Failure {}

#[test]
fn hostile_values_still_make_one_valid_object_per_line() {
    let message = "he said \"hi\"\nand left\t\u{0}\u{7}\u{1f}\u{7f} é 🦀 {\"x\":1} \\";
    let invalid_utf8: &[u8] = b"\xff\xfe\xfd ok";
    let lossy = String::from_utf8_lossy(invalid_utf8).into_owned();
    let lines = capture(TimestampOffset::UTC, || {
        tracing::info!("{message}");
        tracing::warn!(
            bytes = ?invalid_utf8,
            lossy = %lossy,
            display = %Hostile,
            debug = ?"a\"b\n",
            nan = f64::NAN,
            inf = f64::NEG_INFINITY,
            big = u128::MAX,
            neg = i64::MIN,
            err = &Failure as &(dyn std::error::Error + 'static),
            "{}",
            Hostile
        );
        let span = tracing::info_span!("req\"\n", path = "/a\"b\nc", trace_id = "t-1");
        let _enter = span.enter();
        tracing::error!(timestamp = "fake", level = 3, "in span");
    });
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for line in &lines {
        let value: Value = serde_json::from_str(line).expect("valid json");
        assert!(value.is_object());
    }

    let first = parse(&lines[0]);
    assert_eq!(first.message, message);
    assert_eq!(first.level, LogLevel::Info);
    assert_eq!(first.category, LogCategory::System);
    assert_eq!(first.timestamp, "2026-11-21T10:00:00.123456Z");
    assert_eq!(first.logger, "json_lines");

    let second = parse(&lines[1]);
    assert_eq!(second.level, LogLevel::Warning);
    assert_eq!(second.message, Hostile.to_string());
    assert_eq!(second.fields["display"], Hostile.to_string());
    assert_eq!(second.fields["bytes"], format!("{invalid_utf8:?}"));
    assert_eq!(second.fields["lossy"], lossy);
    assert_eq!(second.fields["debug"], "\"a\\\"b\\n\"");
    assert_eq!(second.fields["nan"], "NaN");
    assert_eq!(second.fields["inf"], "-inf");
    assert!(lines[1].contains(&format!("\"big\":{},", u128::MAX)));
    assert_eq!(second.fields["neg"], i64::MIN);
    assert_eq!(second.fields["err"], "disk \"full\"\n");

    let third = parse(&lines[2]);
    assert_eq!(third.level, LogLevel::Error);
    // Fields named like the line's own keys do not overwrite them.
    assert_eq!(third.timestamp, "2026-11-21T10:00:00.123456Z");
    assert_eq!(third.fields["field.timestamp"], "fake");
    assert_eq!(third.fields["field.level"], 3);
    assert_eq!(third.spans.len(), 1);
    assert_eq!(third.spans[0]["name"], "req\"\n");
    assert_eq!(third.spans[0]["path"], "/a\"b\nc");
    assert_eq!(third.trace_id, Some(json!("t-1")));
    assert!(third.span_id.is_some());
}

#[test]
fn categories_critical_offsets_and_nested_spans() {
    let offset = TimestampOffset::parse("+02:00").expect("offset");
    let lines = capture(offset, || {
        tracing::warn!(category = "security", user = "ada", "login failed");
        tracing::info!(category = "audit", "unknown category");
        tracing::error!(critical = true, "disk gone");
        let outer = tracing::info_span!("request", trace_id = tracing::field::Empty);
        let _o = outer.enter();
        outer.record("trace_id", "abc123");
        let inner = tracing::debug_span!("db", table = "orders");
        let _i = inner.enter();
        tracing::info!(category = "performance", rows = 3u64, "query done");
    });
    let entries: Vec<_> = lines.iter().map(|l| parse(l)).collect();
    assert_eq!(entries[0].category, LogCategory::Security);
    assert_eq!(entries[0].fields["user"], "ada");
    assert!(!entries[0].fields.contains_key("category"));
    assert_eq!(entries[0].timestamp, "2026-11-21T12:00:00.123456+02:00");

    assert_eq!(entries[1].category, LogCategory::System);
    assert_eq!(entries[1].fields["category_unknown"], "audit");

    assert_eq!(entries[2].level, LogLevel::Critical);
    assert!(!entries[2].fields.contains_key("critical"));

    let last = &entries[3];
    assert_eq!(last.category, LogCategory::Performance);
    let names: Vec<&Value> = last.spans.iter().map(|s| &s["name"]).collect();
    assert_eq!(names, [&json!("request"), &json!("db")]);
    assert_eq!(last.spans[1]["table"], "orders");
    assert_eq!(last.trace_id, Some(json!("abc123")));
    assert_eq!(last.fields["rows"], 3);
}

#[test]
fn enhanced_logger_lines_carry_logger_category_level_and_extra() {
    let lines = capture(TimestampOffset::UTC, || {
        let logger = get_logger("my_service");
        logger.log_structured(
            LogLevel::Info,
            LogCategory::Business,
            "order placed",
            &json!({"order_id": 42, "note": "quote \" and\nnewline"}),
        );
        logger.log_structured(
            LogLevel::Critical,
            LogCategory::Security,
            "breach",
            &std::collections::BTreeMap::from([("ip", "10.0.0.1")]),
        );
        // A map with non-string keys cannot become JSON: the line is kept.
        logger.log_structured(
            LogLevel::Warning,
            LogCategory::System,
            "odd extra",
            &std::collections::HashMap::from([((1, 2), "x")]),
        );
        logger.debug("d");
        logger.info("i");
        logger.warning("w");
        logger.error("e");
        logger.critical("c");
    });
    let entries: Vec<_> = lines.iter().map(|l| parse(l)).collect();
    assert_eq!(entries.len(), 8);
    assert_eq!(entries[0].logger, "my_service");
    assert_eq!(entries[0].category, LogCategory::Business);
    assert_eq!(
        entries[0].extra,
        Some(json!({"order_id": 42, "note": "quote \" and\nnewline"}))
    );
    assert_eq!(entries[1].level, LogLevel::Critical);
    assert_eq!(entries[1].category, LogCategory::Security);
    assert_eq!(entries[1].extra, Some(json!({"ip": "10.0.0.1"})));
    assert_eq!(entries[2].extra, None);
    assert!(entries[2].fields["extra_error"].is_string());
    let levels: Vec<LogLevel> = entries[3..].iter().map(|e| e.level).collect();
    assert_eq!(
        levels,
        [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warning,
            LogLevel::Error,
            LogLevel::Critical
        ]
    );
    assert!(
        entries[3..]
            .iter()
            .all(|e| e.category == LogCategory::System)
    );
}

#[test]
fn enhanced_logger_events_reach_any_subscriber() {
    let capture = support::Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::with_default(subscriber, || {
        get_logger("billing").log_structured(
            LogLevel::Critical,
            LogCategory::Business,
            "invoice lost",
            &json!({"invoice": 7}),
        );
    });
    let seen = capture.events();
    assert_eq!(seen.len(), 1);
    let event = &seen[0];
    assert_eq!(event.level, tracing::Level::ERROR);
    assert_eq!(event.target, keel_log::LOGGER_TARGET);
    assert_eq!(event.field("logger"), Some("billing"));
    assert_eq!(event.field("category"), Some("business"));
    assert_eq!(event.field("critical"), Some("true"));
    assert_eq!(event.field("keel.extra"), Some("{\"invoice\":7}"));
    assert_eq!(event.field("message"), Some("invoice lost"));
}
