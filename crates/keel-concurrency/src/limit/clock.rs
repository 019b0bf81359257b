//! The time source of the rate limiter, the load balancer and the circuit breaker.

use std::fmt;
use std::time::Duration;

/// A monotonic clock: nanoseconds since the clock was made.
///
/// Clones share the same origin. [`Clock::system`] (the default) reads the
/// CPU's time-stamp counter through `quanta`, a few nanoseconds per read;
/// [`Clock::tokio`] follows tokio's clock, so a test that pauses time
/// (`#[tokio::test(start_paused = true)]`) moves it with
/// `tokio::time::advance` and never sleeps.
#[derive(Clone)]
pub struct Clock {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    System { clock: quanta::Clock, origin: u64 },
    Tokio { origin: tokio::time::Instant },
}

impl Clock {
    /// The machine's monotonic clock (TSC where available).
    pub fn system() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        Self {
            kind: Kind::System { clock, origin },
        }
    }

    /// Tokio's clock: paused and advanced by tests through `tokio::time`.
    pub fn tokio() -> Self {
        Self {
            kind: Kind::Tokio {
                origin: tokio::time::Instant::now(),
            },
        }
    }

    /// Time elapsed since this clock was made.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }

    /// Nanoseconds since this clock was made.
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        match &self.kind {
            Kind::System { clock, origin } => clock.delta_as_nanos(*origin, clock.raw()),
            Kind::Tokio { origin } => duration_nanos(origin.elapsed()),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind {
            Kind::System { .. } => "system",
            Kind::Tokio { .. } => "tokio",
        };
        f.debug_tuple("Clock").field(&name).finish()
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
