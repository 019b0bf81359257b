//! Eviction policies: the public [`CachePolicy`] choice and the per-shard
//! engine that carries it out (one file per policy).

mod fifo;
mod lfu;
mod list;

pub(crate) use list::Links;
mod lru;
mod s3fifo;
mod ttl;

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::error::ParsePolicyError;
use crate::shard::Access;

/// Which entry a full cache evicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CachePolicy {
    /// Exact least-recently-used. Every hit reorders, so reads take the
    /// shard's write lock.
    Lru,
    /// Exact least-frequently-used; ties go to the least recently used. Reads
    /// take the shard's write lock.
    Lfu,
    /// First in, first out. Reads take only the read lock.
    Fifo,
    /// Evicts the entry closest to expiry (entries without a deadline last,
    /// oldest first). Reads take only the read lock.
    Ttl,
    /// S3-FIFO (small, main and ghost FIFO queues with 2-bit access
    /// frequencies): the default, chosen for hit ratio and read speed (see the
    /// crate docs).
    #[default]
    S3Fifo,
}

impl CachePolicy {
    /// All policies, in declaration order.
    pub const ALL: [CachePolicy; 5] = [
        CachePolicy::Lru,
        CachePolicy::Lfu,
        CachePolicy::Fifo,
        CachePolicy::Ttl,
        CachePolicy::S3Fifo,
    ];

    /// The policy's name as written in configuration (`"lru"`, `"s3_fifo"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CachePolicy::Lru => "lru",
            CachePolicy::Lfu => "lfu",
            CachePolicy::Fifo => "fifo",
            CachePolicy::Ttl => "ttl",
            CachePolicy::S3Fifo => "s3_fifo",
        }
    }

    /// True if a hit must reorder entries (so reads take the write lock).
    pub(crate) fn reads_reorder(self) -> bool {
        matches!(self, CachePolicy::Lru | CachePolicy::Lfu)
    }

    /// True if hits count towards an entry's frequency bits (read under
    /// the write lock when choosing a victim).
    pub(crate) fn counts_freq(self) -> bool {
        matches!(self, CachePolicy::S3Fifo)
    }
}

impl fmt::Display for CachePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CachePolicy {
    type Err = ParsePolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CachePolicy::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParsePolicyError {
                input: s.to_owned(),
            })
    }
}

/// What a policy may read about an entry while choosing a victim.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotInfo<'a> {
    pub(crate) deadline: u64,
    pub(crate) access: Option<&'a Access>,
    pub(crate) weight: u32,
}

/// The per-shard state of one policy.
#[derive(Debug)]
pub(crate) enum Engine {
    Lru(lru::Lru),
    Lfu(lfu::Lfu),
    Fifo(fifo::Fifo),
    Ttl(ttl::Ttl),
    S3Fifo(s3fifo::S3Fifo),
}

impl Engine {
    pub(crate) fn new(policy: CachePolicy, capacity: u64, entries_hint: usize) -> Self {
        match policy {
            CachePolicy::Lru => Engine::Lru(lru::Lru::default()),
            CachePolicy::Lfu => Engine::Lfu(lfu::Lfu::default()),
            CachePolicy::Fifo => Engine::Fifo(fifo::Fifo::default()),
            CachePolicy::Ttl => Engine::Ttl(ttl::Ttl::default()),
            CachePolicy::S3Fifo => Engine::S3Fifo(s3fifo::S3Fifo::new(capacity, entries_hint)),
        }
    }

    #[inline]
    pub(crate) fn on_insert(
        &mut self,
        links: &mut Links,
        idx: u32,
        hash: u64,
        weight: u32,
        deadline: u64,
    ) {
        match self {
            Engine::Lru(p) => p.on_insert(links, idx),
            Engine::Lfu(p) => p.on_insert(idx),
            Engine::Fifo(p) => p.on_insert(links, idx),
            Engine::Ttl(p) => p.on_insert(links, idx, deadline),
            Engine::S3Fifo(p) => p.on_insert(links, idx, hash, weight),
        }
    }

    /// A hit under the write lock (policies whose reads reorder).
    #[inline]
    pub(crate) fn on_access(&mut self, links: &mut Links, idx: u32) {
        match self {
            Engine::Lru(p) => p.on_access(links, idx),
            Engine::Lfu(p) => p.on_access(idx),
            // Their hits only set the entry's access bits, under the read lock.
            Engine::Fifo(_) | Engine::Ttl(_) | Engine::S3Fifo(_) => {}
        }
    }

    /// The value of an existing entry was replaced.
    #[inline]
    pub(crate) fn on_update(
        &mut self,
        links: &mut Links,
        idx: u32,
        old_weight: u32,
        weight: u32,
        deadline: u64,
    ) {
        match self {
            Engine::Lru(p) => p.on_access(links, idx),
            Engine::Lfu(p) => p.on_access(idx),
            Engine::Fifo(_) => {}
            Engine::Ttl(p) => p.on_update(links, idx, deadline),
            Engine::S3Fifo(p) => p.on_update(links, idx, old_weight, weight),
        }
    }

    #[inline]
    pub(crate) fn on_remove(&mut self, links: &mut Links, idx: u32, weight: u32) {
        match self {
            Engine::Lru(p) => p.on_remove(links, idx),
            Engine::Lfu(p) => p.on_remove(idx),
            Engine::Fifo(p) => p.on_remove(links, idx),
            Engine::Ttl(p) => p.on_remove(links, idx),
            Engine::S3Fifo(p) => p.on_remove(links, idx, weight),
        }
    }

    /// The next entry to evict; the caller removes it through
    /// [`Self::on_remove`]. `info` describes an entry, `hash_of` gives its
    /// key's hash (computed only when a policy remembers it); both get the
    /// node records, which hold the entries' buckets.
    pub(crate) fn victim<'a>(
        &mut self,
        links: &mut Links,
        info: impl Fn(&Links, u32) -> SlotInfo<'a>,
        hash_of: impl Fn(&Links, u32) -> u64,
    ) -> Option<u32> {
        match self {
            Engine::Lru(p) => p.victim(),
            Engine::Lfu(p) => p.victim(),
            Engine::Fifo(p) => p.victim(),
            Engine::Ttl(p) => {
                let links = &*links;
                p.victim(|i| info(links, i).deadline)
            }
            Engine::S3Fifo(p) => p.victim(links, info, hash_of),
        }
    }

    pub(crate) fn clear(&mut self) {
        match self {
            Engine::Lru(p) => p.clear(),
            Engine::Lfu(p) => p.clear(),
            Engine::Fifo(p) => p.clear(),
            Engine::Ttl(p) => p.clear(),
            Engine::S3Fifo(p) => p.clear(),
        }
    }
}
