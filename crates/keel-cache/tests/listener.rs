//! The eviction listener hears every departure with its cause; a weigher
//! bounds total weight.

mod support;

use std::time::Duration;

use keel_cache::{CachePolicy, Clock, LocalCache, RemovalCause};
use support::Heard;

#[test]
fn listener_hears_each_cause() {
    let heard = Heard::default();
    let (clock, time) = Clock::manual();
    let cache: LocalCache<u64, &str> = LocalCache::builder(2)
        .policy(CachePolicy::Fifo)
        .shards(1)
        .clock(clock)
        .eviction_listener(heard.listener())
        .build();
    cache.insert(1, "a");
    cache.insert(1, "b");
    assert_eq!(heard.take(), vec![(1, "a", RemovalCause::Replaced)]);
    cache.insert(2, "c");
    cache.insert(3, "d");
    assert_eq!(heard.take(), vec![(1, "b", RemovalCause::Size)]);
    assert_eq!(cache.remove(&2), Some("c"));
    assert_eq!(heard.take(), vec![(2, "c", RemovalCause::Explicit)]);
    cache.insert_with_ttl(4, "e", Duration::from_secs(1));
    time.advance(Duration::from_secs(1));
    cache.purge_expired();
    assert_eq!(heard.take(), vec![(4, "e", RemovalCause::Expired)]);
    cache.invalidate_all();
    assert_eq!(heard.take(), vec![(3, "d", RemovalCause::Explicit)]);
    let s = cache.stats();
    assert_eq!(
        (
            s.replacements,
            s.evictions_size,
            s.invalidations,
            s.expirations
        ),
        (1, 1, 2, 1)
    );
}

#[test]
fn invalidate_if_removes_only_matching_entries() {
    let heard = Heard::default();
    let cache: LocalCache<u64, u64> = LocalCache::builder(1000)
        .eviction_listener(heard.listener())
        .build();
    for k in 0..100 {
        cache.insert(k, k * 10);
    }
    cache.invalidate_if(|k, _| k % 2 == 0);
    assert_eq!(cache.len(), 50);
    assert!(cache.iter().all(|(k, v)| k % 2 == 1 && v == k * 10));
    let gone = heard.take();
    assert_eq!(gone.len(), 50);
    assert!(
        gone.iter()
            .all(|(k, _, c)| k % 2 == 0 && *c == RemovalCause::Explicit)
    );
}

#[test]
fn a_panicking_listener_does_not_break_the_cache() {
    let cache: LocalCache<u64, u64> = LocalCache::builder(1)
        .shards(1)
        .eviction_listener(|_, _, _| panic!("listener bug"))
        .build();
    cache.insert(1, 1);
    cache.insert(2, 2);
    assert_eq!(cache.get(&2), Some(2));
    assert_eq!(cache.len(), 1);
}

#[test]
fn weigher_bounds_total_weight() {
    for policy in CachePolicy::ALL {
        let heard = Heard::default();
        let cache: LocalCache<u64, String> = LocalCache::builder(100)
            .policy(policy)
            .shards(1)
            .weigher(|_, v: &String| v.len() as u32)
            .eviction_listener(heard.listener())
            .build();
        for k in 0..50 {
            cache.insert(k, "x".repeat((k % 7 + 1) as usize));
            assert!(cache.weighted_size() <= 100, "{policy}");
        }
        let held: u64 = cache.iter().map(|(_, v)| v.len() as u64).sum();
        assert_eq!(held, cache.weighted_size(), "{policy}");
        assert_eq!(
            cache.get_entry(&49).map(|e| e.weight()),
            Some(1),
            "{policy}"
        );
        // Heavier than the whole cache: rejected, and the listener is told.
        heard.take();
        cache.insert(999, "y".repeat(101));
        assert!(!cache.contains_key(&999), "{policy}");
        assert_eq!(
            heard.take(),
            vec![(999, "y".repeat(101), RemovalCause::Size)]
        );
        // Growing an entry in place evicts others to make room.
        cache.insert(1000, "z".repeat(100));
        assert_eq!(cache.weighted_size(), 100, "{policy}");
        assert_eq!(cache.len(), 1, "{policy}");
    }
}

#[test]
fn get_entry_reports_hits_and_weight() {
    let cache: LocalCache<u64, u64> = LocalCache::builder(10).build();
    cache.insert(1, 5);
    for _ in 0..3 {
        cache.get(&1);
    }
    let e = cache.get_entry(&1).expect("entry 1 is live");
    assert_eq!((*e.value(), e.hits(), e.weight()), (5, 4, 1));
    assert_eq!(e.expires_in(), None);
    assert_eq!(e.expires_at(), None);
    assert!(e.inserted_at() <= std::time::Instant::now());
}
