//! [`Hub`]: what the manager, every connection and the Redis subscriber
//! share: the registry, the counters, the settings and the shutdown signal.
//! It owns no task, so holding it keeps nothing running.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::config::MalformedPolicy;
use crate::outbox::Pushed;
use crate::registry::Registry;

#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) registry: Arc<Registry>,
    pub(crate) counters: Counters,
    pub(crate) settings: Settings,
    pub(crate) shutdown: CancellationToken,
}

/// The per-connection settings, resolved from the config.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) ping_interval: Duration,
    pub(crate) pong_timeout: Duration,
    pub(crate) max_topics: usize,
    pub(crate) malformed: MalformedPolicy,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) disconnected: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) slow_disconnects: AtomicU64,
    pub(crate) pong_timeouts: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) oversized: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Hub {
    /// Queues `message` for every client of this instance; returns how many
    /// took it.
    pub(crate) fn deliver_all(&self, message: &Message) -> usize {
        let mut delivered = 0;
        self.registry.for_each(|client| {
            delivered += usize::from(self.push(client, message.clone()));
        });
        delivered
    }

    /// Queues `message` for every subscriber of `topic` on this instance.
    pub(crate) fn deliver_topic(&self, topic: &str, message: &Message) -> usize {
        let mut delivered = 0;
        self.registry.for_each_in(topic, |client| {
            delivered += usize::from(self.push(client, message.clone()));
        });
        delivered
    }

    /// Queues `message` for one client; false when it did not take it.
    pub(crate) fn push(&self, client: &Client, message: Message) -> bool {
        match client.push(message) {
            Pushed::Queued => true,
            Pushed::DroppedOldest => {
                Counters::add(&self.counters.dropped, 1);
                true
            }
            Pushed::Overflowed => {
                Counters::add(&self.counters.slow_disconnects, 1);
                tracing::debug!(client = %client.id, "slow client disconnected: outbound queue full");
                false
            }
            Pushed::Closed => false,
        }
    }
}
