//! Property tests: each policy on one shard against a simple, obviously
//! correct single-threaded reference model.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use keel_cache::{CachePolicy, Clock, LocalCache, RemovalCause};
use proptest::prelude::*;
use support::Heard;

#[derive(Debug, Clone)]
enum Op {
    Get(u8),
    Insert(u8, u32),
    Remove(u8),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => (0u8..16).prop_map(Op::Get),
        4 => (0u8..16, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        1 => (0u8..16).prop_map(Op::Remove),
    ];
    prop::collection::vec(op, 1..300)
}

/// Reference caches: a list of (key, value, frequency, last use) and an
/// eviction rule.
#[derive(Debug)]
struct Reference {
    policy: CachePolicy,
    capacity: usize,
    /// Front = oldest (insertion order for FIFO, use order for LRU).
    entries: Vec<(u8, u32, u64, u64)>,
    tick: u64,
}

impl Reference {
    fn new(policy: CachePolicy, capacity: usize) -> Self {
        Self {
            policy,
            capacity,
            entries: Vec::new(),
            tick: 0,
        }
    }

    fn pos(&self, k: u8) -> Option<usize> {
        self.entries.iter().position(|e| e.0 == k)
    }

    fn touch(&mut self, i: usize) {
        self.tick += 1;
        self.entries[i].2 += 1;
        self.entries[i].3 = self.tick;
        if self.policy == CachePolicy::Lru {
            let e = self.entries.remove(i);
            self.entries.push(e);
        }
    }

    fn get(&mut self, k: u8) -> Option<u32> {
        let i = self.pos(k)?;
        let v = self.entries[i].1;
        self.touch(i);
        Some(v)
    }

    /// Returns the evicted key, if any.
    fn insert(&mut self, k: u8, v: u32) -> Option<u8> {
        if let Some(i) = self.pos(k) {
            self.entries[i].1 = v;
            if self.policy != CachePolicy::Fifo {
                self.touch(i);
            }
            return None;
        }
        let mut evicted = None;
        if self.entries.len() == self.capacity {
            let victim = match self.policy {
                CachePolicy::Lfu => (0..self.entries.len())
                    .min_by_key(|&i| (self.entries[i].2, self.entries[i].3))
                    .unwrap_or(0),
                _ => 0,
            };
            evicted = Some(self.entries.remove(victim).0);
        }
        self.tick += 1;
        self.entries.push((k, v, 1, self.tick));
        evicted
    }

    fn remove(&mut self, k: u8) -> Option<u32> {
        let i = self.pos(k)?;
        Some(self.entries.remove(i).1)
    }
}

fn check_against_reference(policy: CachePolicy, capacity: usize, ops: &[Op]) {
    let heard = Heard::default();
    let cache: LocalCache<u8, u32> = LocalCache::builder(capacity as u64)
        .policy(policy)
        .shards(1)
        .eviction_listener(heard.listener())
        .build();
    let mut model = Reference::new(policy, capacity);
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Get(k) => assert_eq!(cache.get(&k), model.get(k), "step {step}: {op:?}"),
            Op::Insert(k, v) => {
                let evicted = model.insert(k, v);
                cache.insert(k, v);
                let sized: Vec<u8> = heard
                    .take()
                    .into_iter()
                    .filter(|e| e.2 == RemovalCause::Size)
                    .map(|e| e.0)
                    .collect();
                assert_eq!(
                    sized,
                    evicted.into_iter().collect::<Vec<_>>(),
                    "step {step}: {op:?}"
                );
            }
            Op::Remove(k) => {
                assert_eq!(cache.remove(&k), model.remove(k), "step {step}: {op:?}");
                heard.take();
            }
        }
        let mut have: Vec<(u8, u32)> = cache.iter().collect();
        have.sort_unstable();
        let mut want: Vec<(u8, u32)> = model.entries.iter().map(|e| (e.0, e.1)).collect();
        want.sort_unstable();
        assert_eq!(have, want, "step {step}: {op:?}");
    }
}

proptest! {
    #[test]
    fn lru_matches_exact_lru(capacity in 1usize..8, ops in ops()) {
        check_against_reference(CachePolicy::Lru, capacity, &ops);
    }

    #[test]
    fn fifo_matches_exact_fifo(capacity in 1usize..8, ops in ops()) {
        check_against_reference(CachePolicy::Fifo, capacity, &ops);
    }

    #[test]
    fn lfu_matches_lfu_with_recency_tie_break(capacity in 1usize..8, ops in ops()) {
        check_against_reference(CachePolicy::Lfu, capacity, &ops);
    }

    #[test]
    fn s3_fifo_holds_what_it_reports(capacity in 1usize..8, ops in ops()) {
        // No exact reference exists for a policy that approximates; check it
        // against a map: every value read back is the last one written,
        // nothing beyond capacity, and every departure is reported.
        let heard = Heard::default();
        let cache: LocalCache<u8, u32> = LocalCache::builder(capacity as u64)
            .shards(1)
            .eviction_listener(heard.listener())
            .build();
        let mut model: HashMap<u8, u32> = HashMap::new();
        for op in &ops {
            match *op {
                Op::Get(k) => {
                    let got = cache.get(&k);
                    prop_assert!(got.is_none() || got == model.get(&k).copied());
                }
                Op::Insert(k, v) => { cache.insert(k, v); model.insert(k, v); }
                Op::Remove(k) => { cache.remove(&k); model.remove(&k); }
            }
            for (k, _, cause) in heard.take() {
                if cause != RemovalCause::Replaced {
                    model.remove(&k);
                }
            }
            prop_assert!(cache.len() <= capacity as u64);
            let mut have: Vec<(u8, u32)> = cache.iter().collect();
            have.sort_unstable();
            let mut want: Vec<(u8, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
            want.sort_unstable();
            prop_assert_eq!(have, want);
        }
    }

    #[test]
    fn entries_expire_in_deadline_order(
        capacity in 1usize..8,
        ops in prop::collection::vec((0u8..16, 1u64..50, 0u64..20), 1..200),
        policy in prop::sample::select(CachePolicy::ALL.to_vec()),
    ) {
        // Each step inserts a key with a TTL, then moves the clock. The model
        // knows every deadline: a key is readable exactly while its deadline
        // is ahead; when the TTL policy must evict, it evicts the live entry
        // with the earliest deadline. Writes reclaim entries whose deadline
        // passed before the current ~17 ms bucket, so deadlines fall on half
        // seconds and the clock on whole ones (times here are in ms).
        let heard = Heard::default();
        let (clock, time) = Clock::manual();
        let cache: LocalCache<u8, u64> = LocalCache::builder(capacity as u64)
            .policy(policy)
            .shards(1)
            .clock(clock)
            .eviction_listener(heard.listener())
            .build();
        let mut deadlines: HashMap<u8, u64> = HashMap::new();
        let mut now = 0u64;
        for &(k, ttl, step) in &ops {
            deadlines.retain(|_, d| *d > now);
            let full = deadlines.len() == capacity && !deadlines.contains_key(&k);
            let earliest = deadlines.values().min().copied();
            let ttl = ttl * 1000 + 500;
            cache.insert_with_ttl(k, ttl, Duration::from_millis(ttl));
            for (gone, _, cause) in heard.take() {
                match cause {
                    RemovalCause::Size => {
                        prop_assert!(full);
                        if policy == CachePolicy::Ttl {
                            prop_assert_eq!(Some(deadlines[&gone]), earliest);
                        }
                        deadlines.remove(&gone);
                    }
                    RemovalCause::Expired => prop_assert!(!deadlines.contains_key(&gone)),
                    RemovalCause::Replaced => prop_assert_eq!(gone, k),
                    RemovalCause::Explicit => prop_assert!(false, "nothing was removed"),
                }
            }
            deadlines.insert(k, now + ttl);
            time.advance(Duration::from_secs(step));
            now += step * 1000;
            for key in 0u8..16 {
                let live = deadlines.get(&key).is_some_and(|d| *d > now);
                prop_assert_eq!(cache.get(&key).is_some(), live, "key {} at {}", key, now);
            }
        }
        time.advance(Duration::from_secs(100));
        cache.purge_expired();
        prop_assert_eq!(cache.len(), 0);
    }
}
