//! A shared limit on in-flight work, and its tower layer.

mod future;
mod layer;
mod limiter;
mod service;

pub use future::ResponseFuture;
pub use layer::ConcurrencyLimitLayer;
pub use limiter::{ConcurrencyLimiter, ConcurrencyPermit, ConcurrencyStats};
pub use service::ConcurrencyLimit;
