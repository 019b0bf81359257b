//! [`RateLimitLayer`] and what it asks before each request ([`RequestLimit`]).

use std::fmt;
use std::hash::Hash;

use tower::Layer;

use super::{KeyedRateLimiter, RateLimit, RateLimiter};
use crate::WhenLimited;
use crate::error::RateLimited;

/// The limit a [`RateLimit`] service checks for each request.
///
/// Implemented by [`RateLimiter`] (one limit for all requests) and by
/// [`KeyedBy`] (a limit per key taken from the request).
pub trait RequestLimit<Req> {
    /// Allows `request` now, or says how long until it would be allowed.
    fn check_request(&self, request: &Req) -> Result<(), RateLimited>;
}

impl<Req> RequestLimit<Req> for RateLimiter {
    fn check_request(&self, _request: &Req) -> Result<(), RateLimited> {
        self.check()
    }
}

/// A [`KeyedRateLimiter`] with the function that finds a request's key.
#[derive(Clone)]
pub struct KeyedBy<K, F> {
    limiter: KeyedRateLimiter<K>,
    key: F,
}

impl<K, F, Req> RequestLimit<Req> for KeyedBy<K, F>
where
    K: Hash + Eq + Clone,
    F: Fn(&Req) -> K,
{
    fn check_request(&self, request: &Req) -> Result<(), RateLimited> {
        self.limiter.check_key(&(self.key)(request))
    }
}

impl<K, F> fmt::Debug for KeyedBy<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBy")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

/// Wraps services in [`RateLimit`]; every service it makes (and every
/// clone of those) shares the same limiter.
#[derive(Debug, Clone)]
pub struct RateLimitLayer<L> {
    limit: L,
    when_limited: WhenLimited,
}

impl RateLimitLayer<RateLimiter> {
    /// One limit over all requests; waits when over it ([`WhenLimited::Wait`]).
    pub fn new(limiter: RateLimiter) -> Self {
        Self {
            limit: limiter,
            when_limited: WhenLimited::Wait,
        }
    }
}

impl<K, F> RateLimitLayer<KeyedBy<K, F>> {
    /// A limit per key, `key` finding each request's key (client address,
    /// token, ...); waits when over it ([`WhenLimited::Wait`]).
    pub fn keyed<Req>(limiter: KeyedRateLimiter<K>, key: F) -> Self
    where
        F: Fn(&Req) -> K,
    {
        Self {
            limit: KeyedBy { limiter, key },
            when_limited: WhenLimited::Wait,
        }
    }
}

impl<L> RateLimitLayer<L> {
    /// Sets what happens to a request over the limit.
    pub fn when_limited(mut self, when_limited: WhenLimited) -> Self {
        self.when_limited = when_limited;
        self
    }
}

impl<S, L: Clone> Layer<S> for RateLimitLayer<L> {
    type Service = RateLimit<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limit.clone(), self.when_limited)
    }
}
