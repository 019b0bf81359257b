//! The gateway's routes, run as a user runs `keel`: the embedded demo, a
//! proxy route in front of an upstream this test serves, the admin API.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use support::{Server, keel, scratch_dir};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn x_cache(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_demo_serves_its_stocks_table_through_the_cache() {
    let mut server = Server::start({
        let mut cmd = keel();
        // Every request counts as slow, so both log lines show.
        cmd.args(["--listen", "127.0.0.1:0"])
            .env("KEEL_SERVER__SLOW_REQUEST", "0s");
        cmd
    });
    let http = client();
    let get = async |path: &str| http.get(server.url(path)).send().await.unwrap();
    let all: Vec<serde_json::Value> = get("/api/stocks").await.json().await.unwrap();
    assert_eq!(all.len(), 300, "a few hundred demo rows");
    let symbol = all[7]["symbol"].as_str().unwrap().to_owned();

    let first = get(&format!("/api/stocks/{symbol}")).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(x_cache(&first), "MISS");
    let row: serde_json::Value = first.json().await.unwrap();
    assert_eq!(row["symbol"], symbol.as_str());

    let second = get(&format!("/api/stocks/{symbol}")).await;
    assert_eq!(x_cache(&second), "HIT");
    assert!(second.headers().contains_key(header::AGE));

    // A parameter is bound, never spliced into the SQL.
    let hostile = get("/api/stocks/x'%20OR%20'1'='1").await;
    assert_eq!(hostile.status(), StatusCode::NOT_FOUND);
    let missing = get("/api/stocks/NOPE99").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Invalidated through the admin API (open: keel listens on loopback).
    let deleted = http
        .delete(server.url(&format!("/admin/caches/route-1/api/stocks/{symbol}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let third = get(&format!("/api/stocks/{symbol}")).await;
    assert_eq!(x_cache(&third), "MISS", "invalidated");

    // Each request left an access line, and (over the 0s threshold) a
    // slow-request line.
    let access = server
        .wait_for_line("\"message\":\"request\"", Duration::from_secs(5))
        .expect("an access line");
    assert!(access.contains("\"category\":\"business\""), "{access}");
    assert!(access.contains("/api/stocks"), "{access}");
    let slow = server
        .wait_for_line("\"message\":\"slow request\"", Duration::from_secs(5))
        .expect("a slow-request line");
    assert!(slow.contains("\"category\":\"performance\""), "{slow}");
}

/// An upstream counting its requests: `/item` (cacheable), `/private`
/// (`Cache-Control: private`), `/flaky` (503), `/echo` (POST).
async fn upstream() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let count = |hits: &Arc<AtomicUsize>| {
        let hits = Arc::clone(hits);
        move || {
            hits.fetch_add(1, Ordering::SeqCst);
        }
    };
    let (c1, c2, c3, c4) = (count(&hits), count(&hits), count(&hits), count(&hits));
    let app = Router::new()
        .route(
            "/item",
            get(move || async move {
                c1();
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("max-age=60"),
                );
                (headers, "item")
            }),
        )
        .route(
            "/private",
            get(move || async move {
                c2();
                let mut headers = HeaderMap::new();
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
                (headers, "mine")
            }),
        )
        .route(
            "/flaky",
            get(move || async move {
                c3();
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            }),
        )
        .route(
            "/echo",
            post(move |body: String| async move {
                c4();
                body
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), hits)
}

fn config_file(upstream: &str, extra: &str) -> std::path::PathBuf {
    let dir = scratch_dir();
    let path = dir.join("keel.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
admin_token = "s3cret"

[pools.http.backend]
base_urls = ["{upstream}"]
max_retries = 0

[[routes]]
path = "/proxy/{{*rest}}"
upstream = "backend"
ttl = "30s"
{extra}
"#
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_route_caches_what_the_upstream_allows_and_fails_fast_when_it_keeps_failing() {
    let (base, hits) = upstream().await;
    let server = Server::start({
        let mut cmd = keel();
        cmd.arg("--config").arg(config_file(&base, ""));
        cmd
    });
    let http = client();
    let get = async |path: &str| http.get(server.url(path)).send().await.unwrap();

    let a = get("/proxy/item").await;
    assert_eq!(
        (a.status(), x_cache(&a)),
        (StatusCode::OK, "MISS".to_owned())
    );
    assert_eq!(a.text().await.unwrap(), "item");
    let b = get("/proxy/item").await;
    assert_eq!(x_cache(&b), "HIT");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "served from the cache");

    // `private` is not kept.
    get("/proxy/private").await;
    let p = get("/proxy/private").await;
    assert_eq!(x_cache(&p), "MISS");
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // POST goes through, uncached.
    for _ in 0..2 {
        let echoed = http
            .post(server.url("/proxy/echo"))
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(echoed.text().await.unwrap(), "hello");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 5);

    // A failing upstream: errors are not cached, and once the circuit
    // opens the route answers 503 without calling it.
    let before = hits.load(Ordering::SeqCst);
    for _ in 0..10 {
        let r = get("/proxy/flaky").await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let reached = hits.load(Ordering::SeqCst) - before;
    assert!(
        reached < 10,
        "the open circuit kept {} of 10 calls away",
        10 - reached
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_wants_the_token_and_a_route_limits_each_client() {
    let (base, _) = upstream().await;
    let server = Server::start({
        let mut cmd = keel();
        cmd.arg("--config").arg(config_file(
            &base,
            "rate_limit = { per_second = 1, burst = 2 }",
        ));
        cmd
    });
    let http = client();
    let refused = http.get(server.url("/admin/caches")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let wrong = http
        .get(server.url("/admin/pools"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let pools: serde_json::Value = http
        .get(server.url("/admin/pools"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(pools["pools"]["http.backend"].is_object(), "{pools}");

    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = http.get(server.url("/proxy/item")).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key(header::RETRY_AFTER));
        }
        statuses.push(r.status());
    }
    assert_eq!(
        &statuses[..2],
        [StatusCode::OK, StatusCode::OK],
        "{statuses:?}"
    );
    assert!(
        statuses[2..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

#[test]
fn a_route_naming_a_missing_pool_is_a_config_error() {
    let dir = scratch_dir();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        r#"
[[routes]]
path = "/api/x/{id}"
pool = "nope"
sql = "DELETE FROM x"
"#,
    )
    .unwrap();
    let output = keel().arg("check-config").arg(&path).output().unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("routes[0].pool"), "{err}");
    assert!(err.contains("routes[0].sql"), "{err}");
}

#[tokio::test]
async fn a_route_warms_its_cache_at_start_from_paths_and_a_query() {
    let path = scratch_dir().join("keel.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = "127.0.0.1:0"

[pools.db.mem]
url = "sqlite::memory:"
max_connections = 2

[[routes]]
path = "/api/echo/{id}"
pool = "mem"
sql = "SELECT ? AS id"
ttl = "5m"
warm = { paths = ["/api/echo/1"], sql = "SELECT 2 AS id UNION SELECT 3 AS id" }
"#,
    )
    .unwrap();
    let mut server = Server::start({
        let mut cmd = keel();
        cmd.arg("--config").arg(&path);
        cmd
    });
    let done = server
        .wait_for_line("route cache warmed", Duration::from_secs(10))
        .expect("warming ends with a summary");
    assert!(done.contains("\"loaded\":3"), "{done}");
    let http = client();
    for warmed in ["/api/echo/1", "/api/echo/2", "/api/echo/3"] {
        let r = http.get(server.url(warmed)).send().await.unwrap();
        assert_eq!(x_cache(&r), "HIT", "{warmed}");
    }
    let r = http.get(server.url("/api/echo/9")).send().await.unwrap();
    assert_eq!(x_cache(&r), "MISS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_posted_to_the_webhook_in_the_background() {
    let received = Arc::new(tokio::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = Arc::clone(&received);
    let app = Router::new().route(
        "/hooks/alerts",
        post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().await.push(body);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let path = scratch_dir().join("keel.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"

[monitoring]
report_interval = "200ms"
alert_interval = "100ms"
alert_webhook = "http://{hook}/hooks/alerts"

[[monitoring.alerts]]
name = "always"
metric = "keel_process_resident_memory_bytes"
above = 1
"#
        ),
    )
    .unwrap();
    let _server = Server::start({
        let mut cmd = keel();
        cmd.arg("--config").arg(&path);
        cmd
    });
    let mut got = Vec::new();
    for _ in 0..100 {
        got = received.lock().await.clone();
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!got.is_empty(), "the webhook heard the alert");
    assert!(got[0].to_string().contains("always"), "{:?}", got[0]);
}
