//! The runtime of `#[cached]` (crate `keel-macros`). Not a public API: the
//! macro's expansion calls these, and they may change with it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Weak};

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::manager::{Blob, default_manager};
use crate::tiered::TieredCache;

pub use std::time::Duration;

type KeyLock = tokio::sync::Mutex<()>;
type KeyLocks = HashMap<(&'static str, String), Weak<KeyLock>>;

/// One async lock per (cache, key) in use: a call that misses holds it
/// while its body runs, so concurrent calls for the key wait and then read
/// the cached result instead of running the body again.
static LOCKS: LazyLock<Mutex<KeyLocks>> = LazyLock::new(Mutex::default);

fn key_lock(cache: &'static str, key: &str) -> Arc<KeyLock> {
    let mut locks = LOCKS.lock();
    if let Some(lock) = locks.get(&(cache, key.to_owned())).and_then(Weak::upgrade) {
        return lock;
    }
    if locks.len() >= 1024 {
        locks.retain(|_, lock| lock.strong_count() > 0);
    }
    let lock = Arc::new(KeyLock::new(()));
    locks.insert((cache, key.to_owned()), Arc::downgrade(&lock));
    lock
}

fn blobs(cache: &'static str) -> Option<TieredCache<String, Blob>> {
    match default_manager().blobs(cache) {
        Ok(c) => Some(c),
        Err(error) => {
            tracing::error!(cache, %error, "#[cached] cannot use this cache; calling through");
            None
        }
    }
}

/// What a cache holds for a call: `Some(Some(v))` a value, `Some(None)` a
/// cached absence, `None` nothing usable.
async fn cached_outcome<T: DeserializeOwned>(
    cache: &TieredCache<String, Blob>,
    key: &String,
) -> Option<Option<T>> {
    match cache.lookup_cached(key).await? {
        Some(blob) => blob.decode::<T>().map(Some),
        None => Some(None),
    }
}

async fn store<T: Serialize>(
    cache: &TieredCache<String, Blob>,
    key: String,
    value: &T,
    ttl: Option<Duration>,
) {
    match Blob::encode(value) {
        Ok(blob) => match ttl {
            Some(ttl) => cache.insert_with_ttl(key, blob, ttl).await,
            None => cache.insert(key, blob).await,
        },
        Err(error) => {
            tracing::error!(cache = cache.name(), %error, "#[cached] cannot encode a result")
        }
    }
}

/// `#[cached]` on a function returning `T`: every result is cached.
pub async fn cached<T, F>(cache: &'static str, key: String, ttl: Option<Duration>, fut: F) -> T
where
    F: Future<Output = T>,
    T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let Some(c) = blobs(cache) else {
        return fut.await;
    };
    if let Some(Some(v)) = cached_outcome::<T>(&c, &key).await {
        return v;
    }
    let lock = key_lock(cache, &key);
    let _guard = lock.lock().await;
    if let Some(Some(v)) = cached_outcome::<T>(&c, &key).await {
        return v;
    }
    let value = fut.await;
    store(&c, key, &value, ttl).await;
    value
}

/// `#[cached]` on a function returning `Result<T, E>`: `Ok` is cached,
/// `Err` is returned and not cached.
pub async fn cached_result<T, E, F>(
    cache: &'static str,
    key: String,
    ttl: Option<Duration>,
    fut: F,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let Some(c) = blobs(cache) else {
        return fut.await;
    };
    if let Some(Some(v)) = cached_outcome::<T>(&c, &key).await {
        return Ok(v);
    }
    let lock = key_lock(cache, &key);
    let _guard = lock.lock().await;
    if let Some(Some(v)) = cached_outcome::<T>(&c, &key).await {
        return Ok(v);
    }
    let result = fut.await;
    if let Ok(value) = &result {
        store(&c, key, value, ttl).await;
    }
    result
}

/// `#[cached]` on a function returning `Option<T>`: `Some` is cached;
/// `None` is cached for the cache's `negative_ttl` when negative caching is
/// on.
pub async fn cached_option<T, F>(
    cache: &'static str,
    key: String,
    ttl: Option<Duration>,
    fut: F,
) -> Option<T>
where
    F: Future<Output = Option<T>>,
    T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let Some(c) = blobs(cache) else {
        return fut.await;
    };
    if let Some(found) = cached_outcome::<T>(&c, &key).await {
        return found;
    }
    let lock = key_lock(cache, &key);
    let _guard = lock.lock().await;
    if let Some(found) = cached_outcome::<T>(&c, &key).await {
        return found;
    }
    let result = fut.await;
    match &result {
        Some(value) => store(&c, key, value, ttl).await,
        None => {
            c.insert_absent(key).await;
        }
    }
    result
}
