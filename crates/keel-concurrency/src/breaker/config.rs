//! [`CircuitBreakerConfig`].

use std::time::Duration;

use serde::Deserialize;

use crate::InvalidField;

/// When a [`CircuitBreaker`](crate::CircuitBreaker) opens and how it recovers.
///
/// As a config section (durations as strings such as `"30s"`):
///
/// ```toml
/// failure_rate = 0.5
/// minimum_calls = 20
/// window = { count = 100 }        # or { time = "60s" }
/// open_duration = "30s"
/// half_open_probes = 3
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Open when at least this share of the calls in the window failed
    /// (0 < rate <= 1). Default 0.5.
    pub failure_rate: f64,
    /// Never open on fewer calls than this in the window. Default 20.
    pub minimum_calls: u32,
    /// Which calls the failure rate is computed over. Default the last 100.
    pub window: SlidingWindow,
    /// How long the circuit stays open before probing. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub open_duration: Duration,
    /// How many probe calls half-open lets through; all must succeed to
    /// close, one failure reopens. Default 3.
    pub half_open_probes: u32,
}

/// The calls a breaker's failure rate is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SlidingWindow {
    /// The last `n` calls.
    Count(u32),
    /// The calls of the last period (kept in ten buckets, so the window
    /// slides in steps of a tenth of it).
    Time(#[serde(with = "humantime_serde")] Duration),
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_rate: 0.5,
            minimum_calls: 20,
            window: SlidingWindow::Count(100),
            open_duration: Duration::from_secs(30),
            half_open_probes: 3,
        }
    }
}

impl CircuitBreakerConfig {
    /// Checks every field, naming the first one that cannot be used.
    pub fn validate(&self) -> Result<(), InvalidField> {
        let fail = |field: &str, reason: &str| Err(InvalidField::new(field, reason));
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return fail(
                "circuit_breaker.failure_rate",
                "must be above 0 and at most 1",
            );
        }
        if self.minimum_calls == 0 {
            return fail("circuit_breaker.minimum_calls", "must be at least 1");
        }
        match self.window {
            SlidingWindow::Count(0) => {
                return fail("circuit_breaker.window", "count must be at least 1");
            }
            SlidingWindow::Time(period) if period < Duration::from_millis(10) => {
                return fail("circuit_breaker.window", "time must be at least 10ms");
            }
            _ => {}
        }
        if self.open_duration.is_zero() {
            return fail("circuit_breaker.open_duration", "must be longer than 0s");
        }
        if self.half_open_probes == 0 {
            return fail("circuit_breaker.half_open_probes", "must be at least 1");
        }
        Ok(())
    }
}
