//! `install` sets the global subscriber once and hands back the guard.

mod support;

use keel_log::{LogError, LoggingConfig};
use support::{parse, read_all_lines};

#[test]
fn install_logs_globally_and_refuses_a_second_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config: LoggingConfig = toml::from_str(&format!(
        "directory = \"{}\"\nlevel = \"warn\"",
        dir.path().display()
    ))
    .expect("config");
    let guard = config.install().expect("first install");
    std::thread::spawn(|| tracing::warn!(from = "another thread", "seen"))
        .join()
        .expect("thread");
    tracing::info!("filtered out");
    assert!(matches!(
        config.install(),
        Err(LogError::AlreadyInstalled(_))
    ));
    drop(guard);

    let lines = read_all_lines(dir.path(), "app");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let entry = parse(&lines[0]);
    assert_eq!(entry.message, "seen");
    assert_eq!(entry.fields["from"], "another thread");
}
