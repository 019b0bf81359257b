//! Errors of the cache room.

use std::sync::Arc;

/// Why [`LocalCache::try_get_or_load`](crate::LocalCache::try_get_or_load)
/// (or `get_or_load`) returned no value. Every caller waiting on the same load
/// receives the same error; nothing is cached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// [`TieredCache::get_or_load`](crate::TieredCache::get_or_load) only:
    /// the key is known not to exist (the Bloom filter has never seen it,
    /// or its absence is cached), so there is no value to return.
    #[error("the key is known not to exist")]
    NotFound,
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

/// Errors of the tiered cache, the Redis tier and the manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The configuration cannot work (bad URL, empty prefix, ...).
    #[error("invalid cache configuration: {0}")]
    Config(String),
    /// No cache of that name is configured.
    #[error("no cache named {name:?} (configured: {known})")]
    UnknownCache {
        /// The name asked for.
        name: String,
        /// The configured names, comma-separated.
        known: String,
    },
    /// The cache was first used with other key/value types.
    #[error("cache {name:?} holds {registered}, not {requested}")]
    TypeMismatch {
        /// The cache's name.
        name: String,
        /// `(K, V)` of the first registration.
        registered: &'static str,
        /// `(K, V)` asked for now.
        requested: &'static str,
    },
    /// Redis cannot be reached right now.
    #[cfg(feature = "redis")]
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error.
    #[cfg(feature = "redis")]
    #[error("redis command failed")]
    Redis(#[source] redis::RedisError),
    /// The call was not made: Redis failed repeatedly, and the tier is
    /// bypassed until a background probe finds it back.
    #[cfg(feature = "redis")]
    #[error("redis is bypassed after repeated failures; probing in the background")]
    Bypassed,
    /// A value could not be encoded.
    #[error("cannot encode value")]
    Encode(#[source] postcard::Error),
    /// A snapshot file could not be read or written.
    #[error("snapshot {path}: {reason}")]
    Snapshot {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Loading needs a tokio runtime and none is running.
    #[error("this needs a tokio runtime and none is running")]
    NoRuntime,
}

impl CacheError {
    /// Whether this says Redis is out of reach (down, stalled, bypassed)
    /// rather than that it answered with an error.
    pub fn is_outage(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            CacheError::Unavailable(_) | CacheError::Bypassed => true,
            #[cfg(feature = "redis")]
            CacheError::Redis(e) => {
                e.is_timeout()
                    || e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
            }
            _ => false,
        }
    }
}
