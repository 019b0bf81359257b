//! One client's connection: a reader and a writer polled together in one
//! task, so the connection owns both and both end with it.
//!
//! The reader handles the client's frames (commands, application messages,
//! limits); the writer drains the client's [`Outbox`](crate::outbox::Outbox)
//! into the socket, sends heartbeats and close frames. Either side ending
//! removes the client from the registry at once.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::client::Client;
use crate::config::MalformedPolicy;
use crate::hub::{Counters, Hub};
use crate::manager::{Incoming, Inner, WebSocketManager};
use crate::message::{ClientMessage, ack_frame, error_frame, parse_client_message};
use crate::outbox::close_frame;
use crate::registry::Slot;

/// How long a close frame (or the final flush) may take to write.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves one upgraded socket until it closes. The client is registered
/// for the duration; `slot` is released when this returns.
pub(crate) async fn serve<S>(
    hub: Arc<Hub>,
    manager: Weak<Inner>,
    client: Arc<Client>,
    socket: WebSocketStream<S>,
    slot: Slot,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = client.id;
    hub.registry.insert(Arc::clone(&client));
    // A shutdown that began before the insert did not see this client.
    if hub.shutdown.is_cancelled() {
        client
            .outbox
            .close(Some(close_frame(CloseCode::Away, "server shutting down")));
    }
    let _leave = Leave {
        hub: &hub,
        client: &client,
        _slot: slot,
    };
    tracing::debug!(client = %id, remote = %client.remote, "websocket client connected");
    let (mut sink, mut stream) = socket.split();
    let reader = read_loop(&mut stream, &hub, &manager, &client);
    let writer = write_loop(&mut sink, &hub, &client);
    tokio::pin!(reader, writer);
    tokio::select! {
        () = &mut writer => {}
        () = &mut reader => {
            // The peer closed or broke the connection, or sent something
            // that closes it: leave the registry now, then let the writer
            // send the close frame (or flush the reply to the peer's close).
            hub.registry.remove(id);
            client.outbox.close(None);
            let _ = timeout(CLOSE_WRITE_TIMEOUT * 2, writer).await;
        }
    }
}

/// Removes the client from the registry when the connection ends, however
/// it ends.
struct Leave<'a> {
    hub: &'a Hub,
    client: &'a Client,
    _slot: Slot,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.hub.registry.remove(self.client.id);
        self.client.outbox.close(None);
        Counters::add(&self.hub.counters.disconnected, 1);
        tracing::debug!(client = %self.client.id, "websocket client left");
    }
}

async fn read_loop<S>(
    stream: &mut SplitStream<WebSocketStream<S>>,
    hub: &Hub,
    manager: &Weak<Inner>,
    client: &Arc<Client>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(next) = stream.next().await {
        let message = match next {
            Ok(message) => message,
            Err(error) => {
                let (code, reason, counter) = match &error {
                    WsError::Capacity(CapacityError::MessageTooLong { .. }) => (
                        CloseCode::Size,
                        "message too big",
                        Some(&hub.counters.oversized),
                    ),
                    WsError::Capacity(_) => (
                        CloseCode::Size,
                        "frame too big",
                        Some(&hub.counters.oversized),
                    ),
                    WsError::Utf8(_) => (
                        CloseCode::Invalid,
                        "invalid utf-8",
                        Some(&hub.counters.malformed),
                    ),
                    WsError::Protocol(_) => (CloseCode::Protocol, "protocol error", None),
                    _ => {
                        tracing::debug!(client = %client.id, %error, "websocket read failed");
                        return;
                    }
                };
                if let Some(counter) = counter {
                    Counters::add(counter, 1);
                }
                tracing::debug!(client = %client.id, %error, "closing websocket client");
                client.outbox.close(Some(close_frame(code, reason)));
                return;
            }
        };
        client.seen();
        match message {
            Message::Text(text) => {
                count_received(hub, client);
                if !handle_text(hub, manager, client, text.as_str()) {
                    return;
                }
            }
            Message::Binary(bytes) => {
                count_received(hub, client);
                call_hook(manager, client, Incoming::Binary(bytes));
            }
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

fn count_received(hub: &Hub, client: &Client) {
    Counters::add(&client.received, 1);
    Counters::add(&hub.counters.received, 1);
}

/// Handles one text message; false when the connection must close.
fn handle_text(hub: &Hub, manager: &Weak<Inner>, client: &Arc<Client>, text: &str) -> bool {
    match parse_client_message(text) {
        Ok(ClientMessage::Subscribe(topic)) => {
            let answer = match hub
                .registry
                .subscribe(client, &topic, hub.settings.max_topics)
            {
                Ok(_) => ack_frame("subscribed", &topic),
                Err(error) => error_frame(&crate::MessageError::Malformed(error.to_string())),
            };
            hub.push(client, answer.0);
        }
        Ok(ClientMessage::Unsubscribe(topic)) => {
            hub.registry.unsubscribe(client, &topic);
            hub.push(client, ack_frame("unsubscribed", &topic).0);
        }
        Ok(ClientMessage::Ping) => {
            hub.push(
                client,
                Message::Text(Utf8Bytes::from_static(r#"{"type":"pong"}"#)),
            );
        }
        Ok(ClientMessage::Other(message)) => {
            call_hook(manager, client, Incoming::Message(message));
        }
        Err(error) => {
            Counters::add(&hub.counters.malformed, 1);
            match hub.settings.malformed {
                MalformedPolicy::Error => {
                    hub.push(client, error_frame(&error).0);
                }
                MalformedPolicy::Close => {
                    client
                        .outbox
                        .close(Some(close_frame(CloseCode::Invalid, "malformed message")));
                    return false;
                }
            }
        }
    }
    true
}

fn call_hook(manager: &Weak<Inner>, client: &Client, incoming: Incoming) {
    let Some(inner) = manager.upgrade() else {
        return;
    };
    if let Some(hook) = inner.on_message.clone() {
        let manager = WebSocketManager::from_inner(inner);
        hook(&manager, client.id, incoming);
    }
}

async fn write_loop<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    hub: &Hub,
    client: &Client,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let settings = &hub.settings;
    let mut batch: VecDeque<Message> = VecDeque::new();
    let heartbeat = sleep(settings.ping_interval);
    tokio::pin!(heartbeat);
    let mut ping_sent: Option<Instant> = None;
    loop {
        tokio::select! {
            // The heartbeat first: a client that always has messages
            // waiting must still be pinged.
            biased;
            () = &mut heartbeat => {
                let now = Instant::now();
                match ping_sent.take() {
                    Some(sent) if client.last_seen_instant() < sent.into_std() => {
                        Counters::add(&hub.counters.pong_timeouts, 1);
                        tracing::debug!(client = %client.id, "no pong within the timeout; closing");
                        client.outbox.close(Some(close_frame(CloseCode::Away, "pong timeout")));
                    }
                    Some(sent) => {
                        heartbeat.as_mut().reset((sent + settings.ping_interval).max(now));
                        continue;
                    }
                    None => {
                        let ping = sink.send(Message::Ping(Bytes::new()));
                        if !matches!(timeout(settings.pong_timeout, ping).await, Ok(Ok(()))) {
                            return;
                        }
                        ping_sent = Some(now);
                        heartbeat.as_mut().reset(now + settings.pong_timeout);
                        continue;
                    }
                }
            }
            () = client.outbox.wait() => {}
        }
        if let Err(close) = client.outbox.take(&mut batch) {
            // Leave the registry before the close frame, whose write may
            // wait on a client that does not read.
            hub.registry.remove(client.id);
            let last = async {
                match close.frame {
                    Some(frame) => sink.send(Message::Close(Some(frame))).await,
                    None => sink.flush().await,
                }
            };
            let _ = timeout(CLOSE_WRITE_TIMEOUT, last).await;
            return;
        }
        if batch.is_empty() {
            continue;
        }
        let n = batch.len() as u64;
        let write = async {
            while let Some(message) = batch.pop_front() {
                sink.feed(message).await?;
            }
            sink.flush().await
        };
        tokio::pin!(write);
        // Most writes finish at once (the socket has room); only a write
        // that has to wait arms a timer.
        let written = match write.as_mut().now_or_never() {
            Some(written) => written,
            None => tokio::select! {
                biased;
                written = write => written,
                // A close request (shutdown included) must not wait behind
                // a write that a client that does not read keeps blocked.
                () = client.outbox.wait_closing() => {
                    client.outbox.wake();
                    continue;
                }
                () = sleep(settings.pong_timeout) => {
                    tracing::debug!(client = %client.id, "write did not finish within pong_timeout; dropping the connection");
                    Counters::add(&hub.counters.pong_timeouts, 1);
                    return;
                }
            },
        };
        if written.is_err() {
            return;
        }
        Counters::add(&client.sent, n);
        Counters::add(&hub.counters.sent, n);
    }
}
