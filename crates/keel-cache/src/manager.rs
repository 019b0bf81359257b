//! [`CacheManager`]: the named caches of a service, from `[cache]`.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::{BloomSettings, CacheConfig, CacheSettings};
use crate::error::CacheError;
use crate::protect::bloom::BloomFilter;
#[cfg(feature = "redis")]
use crate::remote::{bus::InvalidationBus, redis::RedisCache};
use crate::tiered::{CacheKey, CacheValue, TieredCache, TieredStats};

/// The named caches of a service, built from [`CacheConfig`]: typed
/// handles with [`CacheManager::cache`], and the string-keyed API of the
/// `default` cache (`set`, `get`, `delete`, `clear`) with values of any
/// serde type.
///
/// With `[cache.redis]` (feature `redis`) every cache is tiered, and one
/// `InvalidationBus` keeps the instances' local tiers in step.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), keel_cache::CacheError> {
/// use std::time::Duration;
/// use keel_cache::{CacheConfig, CacheManager};
///
/// let manager = CacheManager::new(CacheConfig::default())?;
/// manager.set("greeting", &"hello", Some(Duration::from_secs(3600))).await?;
/// let value: Option<String> = manager.get("greeting").await?;
/// assert_eq!(value.as_deref(), Some("hello"));
///
/// let users = manager.cache::<u64, String>("default");
/// assert!(users.is_err(), "`default` holds the string-keyed values");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CacheManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CacheManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheManager")
            .field(
                "caches",
                &self.inner.caches.read().keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: CacheConfig,
    #[cfg(feature = "redis")]
    remote: Option<(RedisCache, InvalidationBus)>,
    caches: RwLock<HashMap<String, Registered>>,
    /// The Bloom filters of caches that have one, by name: made on first
    /// use of the cache or first [`CacheManager::mark_exists`], whichever
    /// comes first.
    blooms: parking_lot::Mutex<HashMap<String, Arc<BloomFilter>>>,
}

struct Registered {
    type_id: TypeId,
    types: &'static str,
    cache: Box<dyn Any + Send + Sync>,
    report: Box<dyn Fn() -> CacheReport + Send + Sync>,
    /// Removes a key given in its string form (false: not a key of this
    /// cache's type).
    remove: Box<dyn Fn(String) -> BoxFuture<bool> + Send + Sync>,
    clear: Box<dyn Fn() -> BoxFuture<()> + Send + Sync>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// The state of one named cache, for dashboards and health.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CacheReport {
    /// The cache's name.
    pub name: String,
    /// Its local tier's statistics.
    pub local: crate::CacheStats,
    /// Its tiered counters.
    pub tiered: TieredStats,
    /// Entries in the local tier.
    pub entries: u64,
    /// Capacity of the local tier.
    pub capacity: u64,
    /// Whether its Redis tier is failing.
    pub degraded: bool,
}

/// A value of the string-keyed API: the postcard bytes of any serde type
/// (stored in Redis inside the versioned envelope like any value). A
/// string written as `&str` reads back as `String`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Blob(Vec<u8>);

impl CacheManager {
    /// A manager for `config`. With `[cache.redis]`, connects lazily and
    /// starts the invalidation bus (so it must be called inside a tokio
    /// runtime); a Redis that is down is not an error here: the caches
    /// serve from their local tier until it is back.
    pub fn new(config: CacheConfig) -> Result<Self, CacheError> {
        config.validate().map_err(|problems| {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            CacheError::Config(list.join("; "))
        })?;
        #[cfg(feature = "redis")]
        let remote = match &config.redis {
            Some(redis) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(CacheError::NoRuntime);
                }
                let redis = RedisCache::new(redis.clone())?;
                let bus = InvalidationBus::start(redis.clone());
                Some((redis, bus))
            }
            None => None,
        };
        #[cfg(not(feature = "redis"))]
        if config.redis.is_some() {
            return Err(CacheError::Config(
                "cache.redis is set but keel-cache was built without its `redis` feature".into(),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                #[cfg(feature = "redis")]
                remote,
                caches: RwLock::new(HashMap::new()),
                blooms: parking_lot::Mutex::default(),
            }),
        })
    }

    /// A manager of local caches with the default settings.
    pub fn local() -> Self {
        Self {
            inner: Arc::new(Inner {
                config: CacheConfig::default(),
                #[cfg(feature = "redis")]
                remote: None,
                caches: RwLock::new(HashMap::new()),
                blooms: parking_lot::Mutex::default(),
            }),
        }
    }

    /// The invalidation bus shared by the caches (with `[cache.redis]`).
    #[cfg(feature = "redis")]
    pub fn bus(&self) -> Option<&InvalidationBus> {
        self.inner.remote.as_ref().map(|(_, bus)| bus)
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The typed handle of cache `name`. The first call fixes the cache's
    /// key and value types; a later call with other types is an error, as
    /// is a name that is not configured.
    pub fn cache<K: CacheKey, V: CacheValue>(
        &self,
        name: &str,
    ) -> Result<TieredCache<K, V>, CacheError> {
        let settings =
            self.inner
                .config
                .settings(name)
                .ok_or_else(|| CacheError::UnknownCache {
                    name: name.to_owned(),
                    known: self.inner.config.cache_names().join(", "),
                })?;
        self.handle(name, settings)
    }

    /// Like [`cache`](Self::cache), but a name that is not configured gets
    /// the `[cache]` defaults instead of an error.
    pub fn cache_or_default<K: CacheKey, V: CacheValue>(
        &self,
        name: &str,
    ) -> Result<TieredCache<K, V>, CacheError> {
        let settings = self
            .inner
            .config
            .settings(name)
            .unwrap_or_else(|| self.inner.config.default_settings());
        self.handle(name, settings)
    }

    fn handle<K: CacheKey, V: CacheValue>(
        &self,
        name: &str,
        settings: CacheSettings,
    ) -> Result<TieredCache<K, V>, CacheError> {
        let type_id = TypeId::of::<(K, V)>();
        let types = std::any::type_name::<(K, V)>();
        let found = |r: &Registered| -> Result<TieredCache<K, V>, CacheError> {
            match r.cache.downcast_ref::<TieredCache<K, V>>() {
                Some(cache) if r.type_id == type_id => Ok(cache.clone()),
                _ => Err(CacheError::TypeMismatch {
                    name: name.to_owned(),
                    registered: r.types,
                    requested: types,
                }),
            }
        };
        if let Some(r) = self.inner.caches.read().get(name) {
            return found(r);
        }
        let mut caches = self.inner.caches.write();
        if let Some(r) = caches.get(name) {
            return found(r);
        }
        let bloom = settings.bloom.map(|b| self.bloom(name, b));
        let mut builder = TieredCache::<K, V>::builder(name, settings);
        if let Some(bloom) = bloom {
            builder = builder.bloom_filter(bloom);
        }
        #[cfg(feature = "redis")]
        if let Some((redis, bus)) = &self.inner.remote {
            builder = builder.redis(redis.clone(), Some(bus.clone()));
        }
        let cache = builder.build()?;
        let reported = cache.clone();
        let (removing, clearing) = (cache.clone(), cache.clone());
        caches.insert(
            name.to_owned(),
            Registered {
                type_id,
                types,
                cache: Box::new(cache.clone()),
                report: Box::new(move || CacheReport {
                    name: reported.name().to_owned(),
                    local: reported.local_stats(),
                    tiered: reported.stats(),
                    entries: reported.local_len(),
                    capacity: reported.settings().capacity,
                    degraded: reported.is_degraded(),
                }),
                remove: Box::new(move |key| {
                    let cache = removing.clone();
                    Box::pin(async move {
                        match K::from_key(&key) {
                            Some(key) => {
                                cache.remove(&key).await;
                                true
                            }
                            None => false,
                        }
                    })
                }),
                clear: Box::new(move || {
                    let cache = clearing.clone();
                    Box::pin(async move { cache.clear().await })
                }),
            },
        );
        Ok(cache)
    }

    /// Like [`cache`](Self::cache) with settings of the caller's (the
    /// first call's settings stay; later calls get the same cache).
    pub fn cache_with<K: CacheKey, V: CacheValue>(
        &self,
        name: &str,
        settings: CacheSettings,
    ) -> Result<TieredCache<K, V>, CacheError> {
        self.handle(name, settings)
    }

    /// Tells cache `name`'s Bloom filter that `key` (in its string form)
    /// exists, whether or not the cache has been used yet. False when the
    /// cache is not configured or has no `bloom`.
    ///
    /// A cache with a Bloom filter answers "absent" for every key it has
    /// not been told about, without a lookup or a load (writes and loads
    /// that find a value tell it too). `#[cached]` functions returning
    /// `Option` get `None` for such keys without their body running: mark
    /// the keys that exist (as the function's key template writes them)
    /// before the first call.
    ///
    /// ```
    /// # fn main() -> Result<(), keel_cache::CacheError> {
    /// use keel_cache::{BloomSettings, CacheConfig, CacheManager, CacheOptions};
    ///
    /// let mut config = CacheConfig::default();
    /// let mut users = CacheOptions::default();
    /// users.bloom = Some(BloomSettings::default());
    /// config.caches.insert("users".into(), users);
    /// let manager = CacheManager::new(config)?;
    /// for id in [1, 2, 3] {
    ///     assert!(manager.mark_exists("users", &format!("user:{id}")));
    /// }
    /// assert!(!manager.mark_exists("default", "user:1"), "no bloom there");
    /// # Ok(()) }
    /// ```
    pub fn mark_exists(&self, name: &str, key: &str) -> bool {
        let existing = self.inner.blooms.lock().get(name).cloned();
        let bloom = match existing {
            Some(bloom) => bloom,
            // A cache in use without a filter of the manager's has none.
            None if self.inner.caches.read().contains_key(name) => return false,
            None => match self.inner.config.settings(name).and_then(|s| s.bloom) {
                Some(settings) => self.bloom(name, settings),
                None => return false,
            },
        };
        bloom.insert(key);
        true
    }

    /// The Bloom filter of cache `name`, made for `settings` if it has none.
    fn bloom(&self, name: &str, settings: BloomSettings) -> Arc<BloomFilter> {
        let mut blooms = self.inner.blooms.lock();
        let bloom = blooms.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(BloomFilter::new(
                settings.expected_items,
                settings.false_positive_rate,
            ))
        });
        Arc::clone(bloom)
    }

    /// Removes `key` (in its string form) from cache `name`, in both tiers
    /// and on the other instances. False when no cache of that name is in
    /// use or the key is not of its key type.
    pub async fn remove_key(&self, name: &str, key: &str) -> bool {
        let removing = {
            let caches = self.inner.caches.read();
            match caches.get(name) {
                Some(r) => (r.remove)(key.to_owned()),
                None => return false,
            }
        };
        removing.await
    }

    /// Clears cache `name` in both tiers and on the other instances. False
    /// when no cache of that name is in use.
    pub async fn clear_cache(&self, name: &str) -> bool {
        let clearing = {
            let caches = self.inner.caches.read();
            match caches.get(name) {
                Some(r) => (r.clear)(),
                None => return false,
            }
        };
        clearing.await;
        true
    }

    /// A report per cache in use, by name.
    pub fn reports(&self) -> Vec<CacheReport> {
        let caches = self.inner.caches.read();
        let mut out: Vec<CacheReport> = caches.values().map(|r| (r.report)()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Publishes every cache's counters (and the Redis tier's, when
    /// configured) through the `metrics` facade as the `keel_cache_*`
    /// families, labelled by cache name: each counter is set to the total
    /// the cache keeps, each gauge to its value now. Hits are counted per
    /// thread and reach the facade only here, never one by one.
    pub fn publish_metrics(&self) {
        crate::metrics::describe();
        // `default` always exists; make sure it is reported before first use.
        let _ = self.blobs("default");
        for report in self.reports() {
            crate::metrics::publish_report(&report);
        }
        #[cfg(feature = "redis")]
        if let Some((redis, _)) = &self.inner.remote {
            crate::metrics::publish_redis(&redis.stats());
        }
    }

    /// Whether the Redis tier is configured and failing (the caches serve
    /// from their local tier), as of the last command or bus event.
    pub fn is_degraded(&self) -> bool {
        #[cfg(feature = "redis")]
        if let Some((redis, bus)) = &self.inner.remote {
            return !redis.is_healthy() || !bus.is_connected();
        }
        false
    }

    /// Pings Redis (when configured) and says whether the manager is
    /// healthy: for health checks, which must notice a recovery even when
    /// no traffic has touched Redis since.
    pub async fn probe(&self) -> bool {
        #[cfg(feature = "redis")]
        if let Some((redis, _)) = &self.inner.remote {
            let _ = redis.ping().await;
        }
        !self.is_degraded()
    }

    /// Stores `value` under `key` in the `default` cache (`ttl`: `None` =
    /// the cache's own).
    pub async fn set<V: Serialize>(
        &self,
        key: &str,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        let blob = Blob::encode(value)?;
        let cache = self.blobs("default")?;
        match ttl {
            Some(ttl) => cache.insert_with_ttl(key.to_owned(), blob, ttl).await,
            None => cache.insert(key.to_owned(), blob).await,
        }
        Ok(())
    }

    /// [`set`](Self::set) for many keys: one Redis pipeline and one
    /// invalidation message for the batch. Nothing is written if a value
    /// cannot be encoded.
    pub async fn insert_many<'a, K: AsRef<str>, V: Serialize + 'a>(
        &self,
        entries: impl IntoIterator<Item = (K, &'a V)>,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        let blobs = entries
            .into_iter()
            .map(|(key, value)| Ok((key.as_ref().to_owned(), Blob::encode(value)?)))
            .collect::<Result<Vec<_>, CacheError>>()?;
        self.blobs("default")?.insert_many_for(blobs, ttl).await;
        Ok(())
    }

    /// The value under `key` in the `default` cache, if it is there and
    /// decodes as `V` (a value of another type reads as absent).
    pub async fn get<V: DeserializeOwned>(&self, key: &str) -> Result<Option<V>, CacheError> {
        let cache = self.blobs("default")?;
        Ok(cache.get(&key.to_owned()).await.and_then(|b| b.decode()))
    }

    /// Removes `key` from the `default` cache.
    pub async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.blobs("default")?.remove(&key.to_owned()).await;
        Ok(())
    }

    /// Removes everything from the `default` cache.
    pub async fn clear(&self) -> Result<(), CacheError> {
        self.blobs("default")?.clear().await;
        Ok(())
    }

    pub(crate) fn blobs(&self, name: &str) -> Result<TieredCache<String, Blob>, CacheError> {
        self.cache_or_default(name)
    }
}

impl Blob {
    pub(crate) fn encode<V: Serialize>(value: &V) -> Result<Self, CacheError> {
        postcard::to_allocvec(value)
            .map(Blob)
            .map_err(CacheError::Encode)
    }

    pub(crate) fn decode<V: DeserializeOwned>(&self) -> Option<V> {
        match postcard::from_bytes::<V>(&self.0) {
            Ok(value) => Some(value),
            Err(error) => {
                tracing::warn!(%error, "cached value does not decode as the requested type");
                None
            }
        }
    }
}

static DEFAULT: OnceLock<CacheManager> = OnceLock::new();

/// The manager `#[cached]` uses: the one given to [`set_default_manager`],
/// or local caches with default settings if none was.
pub fn default_manager() -> &'static CacheManager {
    DEFAULT.get_or_init(CacheManager::local)
}

/// Makes `manager` the one `#[cached]` uses. Fails (returning it) if a
/// default manager was already set or used.
pub fn set_default_manager(manager: CacheManager) -> Result<(), CacheManager> {
    DEFAULT.set(manager)
}
