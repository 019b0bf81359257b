//! [`WebSocketManager`]: the registry of clients, topics, delivery, and
//! the owner of every connection and background task.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::http::HeaderMap;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig as FramingConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::{Client, ClientConnection, ClientId, ClientMetadata};
use crate::config::WebSocketConfig;
use crate::error::{Rejection, WebSocketError};
use crate::hub::{Counters, Hub, Settings};
use crate::message::{Frame, WebSocketMessage, check_topic};
use crate::outbox::{Outbox, close_frame};
use crate::registry::{Registry, Slot};

/// What a client sent that is the application's to handle: a well-formed
/// JSON message of a type the manager does not handle itself, or a binary
/// message, passed through untouched.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Incoming {
    /// A JSON message.
    Message(WebSocketMessage),
    /// A binary message.
    Binary(Bytes),
}

/// What an auth hook sees of an upgrade request.
#[derive(Debug)]
#[non_exhaustive]
pub struct AuthRequest<'a> {
    /// The token from the configured header (without `Bearer `) or query
    /// parameter, if either carries one.
    pub token: Option<&'a str>,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The peer's address.
    pub remote_addr: SocketAddr,
}

/// Decides whether an upgrade request may connect: `Some(metadata)` to
/// accept (the metadata is attached to the client), `None` to answer 401.
pub type AuthHook = Arc<dyn Fn(&AuthRequest<'_>) -> Option<ClientMetadata> + Send + Sync>;

/// Receives what clients send that the manager does not handle itself.
/// Called on the client's connection task: it must not block.
pub type MessageHook = Arc<dyn Fn(&WebSocketManager, ClientId, Incoming) + Send + Sync>;

/// Counters of a [`WebSocketManager`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WebSocketStats {
    /// Clients connected now.
    pub connections: usize,
    /// Topics with at least one subscriber now.
    pub topics: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Upgrade requests refused (origin, auth, limits).
    pub rejected: u64,
    /// Connections ended since start.
    pub disconnected: u64,
    /// Messages written to clients.
    pub sent: u64,
    /// Messages received from clients.
    pub received: u64,
    /// Messages dropped from full client queues (`drop_oldest`).
    pub dropped: u64,
    /// Clients closed because their queue was full (`disconnect`).
    pub slow_disconnects: u64,
    /// Clients closed for not answering a ping, or not taking a write, in
    /// `pong_timeout`.
    pub pong_timeouts: u64,
    /// Malformed client messages.
    pub malformed: u64,
    /// Client messages over `max_message_size`.
    pub oversized: u64,
    /// Redis fan-out: messages published to other instances.
    pub fanout_published: u64,
    /// Redis fan-out: messages received from other instances.
    pub fanout_received: u64,
    /// Redis fan-out: messages that reached this instance only (Redis down
    /// or the publish queue full).
    pub fanout_failed: u64,
}

/// Builds a [`WebSocketManager`] with hooks.
pub struct WebSocketManagerBuilder {
    config: WebSocketConfig,
    auth: Option<AuthHook>,
    on_message: Option<MessageHook>,
}

impl fmt::Debug for WebSocketManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketManagerBuilder")
            .field("config", &self.config)
            .field("auth", &self.auth.is_some())
            .field("on_message", &self.on_message.is_some())
            .finish()
    }
}

impl WebSocketManagerBuilder {
    /// Decides who may connect, in place of `[websocket.auth] tokens`.
    pub fn auth(
        mut self,
        hook: impl Fn(&AuthRequest<'_>) -> Option<ClientMetadata> + Send + Sync + 'static,
    ) -> Self {
        self.auth = Some(Arc::new(hook));
        self
    }

    /// Receives client messages the manager does not handle itself.
    pub fn on_message(
        mut self,
        hook: impl Fn(&WebSocketManager, ClientId, Incoming) + Send + Sync + 'static,
    ) -> Self {
        self.on_message = Some(Arc::new(hook));
        self
    }

    /// Builds the manager. With `[websocket.redis]`, starts the fan-out
    /// tasks, so it must run inside a tokio runtime; a Redis that is down
    /// is not an error: the link comes up when Redis does.
    pub fn build(self) -> Result<WebSocketManager, WebSocketError> {
        let config = self.config;
        config.validate().map_err(|problems| {
            WebSocketError::Config(
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let hub = Arc::new(Hub {
            registry: Arc::new(Registry::default()),
            counters: Counters::default(),
            settings: Settings {
                ping_interval: config.ping_interval,
                pong_timeout: config.pong_timeout,
                max_topics: config.max_topics_per_client,
                malformed: config.malformed,
            },
            shutdown: CancellationToken::new(),
        });
        #[cfg(feature = "redis")]
        let fanout = match &config.redis {
            Some(fanout) => {
                let topology = keel_core::topology::Topology::from_fields(
                    &fanout.url,
                    &fanout.nodes,
                    &fanout.sentinels,
                    &fanout.service_name,
                )
                .map_err(|e| {
                    WebSocketError::Config(format!("websocket.redis.{}: {}", e.field, e.reason))
                })?;
                Some(crate::fanout::Fanout::start(
                    fanout,
                    topology,
                    Arc::clone(&hub),
                ))
            }
            None => None,
        };
        #[cfg(not(feature = "redis"))]
        if config.redis.is_some() {
            return Err(WebSocketError::RedisUnavailable);
        }
        let framing = FramingConfig::default()
            .read_buffer_size(4 * 1024)
            .write_buffer_size(16 * 1024)
            .max_write_buffer_size(usize::MAX)
            .max_message_size(Some(config.max_message_size))
            .max_frame_size(Some(config.max_message_size));
        Ok(WebSocketManager {
            inner: Arc::new(Inner {
                hub,
                framing,
                next_id: AtomicU64::new(1),
                auth: self.auth,
                on_message: self.on_message,
                tracker: TaskTracker::new(),
                #[cfg(feature = "redis")]
                fanout,
                config,
            }),
        })
    }
}

/// The hub of WebSocket clients: registry, topics, broadcast, direct send,
/// heartbeats, the slow-client policy and (feature `redis`) fan-out across
/// instances.
///
/// A cheap, cloneable handle. Serve clients through [`Self::router`] (an
/// axum route at `[websocket] path`), [`Self::upgrade`] (any axum handler)
/// or [`Self::serve_socket`] (a socket upgraded elsewhere). Dropping the
/// last handle closes every client (code 1001) and stops the background
/// tasks; [`Self::shutdown`] does the same and waits for them.
#[derive(Clone)]
pub struct WebSocketManager {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) hub: Arc<Hub>,
    pub(crate) config: WebSocketConfig,
    pub(crate) framing: FramingConfig,
    next_id: AtomicU64,
    pub(crate) auth: Option<AuthHook>,
    pub(crate) on_message: Option<MessageHook>,
    pub(crate) tracker: TaskTracker,
    #[cfg(feature = "redis")]
    fanout: Option<crate::fanout::Fanout>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        close_all(&self.hub);
    }
}

impl fmt::Debug for WebSocketManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketManager")
            .field("path", &self.inner.config.path)
            .field("connections", &self.count())
            .finish_non_exhaustive()
    }
}

/// Asks every client to close with 1001 and refuses new ones.
fn close_all(hub: &Hub) {
    hub.shutdown.cancel();
    for client in hub.registry.clients() {
        client
            .outbox
            .close(Some(close_frame(CloseCode::Away, "server shutting down")));
    }
}

#[derive(Serialize)]
struct View<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Value::is_null")]
    data: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
}

impl WebSocketManager {
    /// A manager for `config` without hooks; see [`Self::builder`].
    pub fn new(config: WebSocketConfig) -> Result<Self, WebSocketError> {
        Self::builder(config).build()
    }

    /// A builder, to add an auth hook or a message hook.
    pub fn builder(config: WebSocketConfig) -> WebSocketManagerBuilder {
        WebSocketManagerBuilder {
            config,
            auth: None,
            on_message: None,
        }
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &WebSocketConfig {
        &self.inner.config
    }

    /// The framing settings (buffer sizes, message and frame limits) its
    /// connections use; hand them to a handshake made elsewhere before
    /// [`Self::serve_socket`].
    pub fn framing_config(&self) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        self.inner.framing
    }

    /// Sends `message` to every client of every instance. It is serialized
    /// once; each client's queue takes a reference to the same bytes, and
    /// no client is waited on. Returns how many clients of this instance
    /// took it.
    pub fn broadcast(&self, message: &WebSocketMessage) -> Result<usize, WebSocketError> {
        self.broadcast_frame(serialize(message, None)?)
    }

    /// [`Self::broadcast`] of an already serialized frame (text or binary).
    pub fn broadcast_frame(&self, frame: Frame) -> Result<usize, WebSocketError> {
        self.check_open()?;
        let delivered = self.inner.hub.deliver_all(&frame.0);
        #[cfg(feature = "redis")]
        if let Some(fanout) = &self.inner.fanout {
            fanout.publish(None, frame);
        }
        Ok(delivered)
    }

    /// Sends `message` to the subscribers of `topic` on every instance,
    /// with its `topic` field set to `topic`. Returns how many clients of
    /// this instance took it.
    pub fn publish(
        &self,
        topic: &str,
        message: &WebSocketMessage,
    ) -> Result<usize, WebSocketError> {
        check_topic(topic).map_err(WebSocketError::InvalidTopic)?;
        self.publish_frame(topic, serialize(message, Some(topic))?)
    }

    /// [`Self::publish`] of an already serialized frame, sent as it is.
    pub fn publish_frame(&self, topic: &str, frame: Frame) -> Result<usize, WebSocketError> {
        check_topic(topic).map_err(WebSocketError::InvalidTopic)?;
        self.check_open()?;
        let delivered = self.inner.hub.deliver_topic(topic, &frame.0);
        #[cfg(feature = "redis")]
        if let Some(fanout) = &self.inner.fanout {
            fanout.publish(Some(topic), frame);
        }
        Ok(delivered)
    }

    /// Sends `message` to one client of this instance.
    pub fn send_to(&self, id: ClientId, message: &WebSocketMessage) -> Result<(), WebSocketError> {
        self.send_frame(id, serialize(message, None)?)
    }

    /// [`Self::send_to`] of an already serialized frame.
    pub fn send_frame(&self, id: ClientId, frame: Frame) -> Result<(), WebSocketError> {
        self.check_open()?;
        let client = self.client_state(id)?;
        if self.inner.hub.push(&client, frame.0) {
            Ok(())
        } else {
            Err(WebSocketError::Closing(id))
        }
    }

    /// Subscribes a client to `topic` from the server side; false if it
    /// already was.
    pub fn subscribe(&self, id: ClientId, topic: &str) -> Result<bool, WebSocketError> {
        check_topic(topic).map_err(WebSocketError::InvalidTopic)?;
        let client = self.client_state(id)?;
        self.inner
            .hub
            .registry
            .subscribe(&client, topic, self.inner.config.max_topics_per_client)
    }

    /// Unsubscribes a client from `topic`; false if it was not subscribed.
    pub fn unsubscribe(&self, id: ClientId, topic: &str) -> Result<bool, WebSocketError> {
        let client = self.client_state(id)?;
        Ok(self.inner.hub.registry.unsubscribe(&client, topic))
    }

    /// Closes a client with code 1000 and `reason` (at most 123 bytes are
    /// sent). Messages still queued for it are discarded; it leaves the
    /// registry as soon as its connection task takes the request, before
    /// the close frame is written.
    pub fn close(&self, id: ClientId, reason: &str) -> Result<(), WebSocketError> {
        let client = self.client_state(id)?;
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        client
            .outbox
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: reason[..end].into(),
            }));
        Ok(())
    }

    /// Every client of this instance.
    pub fn clients(&self) -> Vec<ClientConnection> {
        let mut clients: Vec<ClientConnection> = self
            .inner
            .hub
            .registry
            .clients()
            .iter()
            .map(|c| c.snapshot())
            .collect();
        clients.sort_by_key(|c| c.id);
        clients
    }

    /// One client of this instance.
    pub fn client(&self, id: ClientId) -> Option<ClientConnection> {
        self.inner.hub.registry.get(id).map(|c| c.snapshot())
    }

    /// Clients connected to this instance.
    pub fn count(&self) -> usize {
        self.inner.hub.registry.len()
    }

    /// Subscribers of `topic` on this instance.
    pub fn topic_count(&self, topic: &str) -> usize {
        self.inner.hub.registry.topic_len(topic)
    }

    /// Publishes the counters through the `metrics` facade as the
    /// `keel_websocket_*` families: each counter set to its total, each
    /// gauge to its value now. Messages are counted by the hub itself;
    /// nothing reaches the facade per message.
    pub fn publish_metrics(&self) {
        use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
        describe_gauge!(
            "keel_websocket_connections",
            Unit::Count,
            "Clients connected now."
        );
        describe_gauge!(
            "keel_websocket_topics",
            Unit::Count,
            "Topics with at least one subscriber now."
        );
        describe_counter!(
            "keel_websocket_connections_total",
            "Upgrade requests by outcome (accepted, rejected) and connections ended (disconnected)."
        );
        describe_counter!(
            "keel_websocket_messages_total",
            "Messages by outcome: sent, received, dropped, malformed, oversized."
        );
        describe_counter!(
            "keel_websocket_closed_total",
            "Clients closed by the server, by reason (slow, pong_timeout)."
        );
        describe_counter!(
            "keel_websocket_fanout_total",
            "Redis fan-out messages (published, received, failed)."
        );
        let s = self.stats();
        gauge!("keel_websocket_connections").set(s.connections as f64);
        gauge!("keel_websocket_topics").set(s.topics as f64);
        for (outcome, n) in [
            ("accepted", s.accepted),
            ("rejected", s.rejected),
            ("disconnected", s.disconnected),
        ] {
            counter!("keel_websocket_connections_total", "outcome" => outcome).absolute(n);
        }
        for (outcome, n) in [
            ("sent", s.sent),
            ("received", s.received),
            ("dropped", s.dropped),
            ("malformed", s.malformed),
            ("oversized", s.oversized),
        ] {
            counter!("keel_websocket_messages_total", "outcome" => outcome).absolute(n);
        }
        counter!("keel_websocket_closed_total", "reason" => "slow").absolute(s.slow_disconnects);
        counter!("keel_websocket_closed_total", "reason" => "pong_timeout")
            .absolute(s.pong_timeouts);
        for (outcome, n) in [
            ("published", s.fanout_published),
            ("received", s.fanout_received),
            ("failed", s.fanout_failed),
        ] {
            counter!("keel_websocket_fanout_total", "outcome" => outcome).absolute(n);
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> WebSocketStats {
        let hub = &self.inner.hub;
        let c = &hub.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        #[allow(unused_mut)]
        let mut stats = WebSocketStats {
            connections: hub.registry.len(),
            topics: hub.registry.topic_count(),
            accepted: load(&c.accepted),
            rejected: load(&c.rejected),
            disconnected: load(&c.disconnected),
            sent: load(&c.sent),
            received: load(&c.received),
            dropped: load(&c.dropped),
            slow_disconnects: load(&c.slow_disconnects),
            pong_timeouts: load(&c.pong_timeouts),
            malformed: load(&c.malformed),
            oversized: load(&c.oversized),
            ..WebSocketStats::default()
        };
        #[cfg(feature = "redis")]
        if let Some(fanout) = &self.inner.fanout {
            fanout.fill(&mut stats);
        }
        stats
    }

    /// Whether the Redis fan-out's subscription is up (false without
    /// `[websocket.redis]`).
    pub fn fanout_connected(&self) -> bool {
        #[cfg(feature = "redis")]
        if let Some(fanout) = &self.inner.fanout {
            return fanout.is_connected();
        }
        false
    }

    /// Waits until the Redis fan-out's subscription is up, at most
    /// `timeout`; false without `[websocket.redis]` or on timeout.
    pub async fn wait_fanout_connected(&self, timeout: Duration) -> bool {
        #[cfg(feature = "redis")]
        if let Some(fanout) = &self.inner.fanout {
            return fanout.wait_connected(timeout).await;
        }
        let _ = timeout;
        false
    }

    /// Whether [`Self::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.hub.shutdown.is_cancelled()
    }

    /// Refuses new clients, sends every client a close frame (1001, `server
    /// shutting down`), stops the fan-out, and waits up to `timeout` for
    /// the connections to end. Returns whether they all did.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        close_all(&self.inner.hub);
        #[cfg(feature = "redis")]
        if let Some(fanout) = &self.inner.fanout {
            fanout.stop();
        }
        self.inner.tracker.close();
        tokio::time::timeout(timeout, self.inner.tracker.wait())
            .await
            .is_ok()
    }

    /// Serves a socket already upgraded to WebSocket (by any server) as a
    /// client of this manager, until it closes. The connection limits
    /// apply; the framing limits are the caller's (see
    /// [`Self::framing_config`]).
    pub async fn serve_socket<S>(
        &self,
        socket: WebSocketStream<S>,
        remote_addr: SocketAddr,
        metadata: ClientMetadata,
    ) -> Result<(), WebSocketError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let slot = self.reserve(Some(remote_addr)).map_err(|rejection| {
            self.count_rejection();
            WebSocketError::Rejected(rejection)
        })?;
        let prepared = self.prepare(remote_addr, metadata, slot);
        self.inner
            .tracker
            .track_future(prepared.serve(socket))
            .await;
        Ok(())
    }

    /// Takes a connection slot for a client from `remote` (`None`: an
    /// address the server did not pass on, to which the per-address limit
    /// cannot apply).
    pub(crate) fn reserve(&self, remote: Option<SocketAddr>) -> Result<Slot, Rejection> {
        let inner = &self.inner;
        if inner.hub.shutdown.is_cancelled() {
            return Err(Rejection::ShuttingDown);
        }
        let per_ip = remote.and(inner.config.max_connections_per_ip);
        let ip = remote.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |r| r.ip());
        inner
            .hub
            .registry
            .reserve(ip, inner.config.max_connections, per_ip)
    }

    pub(crate) fn count_rejection(&self) {
        Counters::add(&self.inner.hub.counters.rejected, 1);
    }

    /// The client-to-be of a connection from `remote`, with what its task
    /// needs; it holds the manager weakly, so a connection does not keep
    /// the manager alive.
    pub(crate) fn prepare(
        &self,
        remote: SocketAddr,
        metadata: ClientMetadata,
        slot: Slot,
    ) -> Prepared {
        let inner = &self.inner;
        let id = ClientId(inner.next_id.fetch_add(1, Ordering::Relaxed));
        let outbox = Outbox::new(inner.config.queue_size, inner.config.slow_client);
        Counters::add(&inner.hub.counters.accepted, 1);
        Prepared {
            hub: Arc::clone(&inner.hub),
            manager: Arc::downgrade(inner),
            client: Arc::new(Client::new(id, remote, metadata, outbox)),
            slot,
        }
    }

    fn client_state(&self, id: ClientId) -> Result<Arc<Client>, WebSocketError> {
        self.inner
            .hub
            .registry
            .get(id)
            .ok_or(WebSocketError::UnknownClient(id))
    }

    fn check_open(&self) -> Result<(), WebSocketError> {
        if self.inner.hub.shutdown.is_cancelled() {
            Err(WebSocketError::ShuttingDown)
        } else {
            Ok(())
        }
    }
}

/// A connection about to be served.
pub(crate) struct Prepared {
    hub: Arc<Hub>,
    manager: std::sync::Weak<Inner>,
    client: Arc<Client>,
    slot: Slot,
}

impl Prepared {
    /// Serves the socket until the connection ends.
    pub(crate) async fn serve<S>(self, socket: WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        crate::connection::serve(self.hub, self.manager, self.client, socket, self.slot).await;
    }
}

fn serialize(message: &WebSocketMessage, topic: Option<&str>) -> Result<Frame, WebSocketError> {
    let view = View {
        kind: &message.kind,
        data: &message.data,
        topic: topic.or(message.topic.as_deref()),
        id: message.id.as_deref(),
        timestamp: message.timestamp,
    };
    serde_json::to_string(&view)
        .map(Frame::text)
        .map_err(WebSocketError::Encode)
}
