//! A model of the shard core under concurrency: readers recording hits
//! under the read lock while writers insert, evict and remove.
//!
//! With `RUSTFLAGS="--cfg keel_loom"` this runs under loom, which explores
//! every interleaving (`cargo test -p keel-cache --release --test
//! model_concurrent`). In normal builds the same scenarios run many times on
//! real threads, so the default test run exercises them too.

use keel_cache::{CachePolicy, LocalCache};

#[cfg(keel_loom)]
use loom::thread;
#[cfg(not(keel_loom))]
use std::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    #[cfg(keel_loom)]
    loom::model(f);
    #[cfg(not(keel_loom))]
    for _ in 0..500 {
        f();
    }
}

/// A reader hitting (and bumping S3-FIFO frequencies) while a writer fills
/// the shard past capacity: the reader sees each key's own value or
/// nothing, capacity holds, and the counters add up.
#[test]
fn reads_race_inserts_and_evictions() {
    for policy in [CachePolicy::S3Fifo, CachePolicy::Lru] {
        model(move || {
            let cache: LocalCache<u64, u64> =
                LocalCache::builder(2).policy(policy).shards(1).build();
            cache.insert(1, 10);
            let reader = {
                let cache = cache.clone();
                thread::spawn(move || {
                    for k in [1, 2, 1] {
                        if let Some(v) = cache.get(&k) {
                            assert_eq!(v, k * 10);
                        }
                    }
                })
            };
            cache.insert(2, 20);
            cache.insert(3, 30);
            let _ = reader.join();
            let s = cache.stats();
            assert!(cache.len() <= 2);
            assert_eq!(s.hits + s.misses, 3);
            assert_eq!(s.inserts, s.entries + s.evictions_size);
            assert!(cache.get(&3) == Some(30), "the newest insert survives");
        });
    }
}

/// Two writers on one key and a remover: the survivor is one of the written
/// values, and every insert is counted once as insert or update.
#[test]
fn writers_and_remover_on_one_key() {
    model(|| {
        let cache: LocalCache<u64, u64> = LocalCache::builder(4).shards(1).build();
        let a = {
            let cache = cache.clone();
            thread::spawn(move || cache.insert(1, 1))
        };
        let b = {
            let cache = cache.clone();
            thread::spawn(move || {
                let _ = cache.remove(&1);
            })
        };
        cache.insert(1, 2);
        let _ = a.join();
        let _ = b.join();
        let s = cache.stats();
        assert_eq!(s.inserts + s.updates, 2);
        assert_eq!(s.inserts, s.entries + s.invalidations);
        match cache.get(&1) {
            Some(v) => assert!(v == 1 || v == 2),
            None => assert_eq!(s.invalidations, 1),
        }
    });
}
