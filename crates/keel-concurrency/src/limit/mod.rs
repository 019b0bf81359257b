//! Limits on work: how much runs at once ([`ConcurrencyLimiter`]) and how
//! often it may start ([`RateLimiter`], [`KeyedRateLimiter`]), each usable
//! directly or as a tower layer.

mod clock;
pub(crate) mod concurrency;
pub(crate) mod rate;
mod when;

pub use clock::Clock;
pub(crate) use clock::duration_nanos;
pub use when::WhenLimited;
