//! Single-flight loading: concurrent callers for one missing key share one
//! loader call, which runs as its own tokio task so that a caller giving up
//! does not cancel it for the others.

use std::any::TypeId;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;

use crate::cache::LocalCache;
use crate::error::LoadError;
use crate::flight::Failure;

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
        let fkey = (key, TypeId::of::<E>());
        let started = self.inner.flights.join_or_start(&fkey, || {
            // A load that finished between the first look and now has
            // filled the cache (it inserts before it unregisters).
            let ready = self.peek(&fkey.0);
            let fut = ready.is_none().then(loader);
            let cache = self.clone();
            let key = fkey.0.clone();
            async move {
                let Some(fut) = fut else {
                    return ready.ok_or(Failure::Aborted);
                };
                let started = Instant::now();
                let out = match AssertUnwindSafe(fut).catch_unwind().await {
                    Ok(Ok(v)) => {
                        cache.insert(key, v.clone());
                        Ok(v)
                    }
                    Ok(Err(e)) => Err(Failure::Loader(Arc::new(e))),
                    Err(_) => {
                        tracing::error!("cache loader panicked");
                        Err(Failure::Panicked)
                    }
                };
                cache.inner.loads.record(out.is_ok(), started.elapsed());
                out
            }
        });
        let Some((done, _)) = started else {
            return Err(LoadError::NoRuntime);
        };
        match done.await {
            Ok(v) => Ok(v),
            Err(Failure::Loader(e)) => Err(e
                .downcast::<E>()
                .map_or(LoadError::Aborted, LoadError::Loader)),
            Err(Failure::Panicked) => Err(LoadError::Panicked),
            Err(Failure::Aborted) => Err(LoadError::Aborted),
        }
    }
}
