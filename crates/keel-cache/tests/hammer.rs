//! Many tasks on many threads doing get/insert/remove at once; afterwards
//! the capacity holds and the counters add up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keel_cache::{CachePolicy, LocalCache, RemovalCause};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hammering_keeps_capacity_and_stats_consistent() {
    for policy in CachePolicy::ALL {
        let departed = Arc::new(AtomicU64::new(0));
        let d = departed.clone();
        let cache: LocalCache<u64, u64> = LocalCache::builder(500)
            .policy(policy)
            .shards(4)
            .eviction_listener(move |k, v, cause| {
                assert_eq!(k * 3, v, "value belongs to its key");
                if cause != RemovalCause::Replaced {
                    d.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        let gets = Arc::new(AtomicU64::new(0));
        let removed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let (cache, gets, removed) = (cache.clone(), gets.clone(), removed.clone());
            tasks.push(tokio::spawn(async move {
                let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for i in 0..5_000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = (x >> 24) % 2_000;
                    match x % 10 {
                        0..=5 => {
                            gets.fetch_add(1, Ordering::Relaxed);
                            if let Some(v) = cache.get(&key) {
                                assert_eq!(v, key * 3);
                            }
                        }
                        6..=8 => cache.insert(key, key * 3),
                        _ => {
                            if cache.remove(&key).is_some() {
                                removed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    if i % 256 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("hammer task");
        }
        let s = cache.stats();
        assert!(cache.len() <= 500, "{policy}: {}", cache.len());
        assert_eq!(s.entries, cache.iter().count() as u64, "{policy}");
        assert_eq!(s.hits + s.misses, gets.load(Ordering::Relaxed), "{policy}");
        assert_eq!(s.invalidations, removed.load(Ordering::Relaxed), "{policy}");
        assert_eq!(s.updates, s.replacements, "{policy}");
        assert_eq!(
            s.inserts,
            s.entries + s.evictions_size + s.invalidations + s.expirations,
            "{policy}: {s:?}"
        );
        assert_eq!(
            departed.load(Ordering::Relaxed),
            s.evictions_size + s.invalidations,
            "{policy}"
        );
        assert!(s.hits > 0 && s.evictions_size > 0, "{policy}: {s:?}");
    }
}
