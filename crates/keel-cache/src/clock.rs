//! The time source of a cache: the system's monotonic clock, or a manual
//! clock that tests move by hand.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// Where a cache reads the time from.
///
/// [`Clock::system`] (the default) is the system's monotonic clock read with
/// a resolution of [`TICK`]: one background thread per process stores the
/// time every tick, so a read is one atomic load instead of a clock call
/// (which costs 30 to 60 ns on virtual machines, a quarter of a cache hit).
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
    Ticker(&'static std::sync::atomic::AtomicU64),
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
    /// default). Falls back to [`Clock::precise`] if the ticker thread
    /// cannot be started.
    pub fn system() -> Self {
        match ticker() {
            Some(now) => Self {
                kind: Kind::Ticker(now),
            },
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
            Kind::Ticker(now) => now.load(std::sync::atomic::Ordering::Relaxed),
            Kind::Precise { clock, origin } => {
                u64::try_from(clock.now().duration_since(*origin).as_nanos()).unwrap_or(u64::MAX)
            }
            Kind::Manual(nanos) => nanos.load(Ordering::Acquire),
        };
        nanos.min(u64::MAX - 1)
    }
}

/// The process-wide ticker: nanoseconds since it started, stored every
/// [`TICK`] by a background thread. `None` if the thread cannot start (or
/// under loom, which cannot model it).
fn ticker() -> Option<&'static std::sync::atomic::AtomicU64> {
    use std::sync::OnceLock;
    use std::sync::atomic::AtomicU64 as StdAtomicU64;

    static NOW: StdAtomicU64 = StdAtomicU64::new(0);
    static STARTED: OnceLock<bool> = OnceLock::new();
    if cfg!(keel_loom) {
        return None;
    }
    let started = *STARTED.get_or_init(|| {
        let clock = quanta::Clock::new();
        let origin = clock.now();
        std::thread::Builder::new()
            .name("keel-cache-clock".to_owned())
            .spawn(move || {
                loop {
                    let nanos = u64::try_from(clock.now().duration_since(origin).as_nanos())
                        .unwrap_or(u64::MAX - 1);
                    NOW.fetch_max(nanos, std::sync::atomic::Ordering::Relaxed);
                    std::thread::sleep(TICK);
                }
            })
            .is_ok()
    });
    started.then_some(&NOW)
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Ticker(_) => f.write_str("Clock::System"),
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
