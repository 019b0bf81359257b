//! The time source of a cache: the system's monotonic clock, or a manual
//! clock that tests move by hand.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// Where a cache reads the time from.
///
/// [`Clock::system`] (the default) reads a monotonic clock (the CPU's
/// time-stamp counter where it is reliable, through `quanta`). [`Clock::manual`]
/// returns a clock that only moves when its [`ManualClock`] handle says so, so
/// tests can check expiry without sleeping.
#[derive(Clone)]
pub struct Clock {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    System {
        clock: quanta::Clock,
        origin: quanta::Instant,
    },
    Manual(Arc<AtomicU64>),
}

/// The handle that moves a [`Clock::manual`] clock forward.
#[derive(Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl Clock {
    /// The system's monotonic clock.
    pub fn system() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.now();
        Self {
            kind: Kind::System { clock, origin },
        }
    }

    /// A clock that starts at zero and moves only through the returned handle.
    pub fn manual() -> (Self, ManualClock) {
        let nanos = Arc::new(AtomicU64::new(0));
        (
            Self {
                kind: Kind::Manual(Arc::clone(&nanos)),
            },
            ManualClock { nanos },
        )
    }

    /// Nanoseconds since the clock's origin. Never reaches `u64::MAX`, which
    /// the cache uses to mean "never".
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        let nanos = match &self.kind {
            Kind::System { clock, origin } => {
                u64::try_from(clock.now().duration_since(*origin).as_nanos()).unwrap_or(u64::MAX)
            }
            Kind::Manual(nanos) => nanos.load(Ordering::Acquire),
        };
        nanos.min(u64::MAX - 1)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::System { .. } => f.write_str("Clock::System"),
            Kind::Manual(nanos) => f
                .debug_tuple("Clock::Manual")
                .field(&Duration::from_nanos(nanos.load(Ordering::Acquire)))
                .finish(),
        }
    }
}

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Time elapsed on the clock since it was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.elapsed()).finish()
    }
}
