//! The time source of a cache: the system's monotonic clock, or a manual
//! clock that tests move by hand.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// Where a cache reads the time from.
///
/// [`Clock::system`] (the default) is the system's monotonic clock read with
/// a resolution of [`TICK`]: quanta's upkeep thread stores the time every
/// tick, so a read is one atomic load instead of a clock call (which costs
/// 30 to 60 ns on virtual machines, a quarter of a cache hit). The thread
/// runs while a system clock exists (each cache holds one) and stops with
/// the last, so an idle process has no thread ticking.
/// [`Clock::precise`] reads the monotonic clock on every call.
/// [`Clock::manual`] only moves when its [`ManualClock`] handle says so, so
/// tests can check expiry without sleeping.
#[derive(Clone)]
pub struct Clock {
    kind: Kind,
}

/// The resolution of [`Clock::system`].
pub const TICK: Duration = Duration::from_millis(1);

#[derive(Clone)]
enum Kind {
    Ticker {
        clock: quanta::Clock,
        origin: quanta::Instant,
        _upkeep: Arc<Upkeep>,
    },
    Precise {
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
    /// The system's monotonic clock with a resolution of [`TICK`] (the
    /// default). Falls back to [`Clock::precise`] if the upkeep thread
    /// cannot be started (or another library runs quanta's upkeep, whose
    /// lifetime this clock cannot vouch for).
    pub fn system() -> Self {
        match upkeep() {
            Some(upkeep) => {
                let clock = quanta::Clock::new();
                let origin = clock.recent();
                Self {
                    kind: Kind::Ticker {
                        clock,
                        origin,
                        _upkeep: upkeep,
                    },
                }
            }
            None => Self::precise(),
        }
    }

    /// The system's monotonic clock, read on every call.
    pub fn precise() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.now();
        Self {
            kind: Kind::Precise { clock, origin },
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

    /// True for a [`Clock::manual`] clock.
    pub(crate) fn is_manual(&self) -> bool {
        matches!(self.kind, Kind::Manual(_))
    }

    /// Nanoseconds since the clock's origin. Never reaches `u64::MAX`, which
    /// the cache uses to mean "never".
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        let nanos = match &self.kind {
            Kind::Ticker { clock, origin, .. } => {
                u64::try_from(clock.recent().duration_since(*origin).as_nanos()).unwrap_or(u64::MAX)
            }
            Kind::Precise { clock, origin } => {
                u64::try_from(clock.now().duration_since(*origin).as_nanos()).unwrap_or(u64::MAX)
            }
            Kind::Manual(nanos) => nanos.load(Ordering::Acquire),
        };
        nanos.min(u64::MAX - 1)
    }
}

/// Keeps quanta's upkeep thread (which stores the time every [`TICK`] for
/// `quanta::Clock::recent`) running while any system clock exists.
struct Upkeep(Option<quanta::Handle>);

/// The running upkeep, if any system clock holds it.
static UPKEEP: std::sync::Mutex<std::sync::Weak<Upkeep>> =
    std::sync::Mutex::new(std::sync::Weak::new());

impl Drop for Upkeep {
    fn drop(&mut self) {
        // Stop the thread under the lock, so a clock made meanwhile waits
        // and then starts a new one instead of finding this one running.
        let _running = UPKEEP.lock().unwrap_or_else(|p| p.into_inner());
        drop(self.0.take());
    }
}

/// A share of the upkeep thread, starting it if no clock holds it. `None`
/// if it cannot start (or under loom, which cannot model it).
fn upkeep() -> Option<Arc<Upkeep>> {
    if cfg!(keel_loom) {
        return None;
    }
    // A few tries: the last clock's upkeep may be stopping right now.
    for _ in 0..5 {
        let mut running = UPKEEP.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(upkeep) = running.upgrade() {
            return Some(upkeep);
        }
        match quanta::Upkeep::new(TICK).start() {
            Ok(handle) => {
                let upkeep = Arc::new(Upkeep(Some(handle)));
                *running = Arc::downgrade(&upkeep);
                return Some(upkeep);
            }
            Err(quanta::Error::UpkeepRunning) => {
                drop(running);
                std::thread::sleep(TICK);
            }
            Err(quanta::Error::FailedToSpawnUpkeepThread(_)) => return None,
        }
    }
    None
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Ticker { .. } => f.write_str("Clock::System"),
            Kind::Precise { .. } => f.write_str("Clock::Precise"),
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
