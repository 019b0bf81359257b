//! Servers on loopback and real tokio-tungstenite clients.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use keel_websocket::{WebSocketConfig, WebSocketManager, WebSocketMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Generous: tests never assert timing, they only refuse to hang.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Serves `manager`'s router on 127.0.0.1:0 and returns its address.
pub async fn serve(manager: &WebSocketManager) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app: axum::Router = manager.router();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

/// A manager for `config`, served on loopback.
pub async fn start(config: WebSocketConfig) -> (WebSocketManager, SocketAddr) {
    let manager = WebSocketManager::new(config).unwrap();
    let addr = serve(&manager).await;
    (manager, addr)
}

pub fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

pub async fn connect(addr: SocketAddr) -> Client {
    let (client, _) = tokio_tungstenite::connect_async(url(addr)).await.unwrap();
    client
}

/// A client whose socket has a 4 KiB receive buffer: if it never reads,
/// its connection fills after a few tens of KiB.
pub async fn connect_small_buffer(addr: SocketAddr) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4 * 1024).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (client, _) = tokio_tungstenite::client_async(url(addr), MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    client
}

/// Connects with extra headers; the HTTP status of a refusal, or 101.
pub async fn connect_status(target: &str, headers: &[(&str, &str)]) -> u16 {
    let mut request = target.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("connect failed: {e}"),
    }
}

/// The next text or binary message, skipping pings and pongs; panics on
/// close or after [`PATIENCE`].
pub async fn next_message(client: &mut Client) -> Message {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, client.next())
            .await
            .expect("no message within the patience window");
        match next {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(message)) => return message,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

pub async fn next_json(client: &mut Client) -> WebSocketMessage {
    let message = next_message(client).await;
    let text = message.to_text().expect("a text message");
    WebSocketMessage::parse(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Reads until the server closes; returns the close code and reason.
pub async fn close_of(client: &mut Client) -> Option<(u16, String)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, client.next())
            .await
            .expect("not closed within the patience window")
        {
            Some(Ok(Message::Close(frame))) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

pub async fn send_text(client: &mut Client, text: &str) {
    client.send(Message::text(text)).await.unwrap();
}

/// Subscribes and waits for the acknowledgement.
pub async fn subscribe(client: &mut Client, topic: &str) {
    send_text(
        client,
        &format!(r#"{{"type":"subscribe","topic":"{topic}"}}"#),
    )
    .await;
    let ack = next_json(client).await;
    assert_eq!(ack.kind, "subscribed");
    assert_eq!(ack.topic.as_deref(), Some(topic));
}

/// Polls `condition` until it holds; panics after [`PATIENCE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Raises the open-file limit as far as allowed (tests with many clients).
pub fn raise_fd_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}
