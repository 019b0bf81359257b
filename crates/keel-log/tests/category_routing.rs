//! Routed categories get their own files; the rest stay in the main one.

mod support;

use keel_log::{LogCategory, LogLevel, LoggingConfig, get_logger};
use serde_json::json;
use support::{names, parse, read_all_lines};

#[test]
fn routed_categories_go_to_their_own_rotating_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config: LoggingConfig = toml::from_str(&format!(
        r#"
        directory = "{}"
        level = "debug"
        [rotation]
        size = "2KB"
        [routes]
        security = "security"
        performance = "perf"
        "#,
        dir.path().display()
    ))
    .expect("config");
    let (dispatch, guard) = config.build().expect("build");
    tracing::dispatcher::with_default(&dispatch, || {
        let logger = get_logger("gateway");
        for i in 0..40 {
            tracing::info!(i, "system line");
            logger.log_structured(
                LogLevel::Warning,
                LogCategory::Security,
                "denied",
                &json!({"i": i}),
            );
            tracing::debug!(category = "performance", i, "timing");
            logger.log_structured(
                LogLevel::Info,
                LogCategory::Business,
                "sale",
                &json!({"i": i}),
            );
        }
    });
    drop(guard);

    let app = read_all_lines(dir.path(), "app");
    let security = read_all_lines(dir.path(), "security");
    let perf = read_all_lines(dir.path(), "perf");
    assert_eq!(app.len(), 80);
    assert_eq!(security.len(), 40);
    assert_eq!(perf.len(), 40);
    for line in &app {
        let c = parse(line).category;
        assert!(
            c == LogCategory::System || c == LogCategory::Business,
            "{line}"
        );
    }
    for (i, line) in security.iter().enumerate() {
        let entry = parse(line);
        assert_eq!(entry.category, LogCategory::Security);
        assert_eq!(entry.extra, Some(json!({"i": i})));
    }
    assert!(
        perf.iter()
            .all(|l| parse(l).category == LogCategory::Performance)
    );
    // Each routed file rotated on its own.
    let all = names(dir.path());
    assert!(
        all.iter()
            .any(|n| n.starts_with("security.") && n.ends_with(".log.gz")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|n| n.starts_with("perf.") && n.ends_with(".log.gz")),
        "{all:?}"
    );
}

#[test]
fn routes_apply_to_the_pretty_format_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config: LoggingConfig = toml::from_str(&format!(
        r#"
        format = "pretty"
        directory = "{}"
        [routes]
        security = "security"
        "#,
        dir.path().display()
    ))
    .expect("config");
    let (dispatch, guard) = config.build().expect("build");
    tracing::dispatcher::with_default(&dispatch, || {
        let logger = get_logger("auth");
        tracing::info!(order_id = 42, "system line");
        logger.log_structured(
            LogLevel::Warning,
            LogCategory::Security,
            "login denied",
            &json!({"user": "ada"}),
        );
        tracing::warn!(category = "security", "token probe");
        logger.log(LogLevel::Info, LogCategory::Business, "sale");
    });
    drop(guard);

    let read = |stem: &str| {
        std::fs::read_to_string(dir.path().join(format!("{stem}.log")))
            .unwrap_or_else(|e| panic!("{stem}.log: {e}"))
    };
    let app = read("app");
    let security = read("security");
    assert!(app.contains("system line") && app.contains("sale"), "{app}");
    assert!(
        !app.contains("login denied") && !app.contains("token probe"),
        "{app}"
    );
    assert!(
        security.contains("login denied") && security.contains("token probe"),
        "{security}"
    );
    assert!(
        !security.contains("system line") && !security.contains("sale"),
        "{security}"
    );
}
