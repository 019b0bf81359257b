//! WebSocket fan-out for async Rust services: a registry of clients,
//! topics, broadcast and direct send, heartbeats, a policy for slow
//! clients, limits and auth before the upgrade, and (feature `redis`)
//! fan-out across instances through Redis pub/sub.
//!
//! [`WebSocketManager`] serves clients through axum ([`WebSocketManager::router`]
//! or [`WebSocketManager::upgrade`] in any handler) or on any socket already
//! upgraded elsewhere ([`WebSocketManager::serve_socket`]). Each connected
//! client is a [`ClientConnection`] in its registry. Messages are
//! [`WebSocketMessage`]s, JSON objects `{"type", "data", "topic", "id",
//! "timestamp"}`; binary messages pass through untouched. Clients manage
//! their own topics with `{"type":"subscribe","topic":"prices"}` and
//! `{"type":"unsubscribe",...}` (answered `subscribed` / `unsubscribed`),
//! and `{"type":"ping"}` is answered `{"type":"pong"}`; anything else goes
//! to the [`WebSocketManagerBuilder::on_message`] hook.
//!
//! # Example
//!
//! ```
//! use keel_websocket::{WebSocketConfig, WebSocketManager, WebSocketMessage};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = WebSocketManager::new(WebSocketConfig::default())?;
//!
//! // Serve `/ws` (the configured path) next to the application's routes.
//! let app: axum::Router = manager.router();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let address = listener.local_addr()?;
//! tokio::spawn(async move {
//!     let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
//!     axum::serve(listener, service).await
//! });
//!
//! // A client subscribes to a topic...
//! use futures_util::{SinkExt as _, StreamExt as _};
//! use tokio_tungstenite::tungstenite::Message;
//! let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws")).await?;
//! client
//!     .send(Message::text(r#"{"type":"subscribe","topic":"prices"}"#))
//!     .await?;
//! let ack = client.next().await.ok_or("closed")??;
//! assert_eq!(ack.to_text()?, r#"{"type":"subscribed","topic":"prices"}"#);
//!
//! // ...and receives what is published to it, serialized once for all.
//! let delivered = manager.publish("prices", &WebSocketMessage::new("tick", json!({"eur": 1.08})))?;
//! assert_eq!(delivered, 1);
//! let tick = client.next().await.ok_or("closed")??;
//! let tick = WebSocketMessage::parse(tick.to_text()?)?;
//! assert_eq!((tick.kind.as_str(), tick.topic.as_deref()), ("tick", Some("prices")));
//!
//! // Shutdown sends every client a close frame (1001) and waits for them.
//! assert!(manager.shutdown(std::time::Duration::from_secs(5)).await);
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redis` | no | `[websocket.redis]`: broadcasts and publishes reach the clients of every instance sharing the Redis |
//!
//! # Guarantees
//!
//! - **Delivery is at most once per client, in order per sender.** A
//!   broadcast or publish is serialized once and queued for each
//!   recipient by reference ([`Frame`]); it never waits on any client.
//! - **Messages can be dropped**: from a full client queue (`slow_client =
//!   "drop_oldest"` drops the oldest, counted per client and in
//!   [`WebSocketStats::dropped`]; `"disconnect"` closes that client with
//!   1008 `outbound queue full`), when a client disconnects with messages
//!   queued, and for other instances while Redis is down or the publish
//!   queue is full ([`WebSocketStats::fanout_failed`]). Nothing is
//!   retried or replayed.
//! - **Across instances** each message reaches each client once: an
//!   instance delivers to its own clients directly and ignores its own
//!   messages coming back from Redis. The fan-out reconnects by itself;
//!   messages published meanwhile are not replayed.
//! - **Dead clients leave at once**: a closed or broken connection leaves
//!   the registry (and its topics) as soon as it is noticed; a client that
//!   answers no ping within `pong_timeout`, or whose socket does not take
//!   a write within it, is closed and removed.
//! - **Bad input stays with its sender**: a malformed message gets an
//!   `error` message back (or closes that client with 1007, configurable),
//!   a message over `max_message_size` closes that client with 1009,
//!   invalid UTF-8 with 1007; other clients are not touched.
//! - **Everything has an owner**: connection tasks belong to the manager;
//!   [`WebSocketManager::shutdown`] (or dropping the last handle) sends
//!   close frames (1001) and ends them, and the fan-out tasks with them.
//!
//! [`send_to`](WebSocketManager::send_to), [`close`](WebSocketManager::close),
//! [`clients`](WebSocketManager::clients) and [`count`](WebSocketManager::count)
//! concern this instance's clients only.

#![forbid(unsafe_code)]

mod client;
mod config;
mod connection;
mod error;
#[cfg(feature = "redis")]
mod fanout;
mod hub;
mod manager;
mod message;
mod outbox;
mod registry;
mod upgrade;

pub use client::{ClientConnection, ClientId, ClientMetadata};
pub use config::{AuthConfig, FanoutConfig, MalformedPolicy, SlowClientPolicy, WebSocketConfig};
pub use error::{MessageError, Rejection, WebSocketError};
pub use manager::{
    AuthHook, AuthRequest, Incoming, MessageHook, WebSocketManager, WebSocketManagerBuilder,
    WebSocketStats,
};
pub use message::{Frame, MAX_TOPIC_LEN, WebSocketMessage};

// The field error of every room (`keel-core`), what `validate()` returns.
pub use keel_core::InvalidField;

pub use tokio_tungstenite;
