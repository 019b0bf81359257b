//! `/ws` in the running binary: a client subscribes to `stats` and receives
//! snapshots of the rooms, or to `alerts` and receives alert events;
//! SIGTERM closes it with 1001.

mod support;

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use support::{Server, keel};
use tokio_tungstenite::tungstenite::Message;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(client: &mut Client) -> serde_json::Value {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), client.next())
            .await
            .expect("no message within 20 s")
            .expect("connection ended")
            .expect("read failed");
        if let Message::Text(text) = next {
            return serde_json::from_str(text.as_str()).expect("JSON message");
        }
    }
}

#[tokio::test]
async fn a_client_subscribed_to_stats_receives_snapshots() {
    let mut cmd = keel();
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    let mut server = Server::start(cmd);
    let url = format!("ws://{}/ws", server.addr);
    let (mut client, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect to /ws");
    client
        .send(Message::text(r#"{"type":"subscribe","topic":"stats"}"#))
        .await
        .unwrap();
    let ack = next_json(&mut client).await;
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(ack["topic"], "stats");

    let snapshot = next_json(&mut client).await;
    assert_eq!(snapshot["type"], "stats", "{snapshot}");
    assert_eq!(snapshot["topic"], "stats");
    let data = &snapshot["data"];
    assert_eq!(data["websocket"]["connections"], 1, "{snapshot}");
    assert!(data["cache"]["caches"].is_array(), "{snapshot}");
    assert!(data["uptime_seconds"].as_f64().is_some(), "{snapshot}");
    assert!(snapshot["timestamp"].as_u64().is_some(), "{snapshot}");

    // A second snapshot follows by itself.
    let next = next_json(&mut client).await;
    assert_eq!(next["type"], "stats");

    server.signal("TERM");
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(20), client.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1001);
    let exit = server.wait_exit(Duration::from_secs(20));
    assert!(exit.success(), "exit status {exit:?}, log {:?}", server.log);
}

#[tokio::test]
async fn plain_http_on_ws_is_refused_and_health_reports_the_hub() {
    let mut cmd = keel();
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    let server = Server::start(cmd);
    let response = reqwest::get(server.url("/ws")).await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let health: serde_json::Value = reqwest::get(server.url("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["dependencies"]["websocket"]["status"], "healthy",
        "{health}"
    );
}

#[tokio::test]
async fn an_alert_reaches_clients_subscribed_to_alerts() {
    // A rule that fires once `/health` has been requested (only after the
    // client subscribed, so the event cannot come before the subscription).
    let dir = std::env::temp_dir().join(format!("keel-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("keel.toml");
    std::fs::write(
        &config,
        r#"
[monitoring]
alert_interval = "100ms"
[[monitoring.alerts]]
name = "any-request"
metric = "keel_operation_calls_total"
labels = { operation = "http GET /health" }
above = 0
severity = "info"
"#,
    )
    .unwrap();
    let mut cmd = keel();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config);
    let server = Server::start(cmd);
    let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr))
        .await
        .expect("connect to /ws");
    client
        .send(Message::text(r#"{"type":"subscribe","topic":"alerts"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut client).await["type"], "subscribed");
    reqwest::get(server.url("/health")).await.unwrap();

    let alert = next_json(&mut client).await;
    assert_eq!(alert["type"], "alert", "{alert}");
    assert_eq!(alert["topic"], "alerts");
    assert_eq!(alert["data"]["name"], "any-request", "{alert}");
    assert_eq!(alert["data"]["state"], "firing", "{alert}");
}
