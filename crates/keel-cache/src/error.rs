//! Errors of the cache room.

use std::sync::Arc;

/// Why [`LocalCache::try_get_or_load`](crate::LocalCache::try_get_or_load)
/// (or `get_or_load`) returned no value. Every caller waiting on the same load
/// receives the same error; nothing is cached.
#[derive(Debug, thiserror::Error)]
pub enum LoadError<E = std::convert::Infallible> {
    /// The loader returned an error (shared by all waiters).
    #[error("loader failed")]
    Loader(#[source] Arc<E>),
    /// The loader panicked.
    #[error("loader panicked")]
    Panicked,
    /// The load task was cancelled before finishing (its runtime shut down).
    #[error("load was cancelled before finishing")]
    Aborted,
    /// Loads run as tokio tasks, and this call was made outside a runtime.
    #[error("loading needs a tokio runtime and none is running")]
    NoRuntime,
}

impl<E> LoadError<E> {
    /// The loader's own error, if that is what failed.
    pub fn loader_error(&self) -> Option<&E> {
        match self {
            LoadError::Loader(e) => Some(e),
            _ => None,
        }
    }
}

/// A policy name that is not one of `lru`, `lfu`, `fifo`, `ttl`, `s3_fifo`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cache policy {input:?} (expected one of: lru, lfu, fifo, ttl, s3_fifo)")]
pub struct ParsePolicyError {
    pub(crate) input: String,
}
