//! [`ConcurrencyLimiter`]: a cloneable handle on one shared semaphore.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::InvalidField;
use crate::error::LimitError;

/// A limit on how much work runs at once, shared by every clone.
///
/// Each unit of work holds a [`ConcurrencyPermit`] while it runs; dropping
/// the permit frees the slot. [`acquire`](Self::acquire) waits in FIFO
/// order for a slot, [`try_acquire`](Self::try_acquire) fails at once when
/// none is free. Waits, rejections and the in-flight high-water mark are
/// counted ([`stats`](Self::stats)).
#[derive(Debug, Clone)]
pub struct ConcurrencyLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    semaphore: Arc<Semaphore>,
    limit: usize,
    acquired: AtomicU64,
    waited: AtomicU64,
    rejected: AtomicU64,
    in_flight: Arc<AtomicUsize>,
    high_water: AtomicUsize,
}

/// A slot in a [`ConcurrencyLimiter`], held while the work runs.
#[derive(Debug)]
#[must_use = "the slot is freed as soon as the permit is dropped"]
pub struct ConcurrencyPermit {
    _permit: OwnedSemaphorePermit,
    in_flight: Arc<AtomicUsize>,
}

/// Counters of a [`ConcurrencyLimiter`], read with [`ConcurrencyLimiter::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConcurrencyStats {
    /// The configured limit.
    pub limit: usize,
    /// Permits held right now.
    pub in_flight: usize,
    /// The most permits ever held at once.
    pub high_water: usize,
    /// Permits handed out.
    pub acquired: u64,
    /// Acquisitions that had to wait for a slot.
    pub waited: u64,
    /// `try_acquire` calls (and rejecting layers) refused for lack of a slot.
    pub rejected: u64,
}

impl ConcurrencyLimiter {
    /// A limiter allowing `limit` permits at once (1 ..= 2^61).
    pub fn new(limit: usize) -> Result<Self, InvalidField> {
        if limit == 0 || limit > Semaphore::MAX_PERMITS {
            return Err(InvalidField::new(
                "concurrency.limit",
                format!("must be between 1 and {}", Semaphore::MAX_PERMITS),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                semaphore: Arc::new(Semaphore::new(limit)),
                limit,
                acquired: AtomicU64::new(0),
                waited: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                in_flight: Arc::new(AtomicUsize::new(0)),
                high_water: AtomicUsize::new(0),
            }),
        })
    }

    /// Waits (first come, first served) for a free slot.
    ///
    /// Fails only once the limiter is [`close`](Self::close)d.
    pub async fn acquire(&self) -> Result<ConcurrencyPermit, LimitError> {
        match self.inner.semaphore.clone().try_acquire_owned() {
            Ok(permit) => return Ok(self.permit(permit)),
            Err(TryAcquireError::Closed) => return Err(LimitError::Closed),
            Err(TryAcquireError::NoPermits) => {}
        }
        self.inner.waited.fetch_add(1, Ordering::Relaxed);
        match self.inner.semaphore.clone().acquire_owned().await {
            Ok(permit) => Ok(self.permit(permit)),
            Err(_) => Err(LimitError::Closed),
        }
    }

    /// Takes a free slot, or fails at once with [`LimitError::Full`].
    pub fn try_acquire(&self) -> Result<ConcurrencyPermit, LimitError> {
        match self.inner.semaphore.clone().try_acquire_owned() {
            Ok(permit) => Ok(self.permit(permit)),
            Err(TryAcquireError::Closed) => Err(LimitError::Closed),
            Err(TryAcquireError::NoPermits) => {
                self.inner.rejected.fetch_add(1, Ordering::Relaxed);
                Err(LimitError::Full)
            }
        }
    }

    /// Like `try_acquire`, without counting a rejection (a waiting layer's fast path).
    pub(crate) fn try_acquire_quiet(&self) -> Option<ConcurrencyPermit> {
        let permit = self.inner.semaphore.clone().try_acquire_owned().ok()?;
        Some(self.permit(permit))
    }

    /// Stops handing out permits: waiters and later calls get
    /// [`LimitError::Closed`]; permits already held stay valid.
    pub fn close(&self) {
        self.inner.semaphore.close();
    }

    /// Slots free right now.
    pub fn available(&self) -> usize {
        self.inner.semaphore.available_permits()
    }

    /// The counters so far.
    pub fn stats(&self) -> ConcurrencyStats {
        let inner = &self.inner;
        ConcurrencyStats {
            limit: inner.limit,
            in_flight: inner.in_flight.load(Ordering::Relaxed),
            high_water: inner.high_water.load(Ordering::Relaxed),
            acquired: inner.acquired.load(Ordering::Relaxed),
            waited: inner.waited.load(Ordering::Relaxed),
            rejected: inner.rejected.load(Ordering::Relaxed),
        }
    }

    fn permit(&self, permit: OwnedSemaphorePermit) -> ConcurrencyPermit {
        let inner = &self.inner;
        inner.acquired.fetch_add(1, Ordering::Relaxed);
        let now = inner.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        inner.high_water.fetch_max(now, Ordering::Relaxed);
        ConcurrencyPermit {
            _permit: permit,
            in_flight: inner.in_flight.clone(),
        }
    }
}

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
