//! Two `keel` processes sharing one Redis, as two instances of a service:
//! an invalidation through one's admin API reaches the other, a WebSocket
//! message published on one reaches a client of the other, and both ride
//! out Redis being killed and come back when it returns.

mod support;

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use keel_test_support::OwnRedis;
use support::{Server, keel, scratch_dir};
use tokio_tungstenite::tungstenite::Message;

fn config(redis: &str) -> std::path::PathBuf {
    let path = scratch_dir().join("keel.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"

[cache.redis]
url = "{redis}"
command_timeout = "200ms"
connect_timeout = "200ms"
probe_interval = "100ms"

[websocket.redis]
url = "{redis}"

[pools.db.mem]
url = "sqlite::memory:"
max_connections = 2

[[routes]]
path = "/api/echo/{{id}}"
pool = "mem"
sql = "SELECT ? AS id"
ttl = "5m"
"#
        ),
    )
    .unwrap();
    path
}

fn start(config: &std::path::Path) -> Server {
    let mut cmd = keel();
    cmd.arg("--config").arg(config);
    Server::start(cmd)
}

async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn x_cache(http: &reqwest::Client, server: &Server, path: &str) -> (u16, String) {
    let r = http.get(server.url(path)).send().await.unwrap();
    let tag = r
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (r.status().as_u16(), tag)
}

async fn health(http: &reqwest::Client, server: &Server) -> String {
    match http.get(server.url("/health")).send().await {
        Ok(r) => r
            .json::<serde_json::Value>()
            .await
            .map(|v| v["status"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_invalidations_and_websocket_messages_and_survive_a_redis_restart() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let file = config(&redis.url());
    let (a, b) = (start(&file), start(&file));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    eventually("both healthy", async || {
        health(&http, &a).await == "healthy" && health(&http, &b).await == "healthy"
    })
    .await;

    // B caches an answer; an invalidation through A's admin API drops it
    // on B too.
    assert_eq!(
        x_cache(&http, &b, "/api/echo/7").await,
        (200, "MISS".into())
    );
    assert_eq!(x_cache(&http, &b, "/api/echo/7").await, (200, "HIT".into()));
    let deleted = http
        .delete(a.url("/admin/caches/route-0/api/echo/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    eventually("B drops its copy", async || {
        x_cache(&http, &b, "/api/echo/7").await.1 == "MISS"
    })
    .await;

    // A WebSocket client of B gets what is published through A.
    let url = format!("ws://{}/ws", b.addr);
    let (mut client, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    client
        .send(Message::text(r#"{"type":"subscribe","topic":"news"}"#))
        .await
        .unwrap();
    let ack = client.next().await.unwrap().unwrap();
    assert!(
        ack.to_text().unwrap_or_default().contains("subscribed"),
        "{ack:?}"
    );
    let published = http
        .post(a.url("/admin/ws/news"))
        .json(&serde_json::json!({"headline": "across instances"}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match client.next().await {
                Some(Ok(Message::Text(text))) if text.contains("across instances") => {
                    break text.to_string();
                }
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("the message crosses instances");
    assert!(got.contains("\"topic\":\"news\""), "{got}");

    // Redis is killed: both degrade and keep answering; it comes back and
    // both recover by themselves.
    redis.stop();
    eventually("both degraded", async || {
        health(&http, &a).await == "degraded" && health(&http, &b).await == "degraded"
    })
    .await;
    assert_eq!(x_cache(&http, &a, "/api/echo/8").await.0, 200);
    assert_eq!(x_cache(&http, &b, "/api/echo/7").await.0, 200);
    redis.restart();
    eventually("both healthy again", async || {
        health(&http, &a).await == "healthy" && health(&http, &b).await == "healthy"
    })
    .await;
    assert_eq!(
        x_cache(&http, &b, "/api/echo/9").await,
        (200, "MISS".into())
    );
}
