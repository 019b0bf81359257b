//! Everyday use: insert, get, replace, remove, capacity, stats.

use keel_cache::{CachePolicy, LocalCache, LruCache};

#[test]
fn get_returns_what_insert_stored() {
    for policy in CachePolicy::ALL {
        let cache: LocalCache<u64, String> = LocalCache::builder(100).policy(policy).build();
        cache.insert(1, "a".into());
        cache.insert(2, "b".into());
        assert_eq!(cache.get(&1).as_deref(), Some("a"), "{policy}");
        assert_eq!(cache.get(&3), None, "{policy}");
        cache.insert(1, "c".into());
        assert_eq!(cache.get(&1).as_deref(), Some("c"), "{policy}");
        assert_eq!(cache.remove(&2).as_deref(), Some("b"), "{policy}");
        assert!(!cache.contains_key(&2), "{policy}");
        assert_eq!(cache.len(), 1, "{policy}");
        let s = cache.stats();
        assert_eq!(
            (s.hits, s.misses, s.inserts, s.updates),
            (2, 1, 2, 1),
            "{policy}"
        );
    }
}

#[test]
fn capacity_bounds_the_entry_count() {
    for policy in CachePolicy::ALL {
        let cache: LocalCache<u64, u64> = LocalCache::builder(1000).policy(policy).build();
        for k in 0..10_000 {
            cache.insert(k, k);
            assert!(cache.len() <= 1000, "{policy}: {}", cache.len());
        }
        assert_eq!(cache.len(), 1000, "{policy}");
        assert_eq!(cache.stats().evictions_size, 9000, "{policy}");
    }
}

#[test]
fn shorthand_builds_with_its_policy() {
    let lru: LruCache<u64, u64> = LruCache::new(10);
    assert_eq!(lru.policy(), CachePolicy::Lru);
    lru.insert(1, 1);
    assert_eq!(lru.get(&1), Some(1));
}
