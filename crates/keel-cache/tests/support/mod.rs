//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use keel_cache::RemovalCause;

/// Records what an eviction listener hears.
#[derive(Clone, Default)]
pub(crate) struct Heard<K, V>(Arc<Mutex<Vec<(K, V, RemovalCause)>>>);

impl<K: Clone + Send + 'static, V: Clone + Send + 'static> Heard<K, V> {
    pub(crate) fn listener(&self) -> impl Fn(K, V, RemovalCause) + Send + Sync + 'static
    where
        K: Sync,
        V: Sync,
    {
        let inner = Arc::clone(&self.0);
        move |k, v, c| {
            inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((k, v, c))
        }
    }

    /// Everything heard since the last call.
    pub(crate) fn take(&self) -> Vec<(K, V, RemovalCause)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
