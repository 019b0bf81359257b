//! [`InvalidationBus`]: invalidations shared by every instance through
//! Redis pub/sub.
//!
//! Each instance publishes what it changed on `{prefix}:~inval:{cache}` and
//! subscribes to `{prefix}:~inval:*`. A message carries the sender's
//! instance id, so an instance ignores its own. Pub/sub is fire-and-forget:
//! messages sent while a subscriber is disconnected are lost. So whenever the
//! subscription comes back after a loss, the bus hands the handler
//! [`Invalidation::Resync`], and the tier above clears its local copies:
//! staleness stays bounded by the reconnect time.
//!
//! Caches register an [`InvalidationHandler`] for their namespace; the bus
//! holds them weakly, so a dropped cache simply stops receiving.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::RwLock;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::redis::{RedisCache, glob_escape};
use crate::error::CacheError;

const BUS_VERSION: u8 = 1;

/// The origin of messages sent by an instance's reconciliation after an
/// outage: no instance id is zero, so every instance, the sender included,
/// applies them.
pub(crate) const RECONCILER: u128 = 0;

/// What another instance changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// These keys of cache `namespace` changed or were deleted.
    Keys {
        /// The cache's name.
        namespace: String,
        /// The keys, as the cache's string form.
        keys: Vec<String>,
    },
    /// Every key of cache `namespace` was cleared.
    Clear {
        /// The cache's name.
        namespace: String,
    },
    /// The subscription was lost and is back: messages may have been
    /// missed, so every local copy should be dropped.
    Resync,
}

/// Receives the invalidations of a namespace (or of all, for a resync).
pub trait InvalidationHandler: Send + Sync {
    /// Called on the bus's subscriber task; must not block.
    fn on_invalidation(&self, invalidation: &Invalidation);
}

type Handlers = RwLock<HashMap<String, Vec<Weak<dyn InvalidationHandler>>>>;

#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    version: u8,
    origin: u128,
    op: WireOp,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireOp {
    Keys(Vec<String>),
    Clear,
}

/// Counters of an [`InvalidationBus`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Messages published by this instance.
    pub sent: u64,
    /// Messages received from other instances.
    pub received: u64,
    /// Invalidations delivered to at least one live handler (including
    /// resyncs).
    pub applied: u64,
    /// This instance's own messages, ignored.
    pub own: u64,
    /// Messages that did not decode, ignored.
    pub corrupt: u64,
    /// Times the subscription came back after a loss.
    pub resyncs: u64,
    /// Publishes that failed (Redis down).
    pub publish_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    applied: AtomicU64,
    own: AtomicU64,
    corrupt: AtomicU64,
    resyncs: AtomicU64,
    publish_errors: AtomicU64,
}

/// Publishes this instance's invalidations and delivers other instances'
/// to the registered handlers. Dropping the bus (all clones) stops its
/// subscriber task.
#[derive(Debug, Clone)]
pub struct InvalidationBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    redis: RedisCache,
    instance: u128,
    counters: Arc<Counters>,
    handlers: Arc<Handlers>,
    connected: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl InvalidationBus {
    /// Starts the subscriber in the background and returns at once; the
    /// subscription is (re)made on its own while Redis is down.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn start(redis: RedisCache) -> Self {
        let instance = instance_id();
        let counters = Arc::new(Counters::default());
        let handlers: Arc<Handlers> = Arc::default();
        let (connected_tx, connected) = watch::channel(false);
        let task = tokio::spawn(subscribe_loop(
            redis.clone(),
            instance,
            Arc::clone(&counters),
            Arc::clone(&handlers),
            connected_tx,
        ));
        Self {
            inner: Arc::new(Inner {
                redis,
                instance,
                counters,
                handlers,
                connected,
                task,
            }),
        }
    }

    /// Delivers invalidations of `namespace` from other instances, and every
    /// [`Invalidation::Resync`], to `handler` for as long as it lives.
    pub fn register(&self, namespace: &str, handler: Weak<dyn InvalidationHandler>) {
        let mut handlers = self.inner.handlers.write();
        let list = handlers.entry(namespace.to_owned()).or_default();
        list.retain(|h| h.strong_count() > 0);
        list.push(handler);
    }

    /// The Redis connection the bus publishes through.
    pub fn redis(&self) -> &RedisCache {
        &self.inner.redis
    }

    /// This instance's id (random per bus).
    pub fn instance_id(&self) -> u128 {
        self.inner.instance
    }

    /// Whether the subscription is up right now.
    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// Waits until the subscription is up, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Tells other instances that `keys` of cache `namespace` changed.
    pub async fn publish_keys(&self, namespace: &str, keys: Vec<String>) -> Result<(), CacheError> {
        self.publish(namespace, WireOp::Keys(keys)).await
    }

    /// Tells other instances that cache `namespace` was cleared.
    pub async fn publish_clear(&self, namespace: &str) -> Result<(), CacheError> {
        self.publish(namespace, WireOp::Clear).await
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BusStats {
        let c = &self.inner.counters;
        BusStats {
            sent: c.sent.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            applied: c.applied.load(Ordering::Relaxed),
            own: c.own.load(Ordering::Relaxed),
            corrupt: c.corrupt.load(Ordering::Relaxed),
            resyncs: c.resyncs.load(Ordering::Relaxed),
            publish_errors: c.publish_errors.load(Ordering::Relaxed),
        }
    }

    async fn publish(&self, namespace: &str, op: WireOp) -> Result<(), CacheError> {
        let inner = &self.inner;
        let payload = message(inner.instance, op)?;
        let channel = channel(inner.redis.prefix(), namespace);
        let result = inner.redis.publish(&channel, &payload).await;
        match result {
            Ok(_) => {
                inner.counters.sent.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                inner
                    .counters
                    .publish_errors
                    .fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// The channel of cache `namespace`'s invalidations.
pub(crate) fn channel(prefix: &str, namespace: &str) -> String {
    format!("{prefix}:~inval:{namespace}")
}

/// The bytes of an invalidation message from `origin`.
pub(crate) fn message(origin: u128, op: WireOp) -> Result<Vec<u8>, CacheError> {
    postcard::to_allocvec(&Wire {
        version: BUS_VERSION,
        origin,
        op,
    })
    .map_err(CacheError::Encode)
}

fn deliver(handlers: &Handlers, namespace: Option<&str>, invalidation: &Invalidation) -> bool {
    let live: Vec<Arc<dyn InvalidationHandler>> = {
        let handlers = handlers.read();
        match namespace {
            Some(ns) => handlers
                .get(ns)
                .into_iter()
                .flatten()
                .filter_map(Weak::upgrade)
                .collect(),
            None => handlers
                .values()
                .flatten()
                .filter_map(Weak::upgrade)
                .collect(),
        }
    };
    for handler in &live {
        handler.on_invalidation(invalidation);
    }
    !live.is_empty()
}

async fn subscribe_loop(
    redis: RedisCache,
    instance: u128,
    counters: Arc<Counters>,
    handlers: Arc<Handlers>,
    connected: watch::Sender<bool>,
) {
    let pattern = format!("{}:~inval:*", glob_escape(redis.prefix()));
    let channel_prefix = format!("{}:~inval:", redis.prefix());
    // On a cluster a PUBLISH reaches subscribers on every node, so any
    // seed serves; a subscription that fails moves on to the next one.
    // Behind Sentinels, it is made on the primary they name at the time.
    let mut next = 0;
    let mut lost = false;
    let mut backoff = Duration::from_millis(50);
    loop {
        let subscribed = async {
            let client = redis
                .topology()
                .subscriber(next)
                .await
                .map_err(|e| e.to_string())?;
            let mut pubsub =
                tokio::time::timeout(redis.config().connect_timeout, client.get_async_pubsub())
                    .await
                    .map_err(|_| "connect timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
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
                    tracing::warn!(%error, "invalidation bus cannot subscribe; retrying");
                }
                lost = true;
                next += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let _ = connected.send(true);
        if lost {
            counters.resyncs.fetch_add(1, Ordering::Relaxed);
            tracing::info!("invalidation bus resubscribed; dropping local copies");
            if deliver(&handlers, None, &Invalidation::Resync) {
                counters.applied.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let namespace = message
                .get_channel_name()
                .strip_prefix(&channel_prefix)
                .unwrap_or_default()
                .to_owned();
            let wire = match postcard::from_bytes::<Wire>(message.get_payload_bytes()) {
                Ok(wire) if wire.version == BUS_VERSION => wire,
                _ => {
                    counters.corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(namespace, "undecodable invalidation message ignored");
                    continue;
                }
            };
            if wire.origin == instance {
                counters.own.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            counters.received.fetch_add(1, Ordering::Relaxed);
            let invalidation = match wire.op {
                WireOp::Keys(keys) => Invalidation::Keys {
                    namespace: namespace.clone(),
                    keys,
                },
                WireOp::Clear => Invalidation::Clear {
                    namespace: namespace.clone(),
                },
            };
            if deliver(&handlers, Some(&namespace), &invalidation) {
                counters.applied.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(messages);
        let _ = connected.send(false);
        tracing::warn!("invalidation bus lost its subscription; retrying");
        lost = true;
        next += 1;
    }
}

fn instance_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut id = 0u128;
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        id = (id << 64) | u128::from(h.finish());
    }
    // Never the reconciler's origin.
    id.max(1)
}
