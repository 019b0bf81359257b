//! Expiry on a clock the test moves: time-to-live, per-entry TTL,
//! time-to-idle, jitter, reclamation without touching the key, and the TTL
//! policy's choice of victim.

mod support;

use std::time::Duration;

use keel_cache::{CachePolicy, Clock, LocalCache, RemovalCause, TtlCache};
use support::Heard;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn entry_is_returned_until_its_ttl_and_never_after() {
    let (clock, time) = Clock::manual();
    let cache: LocalCache<u64, u64> = LocalCache::builder(100)
        .time_to_live(10 * SEC)
        .clock(clock)
        .build();
    cache.insert(1, 10);
    time.advance(10 * SEC - Duration::from_nanos(1));
    assert_eq!(cache.get(&1), Some(10));
    assert!(cache.contains_key(&1));
    time.advance(Duration::from_nanos(1));
    assert_eq!(cache.get(&1), None);
    assert!(!cache.contains_key(&1));
    assert_eq!(cache.iter().count(), 0);
}

#[test]
fn per_entry_ttl_overrides_the_default() {
    let (clock, time) = Clock::manual();
    let cache: LocalCache<u64, u64> = LocalCache::builder(100)
        .time_to_live(10 * SEC)
        .clock(clock)
        .build();
    cache.insert_with_ttl(1, 1, 2 * SEC);
    cache.insert_with_ttl(2, 2, 60 * SEC);
    cache.insert(3, 3);
    time.advance(3 * SEC);
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&2), Some(2));
    time.advance(8 * SEC);
    assert_eq!(cache.get(&3), None);
    assert_eq!(cache.get(&2), Some(2));
    let entry = cache.get_entry(&2).expect("entry 2 is live");
    assert_eq!(entry.age(), 11 * SEC);
    assert_eq!(entry.expires_in(), Some(49 * SEC));
}

#[test]
fn a_cache_without_ttl_keeps_write_times_through_its_first_per_entry_ttl() {
    let (clock, time) = Clock::manual();
    let cache: LocalCache<u64, u64> = LocalCache::builder(100).clock(clock).shards(1).build();
    let age = |k: u64| cache.get_entry(&k).map(|e| (e.age(), e.expires_in()));
    cache.insert(1, 10);
    time.advance(5 * SEC);
    cache.insert(1, 11);
    cache.insert(2, 20);
    time.advance(3 * SEC);
    assert_eq!(age(1), Some((3 * SEC, None)));
    assert_eq!(age(2), Some((3 * SEC, None)));
    // The first entry with a deadline; the others keep their write times
    // and still never expire.
    cache.insert_with_ttl(3, 30, 10 * SEC);
    time.advance(2 * SEC);
    assert_eq!(age(1), Some((5 * SEC, None)));
    assert_eq!(age(3), Some((2 * SEC, Some(8 * SEC))));
    cache.insert(2, 21);
    time.advance(SEC);
    assert_eq!(age(2), Some((SEC, None)));
    time.advance(7 * SEC);
    assert_eq!(cache.get(&3), None);
    assert_eq!((cache.get(&1), cache.get(&2)), (Some(11), Some(21)));
    assert!(cache.contains_key(&1) && !cache.contains_key(&3));
    let mut live: Vec<u64> = cache.iter().map(|(k, _)| k).collect();
    live.sort_unstable();
    assert_eq!(live, vec![1, 2]);
}

#[test]
fn entries_from_a_churned_cache_without_ttl_keep_their_times_once_deadlines_start() {
    // Without deadlines or a weigher the cache keeps no per-entry metadata
    // beside the entries; evictions reuse the places of evicted entries.
    // The first deadline must give every survivor its own write time,
    // weight 1 and no deadline, whatever the reused places held before.
    let (clock, time) = Clock::manual();
    let cache: LocalCache<u64, u64> = LocalCache::builder(50).clock(clock).shards(1).build();
    for k in 0..500 {
        cache.insert(k, k);
        time.advance(SEC);
    }
    cache.insert_with_ttl(1_000, 1, 5 * SEC);
    let survivors: Vec<u64> = cache.iter().map(|(k, _)| k).filter(|&k| k < 500).collect();
    assert_eq!(survivors.len(), 49);
    let youngest = *survivors.iter().max().expect("survivors");
    for &k in &survivors {
        let entry = cache.get_entry(&k).expect("a survivor is live");
        assert_eq!(entry.age(), (500 - k as u32) * SEC, "key {k}");
        assert_eq!((entry.expires_in(), entry.weight()), (None, 1), "key {k}");
    }
    time.advance(6 * SEC);
    cache.purge_expired();
    assert_eq!(cache.get(&1_000), None);
    assert_eq!(cache.get(&youngest), Some(youngest));
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.expirations), (49, 1));
    // Churn again with deadlines: the survivors are evicted, never expired.
    for k in 2_000..2_100 {
        cache.insert_with_ttl(k, k, 100 * SEC);
    }
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.expirations), (50, 1));
    assert_eq!(stats.inserts - stats.evictions_size - stats.expirations, 50);
    // And the entries written into the now timed cache hold their own times.
    time.advance(3 * SEC);
    let last = cache.get_entry(&2_099).expect("the newest entry is live");
    assert_eq!(last.age(), 3 * SEC);
    assert_eq!(last.expires_in(), Some(97 * SEC));
}

#[test]
fn write_times_hold_across_default_and_own_ttls() {
    for jitter in [0.0, 0.5] {
        let (clock, time) = Clock::manual();
        let cache: LocalCache<u64, u64> = LocalCache::builder(100)
            .time_to_live(100 * SEC)
            .ttl_jitter(jitter)
            .clock(clock)
            .shards(1)
            .build();
        let age = |k: u64| cache.get_entry(&k).map(|e| e.age());
        cache.insert(1, 10);
        time.advance(5 * SEC);
        cache.insert(1, 11);
        time.advance(3 * SEC);
        assert_eq!(age(1), Some(3 * SEC), "jitter {jitter}");
        cache.insert_with_ttl(1, 12, 7 * SEC);
        time.advance(2 * SEC);
        assert_eq!(age(1), Some(2 * SEC), "jitter {jitter}");
        // Jitter shortens every time-to-live, by up to half here.
        let left = cache.get_entry(&1).and_then(|e| e.expires_in());
        assert!(
            left.is_some_and(|d| d <= 5 * SEC && (jitter > 0.0 || d == 5 * SEC)),
            "jitter {jitter}: {left:?}"
        );
        cache.insert(1, 13);
        time.advance(SEC);
        assert_eq!(age(1), Some(SEC), "jitter {jitter}");
        // A rewrite with a shorter time-to-live than the last still
        // expires on time.
        cache.insert_with_ttl(1, 14, 2 * SEC);
        time.advance(2 * SEC);
        assert_eq!(cache.get(&1), None, "jitter {jitter}");
        cache.purge_expired();
        assert_eq!(cache.len(), 0, "jitter {jitter}");
    }
}

#[test]
fn rewriting_a_key_restarts_its_ttl() {
    let (clock, time) = Clock::manual();
    let cache: LocalCache<u64, u64> = LocalCache::builder(100)
        .time_to_live(10 * SEC)
        .clock(clock)
        .build();
    cache.insert(1, 1);
    time.advance(8 * SEC);
    cache.insert(1, 2);
    time.advance(8 * SEC);
    assert_eq!(cache.get(&1), Some(2));
}

#[test]
fn time_to_idle_expires_entries_nobody_reads() {
    let (clock, time) = Clock::manual();
    for policy in CachePolicy::ALL {
        let cache: LocalCache<u64, u64> = LocalCache::builder(100)
            .policy(policy)
            .time_to_idle(5 * SEC)
            .time_to_live(30 * SEC)
            .clock(clock.clone())
            .build();
        cache.insert(1, 1);
        cache.insert(2, 2);
        for _ in 0..5 {
            time.advance(4 * SEC);
            assert_eq!(cache.get(&1), Some(1), "{policy}");
        }
        assert_eq!(cache.get(&2), None, "{policy}: idle for 20s");
        // Reads keep it alive, but not past its time-to-live.
        for _ in 0..2 {
            time.advance(4 * SEC);
            assert_eq!(cache.get(&1), Some(1), "{policy}");
        }
        time.advance(4 * SEC);
        assert_eq!(cache.get(&1), None, "{policy}: 32s after the write");
    }
}

#[test]
fn expired_entries_are_reclaimed_without_touching_the_key() {
    let heard = Heard::default();
    let (clock, time) = Clock::manual();
    let cache: LocalCache<u64, u64> = LocalCache::builder(1000)
        .time_to_live(SEC)
        .shards(1)
        .clock(clock)
        .eviction_listener(heard.listener())
        .build();
    for k in 0..100 {
        cache.insert(k, k);
    }
    time.advance(2 * SEC);
    // A write to the shard sweeps what is due.
    cache.insert(1000, 0);
    assert_eq!(cache.len(), 1);
    let expired = heard.take();
    assert_eq!(expired.len(), 100);
    assert!(expired.iter().all(|e| e.2 == RemovalCause::Expired));
    let stats = cache.stats();
    assert_eq!(stats.expirations, 100);
    // And a quiet cache is swept on request.
    time.advance(2 * SEC);
    cache.purge_expired();
    assert_eq!(cache.len(), 0);
    assert_eq!(heard.take().len(), 1);
}

#[test]
fn ttl_jitter_spreads_deadlines_within_the_fraction() {
    let (clock, _time) = Clock::manual();
    let cache: LocalCache<u64, u64> = LocalCache::builder(1000)
        .time_to_live(100 * SEC)
        .ttl_jitter(0.2)
        .clock(clock)
        .build();
    for k in 0..200 {
        cache.insert(k, k);
    }
    let mut left: Vec<Duration> = (0..200)
        .map(|k| {
            cache
                .get_entry(&k)
                .and_then(|e| e.expires_in())
                .expect("every entry has a deadline")
        })
        .collect();
    assert!(left.iter().all(|d| *d >= 80 * SEC && *d <= 100 * SEC));
    left.sort_unstable();
    left.dedup();
    assert!(left.len() > 100, "only {} distinct deadlines", left.len());
}

#[test]
fn ttl_policy_evicts_the_entry_closest_to_expiry() {
    let heard = Heard::default();
    let (clock, _time) = Clock::manual();
    let cache: TtlCache<&str, u64> = TtlCache::new(3);
    drop(cache);
    let cache: LocalCache<&str, u64> = TtlCache::builder(3)
        .clock(clock)
        .eviction_listener(heard.listener())
        .build();
    cache.insert("forever", 0);
    cache.insert_with_ttl("late", 1, 30 * SEC);
    cache.insert_with_ttl("soon", 2, 10 * SEC);
    cache.insert_with_ttl("new", 3, 20 * SEC);
    assert_eq!(heard.take(), vec![("soon", 2, RemovalCause::Size)]);
    cache.insert_with_ttl("newer", 4, 40 * SEC);
    assert_eq!(heard.take(), vec![("new", 3, RemovalCause::Size)]);
    cache.insert_with_ttl("newest", 5, 50 * SEC);
    cache.insert_with_ttl("last", 6, 60 * SEC);
    assert_eq!(
        heard.take(),
        vec![
            ("late", 1, RemovalCause::Size),
            ("newer", 4, RemovalCause::Size)
        ]
    );
    // Entries that never expire go once no entry has a deadline.
    assert!(cache.contains_key("forever"));
}

#[test]
fn a_quiet_cache_is_swept_in_the_background() {
    let heard = Heard::default();
    let (clock, time) = Clock::manual();
    let cache: LocalCache<u64, u64> = LocalCache::builder(1000)
        .time_to_live(SEC)
        .clock(clock)
        .sweep_every(Some(Duration::from_millis(10)))
        .eviction_listener(heard.listener())
        .build();
    for k in 0..50 {
        cache.insert(k, k);
    }
    cache.insert_with_ttl(100, 100, 10 * SEC);
    time.advance(2 * SEC);
    // Nobody touches the cache from here: the sweeper reclaims what expired
    // (the wait is for the sweeper thread, not for time to pass).
    let started = std::time::Instant::now();
    while cache.len() > 1 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.get(&100), Some(100));
    let mut expired = Vec::new();
    while expired.len() < 50 && started.elapsed() < Duration::from_secs(10) {
        expired.extend(heard.take());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(expired.len(), 50);
    assert!(expired.iter().all(|e| e.2 == RemovalCause::Expired));
    assert_eq!(cache.stats().expirations, 50);
}
