//! The command line: `check-config`, `--help`, `--version`.

mod support;

use support::keel;

fn temp_file(contents: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(keel_test_support::unique_name("keel_cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keel.toml");
    std::fs::write(&file, contents).unwrap();
    (dir, file)
}

#[test]
fn check_config_names_every_mistake() {
    let (dir, file) = temp_file(
        r#"
[server]
listen = "localhost"
shutdown_timeout = "5 parsecs"
admin_tokn = "secret"
"#,
    );
    let output = keel().arg("check-config").arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for path in [
        "server.listen = \"localhost\"",
        "server.shutdown_timeout = \"5 parsecs\"",
        "server.admin_tokn",
    ] {
        assert!(stderr.contains(path), "{path} missing from {stderr}");
    }
    assert!(stderr.contains("3 invalid config fields"), "{stderr}");
    assert!(
        stderr.contains("`admin_token`"),
        "allowed keys are named: {stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_config_prints_ok_for_a_valid_file() {
    let (dir, file) =
        temp_file("[server]\nlisten = \"0.0.0.0:9000\"\nshutdown_timeout = \"300ms\"\n");
    let output = keel()
        .env("KEEL_SERVER__ADMIN_TOKEN", "s3cret")
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_config_reports_a_missing_file_and_bad_toml() {
    let output = keel()
        .args(["check-config", "/nonexistent/keel.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read config file"));

    let (dir, file) = temp_file("[server\n");
    let output = keel().arg("check-config").arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not valid TOML"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn help_and_version() {
    let help = keel().arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("serve") && text.contains("check-config"),
        "{text}"
    );

    let version = keel().arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("keel {}", env!("CARGO_PKG_VERSION"))
    );
}
