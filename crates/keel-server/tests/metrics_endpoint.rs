//! `/metrics`, `/health` and `/monitoring/report` of the real binary after
//! some traffic: every room's families are there, every family has HELP
//! and TYPE, and `promtool check metrics` accepts the output.

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Server, keel};

/// A config with a SQLite pool and a proxy route, written where only this
/// test looks.
fn config_with_a_pool(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keel.toml");
    // A proxy route to an upstream nobody listens on: its breaker, limits
    // and HTTP pool are there to be reported.
    std::fs::write(
        &path,
        r#"
[pools.db.demo]
url = "sqlite::memory:"
max_connections = 2

[pools.http.nowhere]
base_urls = ["http://127.0.0.1:9"]

[[routes]]
path = "/proxy/{*rest}"
upstream = "nowhere"
max_concurrency = 4
rate_limit = { per_second = 100 }
"#,
    )
    .unwrap();
    path
}

async fn get(client: &reqwest::Client, server: &Server, path: &str) -> reqwest::Response {
    let mut last = None;
    for _ in 0..100 {
        match client.get(server.url(path)).send().await {
            Ok(response) => return response,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never answered: {last:?}");
}

/// `promtool check metrics` on `text`: `Ok(())`, `Err(problems)`, or
/// `None` when promtool is not installed (and services are not required).
fn promtool(text: &str) -> Option<Result<(), String>> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if keel_test_support::services_required() => {
            panic!(
                "promtool cannot run ({e}): install Debian's `prometheus` package (scripts/test.sh does)"
            )
        }
        Err(_) => {
            println!("skipped: promtool not installed (Debian package `prometheus`)");
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool runs");
    if output.status.success() {
        Some(Ok(()))
    } else {
        Some(Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

#[tokio::test]
async fn metrics_after_traffic_pass_promtool_with_every_rooms_families() {
    let config = config_with_a_pool("metrics");
    let mut cmd = keel();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config);
    let server = Server::start(cmd);
    let client = reqwest::Client::new();

    for _ in 0..5 {
        assert_eq!(get(&client, &server, "/health").await.status(), 200);
    }
    assert_eq!(get(&client, &server, "/no-such-route").await.status(), 404);
    get(&client, &server, "/metrics").await;
    // After the first scrape: the HTTP pool's wait reaches the recorder
    // even though the pool was built before the recorder was installed.
    let proxied = get(&client, &server, "/proxy/anything").await.status();
    assert!(proxied.is_server_error(), "{proxied}");

    let response = get(&client, &server, "/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();

    for family in [
        "keel_cache_hits_total",
        "keel_cache_capacity",
        "keel_cache_requests_total",
        "keel_executor_jobs_total",
        "keel_pool_connections",
        "keel_websocket_connections",
        "keel_queue_depth",
        "keel_breaker_state",
        "keel_concurrency_in_flight",
        "keel_rate_limiter_rejected_total",
        "keel_websocket_messages_total",
        "keel_pool_acquired_total",
        "keel_pool_max_connections",
        "keel_pool_acquire_wait_seconds",
        "keel_log_dropped_lines_total",
        "keel_operation_duration_seconds",
        "keel_operation_calls_total",
        "keel_process_resident_memory_bytes",
        "keel_process_cpu_usage_ratio",
        "keel_monitor_series",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    assert!(
        text.contains("keel_operation_calls_total{operation=\"http GET /health\"} 5"),
        "{text}"
    );
    let waits = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("keel_pool_acquire_wait_seconds_count{pool=\"http.nowhere\"} ")
        })
        .and_then(|n| n.parse::<u64>().ok());
    assert!(waits.is_some_and(|n| n >= 1), "{waits:?}\n{text}");
    let mut help = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split(' ').next().map(str::to_owned);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert_eq!(help.as_deref(), Some(name), "TYPE without HELP: {line}");
        }
    }
    if let Some(result) = promtool(&text) {
        result.unwrap_or_else(|problems| panic!("promtool: {problems}\n{text}"));
    }

    let report: serde_json::Value = get(&client, &server, "/monitoring/report")
        .await
        .json()
        .await
        .unwrap();
    let operations = report["operations"].as_array().unwrap();
    assert!(
        operations
            .iter()
            .any(|o| o["name"] == "http GET /health" && o["calls"] == 5),
        "{report}"
    );
    assert!(report["process"]["resident_memory_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn health_lists_each_dependency() {
    let config = config_with_a_pool("health");
    let mut cmd = keel();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config);
    let server = Server::start(cmd);
    let client = reqwest::Client::new();
    let response = get(&client, &server, "/health").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    // The proxy route's upstream listens nowhere: once its pool notices,
    // the service is degraded, never unhealthy (an HTTP pool is not
    // critical).
    assert!(
        body["status"] == "healthy" || body["status"] == "degraded",
        "{body}"
    );
    assert_eq!(
        body["dependencies"]["http.nowhere"]["critical"], false,
        "{body}"
    );
    let cache = &body["dependencies"]["cache"];
    assert_eq!(cache["status"], "healthy");
    assert_eq!(cache["critical"], false);
    assert!(cache["last_success"].is_string(), "{body}");
    let db = &body["dependencies"]["db.demo"];
    assert_eq!(db["critical"], true, "{body}");
    assert_eq!(db["status"], "healthy", "{body}");
}
