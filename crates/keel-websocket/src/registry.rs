//! [`Registry`]: the connected clients, the topic index and the
//! per-address connection counts.
//!
//! Invariant: a client is in a topic's map if and only if the topic is in
//! the client's own list; both change under the topic index's write lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::client::{Client, ClientId};
use crate::error::{Rejection, WebSocketError};

type ClientMap = HashMap<ClientId, Arc<Client>>;

#[derive(Debug, Default)]
pub(crate) struct Registry {
    clients: RwLock<ClientMap>,
    topics: RwLock<HashMap<Arc<str>, ClientMap>>,
    /// Connection slots held (reserved before the upgrade, released when
    /// the connection ends).
    slots: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection slot; releasing it (on drop) frees the place it holds in
/// the total and per-address counts.
#[derive(Debug)]
pub(crate) struct Slot {
    registry: Arc<Registry>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.slots.fetch_sub(1, Ordering::AcqRel);
        let mut per_ip = self.registry.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Registry {
    /// Takes a connection slot, or says which limit refuses it.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: Option<usize>,
    ) -> Result<Slot, Rejection> {
        let mut per_ip = self.per_ip.lock();
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if max_per_ip.is_some_and(|max| from_ip >= max) {
            return Err(Rejection::TooManyFromAddress);
        }
        if self
            .slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_total).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Rejection::TooManyConnections);
        }
        *per_ip.entry(ip).or_insert(0) += 1;
        Ok(Slot {
            registry: Arc::clone(self),
            ip,
        })
    }

    pub(crate) fn insert(&self, client: Arc<Client>) {
        self.clients.write().insert(client.id, client);
    }

    /// Removes the client and its subscriptions.
    pub(crate) fn remove(&self, id: ClientId) -> Option<Arc<Client>> {
        let client = self.clients.write().remove(&id)?;
        {
            let mut topics = self.topics.write();
            let mut mine = client.topics.lock();
            for topic in mine.drain(..) {
                if let Some(members) = topics.get_mut(&topic) {
                    members.remove(&id);
                    if members.is_empty() {
                        topics.remove(&topic);
                    }
                }
            }
        }
        Some(client)
    }

    pub(crate) fn get(&self, id: ClientId) -> Option<Arc<Client>> {
        self.clients.read().get(&id).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.clients.read().len()
    }

    /// Calls `f` on every client, under the read lock.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<Client>)) {
        for client in self.clients.read().values() {
            f(client);
        }
    }

    /// Calls `f` on every subscriber of `topic`, under the read lock.
    pub(crate) fn for_each_in(&self, topic: &str, mut f: impl FnMut(&Arc<Client>)) {
        if let Some(members) = self.topics.read().get(topic) {
            for client in members.values() {
                f(client);
            }
        }
    }

    pub(crate) fn clients(&self) -> Vec<Arc<Client>> {
        self.clients.read().values().cloned().collect()
    }

    /// Subscribes; returns false if it already was.
    pub(crate) fn subscribe(
        &self,
        client: &Arc<Client>,
        topic: &str,
        max_topics: usize,
    ) -> Result<bool, WebSocketError> {
        let mut topics = self.topics.write();
        // A client that has left must not be put back into the index.
        if !self.clients.read().contains_key(&client.id) {
            return Err(WebSocketError::UnknownClient(client.id));
        }
        let mut mine = client.topics.lock();
        if mine.iter().any(|t| &**t == topic) {
            return Ok(false);
        }
        if mine.len() >= max_topics {
            return Err(WebSocketError::TooManyTopics {
                client: client.id,
                limit: max_topics,
            });
        }
        let key: Arc<str> = match topics.get_key_value(topic) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(topic),
        };
        topics
            .entry(Arc::clone(&key))
            .or_default()
            .insert(client.id, Arc::clone(client));
        mine.push(key);
        Ok(true)
    }

    /// Unsubscribes; returns false if it was not subscribed.
    pub(crate) fn unsubscribe(&self, client: &Client, topic: &str) -> bool {
        let mut topics = self.topics.write();
        let mut mine = client.topics.lock();
        let Some(at) = mine.iter().position(|t| &**t == topic) else {
            return false;
        };
        mine.swap_remove(at);
        if let Some(members) = topics.get_mut(topic) {
            members.remove(&client.id);
            if members.is_empty() {
                topics.remove(topic);
            }
        }
        true
    }

    /// Subscribers of `topic`.
    pub(crate) fn topic_len(&self, topic: &str) -> usize {
        self.topics.read().get(topic).map_or(0, HashMap::len)
    }

    /// Topics with at least one subscriber.
    pub(crate) fn topic_count(&self) -> usize {
        self.topics.read().len()
    }
}
