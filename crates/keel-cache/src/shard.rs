//! One shard: a hash table of slot indices, the slots, the policy engine and
//! the expiry order, behind one reader-writer lock. Hits take the read lock
//! (except for policies whose hits reorder) and count with atomics that sit
//! next to the lock word.

use std::borrow::Borrow;
use std::hash::Hash;

use hashbrown::HashTable;

use crate::clock::Clock;
use crate::entry::RemovalCause;
use crate::expiry::{ExpiryQueue, NEVER};
use crate::policy::{CachePolicy, Engine, SlotInfo};
use crate::sync::{AtomicU8, AtomicU32, AtomicU64, Ordering, ReadGuard, RwLock};

/// Where removed entries go: to the listener (after the lock is released) or
/// dropped on the spot when there is none.
pub(crate) type Sink<'a, K, V> = Option<&'a mut Vec<(K, V, RemovalCause)>>;

/// Per-entry hit counts are exact up to here, estimated above.
const EXACT_HITS: u32 = 1024;

/// Settings every operation needs.
#[derive(Debug)]
pub(crate) struct Timing {
    pub(crate) clock: Clock,
    /// Time-to-idle in nanoseconds (0: none).
    pub(crate) tti: u64,
}

/// What a hit reads, kept small so it mostly fits one cache line; the rest
/// of an entry is in its [`Meta`].
pub(crate) struct Slot<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    /// The real deadline: `ttl_deadline`, or earlier by time-to-idle. Moved
    /// later by reads (time-to-idle) under the read lock.
    deadline: AtomicU64,
    hits: AtomicU32,
    /// The policy's access bits (S3-FIFO's frequency).
    freq: AtomicU8,
}

/// The parts of an entry that writes and `get_entry` need, not hits.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Meta {
    hash: u64,
    pub(crate) inserted_at: u64,
    /// The deadline set by time-to-live at the last write.
    ttl_deadline: u64,
    pub(crate) weight: u32,
}

impl<K, V> Slot<K, V> {
    #[inline]
    pub(crate) fn deadline(&self) -> u64 {
        self.deadline.load(Ordering::Relaxed)
    }

    pub(crate) fn hits(&self) -> u32 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// The read counters of one shard.
#[derive(Debug, Default)]
pub(crate) struct ReadCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
}

/// The write counters of one shard.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) inserts: AtomicU64,
    pub(crate) updates: AtomicU64,
    pub(crate) evicted_size: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) invalidated: AtomicU64,
    pub(crate) replaced: AtomicU64,
    pub(crate) len: AtomicU64,
    pub(crate) weight: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) struct State<K, V> {
    table: HashTable<u32>,
    slots: Vec<Option<Slot<K, V>>>,
    /// Parallel to `slots`.
    metas: Vec<Meta>,
    free: Vec<u32>,
    engine: Engine,
    expiry: ExpiryQueue,
    weight: u64,
    capacity: u64,
}

/// `repr(C)` keeps the hit and miss counters in the cache line of the lock
/// word, which a read has just written anyway.
#[repr(C, align(128))]
pub(crate) struct Shard<K, V> {
    pub(crate) reads: ReadCounters,
    state: RwLock<State<K, V>>,
    shared_reads: bool,
    pub(crate) counters: Counters,
}

/// What a read found.
pub(crate) struct Found<'a, K, V> {
    pub(crate) slot: &'a Slot<K, V>,
    pub(crate) meta: &'a Meta,
    /// The time of the read if the clock was read (entries with a deadline).
    pub(crate) now: Option<u64>,
}

impl<K, V> Found<'_, K, V> {
    /// Counts the hit on the entry and applies time-to-idle.
    #[inline]
    fn touch(&self, timing: &Timing) {
        let slot = self.slot;
        if let (Some(now), true) = (self.now, timing.tti > 0) {
            let idle = self
                .meta
                .ttl_deadline
                .min(now.saturating_add(timing.tti).min(NEVER - 1));
            if idle != slot.deadline() {
                slot.deadline.store(idle, Ordering::Relaxed);
            }
        }
        // Exact up to EXACT_HITS, then an unbiased estimate: add h/EXACT_HITS
        // with probability EXACT_HITS/h. A hot entry's line is then written
        // on a vanishing share of hits instead of on every one, so readers on
        // different cores do not pass it back and forth. A plain load and
        // store (not a locked add): concurrent hits may count once.
        let hits = slot.hits.load(Ordering::Relaxed);
        let next = if hits < EXACT_HITS {
            hits + 1
        } else if fastrand::u32(..hits) < EXACT_HITS {
            hits.saturating_add(hits / EXACT_HITS)
        } else {
            return;
        };
        slot.hits.store(next, Ordering::Relaxed);
    }
}

impl<K: Hash + Eq, V> Shard<K, V> {
    pub(crate) fn new(policy: CachePolicy, capacity: u64, entries_hint: usize) -> Self {
        Self {
            state: RwLock::new(State {
                table: HashTable::new(),
                slots: Vec::new(),
                metas: Vec::new(),
                free: Vec::new(),
                engine: Engine::new(policy, capacity, entries_hint),
                expiry: ExpiryQueue::default(),
                weight: 0,
                capacity,
            }),
            reads: ReadCounters::default(),
            counters: Counters::default(),
            shared_reads: !policy.reads_reorder(),
        }
    }

    /// Looks `key` up, records the hit (or miss) and hands the live slot to `f`.
    #[inline]
    pub(crate) fn get<Q, R>(
        &self,
        hash: u64,
        key: &Q,
        timing: &Timing,
        record: bool,
        f: impl FnOnce(Found<'_, K, V>) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let out = if self.shared_reads {
            let st = self.state.read();
            st.find(hash, key).and_then(|idx| {
                let found = st.live(idx, timing)?;
                found.touch(timing);
                st.engine.on_read(&found.slot.freq);
                Some(f(found))
            })
        } else {
            let mut st = self.state.write();
            st.find(hash, key).and_then(|idx| {
                let now = st.live(idx, timing)?.now;
                st.engine.on_access(idx);
                let found = Found {
                    slot: st.slot(idx)?,
                    meta: &st.metas[idx as usize],
                    now,
                };
                found.touch(timing);
                Some(f(found))
            })
        };
        if record {
            bump(if out.is_some() {
                &self.reads.hits
            } else {
                &self.reads.misses
            });
        }
        out
    }

    /// True if a live entry for `key` exists; records nothing.
    pub(crate) fn contains<Q>(&self, hash: u64, key: &Q, timing: &Timing) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let st = self.state.read();
        st.find(hash, key)
            .and_then(|idx| st.slot(idx))
            .is_some_and(|s| !expired(s.deadline(), &timing.clock))
    }

    /// Inserts or replaces. `ttl` is this entry's time-to-live in nanoseconds.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &self,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        ttl: Option<u64>,
        timing: &Timing,
        mut sink: Sink<'_, K, V>,
    ) where
        K: Clone,
    {
        let now = timing.clock.now_nanos();
        let ttl_deadline = ttl.map_or(NEVER, |t| now.saturating_add(t).min(NEVER - 1));
        let deadline = if timing.tti > 0 {
            ttl_deadline.min(now.saturating_add(timing.tti).min(NEVER - 1))
        } else {
            ttl_deadline
        };
        let mut st = self.state.write();
        st.purge_expired(now, false, &self.counters, sink.as_deref_mut());
        let w = u64::from(weight);
        if let Some(idx) = st.find(hash, &key) {
            let st = &mut *st;
            let Some(slot) = st.slots[idx as usize].as_mut() else {
                return;
            };
            let meta = &mut st.metas[idx as usize];
            let old_value = std::mem::replace(&mut slot.value, value);
            let old_weight = meta.weight;
            meta.weight = weight;
            meta.inserted_at = now;
            meta.ttl_deadline = ttl_deadline;
            slot.deadline.store(deadline, Ordering::Relaxed);
            slot.hits.store(0, Ordering::Relaxed);
            st.weight = st.weight - u64::from(old_weight) + w;
            st.expiry.schedule(idx, deadline);
            st.engine.on_update(idx, old_weight, weight, deadline);
            st.engine.on_read(&slot.freq);
            bump(&self.counters.updates);
            bump(&self.counters.replaced);
            if let Some(out) = sink.as_deref_mut() {
                out.push((key, old_value, RemovalCause::Replaced));
            }
            st.evict_to(st.capacity, &self.counters, sink);
        } else {
            if w > st.capacity {
                bump(&self.counters.evicted_size);
                if let Some(out) = sink {
                    out.push((key, value, RemovalCause::Size));
                }
                return;
            }
            let limit = st.capacity - w;
            st.evict_to(limit, &self.counters, sink);
            let slot = Slot {
                key,
                value,
                deadline: AtomicU64::new(deadline),
                hits: AtomicU32::new(0),
                freq: AtomicU8::new(0),
            };
            let meta = Meta {
                hash,
                inserted_at: now,
                ttl_deadline,
                weight,
            };
            let idx = match st.free.pop() {
                Some(idx) => {
                    st.slots[idx as usize] = Some(slot);
                    st.metas[idx as usize] = meta;
                    idx
                }
                None => {
                    st.slots.push(Some(slot));
                    st.metas.push(meta);
                    (st.slots.len() - 1) as u32
                }
            };
            let State {
                table,
                metas,
                engine,
                expiry,
                ..
            } = &mut *st;
            table.insert_unique(hash, idx, |&i| metas[i as usize].hash);
            expiry.schedule(idx, deadline);
            engine.on_insert(idx, hash, weight, deadline);
            st.weight += w;
            bump(&self.counters.inserts);
        }
        self.counters
            .len
            .store(st.table.len() as u64, Ordering::Relaxed);
        self.counters.weight.store(st.weight, Ordering::Relaxed);
    }

    /// Removes `key`; returns its value if it was live.
    pub(crate) fn remove<Q>(
        &self,
        hash: u64,
        key: &Q,
        timing: &Timing,
        sink: Sink<'_, K, V>,
    ) -> Option<V>
    where
        K: Borrow<Q> + Clone,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let mut st = self.state.write();
        let idx = st.find(hash, key)?;
        let (k, v, deadline) = st.take(idx)?;
        self.publish(&st);
        let (cause, out) = if expired(deadline, &timing.clock) {
            bump(&self.counters.expired);
            (RemovalCause::Expired, None)
        } else {
            bump(&self.counters.invalidated);
            (RemovalCause::Explicit, Some(v.clone()))
        };
        drop(st);
        if let Some(s) = sink {
            s.push((k, v, cause));
        }
        out
    }

    /// Removes every entry for which `pred` is true (expired ones as expired).
    pub(crate) fn retain_not(
        &self,
        now: u64,
        mut pred: impl FnMut(&K, &V) -> bool,
        mut sink: Sink<'_, K, V>,
    ) {
        let mut st = self.state.write();
        st.purge_expired(now, true, &self.counters, sink.as_deref_mut());
        let doomed: Vec<u32> = st
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .filter(|s| pred(&s.key, &s.value))
                    .map(|_| i as u32)
            })
            .collect();
        for idx in doomed {
            if let Some((k, v, _)) = st.take(idx) {
                bump(&self.counters.invalidated);
                if let Some(s) = sink.as_deref_mut() {
                    s.push((k, v, RemovalCause::Explicit));
                }
            }
        }
        self.publish(&st);
    }

    /// Reclaims every expired entry.
    pub(crate) fn purge_expired(&self, now: u64, sink: Sink<'_, K, V>) {
        let mut st = self.state.write();
        if st.expiry.is_empty() {
            return;
        }
        st.purge_expired(now, true, &self.counters, sink);
        self.publish(&st);
    }

    /// Clones every live entry into `out`.
    pub(crate) fn snapshot(&self, now: u64, out: &mut Vec<(K, V)>)
    where
        K: Clone,
        V: Clone,
    {
        let st: ReadGuard<'_, State<K, V>> = self.state.read();
        out.extend(
            st.slots
                .iter()
                .flatten()
                .filter(|s| s.deadline() > now)
                .map(|s| (s.key.clone(), s.value.clone())),
        );
    }

    fn publish(&self, st: &State<K, V>) {
        self.counters
            .len
            .store(st.table.len() as u64, Ordering::Relaxed);
        self.counters.weight.store(st.weight, Ordering::Relaxed);
    }
}

#[inline]
fn expired(deadline: u64, clock: &Clock) -> bool {
    deadline != NEVER && clock.now_nanos() >= deadline
}

impl<K: Hash + Eq, V> State<K, V> {
    #[inline]
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| {
                slots[i as usize]
                    .as_ref()
                    .is_some_and(|s| s.key.borrow() == key)
            })
            .copied()
    }

    #[inline]
    fn slot(&self, idx: u32) -> Option<&Slot<K, V>> {
        self.slots.get(idx as usize).and_then(Option::as_ref)
    }

    /// The slot if it has not expired.
    #[inline]
    fn live(&self, idx: u32, timing: &Timing) -> Option<Found<'_, K, V>> {
        let slot = self.slot(idx)?;
        let deadline = slot.deadline();
        let now = if deadline != NEVER || timing.tti > 0 {
            let now = timing.clock.now_nanos();
            if now >= deadline {
                return None;
            }
            Some(now)
        } else {
            None
        };
        Some(Found {
            slot,
            meta: &self.metas[idx as usize],
            now,
        })
    }

    /// Unlinks slot `idx` from everything; returns its key, value and deadline.
    fn take(&mut self, idx: u32) -> Option<(K, V, u64)> {
        let slot = self.slots.get_mut(idx as usize)?.take()?;
        let meta = self.metas[idx as usize];
        if let Ok(entry) = self.table.find_entry(meta.hash, |&i| i == idx) {
            entry.remove();
        }
        self.expiry.unschedule(idx);
        self.engine.on_remove(idx, meta.weight);
        self.free.push(idx);
        self.weight -= u64::from(meta.weight);
        let deadline = slot.deadline();
        Some((slot.key, slot.value, deadline))
    }

    /// Reclaims due entries: those in buckets that ended by `now`, or, if
    /// `exact`, every entry whose deadline has passed.
    fn purge_expired(
        &mut self,
        now: u64,
        exact: bool,
        counters: &Counters,
        mut sink: Sink<'_, K, V>,
    ) {
        if self.expiry.is_empty() {
            return;
        }
        let State { expiry, slots, .. } = self;
        let due = expiry.due(now, exact, |i| {
            slots[i as usize].as_ref().map_or(0, Slot::deadline)
        });
        for idx in due {
            if let Some((k, v, _)) = self.take(idx) {
                bump(&counters.expired);
                if let Some(s) = sink.as_deref_mut() {
                    s.push((k, v, RemovalCause::Expired));
                }
            }
        }
    }

    /// Evicts until the total weight is at most `limit`.
    fn evict_to(&mut self, limit: u64, counters: &Counters, mut sink: Sink<'_, K, V>) {
        while self.weight > limit {
            let State {
                engine,
                slots,
                metas,
                ..
            } = self;
            let Some(idx) = engine.victim(|i| {
                let slot = slots[i as usize].as_ref();
                let meta = &metas[i as usize];
                SlotInfo {
                    deadline: slot.map_or(0, Slot::deadline),
                    freq: slot.map(|s| &s.freq),
                    weight: meta.weight,
                    hash: meta.hash,
                }
            }) else {
                return;
            };
            let Some((k, v, _)) = self.take(idx) else {
                return;
            };
            bump(&counters.evicted_size);
            if let Some(s) = sink.as_deref_mut() {
                s.push((k, v, RemovalCause::Size));
            }
        }
    }

    fn clear(&mut self) -> Vec<(K, V)> {
        self.table.clear();
        self.metas.clear();
        self.free.clear();
        self.expiry.clear();
        self.engine.clear();
        self.weight = 0;
        std::mem::take(&mut self.slots)
            .into_iter()
            .flatten()
            .map(|s| (s.key, s.value))
            .collect()
    }
}

impl<K: Hash + Eq, V> Shard<K, V> {
    /// Removes everything.
    pub(crate) fn clear(&self, sink: Sink<'_, K, V>) {
        let mut st = self.state.write();
        let all = st.clear();
        self.publish(&st);
        drop(st);
        self.counters
            .invalidated
            .fetch_add(all.len() as u64, Ordering::Relaxed);
        if let Some(s) = sink {
            s.extend(all.into_iter().map(|(k, v)| (k, v, RemovalCause::Explicit)));
        }
    }
}
