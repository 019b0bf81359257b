//! Reads: the Bloom filter, the local tier, then Redis, back-filling the
//! local tier under the key's ticket.

use std::sync::atomic::Ordering;

use super::{CacheKey, CacheValue, Found, Inner, Seen, TieredCache};
#[cfg(feature = "redis")]
use super::{NEVER, add, versions::Ticket};
#[cfg(feature = "redis")]
use crate::remote::redis::{Expect, Fetched};
#[cfg(feature = "redis")]
use crate::shard::Incoming;

impl<K: CacheKey, V: CacheValue> TieredCache<K, V> {
    /// The value of `key` if a tier has it fresh. Never calls a loader.
    pub async fn get(&self, key: &K) -> Option<V> {
        match self.inner.lookup(key).await {
            Found::Fresh { value, .. } => value,
            Found::Stale { .. } | Found::Miss(_) => None,
        }
    }

    /// `Some(Some(v))`: a fresh value; `Some(None)`: a fresh cached
    /// absence; `None`: no tier knows.
    pub(crate) async fn lookup_cached(&self, key: &K) -> Option<Option<V>> {
        match self.inner.lookup(key).await {
            Found::Fresh { value, .. } => Some(value),
            Found::Stale { .. } | Found::Miss(_) => None,
        }
    }

    /// The values of many keys, in order: local hits first, then one Redis
    /// `MGET` for the rest, back-filling the local tier. Keys the Bloom
    /// filter has never seen are absent without a lookup, as with
    /// [`get`](Self::get).
    pub async fn get_many(&self, keys: &[K]) -> Vec<Option<V>> {
        let inner = &self.inner;
        let now = inner.clock.now_nanos();
        let mut out: Vec<Option<V>> = Vec::with_capacity(keys.len());
        let mut missing: Vec<usize> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if inner.bloom_rejects(key) {
                out.push(None);
                continue;
            }
            match inner.local(key, now) {
                Found::Fresh { value, .. } => out.push(value),
                _ => {
                    out.push(None);
                    missing.push(i);
                }
            }
        }
        #[cfg(feature = "redis")]
        if let Some(remote) = inner.remote_up()
            && !missing.is_empty()
        {
            // Taken before the read, as for a single key.
            let tickets: Vec<Ticket> = missing
                .iter()
                .map(|&i| inner.versions.ticket(&keys[i]))
                .collect();
            let found = remote
                .redis
                .get_many_with::<V, _>(&inner.name, &missing, inner.schema, |&i, out| {
                    keys[i].write_key(out);
                })
                .await;
            match found {
                Ok(found) => {
                    let mut hits = 0;
                    for ((&i, entry), ticket) in missing.iter().zip(found).zip(tickets) {
                        if let Some(e) = entry {
                            let until = inner.clock_time(e.fresh_until_ms);
                            if now < until {
                                hits += 1;
                                out[i] = inner.backfill(&keys[i], e.value, until, now, ticket);
                            }
                        }
                    }
                    inner.count_reads(hits, missing.len() as u64 - hits);
                    return out;
                }
                Err(error) => inner.remote_failed(&error),
            }
        }
        inner.count_reads(0, missing.len() as u64);
        out
    }
}

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    /// The local tier's view of `key`. What a miss saw in Redis is filled
    /// in by [`lookup`](Self::lookup).
    pub(super) fn local(&self, key: &K, now: u64) -> Found<V> {
        let unseen = || Seen {
            ticket: self.versions.ticket(key),
            redis: None,
        };
        let Some(slot) = self.l1.get(key) else {
            return Found::Miss(unseen());
        };
        if now < slot.fresh_until {
            self.counters.l1_hits.fetch_add(1, Ordering::Relaxed);
            if slot.value.is_none() {
                self.counters.negative_hits.fetch_add(1, Ordering::Relaxed);
            }
            Found::Fresh {
                value: slot.value,
                refresh: now >= slot.refresh_at,
            }
        } else {
            Found::Stale {
                value: slot.value,
                fresh_until: slot.fresh_until,
                seen: unseen(),
            }
        }
    }

    /// Whether the Bloom filter has never seen `key` (counted).
    pub(super) fn bloom_rejects(&self, key: &K) -> bool {
        let rejected = self
            .bloom
            .as_ref()
            .is_some_and(|bloom| !bloom.contains(key.to_key().as_ref()));
        if rejected {
            self.counters
                .bloom_rejections
                .fetch_add(1, Ordering::Relaxed);
        }
        rejected
    }

    pub(super) async fn lookup(&self, key: &K) -> Found<V> {
        let now = self.clock.now_nanos();
        if self.bloom_rejects(key) {
            return Found::Fresh {
                value: None,
                refresh: false,
            };
        }
        #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
        let mut local = self.local(key, now);
        if matches!(local, Found::Fresh { .. }) {
            return local;
        }
        #[cfg(feature = "redis")]
        if let Some(remote) = self.remote_up() {
            let ticket = self.versions.ticket(key);
            let found = remote
                .redis
                .get_with::<V>(&remote.head, self.schema, |out| key.write_key(out))
                .await;
            match found {
                Ok(Fetched { entry, raw }) => {
                    let seen = |raw: Option<Vec<u8>>| Seen {
                        ticket,
                        redis: Some(raw.map_or(Expect::Absent, Expect::Bytes)),
                    };
                    if let Some(entry) = entry {
                        let until = self.clock_time(entry.fresh_until_ms);
                        if now < until {
                            self.counters.l2_hits.fetch_add(1, Ordering::Relaxed);
                            let value = self.backfill(key, entry.value, until, now, ticket);
                            return Found::Fresh {
                                value,
                                refresh: false,
                            };
                        }
                        if matches!(local, Found::Miss(_)) {
                            // Kept in Redis past freshness for stale-if-error
                            // (`NEVER` if it went stale before the clock's origin).
                            let stale_since = entry
                                .fresh_until_ms
                                .checked_mul(1_000_000)
                                .and_then(|n| n.checked_sub(self.wall_origin_nanos))
                                .unwrap_or(NEVER);
                            self.counters.misses.fetch_add(1, Ordering::Relaxed);
                            return Found::Stale {
                                value: entry.value,
                                fresh_until: stale_since,
                                seen: seen(raw),
                            };
                        }
                    }
                    local = match local {
                        Found::Stale {
                            value, fresh_until, ..
                        } => Found::Stale {
                            value,
                            fresh_until,
                            seen: seen(raw),
                        },
                        _ => Found::Miss(seen(raw)),
                    };
                }
                Err(error) => self.remote_failed(&error),
            }
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        local
    }

    /// Fills the local tier from Redis with the freshness left (the entry
    /// is fresh until clock time `until`) unless `ticket` no longer holds,
    /// and hands `value` back: the local tier keeps a copy.
    #[cfg(feature = "redis")]
    pub(super) fn backfill(
        &self,
        key: &K,
        value: Option<V>,
        until: u64,
        now: u64,
        ticket: Ticket,
    ) -> Option<V> {
        let local_ttl = self.settings.local_ttl.or(self.settings.ttl);
        let fresh_until = local_ttl.map_or(until, |l| until.min(add(now, l)));
        let slot = self.slot(value, fresh_until, now);
        let keep = self.keep(fresh_until, now);
        let filled = self
            .l1
            .insert_nanos_if(key.clone(), Incoming::CopyOf(&slot), keep, || {
                self.versions.still(ticket)
            });
        if !filled {
            self.counters.fills_refused.fetch_add(1, Ordering::Relaxed);
        }
        slot.value
    }
}
