//! GCRA rate limiting in one atomic word per limited thing, and its tower layer.
//!
//! The generic cell rate algorithm keeps one number per limiter (or per
//! key): the *theoretical arrival time* (TAT) of the next request. A
//! request at time `now` is allowed when `max(TAT, now) - now` is at most
//! the burst tolerance, and then moves TAT forward by one emission
//! interval. Allowing is one compare-and-swap; refusing is one load.

mod counter;
mod future;
mod keyed;
mod layer;
mod limiter;
mod quota;
mod service;

pub use future::ResponseFuture;
pub use keyed::KeyedRateLimiter;
pub use layer::{KeyedBy, RateLimitLayer, RequestLimit};
pub use limiter::{RateLimiter, RateLimiterStats};
pub use quota::Quota;
pub use service::RateLimit;
