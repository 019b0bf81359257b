//! The pieces against real HTTP on loopback: a per-client rate limit
//! answering 429 with `Retry-After`, a circuit breaker answering 503 once
//! the handler keeps failing, and a load balancer spreading requests over
//! real servers and ejecting one that refuses connections.

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keel_concurrency::{
    BalanceStrategy, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen,
    KeyedRateLimiter, LoadBalancer, LoadBalancerConfig, Quota, RateLimitLayer, RateLimited,
    SlidingWindow, WhenLimited,
};
use tower::{BoxError, ServiceBuilder};

/// Maps the layers' errors to HTTP answers.
async fn refusal(error: BoxError) -> Response {
    if let Some(limited) = error.downcast_ref::<RateLimited>() {
        let retry_after = limited.wait_time().as_secs_f64().ceil().to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", retry_after)],
        )
            .into_response();
    }
    if error.downcast_ref::<CircuitOpen>().is_some() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// Serves `app` on an ephemeral loopback port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

fn client_key(request: &Request) -> String {
    request
        .headers()
        .get("x-client")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned()
}

#[tokio::test]
async fn per_client_rate_limit_answers_429_with_retry_after() {
    let limiter = KeyedRateLimiter::new(Quota::per_minute(2).unwrap());
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(refusal))
                .layer(
                    RateLimitLayer::keyed(limiter.clone(), client_key)
                        .when_limited(WhenLimited::Reject),
                ),
        );
    let base = serve(app).await;
    let http = reqwest::Client::new();
    let get = |client: &'static str| {
        http.get(format!("{base}/hello"))
            .header("x-client", client)
            .send()
    };
    for _ in 0..2 {
        let response = get("alice").await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "hello");
    }
    let refused = get("alice").await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "retry-after {retry_after}");
    // Another client has its own budget.
    assert_eq!(get("bob").await.unwrap().status(), 200);
    assert_eq!(limiter.stats().rejected, 1);
}

#[tokio::test]
async fn breaker_answers_503_once_the_handler_keeps_failing() {
    let config = CircuitBreakerConfig {
        minimum_calls: 4,
        window: SlidingWindow::Count(4),
        open_duration: Duration::from_secs(3600),
        ..CircuitBreakerConfig::default()
    };
    let breaker = CircuitBreaker::new("flaky-route", config).unwrap();
    // The handler fails as a service error (what an upstream call returns).
    let failing = tower::service_fn(|_: Request| async {
        Err::<Response, BoxError>("upstream refused".into())
    });
    let app = Router::new().route_service(
        "/flaky",
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(refusal))
            .layer(CircuitBreakerLayer::new(breaker.clone()))
            .service(failing),
    );
    let base = serve(app).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            http.get(format!("{base}/flaky"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [500, 500, 500, 500, 503, 503]);
    assert_eq!(breaker.stats().rejected, 2);
}

#[tokio::test]
async fn balancer_spreads_over_servers_and_ejects_a_dead_one() {
    let mut upstreams = Vec::new();
    for name in ["one", "two"] {
        upstreams.push(serve(Router::new().route("/", get(move || async move { name }))).await);
    }
    // A port that refuses connections: bound, then closed.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    upstreams.push(format!("http://{}", dead.local_addr().unwrap()));
    drop(dead);
    let config = LoadBalancerConfig {
        strategy: BalanceStrategy::RoundRobin,
        eject_after_failures: 2,
        ejection_cooldown: Duration::from_secs(3600),
    };
    let balancer = LoadBalancer::new(config, upstreams).unwrap();
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    for _ in 0..12 {
        // Pick, call, report: what an HTTP pool does per request.
        let guard = balancer.pick().unwrap();
        match http.get(guard.endpoint()).send().await {
            Ok(response) => {
                answers.push(response.text().await.unwrap());
                guard.success();
            }
            Err(_) => {
                answers.push("refused".to_owned());
                guard.failure();
            }
        }
    }
    assert_eq!(
        &answers[..6],
        ["one", "two", "refused", "one", "two", "refused"]
    );
    assert!(answers[6..].iter().all(|a| a != "refused"));
    let stats = balancer.stats();
    assert!(stats[2].ejected);
    assert_eq!(stats[2].picks, 2);
    assert_eq!(stats[0].picks + stats[1].picks, 10);
}
