//! A shared limit on in-flight work, and its tower layer.

mod future;
mod keyed;
mod layer;
mod limiter;
mod service;

pub use future::ResponseFuture;
pub use keyed::{KeyedConcurrencyLimiter, KeyedConcurrencyPermit, KeyedConcurrencyStats};
pub use layer::ConcurrencyLimitLayer;
pub use limiter::{ConcurrencyLimiter, ConcurrencyPermit, ConcurrencyStats};
pub use service::ConcurrencyLimit;
