//! One shard: a hash table holding the entries themselves, the policy
//! engine and the expiry order, behind one reader-writer lock. Hits take the
//! read lock (except for policies whose hits reorder); the cache counts them
//! (see [`ReadTally`](crate::stats::ReadTally)), not the shard.
//!
//! A hit reads the table's control bytes and then the entry, two memory
//! accesses: the entry lives in the table, not behind an index. What only
//! writes need (the policy's links, the expiry order, [`Meta`]) is kept per
//! *node*, a small integer each entry holds and keeps for its lifetime;
//! writes reach an entry from its node through the table bucket recorded in
//! the node's record beside its links (one access, where a probe by hash
//! would be two in a row; an eviction reads the victim's links anyway).
//! Buckets move only when the table grows or rehashes, which happens only
//! in [`State::make_room`], and that records every entry's new bucket.
//!
//! A shard without deadlines and without a weigher keeps nothing in its
//! metas (see [`State::keeps_metas`]): its entries' write times are in the
//! slots, and every weight is 1. Its writes then touch the entry, its
//! node record and the policy's neighbours only.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

use crate::clock::Clock;
use crate::entry::RemovalCause;
use crate::expiry::{ExpiryQueue, Marks, NEVER};
use crate::policy::{CachePolicy, Engine, Links, SlotInfo};
use crate::sync::{AtomicU32, AtomicU64, Ordering, ReadGuard, RwLock};
use crate::table_alloc::TableAlloc;

/// Where removed entries go: to the listener (after the lock is released) or
/// dropped on the spot when there is none.
pub(crate) type Sink<'a, K, V> = Option<&'a mut Vec<(K, V, RemovalCause)>>;

/// Per-entry hit counts are exact up to here, estimated above.
const EXACT_HITS: u32 = 64;
/// Low bits of the access word: the policy's frequency (0..=3).
const FREQ_MASK: u32 = 0b11;
const MAX_FREQ: u32 = 3;
/// The access word's bit saying the value was written with the shard's
/// fixed time-to-live (see [`Timing::fixed_ttl`]).
const FIXED_TTL: u32 = 0b100;
/// The hit count is kept in the access word above the frequency bits and
/// [`FIXED_TTL`].
const HITS_SHIFT: u32 = 3;
const MAX_HITS: u32 = u32::MAX >> HITS_SHIFT;

/// The value an insert stores.
pub(crate) enum Incoming<'a, V> {
    /// This value.
    Owned(V),
    /// A copy of this one, made under the shard's lock with
    /// [`Clone::clone_from`] into the value the insert displaces (the
    /// replaced or the evicted entry's) when no listener takes that one, so
    /// a value owning memory can reuse it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    CopyOf(&'a V),
}

impl<V: Clone> Incoming<'_, V> {
    /// The value, or the copy: into `spare` if there is one.
    #[inline(always)]
    fn into_value(self, spare: Option<V>) -> V {
        match (self, spare) {
            (Incoming::Owned(value), _) => value,
            (Incoming::CopyOf(value), Some(mut spare)) => {
                spare.clone_from(value);
                spare
            }
            (Incoming::CopyOf(value), None) => value.clone(),
        }
    }

    #[inline]
    pub(crate) fn value(&self) -> &V {
        match self {
            Incoming::Owned(value) => value,
            Incoming::CopyOf(value) => value,
        }
    }
}

/// Settings every operation needs.
#[derive(Debug)]
pub(crate) struct Timing {
    pub(crate) clock: Clock,
    /// Time-to-idle in nanoseconds (0: none).
    pub(crate) tti: u64,
    /// The default time-to-live in nanoseconds when an entry written with
    /// it lives exactly that long (no jitter, no time-to-idle); 0 otherwise.
    /// Such an entry's write time is its deadline minus this, so an update
    /// with it need not write the entry's metadata.
    pub(crate) fixed_ttl: u64,
}

std::thread_local! {
    /// This thread's xorshift state for sampling hit counts (0: not seeded).
    static SAMPLER: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A uniform draw from `0..n` for the hit-count estimate: a xorshift step
/// on a constant-initialised thread-local, cheaper on the hit path than a
/// general-purpose generator.
#[inline]
fn sample_below(n: u32) -> u32 {
    SAMPLER.with(|state| {
        let mut x = state.get();
        if x == 0 {
            x = fastrand::u32(1..);
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        state.set(x);
        ((u64::from(x) * u64::from(n)) >> 32) as u32
    })
}

/// An entry's access word: the policy's saturating 2-bit frequency
/// (S3-FIFO) in the low bits, then the [`FIXED_TTL`] bit, the hit count
/// above. Reads update it with a
/// plain load and store (not a locked add) and only when it changes, so a
/// hot entry's cache line stays shared between the cores reading it;
/// concurrent hits may count once.
#[derive(Debug)]
pub(crate) struct Access(AtomicU32);

impl Access {
    fn new(fixed_ttl: bool) -> Self {
        Self(AtomicU32::new(if fixed_ttl { FIXED_TTL } else { 0 }))
    }

    /// Whether the value was written with the fixed time-to-live.
    fn fixed_ttl(&self) -> bool {
        self.0.load(Ordering::Relaxed) & FIXED_TTL != 0
    }

    /// The policy's frequency bits.
    pub(crate) fn freq(&self) -> u8 {
        (self.0.load(Ordering::Relaxed) & FREQ_MASK) as u8
    }

    /// Sets the frequency bits; only under the shard's write lock.
    pub(crate) fn set_freq(&self, freq: u8) {
        let word = self.0.load(Ordering::Relaxed);
        let next = (word & !FREQ_MASK) | (u32::from(freq) & FREQ_MASK);
        self.0.store(next, Ordering::Relaxed);
    }

    pub(crate) fn hits(&self) -> u32 {
        self.0.load(Ordering::Relaxed) >> HITS_SHIFT
    }

    /// A read hit: the hit count goes up (exact up to [`EXACT_HITS`], then
    /// an unbiased estimate: add `h / EXACT_HITS` with probability
    /// `EXACT_HITS / h`), and the frequency too if the policy uses it.
    #[inline]
    fn hit(&self, count_freq: bool) {
        let word = self.0.load(Ordering::Relaxed);
        if word < EXACT_HITS << HITS_SHIFT {
            // Exact: one more hit, and a frequency step unless saturated.
            let step = u32::from(count_freq && word & FREQ_MASK != MAX_FREQ);
            self.0
                .store(word + (1 << HITS_SHIFT) + step, Ordering::Relaxed);
        } else {
            self.hit_estimated(word, count_freq);
        }
    }

    /// [`Self::hit`] above [`EXACT_HITS`].
    #[inline]
    fn hit_estimated(&self, word: u32, count_freq: bool) {
        let hits = word >> HITS_SHIFT;
        let mut freq = word & FREQ_MASK;
        if count_freq && freq < MAX_FREQ {
            freq += 1;
        }
        let hits = if hits < EXACT_HITS {
            hits + 1
        } else if sample_below(hits) < EXACT_HITS {
            hits.saturating_add(hits / EXACT_HITS).min(MAX_HITS)
        } else {
            hits
        };
        let next = (hits << HITS_SHIFT) | (word & FIXED_TTL) | freq;
        if next != word {
            self.0.store(next, Ordering::Relaxed);
        }
    }

    /// A write replaced the value: no hits yet, and the write counts as an
    /// access for the policy.
    #[inline]
    fn rewritten(&self, count_freq: bool, fixed_ttl: bool) {
        let freq = self.0.load(Ordering::Relaxed) & FREQ_MASK;
        let freq = if count_freq && freq < MAX_FREQ {
            freq + 1
        } else {
            freq
        };
        let fixed = if fixed_ttl { FIXED_TTL } else { 0 };
        self.0.store(freq | fixed, Ordering::Relaxed);
    }
}

/// An entry as the table holds it: what a hit reads, in one small record
/// (32 bytes for `u64` keys and values). The rest is in its [`Meta`].
pub(crate) struct Slot<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    /// In a *timed* shard, the real deadline: `ttl_deadline`, or earlier by
    /// time-to-idle (moved later by reads under the read lock). In an
    /// untimed shard, one where no entry has had a deadline, nothing
    /// expires and this is the time the value was written, so that an
    /// update writes nothing outside the entry. See [`State::make_timed`].
    stamp: AtomicU64,
    pub(crate) access: Access,
    /// The entry's node: its index into the per-node arrays.
    node: u32,
}

/// The bytes of one table slot for keys `K` and values `V`.
pub(crate) const fn slot_bytes<K, V>() -> usize {
    std::mem::size_of::<Slot<K, V>>()
}

/// The parts of an entry that writes and `get_entry` need, not hits; kept
/// per node, and only in shards that are timed or weighted
/// ([`State::keeps_metas`]). Aligned to its size, so that it never
/// straddles two cache lines.
#[derive(Debug, Clone, Copy)]
#[repr(align(32))]
pub(crate) struct Meta {
    pub(crate) weight: u32,
    /// When the value was written, in a timed shard and unless the entry
    /// was written with the fixed time-to-live (see [`Found::written_at`]).
    written_at: u64,
    /// The deadline set by time-to-live at the last write (read only with
    /// time-to-idle).
    ttl_deadline: u64,
    /// The expiry bucket the entry is queued in (the expiry order's mark,
    /// here so that a write with a deadline touches one line of metadata).
    queued: u64,
}

impl Default for Meta {
    fn default() -> Self {
        Self {
            weight: 1,
            written_at: 0,
            ttl_deadline: NEVER,
            queued: ExpiryQueue::UNQUEUED,
        }
    }
}

impl<K, V> Slot<K, V> {
    #[inline]
    fn stamp(&self) -> u64 {
        self.stamp.load(Ordering::Relaxed)
    }

    /// The entry's deadline in a shard that is `timed` or not ([`NEVER`]:
    /// none).
    #[inline]
    fn deadline(&self, timed: bool) -> u64 {
        if timed { self.stamp() } else { NEVER }
    }

    pub(crate) fn hits(&self) -> u32 {
        self.access.hits()
    }
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

/// Counts a write, under the shard's write lock: no other writer can race,
/// so a plain load and store will do. (A locked add would also make the CPU
/// wait for every store before it, such as an entry's metadata that missed
/// the cache.)
#[inline]
fn bump_locked(c: &AtomicU64, by: u64) {
    c.store(c.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

pub(crate) struct State<K, V> {
    table: HashTable<Slot<K, V>, TableAlloc>,
    /// The cache's hasher: what moving entries and the S3-FIFO ghost need
    /// is recomputed from the key rather than stored.
    hasher: foldhash::fast::RandomState,
    /// By node; see [`Self::keeps_metas`].
    metas: Vec<Meta>,
    /// By node: the policy's links and the entry's bucket.
    links: Links,
    /// Nodes no entry holds.
    free: Vec<u32>,
    engine: Engine,
    expiry: ExpiryQueue,
    weight: u64,
    capacity: u64,
    /// Whether slots hold deadlines (and metas write times); see
    /// [`Slot::stamp`]. Once timed, a shard stays timed.
    timed: bool,
    /// Whether entries have weights of their own (a weigher); without one
    /// every entry weighs 1 and an update need not read the old weight.
    weighted: bool,
}

/// Aligned so that two shards' lock words never share a cache line.
#[repr(align(128))]
pub(crate) struct Shard<K, V> {
    state: RwLock<State<K, V>>,
    shared_reads: bool,
    /// Whether hits count towards the policy's frequency bits.
    count_freq: bool,
    pub(crate) counters: Counters,
}

/// What a read found.
pub(crate) struct Found<'a, K, V> {
    pub(crate) slot: &'a Slot<K, V>,
    /// The shard, for what a plain hit does not read (its metas).
    state: &'a State<K, V>,
    /// The time of the read if the clock was read (entries with a deadline).
    pub(crate) now: Option<u64>,
    timed: bool,
}

impl<K, V> Found<'_, K, V> {
    /// The entry's metadata (the defaults in a shard that keeps none).
    fn meta(&self) -> Meta {
        self.state
            .kept_metas()
            .and_then(|m| m.get(self.slot.node as usize))
            .copied()
            .unwrap_or_default()
    }

    /// The entry's weight.
    pub(crate) fn weight(&self) -> u32 {
        self.meta().weight
    }

    /// The entry's deadline ([`NEVER`]: none).
    pub(crate) fn deadline(&self) -> u64 {
        self.slot.deadline(self.timed)
    }

    /// When the value was written.
    pub(crate) fn written_at(&self, timing: &Timing) -> u64 {
        if !self.timed {
            self.slot.stamp()
        } else if self.slot.access.fixed_ttl() {
            self.slot.stamp().saturating_sub(timing.fixed_ttl)
        } else {
            self.meta().written_at
        }
    }

    /// Counts the hit on the entry and applies time-to-idle.
    #[inline]
    fn touch(&self, timing: &Timing, count_freq: bool) {
        let slot = self.slot;
        if let (Some(now), true) = (self.now, timing.tti > 0) {
            let idle = self
                .meta()
                .ttl_deadline
                .min(now.saturating_add(timing.tti).min(NEVER - 1));
            if idle != slot.stamp() {
                slot.stamp.store(idle, Ordering::Relaxed);
            }
        }
        slot.access.hit(count_freq);
    }
}

/// The entry holding `node`, found through the bucket in its record.
#[inline]
fn by_node<'a, K, V>(
    table: &'a HashTable<Slot<K, V>, TableAlloc>,
    links: &Links,
    node: u32,
) -> Option<&'a Slot<K, V>> {
    let bucket = links.bucket(node)?;
    table.get_bucket(bucket as usize).filter(|s| s.node == node)
}

/// The expiry order's view of a shard: marks in the metas, deadlines in
/// the entries.
struct ExpiryMarks<'a, K, V> {
    table: &'a HashTable<Slot<K, V>, TableAlloc>,
    links: &'a Links,
    metas: &'a mut Vec<Meta>,
}

impl<K, V> Marks for ExpiryMarks<'_, K, V> {
    #[inline]
    fn mark(&self, node: u32) -> u64 {
        self.metas
            .get(node as usize)
            .map_or(ExpiryQueue::UNQUEUED, |m| m.queued)
    }

    #[inline]
    fn set_mark(&mut self, node: u32, bucket: u64) {
        if let Some(meta) = self.metas.get_mut(node as usize) {
            meta.queued = bucket;
        }
    }

    fn nodes(&self) -> u32 {
        self.metas.len() as u32
    }

    fn deadline(&self, node: u32) -> u64 {
        by_node(self.table, self.links, node).map_or(0, Slot::stamp)
    }
}

/// The entry if it has not expired.
#[inline]
fn live<'a, K, V>(
    slot: &'a Slot<K, V>,
    state: &'a State<K, V>,
    timing: &Timing,
) -> Option<Found<'a, K, V>> {
    let timed = state.timed;
    let deadline = slot.deadline(timed);
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
        state,
        now,
        timed,
    })
}

impl<K: Hash + Eq, V> Shard<K, V> {
    pub(crate) fn new(
        policy: CachePolicy,
        capacity: u64,
        entries_hint: usize,
        weighted: bool,
        hasher: foldhash::fast::RandomState,
        timed: bool,
    ) -> Self {
        Self {
            state: RwLock::new(State {
                table: HashTable::new_in(TableAlloc),
                hasher,
                metas: Vec::new(),
                links: Links::default(),
                free: Vec::new(),
                engine: Engine::new(policy, capacity, entries_hint),
                expiry: ExpiryQueue::default(),
                weight: 0,
                capacity,
                timed,
                weighted,
            }),
            counters: Counters::default(),
            shared_reads: !policy.reads_reorder(),
            count_freq: policy.counts_freq(),
        }
    }

    /// Looks `key` up, counts the use on the entry and hands the live entry
    /// to `f`.
    #[inline]
    pub(crate) fn get<Q, R>(
        &self,
        hash: u64,
        key: &Q,
        timing: &Timing,
        f: impl FnOnce(Found<'_, K, V>) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.shared_reads {
            let st = self.state.read();
            st.find(hash, key).and_then(|slot| {
                let found = live(slot, &st, timing)?;
                found.touch(timing, self.count_freq);
                Some(f(found))
            })
        } else {
            self.get_reordering(hash, key, timing, f)
        }
    }

    /// [`Self::get`] for policies whose hits reorder (under the write
    /// lock); out of line, so the shared-read path stays small.
    #[inline(never)]
    fn get_reordering<Q, R>(
        &self,
        hash: u64,
        key: &Q,
        timing: &Timing,
        f: impl FnOnce(Found<'_, K, V>) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut st = self.state.write();
        let slot = st.find(hash, key)?;
        let node = slot.node;
        let now = live(slot, &st, timing)?.now;
        let State { engine, links, .. } = &mut *st;
        engine.on_access(links, node);
        // The policy moved links, not entries: the slot is where it was,
        // and still live at the time read above.
        let found = Found {
            slot: by_node(&st.table, &st.links, node)?,
            state: &st,
            now,
            timed: st.timed,
        };
        found.touch(timing, self.count_freq);
        Some(f(found))
    }

    /// True if a live entry for `key` exists; records nothing.
    pub(crate) fn contains<Q>(&self, hash: u64, key: &Q, timing: &Timing) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let st = self.state.read();
        st.find(hash, key)
            .is_some_and(|s| !expired(s.deadline(st.timed), &timing.clock))
    }

    /// Inserts or replaces. `ttl` is this entry's time-to-live in nanoseconds.
    /// `admit` runs under the shard's write lock, before anything changes:
    /// when it says no, nothing is written and the result is `false`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &self,
        hash: u64,
        key: K,
        value: Incoming<'_, V>,
        weight: u32,
        ttl: Option<u64>,
        timing: &Timing,
        mut sink: Sink<'_, K, V>,
        admit: impl FnOnce() -> bool,
    ) -> bool
    where
        V: Clone,
    {
        let now = timing.clock.now_nanos();
        let ttl_deadline = ttl.map_or(NEVER, |t| now.saturating_add(t).min(NEVER - 1));
        let deadline = if timing.tti > 0 {
            ttl_deadline.min(now.saturating_add(timing.tti).min(NEVER - 1))
        } else {
            ttl_deadline
        };
        // Written with the fixed time-to-live, and not cut short by the
        // end of the clock: the write time is the deadline minus it.
        let fixed_ttl = timing.fixed_ttl > 0
            && ttl == Some(timing.fixed_ttl)
            && now.checked_add(timing.fixed_ttl) == Some(ttl_deadline);
        let mut st = self.state.write();
        if !admit() {
            return false;
        }
        if deadline != NEVER {
            st.make_timed();
        }
        if st.expiry.may_have_ended(now) {
            st.purge_expired(now, false, &self.counters, sink.as_deref_mut());
        }
        let w = u64::from(weight);
        let st = &mut *st;
        if let Some(slot) = st.table.find_mut(hash, |s| s.key == key) {
            let node = slot.node;
            let old_value = match value {
                Incoming::CopyOf(value) if sink.is_none() => {
                    slot.value.clone_from(value);
                    None
                }
                value => Some(std::mem::replace(&mut slot.value, value.into_value(None))),
            };
            let old_stamp = slot.stamp();
            slot.access
                .rewritten(self.count_freq, st.timed && fixed_ttl);
            // The update writes the meta only for what it holds: without a
            // weigher the weight is always 1, in an untimed shard the write
            // time is in the slot, and with the fixed time-to-live it
            // follows from the deadline; so, usually, the slot is the only
            // line written.
            let old_weight = if st.weighted {
                let meta = &mut st.metas[node as usize];
                let old = meta.weight;
                meta.weight = weight;
                old
            } else {
                1
            };
            if !st.timed {
                slot.stamp.store(now, Ordering::Relaxed);
            } else {
                slot.stamp.store(deadline, Ordering::Relaxed);
                if !fixed_ttl {
                    let meta = &mut st.metas[node as usize];
                    meta.written_at = now;
                    meta.ttl_deadline = ttl_deadline;
                }
            }
            st.weight = st.weight - u64::from(old_weight) + w;
            // An entry with a deadline is queued no later than it, so a
            // deadline that moves later needs nothing from the expiry
            // order (not even a look at the entry's mark).
            let later =
                st.timed && old_stamp != NEVER && deadline != NEVER && deadline >= old_stamp;
            if !later {
                let marks = &mut ExpiryMarks {
                    table: &st.table,
                    links: &st.links,
                    metas: &mut st.metas,
                };
                st.expiry.schedule(marks, node, deadline);
            }
            st.engine
                .on_update(&mut st.links, node, old_weight, weight, deadline);
            bump_locked(&self.counters.updates, 1);
            bump_locked(&self.counters.replaced, 1);
            if let (Some(out), Some(old_value)) = (sink.as_deref_mut(), old_value) {
                out.push((key, old_value, RemovalCause::Replaced));
            }
            st.evict_to(st.capacity, &self.counters, sink);
        } else {
            if w > st.capacity {
                bump_locked(&self.counters.evicted_size, 1);
                if let Some(out) = sink {
                    out.push((key, value.into_value(None), RemovalCause::Size));
                }
                return true;
            }
            let limit = st.capacity - w;
            let spare = st.evict_to(limit, &self.counters, sink);
            let value = value.into_value(spare);
            st.make_room();
            let meta = Meta {
                queued: ExpiryQueue::UNQUEUED,
                written_at: now,
                ttl_deadline,
                weight,
            };
            let node = match st.free.pop() {
                Some(node) => {
                    if st.keeps_metas() {
                        st.metas[node as usize] = meta;
                    }
                    node
                }
                None => {
                    st.metas.push(meta);
                    (st.metas.len() - 1) as u32
                }
            };
            let slot = Slot {
                key,
                value,
                stamp: AtomicU64::new(if st.timed { deadline } else { now }),
                access: Access::new(st.timed && fixed_ttl),
                node,
            };
            let State {
                table,
                hasher,
                metas,
                links,
                engine,
                expiry,
                ..
            } = &mut *st;
            let bucket = table
                .insert_unique(hash, slot, |s| hasher.hash_one(&s.key))
                .bucket_index();
            links.set_bucket(node, bucket as u32);
            expiry.schedule(
                &mut ExpiryMarks {
                    table,
                    links,
                    metas,
                },
                node,
                deadline,
            );
            engine.on_insert(links, node, hash, weight, deadline);
            st.weight += w;
            bump_locked(&self.counters.inserts, 1);
        }
        self.publish(st);
        true
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
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let mut st = self.state.write();
        let node = st.find(hash, key)?.node;
        let (k, v, deadline) = st.take(node)?;
        let (cause, out) = if expired(deadline, &timing.clock) {
            bump_locked(&self.counters.expired, 1);
            (RemovalCause::Expired, None)
        } else {
            bump_locked(&self.counters.invalidated, 1);
            (RemovalCause::Explicit, Some(v.clone()))
        };
        self.publish(&st);
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
            .table
            .iter()
            .filter(|s| pred(&s.key, &s.value))
            .map(|s| s.node)
            .collect();
        for node in doomed {
            if let Some((k, v, _)) = st.take(node) {
                bump_locked(&self.counters.invalidated, 1);
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
            st.table
                .iter()
                .filter(|s| s.deadline(st.timed) > now)
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

impl<K, V> State<K, V> {
    /// Whether the metas hold anything: in a shard that is neither timed
    /// nor weighted, every entry weighs 1, its write time is in its slot
    /// and it is never queued for expiry, so writes leave the metas alone
    /// (until [`Self::make_timed`] fills them).
    #[inline]
    fn keeps_metas(&self) -> bool {
        self.timed || self.weighted
    }

    /// The metas, if the shard keeps them.
    #[inline]
    fn kept_metas(&self) -> Option<&[Meta]> {
        self.keeps_metas().then_some(self.metas.as_slice())
    }
}

impl<K: Hash + Eq, V> State<K, V> {
    /// Turns an untimed shard timed, before its first deadline: write
    /// times move from the slots to the metas, and every slot's stamp
    /// becomes "never".
    fn make_timed(&mut self) {
        if self.timed {
            return;
        }
        let kept = self.keeps_metas();
        for slot in self.table.iter() {
            if let Some(meta) = self.metas.get_mut(slot.node as usize) {
                if !kept {
                    *meta = Meta::default();
                }
                meta.written_at = slot.stamp();
            }
            slot.stamp.store(NEVER, Ordering::Relaxed);
        }
        self.timed = true;
    }

    #[inline]
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<&Slot<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table.find(hash, |s| s.key.borrow() == key)
    }

    /// Makes sure the next insertion cannot move entries: if the table is
    /// full it grows (or rehashes) now, and every entry's new bucket is
    /// recorded in its meta.
    fn make_room(&mut self) {
        if self.table.capacity() > self.table.len() {
            return;
        }
        let (links, hasher) = (&mut self.links, &self.hasher);
        self.table.reserve(1, |s| hasher.hash_one(&s.key));
        for bucket in self.table.iter_buckets() {
            if let Some(slot) = self.table.get_bucket(bucket) {
                links.set_bucket(slot.node, bucket as u32);
            }
        }
    }

    /// Unlinks the entry holding `node` from everything; returns its key,
    /// value and deadline.
    fn take(&mut self, node: u32) -> Option<(K, V, u64)> {
        let bucket = self.links.bucket(node)?;
        let entry = self.table.get_bucket_entry(bucket as usize).ok()?;
        if entry.get().node != node {
            return None;
        }
        let (slot, _) = entry.remove();
        let deadline = slot.deadline(self.timed);
        let weight = if self.weighted {
            self.metas.get(node as usize).map_or(1, |m| m.weight)
        } else {
            1
        };
        let marks = &mut ExpiryMarks {
            table: &self.table,
            links: &self.links,
            metas: &mut self.metas,
        };
        self.expiry.unschedule(marks, node);
        self.engine.on_remove(&mut self.links, node, weight);
        self.free.push(node);
        self.weight -= u64::from(weight);
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
        let State {
            expiry,
            table,
            links,
            metas,
            ..
        } = self;
        let due = expiry.due(
            &mut ExpiryMarks {
                table,
                links,
                metas,
            },
            now,
            exact,
        );
        for node in due {
            if let Some((k, v, _)) = self.take(node) {
                bump_locked(&counters.expired, 1);
                if let Some(s) = sink.as_deref_mut() {
                    s.push((k, v, RemovalCause::Expired));
                }
            }
        }
    }

    /// Evicts until the total weight is at most `limit`. Returns the value
    /// of the last entry evicted unless the sink took it.
    #[inline]
    fn evict_to(&mut self, limit: u64, counters: &Counters, sink: Sink<'_, K, V>) -> Option<V> {
        if self.weight <= limit {
            return None;
        }
        self.evict_some(limit, counters, sink)
    }

    /// [`Self::evict_to`]'s loop, out of line.
    #[inline(never)]
    fn evict_some(
        &mut self,
        limit: u64,
        counters: &Counters,
        mut sink: Sink<'_, K, V>,
    ) -> Option<V> {
        let mut spare = None;
        while self.weight > limit {
            let State {
                engine,
                table,
                hasher,
                metas,
                links,
                timed,
                weighted,
                ..
            } = self;
            let info = |links: &Links, n| {
                let slot = by_node(table, links, n);
                let weight = if *weighted {
                    metas.get(n as usize).map_or(1, |m| m.weight)
                } else {
                    1
                };
                SlotInfo {
                    deadline: slot.map_or(0, |s| s.deadline(*timed)),
                    access: slot.map(|s| &s.access),
                    weight,
                }
            };
            let hash_of =
                |links: &Links, n| by_node(table, links, n).map_or(0, |s| hasher.hash_one(&s.key));
            let Some(node) = engine.victim(links, info, hash_of) else {
                return spare;
            };
            let Some((k, v, _)) = self.take(node) else {
                return spare;
            };
            bump_locked(&counters.evicted_size, 1);
            match sink.as_deref_mut() {
                Some(s) => s.push((k, v, RemovalCause::Size)),
                None => spare = Some(v),
            }
        }
        spare
    }

    fn clear(&mut self) -> Vec<(K, V)> {
        self.metas.clear();
        self.links.clear();
        self.free.clear();
        self.expiry.clear();
        self.engine.clear();
        self.weight = 0;
        self.table.drain().map(|s| (s.key, s.value)).collect()
    }
}

impl<K: Hash + Eq, V> Shard<K, V> {
    /// Removes everything.
    pub(crate) fn clear(&self, sink: Sink<'_, K, V>) {
        let mut st = self.state.write();
        let all = st.clear();
        bump_locked(&self.counters.invalidated, all.len() as u64);
        self.publish(&st);
        drop(st);
        if let Some(s) = sink {
            s.extend(all.into_iter().map(|(k, v)| (k, v, RemovalCause::Explicit)));
        }
    }
}

#[cfg(all(test, not(keel_loom)))]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            clock: Clock::manual().0,
            tti: 0,
            fixed_ttl: 0,
        }
    }

    /// Every entry's meta names the bucket that holds it, and every entry
    /// is reachable from its node.
    fn assert_buckets_true(shard: &Shard<u64, u64>) {
        let st = shard.state.read();
        assert_eq!(st.table.len(), st.metas.len() - st.free.len());
        for bucket in st.table.iter_buckets() {
            let slot = st.table.get_bucket(bucket).expect("a full bucket");
            assert_eq!(st.links.bucket(slot.node), Some(bucket as u32));
            let found = by_node(&st.table, &st.links, slot.node).expect("reachable");
            assert_eq!(found.key, slot.key);
        }
    }

    #[test]
    fn hit_counts_are_exact_to_64_and_estimated_without_bias_above() {
        let access = Access::new(false);
        for _ in 0..EXACT_HITS {
            access.hit(true);
        }
        assert_eq!((access.hits(), access.freq()), (EXACT_HITS, MAX_FREQ as u8));
        // Above, each count is an estimate whose spread is about 9%; the
        // mean of 40 counts is far tighter.
        let (runs, hits) = (40u64, 20_000u32);
        let total: u64 = (0..runs)
            .map(|_| {
                let access = Access::new(false);
                for _ in 0..hits {
                    access.hit(false);
                }
                u64::from(access.hits())
            })
            .sum();
        let mean = total as f64 / runs as f64;
        assert!(
            (mean / f64::from(hits) - 1.0).abs() < 0.1,
            "mean estimate {mean} for {hits} hits"
        );
        for n in [1, 2, 65, 1_000, u32::MAX] {
            assert!((0..1_000).all(|_| sample_below(n) < n));
        }
    }

    #[test]
    fn buckets_stay_true_through_growth_rehashes_and_churn() {
        for policy in [CachePolicy::default(), CachePolicy::Lru, CachePolicy::Fifo] {
            let capacity = 1_000;
            let shard = Shard::new(policy, capacity, 0, false, Default::default(), false);
            let timing = timing();
            let hash = |k: u64| k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            // Growth from empty, then eviction churn (removals leave
            // tombstones, so the table rehashes in place now and then),
            // with explicit removals mixed in.
            for k in 0..50_000u64 {
                shard.insert(
                    hash(k),
                    k,
                    Incoming::Owned(k),
                    1,
                    None,
                    &timing,
                    None,
                    || true,
                );
                if k % 7 == 0 {
                    let old = k / 2;
                    shard.remove(hash(old), &old, &timing, None);
                }
                if k % 4_999 == 0 {
                    assert_buckets_true(&shard);
                }
            }
            assert_buckets_true(&shard);
            let len = shard.counters.len.load(Ordering::Relaxed);
            assert!(len <= capacity, "{len} entries in a cache of {capacity}");
            // The newest key is still there and readable.
            let last = 49_999;
            assert_eq!(
                shard.get(hash(last), &last, &timing, |f| f.slot.value),
                Some(last)
            );
        }
    }
}
