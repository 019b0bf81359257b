//! Single-flight loading: concurrent callers for one missing key share one
//! loader call, which runs as its own tokio task so that a caller giving up
//! does not cancel it for the others.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use parking_lot::Mutex;

use crate::cache::LocalCache;
use crate::error::LoadError;

#[derive(Clone)]
enum Failure {
    Loader(Arc<dyn Any + Send + Sync>),
    Panicked,
    Aborted,
}

type Outcome<V> = Result<V, Failure>;
type FlightMap<K, V> = Mutex<HashMap<(K, TypeId), Flight<V>>>;

struct Flight<V> {
    id: u64,
    done: Shared<BoxFuture<'static, Outcome<V>>>,
}

/// Loads in progress, sharded like the cache. Keyed by the key and the
/// loader's error type, so calls with different error types never share.
pub(crate) struct Flights<K, V> {
    shards: Box<[FlightMap<K, V>]>,
    next_id: AtomicU64,
}

impl<K, V> Flights<K, V> {
    pub(crate) fn new(count: usize) -> Self {
        Self {
            shards: (0..count).map(|_| Mutex::new(HashMap::new())).collect(),
            next_id: AtomicU64::new(0),
        }
    }
}

impl<K, V> std::fmt::Debug for Flights<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights").finish_non_exhaustive()
    }
}

impl<K: Hash + Eq, V> Flights<K, V> {
    fn shard(&self, hash: u64) -> &FlightMap<K, V> {
        &self.shards[(hash >> 32) as usize & (self.shards.len() - 1)]
    }

    /// Forgets flight `id` for `key` (a newer flight for the key stays).
    fn finish(&self, hash: u64, key: (K, TypeId), id: u64) {
        let mut map = self.shard(hash).lock();
        if map.get(&key).is_some_and(|f| f.id == id) {
            map.remove(&key);
        }
    }
}

impl<K, V> LocalCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The value for `key`, loading it with `loader` on a miss. Concurrent
    /// callers for the same key share one loader call.
    ///
    /// The load runs as a tokio task: if this caller is cancelled, the load
    /// still completes for the other callers and fills the cache. A panic in
    /// the loader is returned as [`LoadError::Panicked`] to every waiter and
    /// the next call loads again.
    pub async fn get_or_load<F, Fut>(&self, key: K, loader: F) -> Result<V, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        self.try_get_or_load(key, move || {
            let fut = loader();
            async move { Ok(fut.await) }
        })
        .await
    }

    /// Like [`get_or_load`](Self::get_or_load) with a fallible loader: an
    /// error is returned to every caller waiting on that load (as
    /// [`LoadError::Loader`]) and nothing is cached.
    pub async fn try_get_or_load<F, Fut, E>(&self, key: K, loader: F) -> Result<V, LoadError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let hash = self.inner.flights_hash(&key);
        let flights = &self.inner.flights;
        let fkey = (key, TypeId::of::<E>());
        let (id, done) = {
            let mut map = flights.shard(hash).lock();
            if let Some(f) = map.get(&fkey) {
                (f.id, f.done.clone())
            } else {
                // A load that finished between the first look and the lock
                // has filled the cache (it inserts before it unregisters).
                if let Some(v) = self.peek(&fkey.0) {
                    return Ok(v);
                }
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return Err(LoadError::NoRuntime);
                };
                let id = flights.next_id.fetch_add(1, Ordering::Relaxed);
                let fut = loader();
                let cache = self.clone();
                let task_key = fkey.clone();
                let task = runtime.spawn(async move {
                    let started = Instant::now();
                    let out = match AssertUnwindSafe(fut).catch_unwind().await {
                        Ok(Ok(v)) => {
                            cache.insert(task_key.0.clone(), v.clone());
                            Ok(v)
                        }
                        Ok(Err(e)) => Err(Failure::Loader(Arc::new(e))),
                        Err(_) => Err(Failure::Panicked),
                    };
                    cache.inner.loads.record(out.is_ok(), started.elapsed());
                    if matches!(out, Err(Failure::Panicked)) {
                        tracing::error!("cache loader panicked");
                    }
                    cache.inner.flights.finish(hash, task_key, id);
                    out
                });
                let done = async move { task.await.unwrap_or(Err(Failure::Aborted)) }
                    .boxed()
                    .shared();
                map.insert(
                    fkey.clone(),
                    Flight {
                        id,
                        done: done.clone(),
                    },
                );
                (id, done)
            }
        };
        match done.await {
            Ok(v) => Ok(v),
            Err(Failure::Loader(e)) => Err(e
                .downcast::<E>()
                .map_or(LoadError::Aborted, LoadError::Loader)),
            Err(Failure::Panicked) => Err(LoadError::Panicked),
            Err(Failure::Aborted) => {
                flights.finish(hash, fkey, id);
                Err(LoadError::Aborted)
            }
        }
    }
}

impl<K, V> crate::cache::Inner<K, V> {
    pub(crate) fn flights_hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher().hash_one(key)
    }
}
