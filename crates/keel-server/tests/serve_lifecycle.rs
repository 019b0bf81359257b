//! `keel serve` end to end: start on a free port, answer `/health`, stop
//! cleanly on a signal, fail clearly when the port is taken.

mod support;

use std::time::Duration;

use support::{Server, keel};

async fn get_health(server: &Server) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let mut last_error = None;
    for _ in 0..100 {
        match client.get(server.url("/health")).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.json().await.expect("health body is JSON");
                return (status, body);
            }
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/health never answered: {last_error:?}");
}

#[tokio::test]
async fn serves_health_then_exits_cleanly_on_sigterm() {
    let mut cmd = keel();
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    let mut server = Server::start(cmd);

    let (status, body) = get_health(&server).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    server.signal("TERM");
    let exit = server.wait_exit(Duration::from_secs(20));
    assert!(exit.success(), "exit status {exit:?}, log {:?}", server.log);
    assert!(
        server.log.iter().any(|l| l.contains("SIGTERM")),
        "{:?}",
        server.log
    );
    assert!(
        server.log.iter().any(|l| l.contains("stopped")),
        "{:?}",
        server.log
    );
}

#[tokio::test]
async fn sigint_stops_the_default_command_configured_from_the_environment() {
    let mut cmd = keel();
    cmd.env("KEEL_SERVER__LISTEN", "127.0.0.1:0");
    let mut server = Server::start(cmd);
    let (status, _) = get_health(&server).await;
    assert_eq!(status, 200);

    server.signal("INT");
    let exit = server.wait_exit(Duration::from_secs(20));
    assert!(exit.success(), "exit status {exit:?}, log {:?}", server.log);
}

#[test]
fn a_port_in_use_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let output = keel()
        .args(["serve", "--listen", &addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_invalid_config_file_stops_serve_before_binding() {
    let dir = std::env::temp_dir().join(keel_test_support::unique_name("keel_cfg"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keel.toml");
    std::fs::write(&file, "[server]\nshutdown_timeout = \"soon\"\n").unwrap();
    let output = keel()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.shutdown_timeout"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
