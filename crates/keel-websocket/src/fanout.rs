//! [`Fanout`] (feature `redis`): broadcasts and topic publishes shared by
//! every instance through Redis pub/sub.
//!
//! An instance delivers to its own clients first, then hands the frame to
//! its publisher task, which sends it on `<prefix>:all` or
//! `<prefix>:topic:<topic>` tagged with the instance's id. Its subscriber
//! task listens on `<prefix>:all` and `<prefix>:topic:*`, skips messages
//! carrying its own id (its clients already have them) and delivers the
//! rest locally: each message reaches each client once. Pub/sub is
//! fire-and-forget: while Redis is down, messages reach the instance's own
//! clients only (counted in `fanout_failed`), and both tasks reconnect by
//! themselves.
//!
//! Both tasks are owned by the [`Fanout`]: dropping it (with the manager)
//! or [`Fanout::stop`] ends them. The subscriber holds the shared hub, not
//! the manager, so it keeps no manager alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::StreamExt as _;
use keel_core::topology::{self, Conn, ConnectOptions, Topology};
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::FanoutConfig;
use crate::hub::Hub;
use crate::manager::WebSocketStats;
use crate::message::Frame;

const WIRE_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 16 + 1;
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The most connecting or one publish may take.
const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    failed: AtomicU64,
    corrupt: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Fanout {
    instance: u128,
    prefix: String,
    queue: mpsc::Sender<(String, Bytes)>,
    counters: Arc<Counters>,
    connected: watch::Receiver<bool>,
    publisher: JoinHandle<()>,
    subscriber: JoinHandle<()>,
}

impl Drop for Fanout {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Fanout {
    /// Starts both tasks; returns at once, whether Redis is up or not.
    pub(crate) fn start(config: &FanoutConfig, topology: Topology, hub: Arc<Hub>) -> Self {
        let instance = instance_id();
        let counters = Arc::new(Counters::default());
        let (queue, rx) = mpsc::channel(config.publish_queue.max(1));
        let (connected_tx, connected) = watch::channel(false);
        let publisher = tokio::spawn(publish_loop(
            topology.clone(),
            config.channel_prefix.clone(),
            rx,
            Arc::clone(&counters),
        ));
        let subscriber = tokio::spawn(subscribe_loop(
            topology,
            config.channel_prefix.clone(),
            instance,
            hub,
            Arc::clone(&counters),
            connected_tx,
        ));
        Self {
            instance,
            prefix: config.channel_prefix.clone(),
            queue,
            counters,
            connected,
            publisher,
            subscriber,
        }
    }

    /// Queues `frame` for the other instances (`topic` `None`: a
    /// broadcast). Never waits: a full queue counts a failure.
    pub(crate) fn publish(&self, topic: Option<&str>, frame: Frame) {
        let channel = match topic {
            Some(topic) => format!("{}:topic:{topic}", self.prefix),
            None => format!("{}:all", self.prefix),
        };
        let (binary, payload) = frame.into_bytes();
        let mut wire = BytesMut::with_capacity(HEADER_LEN + payload.len());
        wire.put_u8(WIRE_VERSION);
        wire.put_u128(self.instance);
        wire.put_u8(u8::from(binary));
        wire.put_slice(&payload);
        if self.queue.try_send((channel, wire.freeze())).is_err() {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    pub(crate) async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub(crate) fn fill(&self, stats: &mut WebSocketStats) {
        let c = &self.counters;
        stats.fanout_published = c.published.load(Ordering::Relaxed);
        stats.fanout_received = c.received.load(Ordering::Relaxed);
        stats.fanout_failed = c.failed.load(Ordering::Relaxed);
    }

    /// Ends both tasks.
    pub(crate) fn stop(&self) {
        self.publisher.abort();
        self.subscriber.abort();
    }
}

/// A decoded fan-out message: (origin, frame).
fn decode(payload: &[u8]) -> Option<(u128, Frame)> {
    if payload.len() < HEADER_LEN || payload[0] != WIRE_VERSION {
        return None;
    }
    let origin = u128::from_be_bytes(payload[1..17].try_into().ok()?);
    let binary = match payload[17] {
        0 => false,
        1 => true,
        _ => return None,
    };
    let frame = Frame::from_parts(binary, Bytes::copy_from_slice(&payload[HEADER_LEN..]))?;
    Some((origin, frame))
}

/// Publishes what the instance queues. On a cluster, every `PUBLISH` goes
/// to the primary of `anchor`'s slot; the cluster forwards it to every
/// node's subscribers.
async fn publish_loop(
    topology: Topology,
    anchor: String,
    mut queue: mpsc::Receiver<(String, Bytes)>,
    counters: Arc<Counters>,
) {
    let options = ConnectOptions {
        connect_timeout: TIMEOUT,
        response_timeout: Some(TIMEOUT),
    };
    let anchor_slot = topology::slot(anchor.as_bytes());
    let mut conn: Option<Conn> = None;
    let mut backoff = Duration::from_millis(50);
    let mut batch: Vec<(String, Bytes)> = Vec::new();
    let mut warned = false;
    while queue.recv_many(&mut batch, 256).await > 0 {
        if conn.is_none() {
            match tokio::time::timeout(TIMEOUT, topology.connect(options)).await {
                Ok(Ok(made)) => {
                    conn = Some(made);
                    backoff = Duration::from_millis(50);
                }
                _ => {
                    // Redis is down: these reach this instance only. Wait
                    // before trying again, dropping what queues meanwhile
                    // rather than sending it late.
                    fail(&counters, &mut batch);
                    if !warned {
                        tracing::warn!(
                            "websocket fan-out cannot reach redis; delivering locally only"
                        );
                        warned = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    while let Ok(item) = queue.try_recv() {
                        batch.push(item);
                    }
                    fail(&counters, &mut batch);
                    continue;
                }
            }
        }
        let Some(connection) = conn.as_mut() else {
            continue;
        };
        let mut pipe = redis::pipe();
        for (channel, payload) in &batch {
            pipe.cmd("PUBLISH").arg(channel).arg(payload.as_ref());
        }
        let sent = match connection {
            Conn::Single(_) | Conn::Sentinel(_) => pipe.query_async::<()>(connection).await,
            // One pipeline goes to one node: the primary of the channel
            // prefix's slot, the same for every instance and every batch,
            // so the messages one instance sends reach subscribers in the
            // order it sent them.
            Conn::Cluster(connection) => {
                let route = Route::new(anchor_slot, SlotAddr::Master);
                connection
                    .route_pipeline(
                        pipe,
                        0,
                        batch.len(),
                        SingleNodeRoutingInfo::SpecificNode(route),
                    )
                    .await
                    .map(drop)
            }
        };
        match sent {
            Ok(()) => {
                counters
                    .published
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
                if warned {
                    tracing::info!("websocket fan-out publishing to redis again");
                    warned = false;
                }
            }
            Err(error) => {
                if !warned {
                    tracing::warn!(%error, "websocket fan-out publish failed; delivering locally only");
                    warned = true;
                }
                fail(&counters, &mut batch);
            }
        }
    }
}

fn fail(counters: &Counters, batch: &mut Vec<(String, Bytes)>) {
    counters
        .failed
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    batch.clear();
}

/// Listens on the instance's channels. A subscription that fails moves on
/// to the next seed of a cluster (any node serves), or to the primary the
/// Sentinels name at the time.
async fn subscribe_loop(
    topology: Topology,
    prefix: String,
    instance: u128,
    hub: Arc<Hub>,
    counters: Arc<Counters>,
    connected: watch::Sender<bool>,
) {
    let all = format!("{prefix}:all");
    let topic_prefix = format!("{prefix}:topic:");
    let pattern = format!("{}*", glob_escape(&topic_prefix));
    let mut next = 0;
    let mut lost = false;
    let mut backoff = Duration::from_millis(50);
    loop {
        let subscribed = async {
            let client = tokio::time::timeout(TIMEOUT, topology.subscriber(next))
                .await
                .map_err(|_| "asking for the server timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            let mut pubsub = tokio::time::timeout(TIMEOUT, client.get_async_pubsub())
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            pubsub.subscribe(&all).await.map_err(|e| e.to_string())?;
            pubsub
                .psubscribe(&pattern)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(pubsub)
        }
        .await;
        let mut pubsub = match subscribed {
            Ok(pubsub) => pubsub,
            Err(error) => {
                if !lost {
                    tracing::warn!(%error, "websocket fan-out cannot subscribe; retrying");
                }
                lost = true;
                next += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        if lost {
            tracing::info!("websocket fan-out subscribed again");
        }
        let _ = connected.send(true);
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let Some((origin, frame)) = decode(message.get_payload_bytes()) else {
                counters.corrupt.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("undecodable websocket fan-out message ignored");
                continue;
            };
            if origin == instance {
                continue;
            }
            counters.received.fetch_add(1, Ordering::Relaxed);
            let channel = message.get_channel_name();
            if channel == all {
                hub.deliver_all(&frame.0);
            } else if let Some(topic) = channel.strip_prefix(&topic_prefix) {
                hub.deliver_topic(topic, &frame.0);
            }
        }
        drop(messages);
        let _ = connected.send(false);
        tracing::warn!("websocket fan-out lost its subscription; retrying");
        lost = true;
        next += 1;
    }
}

/// `s` with Redis glob characters escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn instance_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut id = 0u128;
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        id = (id << 64) | u128::from(h.finish());
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
