//! Synchronisation primitives, swapped for loom's under `cfg(keel_loom)` so
//! the model tests explore every interleaving of the shard core.

#[cfg(keel_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(keel_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A reader-writer lock whose guards are returned directly (no poisoning).
#[derive(Debug)]
pub(crate) struct RwLock<T> {
    #[cfg(not(keel_loom))]
    inner: parking_lot::RwLock<T>,
    #[cfg(keel_loom)]
    inner: loom::sync::RwLock<T>,
}

#[cfg(not(keel_loom))]
pub(crate) type ReadGuard<'a, T> = parking_lot::RwLockReadGuard<'a, T>;
#[cfg(not(keel_loom))]
pub(crate) type WriteGuard<'a, T> = parking_lot::RwLockWriteGuard<'a, T>;
#[cfg(keel_loom)]
pub(crate) type ReadGuard<'a, T> = loom::sync::RwLockReadGuard<'a, T>;
#[cfg(keel_loom)]
pub(crate) type WriteGuard<'a, T> = loom::sync::RwLockWriteGuard<'a, T>;

impl<T> RwLock<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(keel_loom))]
            inner: parking_lot::RwLock::new(value),
            #[cfg(keel_loom)]
            inner: loom::sync::RwLock::new(value),
        }
    }

    #[cfg(not(keel_loom))]
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        self.inner.read()
    }

    #[cfg(not(keel_loom))]
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        self.inner.write()
    }

    #[cfg(keel_loom)]
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(keel_loom)]
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}
