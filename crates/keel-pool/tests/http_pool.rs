//! HTTP pools against servers the tests start on loopback, which count
//! their connections: retries, caps, ejection and recovery, figures.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use keel_pool::reqwest::{Method, StatusCode};
use keel_pool::{ConnectionStatus, HttpConnectionPool, HttpPoolConfig, PoolError, TimeoutKind};
use support::CountingServer;

fn config(base_urls: &[String]) -> HttpPoolConfig {
    let mut config = HttpPoolConfig::new(base_urls.iter().cloned());
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(5);
    config
}

#[tokio::test]
async fn a_get_is_retried_on_503_and_a_post_never() {
    let server = CountingServer::start().await;
    let pool = HttpConnectionPool::new("api", config(&[server.url()])).unwrap();

    server.counts.fail_next.store(2, Ordering::SeqCst);
    let response = pool.get("/items/1").await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.text(), "ok");
    assert_eq!(response.retries, 2);
    assert_eq!(response.url, format!("{}/items/1", server.url()));
    assert_eq!(server.requests(), 3, "two 503s, then the answer");

    server.counts.fail_next.store(1, Ordering::SeqCst);
    let response = pool.post("/items", "{}").await.unwrap();
    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "handed back as is"
    );
    assert_eq!(server.counts.posts.load(Ordering::SeqCst), 1, "sent once");
    assert_eq!(server.requests(), 4);

    server.counts.fail_next.store(1, Ordering::SeqCst);
    let response = pool
        .request(Method::PUT, "/items/1")
        .header("x-trace", "t1")
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (response.status, response.retries),
        (StatusCode::OK, 1),
        "PUT is idempotent"
    );

    // A GET that keeps failing gives up after max_retries.
    server.counts.failing.store(true, Ordering::SeqCst);
    let before = server.requests();
    let response = pool.get("/items/1").await.unwrap();
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        server.requests() - before,
        1 + 3,
        "one try and max_retries = 3"
    );

    let stats = pool.stats();
    assert_eq!(stats.retries, 2 + 1 + 3);
    assert_eq!(stats.errors, 2, "the POST's 503 and the exhausted GET");
    assert_eq!(stats.acquired, 4 + 2 + 4);
    assert_eq!(stats.in_use, 0);
    assert_eq!(pool.health(), ConnectionStatus::Degraded);
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_another_endpoint() {
    let server = CountingServer::start().await;
    let dead = support::refusing_url();
    let pool = HttpConnectionPool::new("two", config(&[dead, server.url()])).unwrap();
    for _ in 0..4 {
        let response = pool.get("/x").await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
    }
    assert_eq!(server.requests(), 4);
    assert!(pool.stats().retries >= 1, "{:?}", pool.stats());
    let err = HttpConnectionPool::new("alone", config(&[support::refusing_url()]))
        .unwrap()
        .request(Method::POST, "/x")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err, PoolError::Http { .. }) && err.is_transient(),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_host_and_total_caps_hold() {
    let a = CountingServer::start().await;
    let b = CountingServer::start().await;
    for s in [&a, &b] {
        s.counts.delay_ms.store(30, Ordering::SeqCst);
    }
    let mut cfg = config(&[a.url(), b.url()]);
    cfg.max_connections = 6;
    cfg.max_connections_per_host = Some(4);
    let pool = HttpConnectionPool::new("capped", cfg).unwrap();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let pool = pool.clone();
        let target = if i % 3 == 0 {
            // absolute URLs to a base URL's host share its cap
            format!("{}/abs", a.url())
        } else {
            "/rel".to_owned()
        };
        tasks.push(tokio::spawn(async move { pool.get(target).await }));
    }
    let (mut peak_waiters, mut peak_in_use, mut peak_both) = (0, 0, 0);
    while !tasks.iter().all(|t| t.is_finished()) {
        let stats = pool.stats();
        peak_waiters = peak_waiters.max(stats.waiters);
        peak_in_use = peak_in_use.max(stats.in_use);
        let both = a.counts.active.load(Ordering::SeqCst) + b.counts.active.load(Ordering::SeqCst);
        peak_both = peak_both.max(both);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status, StatusCode::OK);
    }
    for (name, s) in [("a", &a), ("b", &b)] {
        let max_open = s.counts.max_open.load(Ordering::SeqCst);
        let max_active = s.counts.max_active.load(Ordering::SeqCst);
        assert!(max_open <= 4, "{name}: {max_open} connections at once");
        assert!(max_active <= 4, "{name}: {max_active} requests at once");
    }
    let a_active = a.counts.max_active.load(Ordering::SeqCst);
    assert_eq!(a_active, 4, "the cap is reached, not just respected");
    let together = a.requests() + b.requests();
    assert_eq!(together, 60);
    assert!(peak_waiters > 0, "callers queued for a slot");
    assert!(peak_in_use <= 6, "{peak_in_use} requests in flight");
    assert!(
        peak_both <= 6,
        "{peak_both} requests at both servers at once"
    );
    let stats = pool.stats();
    assert_eq!((stats.acquired, stats.in_use, stats.timed_out), (60, 0, 0));
    assert!(stats.wait_p99 > Duration::ZERO);
}

#[tokio::test]
async fn a_request_waits_connection_timeout_for_a_slot() {
    let server = CountingServer::start().await;
    server.counts.delay_ms.store(1000, Ordering::SeqCst);
    let mut cfg = config(&[server.url()]);
    cfg.max_connections = 1;
    cfg.connection_timeout = Duration::from_millis(200);
    let pool = HttpConnectionPool::new("one", cfg).unwrap();
    let slow = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get("/slow").await })
    };
    let busy = support::eventually(Duration::from_secs(5), async || pool.stats().in_use == 1).await;
    assert!(busy);
    let err = pool.get("/fast").await.unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Timeout {
                kind: TimeoutKind::Exhausted { max_connections: 1 },
                ..
            }
        ),
        "{err}"
    );
    assert!(slow.await.unwrap().is_ok());
    assert_eq!(pool.stats().timed_out, 1);
}

#[tokio::test]
async fn an_ejected_endpoint_comes_back_after_it_recovers() {
    let good = CountingServer::start().await;
    let flaky = CountingServer::start().await;
    let mut cfg = config(&[good.url(), flaky.url()]);
    cfg.balance.eject_after_failures = 2;
    cfg.balance.ejection_cooldown = Duration::from_millis(300);
    cfg.health_check_interval = Duration::from_millis(200);
    let pool = HttpConnectionPool::new("lb", cfg).unwrap();

    flaky.counts.failing.store(true, Ordering::SeqCst);
    for _ in 0..10 {
        let response = pool.get("/").await.unwrap();
        assert_eq!(
            response.status,
            StatusCode::OK,
            "a 503 is retried on the good one"
        );
    }
    let ejected = pool.endpoints();
    assert!(ejected[1].1.ejected, "{ejected:?}");
    assert_eq!(pool.health(), ConnectionStatus::Degraded);
    let seen = flaky.requests();
    assert_eq!(seen, 2, "ejected after two failures");
    for _ in 0..10 {
        pool.get("/").await.unwrap();
    }
    assert_eq!(
        flaky.requests(),
        seen,
        "no traffic while ejected and cooling down"
    );

    flaky.counts.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..10 {
        assert_eq!(pool.get("/").await.unwrap().status, StatusCode::OK);
    }
    assert!(
        flaky.requests() >= seen + 4,
        "probed, restored and balanced again: {} requests",
        flaky.requests()
    );
    assert!(!pool.endpoints()[1].1.ejected);
    let healthy = support::eventually(Duration::from_secs(5), async || {
        pool.health() == ConnectionStatus::Healthy
    })
    .await;
    assert!(healthy, "{:?}", pool.health());
}

#[tokio::test]
async fn all_endpoints_ejected_is_unhealthy_and_refused_fast() {
    let server = CountingServer::start().await;
    server.counts.failing.store(true, Ordering::SeqCst);
    let mut cfg = config(&[server.url()]);
    cfg.balance.eject_after_failures = 1;
    cfg.balance.ejection_cooldown = Duration::from_secs(60);
    cfg.max_retries = 0;
    let pool = HttpConnectionPool::new("down", cfg).unwrap();
    assert_eq!(
        pool.get("/").await.unwrap().status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let err = pool.get("/").await.unwrap_err();
    assert!(
        matches!(err, PoolError::NoHealthyEndpoint { endpoints: 1, .. }),
        "{err}"
    );
    assert_eq!(pool.health(), ConnectionStatus::Unhealthy);
}

#[test]
fn bad_settings_are_refused_naming_the_field() {
    let mut cfg = HttpPoolConfig::new(["https://example.com"]);
    cfg.retry_budget = 0.5;
    let err = HttpConnectionPool::new("x", cfg).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `base_urls[0]`: scheme \"https\" is not supported: use http:// (this build has no TLS)"
    );
    let mut cfg = HttpPoolConfig::new(["http://127.0.0.1:1"]);
    cfg.max_connections_per_host = Some(0);
    let err = HttpConnectionPool::new("x", cfg).unwrap_err();
    assert!(
        err.to_string().contains("max_connections_per_host"),
        "{err}"
    );
}
