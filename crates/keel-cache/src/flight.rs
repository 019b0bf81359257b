//! Single flight: one load per key at a time, run as a task of its own so
//! a cancelled caller does not cancel it. Used by `LocalCache`'s loads and
//! by the tiered cache.

use std::any::Any;
use std::collections::HashMap;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use parking_lot::Mutex;

/// Why a shared load produced no value.
#[derive(Clone)]
pub(crate) enum Failure {
    /// The loader's error, type-erased so waiters can share it.
    Loader(Arc<dyn Any + Send + Sync>),
    /// The loader panicked.
    Panicked,
    /// The task was cancelled (its runtime shut down).
    Aborted,
}

pub(crate) type Done<T> = Shared<BoxFuture<'static, Result<T, Failure>>>;

/// Loads in flight, by key.
pub(crate) struct SingleFlight<K, T> {
    map: Mutex<HashMap<K, (u64, Done<T>)>>,
    next: AtomicU64,
}

impl<K, T> Default for SingleFlight<K, T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    }
}

impl<K, T> std::fmt::Debug for SingleFlight<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight")
            .field("in_flight", &self.map.lock().len())
            .finish()
    }
}

impl<K, T> SingleFlight<K, T>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    /// Joins the load of `key` in flight, or starts `start()` as a new task.
    /// The boolean says whether this call started it. `None`: no runtime.
    pub(crate) fn join_or_start<Fut>(
        self: &Arc<Self>,
        key: &K,
        start: impl FnOnce() -> Fut,
    ) -> Option<(Done<T>, bool)>
    where
        Fut: Future<Output = Result<T, Failure>> + Send + 'static,
    {
        let mut map = self.map.lock();
        if let Some((_, done)) = map.get(key) {
            return Some((done.clone(), false));
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let fut = start();
        let flights = Arc::clone(self);
        let task_key = key.clone();
        let task = runtime.spawn(async move {
            let out = match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(out) => out,
                Err(_) => {
                    tracing::error!("cache loader panicked");
                    Err(Failure::Panicked)
                }
            };
            flights.finish(&task_key, id);
            out
        });
        let done: Done<T> = async move { task.await.unwrap_or(Err(Failure::Aborted)) }
            .boxed()
            .shared();
        map.insert(key.clone(), (id, done.clone()));
        Some((done, true))
    }

    /// Whether a load of `key` is running.
    pub(crate) fn is_running(&self, key: &K) -> bool {
        self.map.lock().contains_key(key)
    }

    fn finish(&self, key: &K, id: u64) {
        let mut map = self.map.lock();
        if map.get(key).is_some_and(|(i, _)| *i == id) {
            map.remove(key);
        }
    }
}

/// Loads in progress, keyed by the key and the loader's error type, so
/// calls with different error types never share.
pub(crate) type Flights<K, V> = std::sync::Arc<SingleFlight<(K, std::any::TypeId), V>>;
