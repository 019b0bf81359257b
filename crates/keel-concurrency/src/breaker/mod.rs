//! A circuit breaker: stop calling a dependency that keeps failing, give
//! it time, then let a few probe calls decide whether it is back.

mod circuit;
mod config;
mod future;
mod layer;
mod service;
mod window;

pub use circuit::{BreakerPermit, BreakerStats, CircuitBreaker, CircuitState};
pub use config::{CircuitBreakerConfig, SlidingWindow};
pub use future::ResponseFuture;
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreakerService;
