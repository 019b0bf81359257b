//! [`LoadBalancer`]: picking endpoints, and the guards that report back.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{BalanceStrategy, LoadBalancerConfig};
use crate::Clock;
use crate::InvalidField;
use crate::error::BalanceError;
use crate::limit::duration_nanos;

/// Weight of the newest latency sample in the moving average.
const EWMA_ALPHA: f64 = 0.3;

/// A set of endpoints (`T`: a URL, a client, a tower service) and the
/// strategy that spreads calls over them; shared by every clone.
///
/// Use it as pick, guard, report: [`pick`](Self::pick) returns an
/// [`EndpointGuard`] that counts the call in flight; report how it went
/// with [`EndpointGuard::success`] or [`EndpointGuard::failure`], which
/// also feed the endpoint's latency average. An endpoint failing
/// `eject_after_failures` times in a row is ejected for
/// `ejection_cooldown`; then a single probe call is routed to it, and its
/// success restores the endpoint while its failure ejects it again.
/// Ejections and restorations are `tracing` events.
#[derive(Debug)]
pub struct LoadBalancer<T> {
    inner: Arc<Inner<T>>,
}

#[derive(Debug)]
struct Inner<T> {
    endpoints: Box<[Endpoint<T>]>,
    config: LoadBalancerConfig,
    cooldown_nanos: u64,
    clock: Clock,
    next: AtomicUsize,
    ejected: AtomicUsize,
    smooth_weights: Mutex<Vec<i64>>,
}

#[derive(Debug)]
struct Endpoint<T> {
    value: T,
    weight: u32,
    in_flight: AtomicUsize,
    ewma_nanos: AtomicU64,
    consecutive_failures: AtomicU32,
    /// 0 while in rotation; else when the ejection's cool-down ends.
    ejected_until: AtomicU64,
    probing: AtomicBool,
    picks: AtomicU64,
}

/// Builds a [`LoadBalancer`] endpoint by endpoint.
#[derive(Debug)]
pub struct LoadBalancerBuilder<T> {
    config: LoadBalancerConfig,
    endpoints: Vec<(T, u32)>,
    clock: Clock,
}

/// One call's hold on an endpoint: counted in flight until dropped.
#[derive(Debug)]
#[must_use = "report the call's outcome with success() or failure()"]
pub struct EndpointGuard<T> {
    balancer: LoadBalancer<T>,
    index: usize,
    started: u64,
    probe: bool,
}

/// One endpoint's figures, from [`LoadBalancer::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Position in the order the endpoints were added.
    pub index: usize,
    /// Its weight (1 unless set).
    pub weight: u32,
    /// Calls in flight right now.
    pub in_flight: usize,
    /// Times it was picked.
    pub picks: u64,
    /// Moving average of reported call latency (zero before any report).
    pub ewma_latency: Duration,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// Whether it is ejected right now.
    pub ejected: bool,
}

impl<T> LoadBalancer<T> {
    /// A balancer over `endpoints`, each of weight 1, on the system clock.
    pub fn new(
        config: LoadBalancerConfig,
        endpoints: impl IntoIterator<Item = T>,
    ) -> Result<Self, InvalidField> {
        endpoints
            .into_iter()
            .fold(Self::builder(config), LoadBalancerBuilder::endpoint)
            .build()
    }

    /// Starts a balancer with weights or a clock of its own.
    pub fn builder(config: LoadBalancerConfig) -> LoadBalancerBuilder<T> {
        LoadBalancerBuilder {
            config,
            endpoints: Vec::new(),
            clock: Clock::system(),
        }
    }

    /// Picks an endpoint for one call, per the strategy; an ejected
    /// endpoint whose cool-down is over gets the call as its probe.
    pub fn pick(&self) -> Result<EndpointGuard<T>, BalanceError> {
        let inner = &*self.inner;
        let now = inner.clock.now_nanos();
        if inner.ejected.load(Ordering::Relaxed) > 0
            && let Some(index) = self.due_probe(now)
        {
            return Ok(self.guard(index, now, true));
        }
        let index = match inner.config.strategy {
            BalanceStrategy::RoundRobin => self.round_robin(),
            BalanceStrategy::Weighted => self.smooth_weighted(),
            BalanceStrategy::LeastInFlight => self.least_in_flight(),
            BalanceStrategy::PowerOfTwoChoices => self.power_of_two(),
        }
        .ok_or(BalanceError::NoHealthyEndpoint)?;
        Ok(self.guard(index, now, false))
    }

    /// How many endpoints there are (ejected ones included).
    pub fn len(&self) -> usize {
        self.inner.endpoints.len()
    }

    /// Always false: a balancer has at least one endpoint.
    pub fn is_empty(&self) -> bool {
        self.inner.endpoints.is_empty()
    }

    /// The endpoint at `index` (in the order added).
    pub fn endpoint(&self, index: usize) -> Option<&T> {
        self.inner.endpoints.get(index).map(|e| &e.value)
    }

    /// Each endpoint's figures, in the order added.
    pub fn stats(&self) -> Vec<EndpointStats> {
        self.inner
            .endpoints
            .iter()
            .enumerate()
            .map(|(index, e)| EndpointStats {
                index,
                weight: e.weight,
                in_flight: e.in_flight.load(Ordering::Relaxed),
                picks: e.picks.load(Ordering::Relaxed),
                ewma_latency: Duration::from_nanos(e.ewma_nanos.load(Ordering::Relaxed)),
                consecutive_failures: e.consecutive_failures.load(Ordering::Relaxed),
                ejected: e.ejected_until.load(Ordering::Relaxed) != 0,
            })
            .collect()
    }

    fn guard(&self, index: usize, now: u64, probe: bool) -> EndpointGuard<T> {
        let endpoint = &self.inner.endpoints[index];
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        endpoint.picks.fetch_add(1, Ordering::Relaxed);
        EndpointGuard {
            balancer: self.clone(),
            index,
            started: now,
            probe,
        }
    }

    fn due_probe(&self, now: u64) -> Option<usize> {
        self.inner.endpoints.iter().position(|e| {
            let until = e.ejected_until.load(Ordering::Relaxed);
            until != 0
                && until <= now
                && e.probing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
        })
    }

    fn available(&self, index: usize) -> bool {
        self.inner.endpoints[index]
            .ejected_until
            .load(Ordering::Relaxed)
            == 0
    }

    /// The next endpoint in turn among those in rotation, so the share of
    /// an ejected endpoint is spread evenly rather than given to its
    /// neighbour.
    fn round_robin(&self) -> Option<usize> {
        let n = self.inner.endpoints.len();
        let turn = self.inner.next.fetch_add(1, Ordering::Relaxed);
        if self.inner.ejected.load(Ordering::Relaxed) == 0 {
            return Some(turn % n);
        }
        let in_rotation = (0..n).filter(|&i| self.available(i)).count();
        if in_rotation == 0 {
            return None;
        }
        (0..n)
            .filter(|&i| self.available(i))
            .nth(turn % in_rotation)
    }

    fn smooth_weighted(&self) -> Option<usize> {
        let inner = &*self.inner;
        let mut current = inner
            .smooth_weights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, endpoint) in inner.endpoints.iter().enumerate() {
            if !self.available(i) {
                continue;
            }
            let weight = i64::from(endpoint.weight);
            current[i] += weight;
            total += weight;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        current[best] -= total;
        Some(best)
    }

    /// Fewest in flight; ties go to each endpoint in rotation in turn.
    fn least_in_flight(&self) -> Option<usize> {
        let n = self.inner.endpoints.len();
        let turn = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let in_rotation = || (0..n).filter(|&i| self.available(i));
        let count = in_rotation().count();
        if count == 0 {
            return None;
        }
        let skip = turn % count;
        in_rotation()
            .skip(skip)
            .chain(in_rotation().take(skip))
            .min_by_key(|&i| self.inner.endpoints[i].in_flight.load(Ordering::Relaxed))
    }

    fn power_of_two(&self) -> Option<usize> {
        let n = self.inner.endpoints.len();
        if n == 1 {
            return Some(0).filter(|&i| self.available(i));
        }
        let a = fastrand::usize(..n);
        let mut b = fastrand::usize(..n - 1);
        if b >= a {
            b += 1;
        }
        match (self.available(a), self.available(b)) {
            (true, true) => Some(if self.cost(b) < self.cost(a) { b } else { a }),
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => (0..n)
                .filter(|&i| self.available(i))
                .min_by_key(|&i| self.cost(i)),
        }
    }

    /// Expected wait: average latency times the calls it would queue behind.
    fn cost(&self, index: usize) -> u128 {
        let endpoint = &self.inner.endpoints[index];
        let latency = u128::from(endpoint.ewma_nanos.load(Ordering::Relaxed));
        let queued = endpoint.in_flight.load(Ordering::Relaxed) as u128 + 1;
        latency * queued
    }

    fn finish(&self, index: usize, started: u64, probe: bool, failed: bool) {
        let inner = &*self.inner;
        let endpoint = &inner.endpoints[index];
        let now = inner.clock.now_nanos();
        let sample = now.saturating_sub(started);
        let _ = endpoint
            .ewma_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample.max(1)
                } else {
                    (old as f64 + EWMA_ALPHA * (sample as f64 - old as f64)).max(1.0) as u64
                })
            });
        if !failed {
            endpoint.consecutive_failures.store(0, Ordering::Relaxed);
            if probe {
                endpoint.ejected_until.store(0, Ordering::Relaxed);
                endpoint.probing.store(false, Ordering::Release);
                inner.ejected.fetch_sub(1, Ordering::Relaxed);
                tracing::info!(
                    endpoint = index,
                    "load balancer endpoint restored after probe"
                );
            }
            return;
        }
        let failures = endpoint
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let until = now.saturating_add(inner.cooldown_nanos).max(1);
        if probe {
            endpoint.ejected_until.store(until, Ordering::Relaxed);
            endpoint.probing.store(false, Ordering::Release);
            tracing::warn!(
                endpoint = index,
                "load balancer probe failed; endpoint stays ejected"
            );
        } else if failures >= inner.config.eject_after_failures
            && endpoint
                .ejected_until
                .compare_exchange(0, until, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            inner.ejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                endpoint = index,
                consecutive_failures = failures,
                cooldown = ?inner.config.ejection_cooldown,
                "load balancer endpoint ejected"
            );
        }
    }
}

impl<T> Clone for LoadBalancer<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> LoadBalancerBuilder<T> {
    /// Adds an endpoint of weight 1.
    pub fn endpoint(self, endpoint: T) -> Self {
        self.weighted_endpoint(endpoint, 1)
    }

    /// Adds an endpoint of `weight` (used by [`BalanceStrategy::Weighted`]).
    pub fn weighted_endpoint(mut self, endpoint: T, weight: u32) -> Self {
        self.endpoints.push((endpoint, weight));
        self
    }

    /// Times latency and cool-downs by `clock` instead of the system clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The balancer, or what is wrong with its config or endpoints.
    pub fn build(self) -> Result<LoadBalancer<T>, InvalidField> {
        self.config.validate()?;
        if self.endpoints.is_empty() {
            return Err(InvalidField::new(
                "load_balancer.endpoints",
                "must list at least one endpoint",
            ));
        }
        if self.endpoints.iter().any(|(_, weight)| *weight == 0) {
            return Err(InvalidField::new(
                "load_balancer.weight",
                "must be at least 1",
            ));
        }
        let count = self.endpoints.len();
        let endpoints = self
            .endpoints
            .into_iter()
            .map(|(value, weight)| Endpoint {
                value,
                weight,
                in_flight: AtomicUsize::new(0),
                ewma_nanos: AtomicU64::new(0),
                consecutive_failures: AtomicU32::new(0),
                ejected_until: AtomicU64::new(0),
                probing: AtomicBool::new(false),
                picks: AtomicU64::new(0),
            })
            .collect();
        Ok(LoadBalancer {
            inner: Arc::new(Inner {
                endpoints,
                cooldown_nanos: duration_nanos(self.config.ejection_cooldown),
                config: self.config,
                clock: self.clock,
                next: AtomicUsize::new(0),
                ejected: AtomicUsize::new(0),
                smooth_weights: Mutex::new(vec![0; count]),
            }),
        })
    }
}

impl<T> EndpointGuard<T> {
    /// The endpoint picked.
    pub fn endpoint(&self) -> &T {
        &self.balancer.inner.endpoints[self.index].value
    }

    /// Its position in the order the endpoints were added.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether this call is the probe of an ejected endpoint.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call succeeded: records its latency, clears the failure streak
    /// (and restores the endpoint if this was its probe).
    pub fn success(mut self) {
        self.report(false);
    }

    /// The call failed: records its latency and counts toward ejection.
    pub fn failure(mut self) {
        self.report(true);
    }

    fn report(&mut self, failed: bool) {
        let probe = std::mem::take(&mut self.probe);
        self.balancer
            .finish(self.index, self.started, probe, failed);
    }
}

impl<T> Drop for EndpointGuard<T> {
    fn drop(&mut self) {
        let endpoint = &self.balancer.inner.endpoints[self.index];
        endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.probe {
            // A probe dropped unreported: let the next call probe instead.
            endpoint.probing.store(false, Ordering::Release);
        }
    }
}
