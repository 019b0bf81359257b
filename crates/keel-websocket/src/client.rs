//! [`ClientConnection`] (what callers see of a client) and [`Client`] (the
//! shared state of a connected client).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use crate::outbox::{Outbox, Pushed};
use tokio_tungstenite::tungstenite::Message;

/// A client's id, unique within one manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub(crate) u64);

impl ClientId {
    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What the auth check learned about a client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientMetadata {
    /// The authenticated user, if the auth check names one.
    pub user_id: Option<String>,
    /// Anything else the application attaches.
    pub extra: BTreeMap<String, String>,
}

impl ClientMetadata {
    /// Metadata naming a user.
    pub fn user(user_id: impl Into<String>) -> Self {
        Self {
            user_id: Some(user_id.into()),
            extra: BTreeMap::new(),
        }
    }
}

/// A snapshot of one connected client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConnection {
    /// Its id.
    pub id: ClientId,
    /// The peer's address.
    pub remote_addr: SocketAddr,
    /// When it connected.
    pub connected_at: SystemTime,
    /// When a frame (message, ping, pong) last arrived from it.
    pub last_seen: SystemTime,
    /// The topics it is subscribed to, sorted.
    pub topics: Vec<String>,
    /// What the auth check attached.
    pub metadata: ClientMetadata,
    /// Messages handed to its socket.
    pub sent: u64,
    /// Messages received from it.
    pub received: u64,
    /// Messages dropped because its queue was full.
    pub dropped: u64,
    /// Messages waiting in its queue.
    pub queued: usize,
}

/// The shared state of a connected client.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: ClientId,
    pub(crate) remote: SocketAddr,
    connected_at: SystemTime,
    connected_instant: Instant,
    pub(crate) metadata: ClientMetadata,
    /// Nanoseconds after `connected_instant` a frame last arrived.
    last_seen: AtomicU64,
    pub(crate) topics: Mutex<Vec<Arc<str>>>,
    pub(crate) outbox: Outbox,
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl Client {
    pub(crate) fn new(
        id: ClientId,
        remote: SocketAddr,
        metadata: ClientMetadata,
        outbox: Outbox,
    ) -> Self {
        Self {
            id,
            remote,
            connected_at: SystemTime::now(),
            connected_instant: Instant::now(),
            metadata,
            last_seen: AtomicU64::new(0),
            topics: Mutex::new(Vec::new()),
            outbox,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues a message; returns what happened (drops are counted here).
    pub(crate) fn push(&self, message: Message) -> Pushed {
        let pushed = self.outbox.push(message);
        if matches!(pushed, Pushed::DroppedOldest) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        pushed
    }

    /// Records that a frame arrived now.
    pub(crate) fn seen(&self) {
        let nanos = u64::try_from(self.connected_instant.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_seen.store(nanos, Ordering::Relaxed);
    }

    /// When a frame last arrived (the connection time if none has).
    pub(crate) fn last_seen_instant(&self) -> Instant {
        self.connected_instant + Duration::from_nanos(self.last_seen.load(Ordering::Relaxed))
    }

    pub(crate) fn snapshot(&self) -> ClientConnection {
        let mut topics: Vec<String> = self.topics.lock().iter().map(|t| t.to_string()).collect();
        topics.sort();
        ClientConnection {
            id: self.id,
            remote_addr: self.remote,
            connected_at: self.connected_at,
            last_seen: self.connected_at
                + Duration::from_nanos(self.last_seen.load(Ordering::Relaxed)),
            topics,
            metadata: self.metadata.clone(),
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: self.outbox.len(),
        }
    }
}
