//! [`KeyedConcurrencyLimiter`]: the same limit, separately for each key.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::InvalidField;
use crate::error::LimitError;

/// At most `limit` units of work in flight per key (client, tenant,
/// upstream), shared by every clone.
///
/// A key's slots exist while the key has work in flight or waiting; the
/// last permit of an idle key removes it, so memory follows the busy keys.
pub struct KeyedConcurrencyLimiter<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    limit: usize,
    keys: Mutex<HashMap<K, Arc<Semaphore>>>,
    in_flight: AtomicUsize,
    acquired: AtomicU64,
    waited: AtomicU64,
    rejected: AtomicU64,
}

/// A slot for one key, held while the work runs.
#[must_use = "the slot is freed as soon as the permit is dropped"]
pub struct KeyedConcurrencyPermit<K: Hash + Eq> {
    limiter: KeyedConcurrencyLimiter<K>,
    key: K,
    permit: Option<OwnedSemaphorePermit>,
}

/// Counters of a [`KeyedConcurrencyLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedConcurrencyStats {
    /// The limit each key gets.
    pub limit_per_key: usize,
    /// Keys with work in flight or waiting.
    pub keys: usize,
    /// Permits held right now, over all keys.
    pub in_flight: usize,
    /// Permits handed out.
    pub acquired: u64,
    /// Acquisitions that had to wait for a slot of their key.
    pub waited: u64,
    /// `try_acquire` calls refused because their key was full.
    pub rejected: u64,
}

impl<K: Hash + Eq + Clone> KeyedConcurrencyLimiter<K> {
    /// A limiter allowing `limit` permits at once for each key.
    pub fn new(limit: usize) -> Result<Self, InvalidField> {
        if limit == 0 || limit > Semaphore::MAX_PERMITS {
            return Err(InvalidField::new(
                "concurrency.limit_per_key",
                format!("must be between 1 and {}", Semaphore::MAX_PERMITS),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                limit,
                keys: Mutex::new(HashMap::new()),
                in_flight: AtomicUsize::new(0),
                acquired: AtomicU64::new(0),
                waited: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
        })
    }

    /// Waits (first come, first served within the key) for a slot of `key`.
    pub async fn acquire(&self, key: &K) -> Result<KeyedConcurrencyPermit<K>, LimitError> {
        let semaphore = self.semaphore(key);
        let permit = match semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.inner.waited.fetch_add(1, Ordering::Relaxed);
                // Never closed: the limiter owns every key's semaphore.
                semaphore
                    .acquire_owned()
                    .await
                    .map_err(|_| LimitError::Closed)?
            }
        };
        Ok(self.permit(key, permit))
    }

    /// Takes a slot of `key`, or fails at once with [`LimitError::Full`].
    pub fn try_acquire(&self, key: &K) -> Result<KeyedConcurrencyPermit<K>, LimitError> {
        let semaphore = self.semaphore(key);
        match semaphore.try_acquire_owned() {
            Ok(permit) => Ok(self.permit(key, permit)),
            Err(TryAcquireError::Closed) => Err(LimitError::Closed),
            Err(TryAcquireError::NoPermits) => {
                // The key is full, so permits of it are held: it stays.
                self.inner.rejected.fetch_add(1, Ordering::Relaxed);
                Err(LimitError::Full)
            }
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> KeyedConcurrencyStats {
        let inner = &*self.inner;
        KeyedConcurrencyStats {
            limit_per_key: inner.limit,
            keys: self.lock().len(),
            in_flight: inner.in_flight.load(Ordering::Relaxed),
            acquired: inner.acquired.load(Ordering::Relaxed),
            waited: inner.waited.load(Ordering::Relaxed),
            rejected: inner.rejected.load(Ordering::Relaxed),
        }
    }

    fn semaphore(&self, key: &K) -> Arc<Semaphore> {
        let mut keys = self.lock();
        match keys.get(key) {
            Some(semaphore) => semaphore.clone(),
            None => {
                let semaphore = Arc::new(Semaphore::new(self.inner.limit));
                keys.insert(key.clone(), semaphore.clone());
                semaphore
            }
        }
    }

    fn permit(&self, key: &K, permit: OwnedSemaphorePermit) -> KeyedConcurrencyPermit<K> {
        self.inner.acquired.fetch_add(1, Ordering::Relaxed);
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        KeyedConcurrencyPermit {
            limiter: self.clone(),
            key: key.clone(),
            permit: Some(permit),
        }
    }
}

impl<K> KeyedConcurrencyLimiter<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, Arc<Semaphore>>> {
        self.inner
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq> KeyedConcurrencyPermit<K> {
    /// The key this slot belongs to.
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<K: Hash + Eq> Drop for KeyedConcurrencyPermit<K> {
    fn drop(&mut self) {
        let inner = &*self.limiter.inner;
        inner.in_flight.fetch_sub(1, Ordering::Relaxed);
        let Some(permit) = self.permit.take() else {
            return;
        };
        let mut keys = self.limiter.lock();
        // Only the map and this permit know the semaphore: nobody holds or
        // waits for this key, so it goes (new callers need the lock first).
        if keys
            .get(&self.key)
            .is_some_and(|s| Arc::ptr_eq(s, permit.semaphore()) && Arc::strong_count(s) == 2)
        {
            keys.remove(&self.key);
        }
        // The permit goes while the lock is held: released after it, two
        // last holders could each see the other's permit still alive and
        // both leave the idle key in the map.
        drop(permit);
        drop(keys);
    }
}

impl<K> Clone for KeyedConcurrencyLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedConcurrencyLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedConcurrencyLimiter")
            .field("limit_per_key", &self.inner.limit)
            .field("in_flight", &self.inner.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + fmt::Debug> fmt::Debug for KeyedConcurrencyPermit<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedConcurrencyPermit")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}
