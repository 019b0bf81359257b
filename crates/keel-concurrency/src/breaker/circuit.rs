//! [`CircuitBreaker`]: the state machine shared by every clone.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::CircuitBreakerConfig;
use super::window::Window;
use crate::Clock;
use crate::InvalidField;
use crate::error::{BreakerError, CircuitOpen};
use crate::limit::duration_nanos;

/// A circuit breaker shared by every clone.
///
/// * **Closed**: calls go through; their outcomes fill the sliding window.
///   Once the window holds at least `minimum_calls` and the failure share
///   reaches `failure_rate`, the circuit opens.
/// * **Open**: calls fail at once with [`CircuitOpen`] for `open_duration`.
/// * **Half-open**: the next `half_open_probes` calls go through as
///   probes, the rest still fail fast. All probes succeeding closes the
///   circuit (with an empty window); one failing reopens it.
///
/// Every transition is logged as a `tracing` event (`warn` when opening,
/// `info` otherwise) with the breaker's name. Outcomes of calls admitted
/// before a transition do not count after it.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    config: CircuitBreakerConfig,
    clock: Clock,
    open_nanos: u64,
    machine: Mutex<Machine>,
    successes: AtomicU64,
    failures: AtomicU64,
    rejected: AtomicU64,
    opened: AtomicU64,
}

#[derive(Debug)]
struct Machine {
    state: CircuitState,
    /// Bumped on every transition; a permit only reports into its own.
    generation: u64,
    window: Window,
    opened_at: u64,
    probes_started: u32,
    probes_succeeded: u32,
}

/// Where a [`CircuitBreaker`] is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through and are counted.
    Closed,
    /// Calls fail fast.
    Open,
    /// A limited number of probe calls go through.
    HalfOpen,
}

/// Counters and state of a [`CircuitBreaker`], read with [`CircuitBreaker::stats`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// The state right now.
    pub state: CircuitState,
    /// Calls in the current window (closed state).
    pub window_calls: u32,
    /// Failed calls in the current window.
    pub window_failures: u32,
    /// Calls reported successful, ever.
    pub successes: u64,
    /// Calls reported failed, ever.
    pub failures: u64,
    /// Calls refused because the circuit was open.
    pub rejected: u64,
    /// How many times the circuit opened.
    pub opened: u64,
}

/// Leave to make one call through a [`CircuitBreaker`]; report how it went
/// with [`success`](Self::success) or [`failure`](Self::failure).
///
/// Dropping it unreported (a cancelled call) counts as neither, and frees
/// a half-open probe slot for another call.
#[derive(Debug)]
#[must_use = "report the call's outcome with success() or failure()"]
pub struct BreakerPermit {
    breaker: CircuitBreaker,
    generation: u64,
    reported: bool,
}

impl CircuitBreaker {
    /// A breaker named `name` (used in events and errors), on the system clock.
    pub fn new(name: &str, config: CircuitBreakerConfig) -> Result<Self, InvalidField> {
        Self::with_clock(name, config, Clock::system())
    }

    /// A breaker timed by `clock`.
    pub fn with_clock(
        name: &str,
        config: CircuitBreakerConfig,
        clock: Clock,
    ) -> Result<Self, InvalidField> {
        config.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.into(),
                open_nanos: duration_nanos(config.open_duration),
                machine: Mutex::new(Machine {
                    state: CircuitState::Closed,
                    generation: 0,
                    window: Window::new(config.window),
                    opened_at: 0,
                    probes_started: 0,
                    probes_succeeded: 0,
                }),
                config,
                clock,
                successes: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                opened: AtomicU64::new(0),
            }),
        })
    }

    /// Runs `call` if the circuit lets it, counting its `Err` as a failure;
    /// fails fast with [`BreakerError::Open`] otherwise (then `call` is
    /// dropped unpolled).
    pub async fn call<F, T, E>(&self, call: F) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(BreakerError::Open)?;
        match call.await {
            Ok(value) => {
                permit.success();
                Ok(value)
            }
            Err(error) => {
                permit.failure();
                Err(BreakerError::Inner(error))
            }
        }
    }

    /// Like [`call`](Self::call), but a refused or failed call is answered
    /// by `fallback` (a cached value, a default, a degraded answer).
    pub async fn with_fallback<F, T, E, Fb>(&self, call: F, fallback: Fb) -> T
    where
        F: Future<Output = Result<T, E>>,
        Fb: FnOnce(BreakerError<E>) -> T,
    {
        match self.call(call).await {
            Ok(value) => value,
            Err(error) => fallback(error),
        }
    }

    /// Asks to make one call: a permit to report on, or [`CircuitOpen`].
    pub fn try_acquire(&self) -> Result<BreakerPermit, CircuitOpen> {
        let inner = &*self.inner;
        let mut machine = self.lock();
        if machine.state == CircuitState::Open
            && inner.clock.now_nanos().saturating_sub(machine.opened_at) >= inner.open_nanos
        {
            self.transition(&mut machine, CircuitState::HalfOpen);
        }
        let admitted = match machine.state {
            CircuitState::Closed => true,
            CircuitState::Open => false,
            CircuitState::HalfOpen => {
                let free = machine.probes_started < inner.config.half_open_probes;
                machine.probes_started += u32::from(free);
                free
            }
        };
        if !admitted {
            inner.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(self.open_error());
        }
        Ok(BreakerPermit {
            breaker: self.clone(),
            generation: machine.generation,
            reported: false,
        })
    }

    /// The state right now (an open circuit whose time is up reads as
    /// half-open only once a call asks).
    pub fn state(&self) -> CircuitState {
        self.lock().state
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How long an open circuit waits before probing.
    pub fn open_duration(&self) -> Duration {
        self.inner.config.open_duration
    }

    /// The counters and state so far.
    pub fn stats(&self) -> BreakerStats {
        let (state, (window_calls, window_failures)) = {
            let machine = self.lock();
            let now = self.inner.clock.now_nanos();
            (machine.state, machine.window.totals(now))
        };
        let inner = &*self.inner;
        BreakerStats {
            state,
            window_calls,
            window_failures,
            successes: inner.successes.load(Ordering::Relaxed),
            failures: inner.failures.load(Ordering::Relaxed),
            rejected: inner.rejected.load(Ordering::Relaxed),
            opened: inner.opened.load(Ordering::Relaxed),
        }
    }

    fn open_error(&self) -> CircuitOpen {
        CircuitOpen {
            name: self.inner.name.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        self.inner
            .machine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self, generation: u64, failed: Option<bool>) {
        let inner = &*self.inner;
        match failed {
            Some(true) => inner.failures.fetch_add(1, Ordering::Relaxed),
            Some(false) => inner.successes.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
        let mut machine = self.lock();
        if machine.generation != generation {
            return;
        }
        let now = inner.clock.now_nanos();
        match (machine.state, failed) {
            (CircuitState::Closed, Some(failed)) => {
                machine.window.record(now, failed);
                let (calls, failures) = machine.window.totals(now);
                if calls >= inner.config.minimum_calls
                    && f64::from(failures) >= inner.config.failure_rate * f64::from(calls)
                {
                    self.transition(&mut machine, CircuitState::Open);
                }
            }
            (CircuitState::HalfOpen, Some(true)) => {
                self.transition(&mut machine, CircuitState::Open);
            }
            (CircuitState::HalfOpen, Some(false)) => {
                machine.probes_succeeded += 1;
                if machine.probes_succeeded >= inner.config.half_open_probes {
                    self.transition(&mut machine, CircuitState::Closed);
                }
            }
            (CircuitState::HalfOpen, None) => {
                machine.probes_started = machine.probes_started.saturating_sub(1);
            }
            _ => {}
        }
    }

    fn transition(&self, machine: &mut Machine, to: CircuitState) {
        let inner = &*self.inner;
        let from = machine.state;
        let now = inner.clock.now_nanos();
        let (calls, failures) = machine.window.totals(now);
        machine.state = to;
        machine.generation += 1;
        machine.probes_started = 0;
        machine.probes_succeeded = 0;
        match to {
            CircuitState::Open => {
                machine.opened_at = now;
                inner.opened.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    breaker = %inner.name, ?from, to = ?to, window_calls = calls,
                    window_failures = failures, "circuit breaker opened"
                );
            }
            CircuitState::HalfOpen => {
                tracing::info!(breaker = %inner.name, ?from, to = ?to, "circuit breaker half-open");
            }
            CircuitState::Closed => {
                machine.window.clear();
                tracing::info!(breaker = %inner.name, ?from, to = ?to, "circuit breaker closed");
            }
        }
    }
}

impl BreakerPermit {
    /// The call succeeded.
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.report(self.generation, Some(false));
    }

    /// The call failed.
    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.report(self.generation, Some(true));
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.report(self.generation, None);
        }
    }
}
