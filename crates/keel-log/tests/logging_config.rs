//! The `[logging]` section: defaults, every key, and errors that say what is allowed.

use std::time::Duration;

use keel_log::{
    ByteSize, LogCategory, LogFormat, LoggingConfig, OverflowPolicy, RotationPeriod,
    TimestampOffset,
};

#[test]
fn empty_section_is_the_default() {
    let config: LoggingConfig = toml::from_str("").expect("empty");
    assert_eq!(config, LoggingConfig::default());
    assert_eq!(config.level.as_str(), "info");
    assert_eq!(config.format, LogFormat::Json);
    assert_eq!(config.directory, None);
    assert_eq!(config.overflow, OverflowPolicy::Block);
    assert!(config.compression);
}

#[test]
fn every_key_is_read() {
    let config: LoggingConfig = toml::from_str(
        r#"
        level = "warn,my_app=debug"
        format = "pretty"
        directory = "/var/log/app"
        file_name = "gateway"
        compression = false
        queue_size = 1024
        overflow = "shed"
        flush_interval = "250ms"
        retry_interval = "1m"
        timestamp_offset = "-05:00"
        [rotation]
        size = "100MB"
        time = "hourly"
        [retention]
        files = 30
        total_size = "2GiB"
        [routes]
        security = "security"
        "#,
    )
    .expect("full section");
    assert_eq!(config.level.as_str(), "warn,my_app=debug");
    assert_eq!(config.format, LogFormat::Pretty);
    assert_eq!(config.file_name, "gateway");
    assert!(!config.compression);
    assert_eq!(config.queue_size, 1024);
    assert_eq!(config.overflow, OverflowPolicy::Shed);
    assert_eq!(config.flush_interval, Duration::from_millis(250));
    assert_eq!(config.retry_interval, Duration::from_secs(60));
    assert_eq!(config.timestamp_offset.seconds(), -5 * 3600);
    assert_eq!(config.rotation.size, Some(ByteSize(100_000_000)));
    assert_eq!(config.rotation.time, RotationPeriod::Hourly);
    assert_eq!(config.retention.files, Some(30));
    assert_eq!(config.retention.total_size, Some(ByteSize(2 << 30)));
    assert_eq!(
        config
            .routes
            .get(&LogCategory::Security)
            .map(String::as_str),
        Some("security")
    );
    assert_ne!(config.timestamp_offset, TimestampOffset::UTC);
}

fn error_of(text: &str) -> String {
    match toml::from_str::<LoggingConfig>(text) {
        Ok(config) => panic!("accepted {text:?} as {config:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_values_are_rejected_with_what_is_allowed() {
    let e = error_of(r#"level = "my_app=loud""#);
    assert!(
        e.contains("invalid level filter") && e.contains("RUST_LOG"),
        "{e}"
    );
    let e = error_of("[rotation]\nsize = \"100 parsecs\"");
    assert!(e.contains("invalid size") && e.contains("MB"), "{e}");
    let e = error_of("[rotation]\ntime = \"weekly\"");
    assert!(e.contains("hourly") && e.contains("daily"), "{e}");
    let e = error_of(r#"overflow = "drop""#);
    assert!(e.contains("block") && e.contains("shed"), "{e}");
    let e = error_of(r#"timestamp_offset = "CET""#);
    assert!(e.contains("+HH:MM"), "{e}");
    let e = error_of(r#"flush_interval = "soon""#);
    assert!(e.contains("flush_interval") || e.contains("unit"), "{e}");
    let e = error_of("[routes]\naudit = \"audit\"");
    assert!(e.contains("security"), "{e}");
    let e = error_of("queue = 5");
    assert!(e.contains("queue_size"), "{e}");
}

#[test]
fn bad_names_and_sizes_fail_at_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config: LoggingConfig = toml::from_str(&format!(
        "directory = \"{}\"\nfile_name = \"../escape\"",
        dir.path().display()
    ))
    .expect("parses");
    let error = config.build().err().map(|e| e.to_string());
    assert!(error.is_some_and(|e| e.contains("invalid log file name")));

    let config: LoggingConfig = toml::from_str("queue_size = 0").expect("parses");
    let error = config.build().err().map(|e| e.to_string());
    assert_eq!(error.as_deref(), Some("queue size must be at least 1"));
}

#[test]
fn pretty_format_writes_readable_entries_to_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config: LoggingConfig = toml::from_str(&format!(
        "format = \"pretty\"\ndirectory = \"{}\"",
        dir.path().display()
    ))
    .expect("config");
    let (dispatch, guard) = config.build().expect("build");
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::info!(order_id = 42, "order placed");
        tracing::debug!("below the info filter");
    });
    drop(guard);
    let text = std::fs::read_to_string(dir.path().join("app.log")).expect("log file");
    assert!(text.contains("order placed"), "{text}");
    assert!(text.contains("order_id: 42"), "{text}");
    assert!(!text.contains("below the info filter"));
    assert!(!text.contains('\u{1b}'), "no colour codes in files");
}
