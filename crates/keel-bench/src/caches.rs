//! The caches the `cache` and `hitratio` suites compare, behind one small
//! trait, with their contract names (crates/keel-bench/README.md).

use std::time::Duration;

use keel_cache::{CachePolicy, LocalCache};

/// What the suites need from a cache of `u64` keys and values.
pub(crate) trait BenchCache: Send + Sync {
    /// Looks `key` up.
    fn get(&self, key: u64) -> Option<u64>;
    /// Inserts or replaces `key`.
    fn insert(&self, key: u64, value: u64);
    /// Applies policy work the cache defers to a later call (moka buffers
    /// reads and writes and applies them in batches), so that what the
    /// next access sees reflects every access before it.
    fn settle(&self) {}
    /// Entries held now, where the cache can say (TinyUFO cannot).
    fn len(&self) -> Option<u64> {
        None
    }
}

impl BenchCache for LocalCache<u64, u64> {
    fn get(&self, key: u64) -> Option<u64> {
        LocalCache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        LocalCache::insert(self, key, value);
    }
    fn len(&self) -> Option<u64> {
        Some(LocalCache::len(self))
    }
}

/// moka with any hasher: its default (SipHash) and Keel's (foldhash).
impl<S> BenchCache for moka::sync::Cache<u64, u64, S>
where
    S: std::hash::BuildHasher + Clone + Send + Sync + 'static,
{
    fn get(&self, key: u64) -> Option<u64> {
        moka::sync::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        moka::sync::Cache::insert(self, key, value);
    }
    fn settle(&self) {
        self.run_pending_tasks();
    }
    fn len(&self) -> Option<u64> {
        Some(self.entry_count())
    }
}

/// moka with the hasher Keel's caches use (foldhash's fast one), so its
/// figure is not its default SipHash's.
type MokaFoldhash = moka::sync::Cache<u64, u64, foldhash::fast::RandomState>;

impl BenchCache for quick_cache::sync::Cache<u64, u64> {
    fn get(&self, key: u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        quick_cache::sync::Cache::insert(self, key, value);
    }
    fn len(&self) -> Option<u64> {
        Some(quick_cache::sync::Cache::len(self) as u64)
    }
}

impl BenchCache for tinyufo::TinyUfo<u64, u64> {
    fn get(&self, key: u64) -> Option<u64> {
        tinyufo::TinyUfo::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        // Every entry weighs 1, so the weight limit is the entry capacity.
        let _evicted = self.put(key, value, 1);
    }
}

/// One built cache of any kind.
pub(crate) enum Contender {
    Keel(LocalCache<u64, u64>),
    Moka(moka::sync::Cache<u64, u64>),
    MokaFoldhash(MokaFoldhash),
    QuickCache(quick_cache::sync::Cache<u64, u64>),
    TinyUfo(Box<tinyufo::TinyUfo<u64, u64>>),
}

/// Runs `$body` with `$c` bound to the concrete cache inside a
/// [`Contender`], so hot loops are compiled once per cache type instead of
/// calling through a vtable.
macro_rules! dispatch {
    ($contender:expr, |$c:ident| $body:expr) => {
        match $contender {
            $crate::caches::Contender::Keel($c) => $body,
            $crate::caches::Contender::Moka($c) => $body,
            $crate::caches::Contender::MokaFoldhash($c) => $body,
            $crate::caches::Contender::QuickCache($c) => $body,
            $crate::caches::Contender::TinyUfo(boxed) => {
                let $c = &**boxed;
                $body
            }
        }
    };
}
pub(crate) use dispatch;

impl Contender {
    /// The cache behind the trait, for code that is not timed.
    pub(crate) fn as_dyn(&self) -> &dyn BenchCache {
        dispatch!(self, |c| c)
    }
}

/// A named way to build a [`Contender`] of a given entry capacity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    /// The contract name (`keel-default`, `moka`, ...).
    pub(crate) name: &'static str,
    build: fn(usize) -> Contender,
}

impl Spec {
    /// A cache holding at most `capacity` entries.
    pub(crate) fn build(&self, capacity: usize) -> Contender {
        (self.build)(capacity)
    }
}

/// The peers, each with its default configuration.
pub(crate) const PEERS: [Spec; 3] = [
    Spec {
        name: "moka",
        build: |capacity| Contender::Moka(moka::sync::Cache::new(capacity as u64)),
    },
    Spec {
        name: "quick_cache",
        build: |capacity| Contender::QuickCache(quick_cache::sync::Cache::new(capacity)),
    },
    Spec {
        name: "tinyufo",
        build: |capacity| Contender::TinyUfo(Box::new(tinyufo::TinyUfo::new(capacity, capacity))),
    },
];

/// moka built with Keel's hasher, beside its default one, for the `cache`
/// suite's throughput (the hit-ratio suite keeps the peers' defaults).
pub(crate) const MOKA_FOLDHASH: Spec = Spec {
    name: "moka-foldhash",
    build: |capacity| {
        Contender::MokaFoldhash(
            moka::sync::Cache::builder()
                .max_capacity(capacity as u64)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        )
    },
};

/// A time-to-live no run outlives: entries carry a deadline, none expires.
const LONG_TTL: Duration = Duration::from_secs(3600);

fn keel(capacity: usize, policy: CachePolicy, ttl: Option<Duration>) -> Contender {
    let mut builder = LocalCache::builder(capacity as u64).policy(policy);
    if let Some(ttl) = ttl {
        builder = builder.time_to_live(ttl);
    }
    Contender::Keel(builder.build())
}

/// Keel's policies, `keel-default` first. `keel-ttl` gives every entry a
/// deadline, which is what its policy orders by.
pub(crate) const KEEL: [Spec; 5] = [
    Spec {
        name: "keel-default",
        build: |capacity| keel(capacity, CachePolicy::default(), None),
    },
    Spec {
        name: "keel-lru",
        build: |capacity| keel(capacity, CachePolicy::Lru, None),
    },
    Spec {
        name: "keel-lfu",
        build: |capacity| keel(capacity, CachePolicy::Lfu, None),
    },
    Spec {
        name: "keel-fifo",
        build: |capacity| keel(capacity, CachePolicy::Fifo, None),
    },
    Spec {
        name: "keel-ttl",
        build: |capacity| keel(capacity, CachePolicy::Ttl, Some(LONG_TTL)),
    },
];

/// The default policy with a time-to-live on every entry (long enough that
/// nothing expires during a run): what expiry bookkeeping costs.
pub(crate) const KEEL_DEFAULT_TTL: Spec = Spec {
    name: "keel-default-ttl",
    build: |capacity| keel(capacity, CachePolicy::default(), Some(LONG_TTL)),
};

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Spec> {
        KEEL.into_iter()
            .chain([KEEL_DEFAULT_TTL, MOKA_FOLDHASH])
            .chain(PEERS)
            .collect()
    }

    #[test]
    fn contract_names_are_unique() {
        let mut names: Vec<&str> = all().iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all().len());
        assert_eq!(KEEL[0].name, "keel-default");
    }

    #[test]
    fn every_cache_answers_what_it_was_given_below_capacity() {
        for spec in all() {
            let built = spec.build(1_000);
            let cache = built.as_dyn();
            for key in 0..100 {
                cache.insert(key, key * 2);
            }
            cache.settle();
            for key in 0..100 {
                assert_eq!(cache.get(key), Some(key * 2), "{}", spec.name);
            }
            assert_eq!(cache.get(1_000), None, "{}", spec.name);
        }
    }

    #[test]
    fn no_cache_holds_much_more_than_its_capacity() {
        // A cache that overshot its capacity would win hit ratio unfairly.
        for spec in all() {
            let built = spec.build(1_000);
            let cache = built.as_dyn();
            for key in 0..20_000 {
                cache.insert(key, key);
                cache.settle();
            }
            let resident = (0..20_000).filter(|k| cache.get(*k).is_some()).count();
            assert!(resident <= 1_050, "{} holds {resident}", spec.name);
            assert!(resident >= 500, "{} holds {resident}", spec.name);
        }
    }
}
