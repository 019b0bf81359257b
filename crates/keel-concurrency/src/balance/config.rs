//! [`LoadBalancerConfig`].

use std::time::Duration;

use serde::Deserialize;

use crate::InvalidField;

/// How a [`LoadBalancer`](crate::LoadBalancer) picks and when it ejects.
///
/// As a config section:
///
/// ```toml
/// strategy = "power_of_two_choices"   # round_robin | weighted | least_in_flight
/// eject_after_failures = 5
/// ejection_cooldown = "10s"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadBalancerConfig {
    /// How the next endpoint is chosen. Default round robin.
    pub strategy: BalanceStrategy,
    /// Consecutive failures that eject an endpoint. Default 5.
    pub eject_after_failures: u32,
    /// How long an ejected endpoint rests before one probe call may try it.
    /// Default 10 s.
    #[serde(with = "humantime_serde")]
    pub ejection_cooldown: Duration,
}

/// How a [`LoadBalancer`](crate::LoadBalancer) chooses among the
/// endpoints not ejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceStrategy {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin: over every cycle of `sum(weights)`
    /// picks, each endpoint gets exactly its weight, interleaved.
    Weighted,
    /// The endpoint with the fewest calls in flight (ties in turn).
    LeastInFlight,
    /// Two endpoints drawn at random; the one with the lower
    /// `EWMA latency x (in flight + 1)` wins (an endpoint not yet measured
    /// counts as fastest, so new endpoints are tried).
    PowerOfTwoChoices,
}

impl Default for LoadBalancerConfig {
    fn default() -> Self {
        Self {
            strategy: BalanceStrategy::RoundRobin,
            eject_after_failures: 5,
            ejection_cooldown: Duration::from_secs(10),
        }
    }
}

impl LoadBalancerConfig {
    /// Checks every field, naming the first one that cannot be used.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if self.eject_after_failures == 0 {
            return Err(InvalidField::new(
                "load_balancer.eject_after_failures",
                "must be at least 1",
            ));
        }
        if self.ejection_cooldown.is_zero() {
            return Err(InvalidField::new(
                "load_balancer.ejection_cooldown",
                "must be longer than 0s",
            ));
        }
        Ok(())
    }
}
