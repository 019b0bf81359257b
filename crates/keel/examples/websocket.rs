//! A WebSocket hub: clients connect to `/ws`, subscribe to topics, and
//! receive broadcasts and topic messages serialized once for all.
//!
//! ```text
//! cargo run -p keel --example websocket
//! ```

use futures_util::{SinkExt as _, StreamExt as _};
use keel::KeelConfig;
use keel::websocket::{WebSocketManager, WebSocketMessage};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = KeelConfig::from_toml(
        r#"
        [websocket]
        path = "/ws"
        ping_interval = "30s"
        "#,
    )?;
    let manager = WebSocketManager::new(config.websocket)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = manager.router();
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, service).await
    });

    // Two clients; one subscribes to `prices`.
    let url = format!("ws://{address}/ws");
    let (mut alice, _) = tokio_tungstenite::connect_async(&url).await?;
    let (mut bob, _) = tokio_tungstenite::connect_async(&url).await?;
    alice
        .send(Message::text(r#"{"type":"subscribe","topic":"prices"}"#))
        .await?;
    let ack = alice.next().await.ok_or("closed")??;
    println!("alice <- {}", ack.to_text()?);
    while manager.count() < 2 {
        tokio::task::yield_now().await;
    }

    // A notification for everyone...
    let notice = WebSocketMessage::new(
        "notification",
        json!({"title": "System notice", "content": "Task finished"}),
    );
    let reached = manager.broadcast(&notice)?;
    println!("broadcast reached {reached} clients");
    for (name, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        let frame = client.next().await.ok_or("closed")??;
        println!("{name} <- {}", frame.to_text()?);
    }

    // ...and a price tick for the topic's subscribers only.
    let tick = WebSocketMessage::new("tick", json!({"symbol": "AAPL", "price": 189.9}));
    let reached = manager.publish("prices", &tick)?;
    println!("publish to prices reached {reached} client(s)");
    let frame = alice.next().await.ok_or("closed")??;
    println!("alice <- {}", frame.to_text()?);
    assert_eq!(reached, 1);

    // Shutdown sends every client a close frame and waits for them.
    let (closed, _, _) = tokio::join!(
        manager.shutdown(std::time::Duration::from_secs(5)),
        alice.next(),
        bob.next()
    );
    assert!(closed);
    Ok(())
}
