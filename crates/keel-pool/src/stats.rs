//! [`ConnectionStats`], [`ConnectionStatus`] and the counters behind them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Which kind of pool a figure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum PoolKind {
    /// A [`DatabaseConnectionPool`](crate::DatabaseConnectionPool).
    Database,
    /// An [`HttpConnectionPool`](crate::HttpConnectionPool).
    Http,
}

/// A pool's health, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ConnectionStatus {
    /// The last health check passed and nothing failed since the one before.
    Healthy,
    /// Serving, but something failed within the last
    /// `health_check_interval` (an acquire, a statement that lost its
    /// connection, a request), or an HTTP endpoint is ejected.
    Degraded,
    /// The last health check failed, or every HTTP endpoint is ejected.
    Unhealthy,
    /// The pool was closed.
    Closed,
}

impl ConnectionStatus {
    /// `healthy`, `degraded`, `unhealthy` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Healthy => "healthy",
            ConnectionStatus::Degraded => "degraded",
            ConnectionStatus::Unhealthy => "unhealthy",
            ConnectionStatus::Closed => "closed",
        }
    }
}

impl std::fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One pool's figures at one moment. Counters count since the pool was
/// built; the acquire-wait percentiles cover every acquire since then
/// (within 1/8 of the true value).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// The pool's name.
    pub name: String,
    /// Database or HTTP.
    pub kind: PoolKind,
    /// Connections open (`None` for HTTP pools: reqwest does not show them).
    pub total: Option<u32>,
    /// Connections open and unused (`None` for HTTP pools).
    pub idle: Option<u32>,
    /// Connections handed out right now (for HTTP: requests in flight).
    pub in_use: u32,
    /// Callers waiting for a connection right now.
    pub waiters: u32,
    /// Connections handed out (HTTP: requests admitted), in total.
    pub acquired: u64,
    /// Callers that gave up after `connection_timeout`.
    pub timed_out: u64,
    /// Failures other than timeouts: connects, statements or requests that
    /// failed, HTTP responses 502/503/504 after retries.
    pub errors: u64,
    /// Retries made (connects, idempotent requests).
    pub retries: u64,
    /// Connections reported as held past `leak_threshold`.
    pub leaked: u64,
    /// Median time callers waited for a connection.
    pub wait_p50: Duration,
    /// 99th percentile of that wait.
    pub wait_p99: Duration,
}

/// The counters every pool keeps; all relaxed atomics, plus the handle
/// through which each acquire's wait reaches the `metrics` facade once
/// the pool's figures have been published.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) in_use: AtomicUsize,
    pub(crate) waiters: AtomicUsize,
    pub(crate) acquired: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) leaked: AtomicU64,
    pub(crate) wait: WaitHistogram,
    /// The pool's label, `db.<name>` or `http.<name>`.
    pool: String,
    /// `keel_pool_acquire_wait_seconds{pool}`, registered on the first
    /// [`Counters::bind_metrics`]: pools are usually built before the
    /// process installs its recorder, and a handle taken then would feed
    /// the no-op recorder forever.
    wait_seconds: OnceLock<metrics::Histogram>,
}

impl Counters {
    /// Counters of the pool labelled `pool` (`db.<name>`, `http.<name>`).
    pub(crate) fn new(pool: String) -> Self {
        Self {
            in_use: AtomicUsize::default(),
            waiters: AtomicUsize::default(),
            acquired: AtomicU64::default(),
            timed_out: AtomicU64::default(),
            errors: AtomicU64::default(),
            retries: AtomicU64::default(),
            leaked: AtomicU64::default(),
            wait: WaitHistogram::default(),
            pool,
            wait_seconds: OnceLock::new(),
        }
    }

    /// Registers the wait histogram with the recorder current now (the
    /// first call wins); from then on every acquire's wait reaches it.
    pub(crate) fn bind_metrics(&self) {
        self.wait_seconds.get_or_init(|| {
            metrics::describe_histogram!(
                "keel_pool_acquire_wait_seconds",
                metrics::Unit::Seconds,
                "Time callers waited for a connection (HTTP: for a request slot)."
            );
            metrics::histogram!("keel_pool_acquire_wait_seconds", "pool" => self.pool.clone())
        });
    }

    /// Records one caller's wait for a connection.
    pub(crate) fn record_wait(&self, wait: Duration) {
        self.wait.record(wait);
        if let Some(histogram) = self.wait_seconds.get() {
            histogram.record(wait.as_secs_f64());
        }
    }

    /// Counts the caller as waiting until the guard drops.
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        Waiting(self)
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(
        &self,
        name: &str,
        kind: PoolKind,
        total: Option<u32>,
        idle: Option<u32>,
        in_use: u32,
    ) -> ConnectionStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConnectionStats {
            name: name.to_owned(),
            kind,
            total,
            idle,
            in_use,
            waiters: u32::try_from(self.waiters.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
            acquired: load(&self.acquired),
            timed_out: load(&self.timed_out),
            errors: load(&self.errors),
            retries: load(&self.retries),
            leaked: load(&self.leaked),
            wait_p50: self.wait.percentile(0.50),
            wait_p99: self.wait.percentile(0.99),
        }
    }
}

/// A caller counted in `waiters`.
#[derive(Debug)]
pub(crate) struct Waiting<'a>(&'a Counters);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sub-buckets per power of two: values are kept within 1/8.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

/// A log-linear histogram of nanoseconds: one relaxed add per sample.
#[derive(Debug)]
pub(crate) struct WaitHistogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
}

impl Default for WaitHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
        }
    }
}

impl WaitHistogram {
    pub(crate) fn record(&self, wait: Duration) {
        let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket(nanos)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The value at quantile `q` (0 to 1): the middle of its bucket.
    pub(crate) fn percentile(&self, q: f64) -> Duration {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                let (low, high) = bounds(i);
                return Duration::from_nanos(low + (high - low) / 2);
            }
        }
        Duration::from_nanos(bounds(BUCKETS - 1).1)
    }
}

fn bucket(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let top = 63 - v.leading_zeros();
    let shift = top - SUB_BITS;
    let mantissa = ((v >> shift) as usize) - SUB;
    SUB + shift as usize * SUB + mantissa
}

/// The smallest and largest value of bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, i as u64);
    }
    let shift = ((i - SUB) / SUB) as u32;
    let mantissa = ((i - SUB) % SUB) as u64;
    let low = (SUB as u64 + mantissa) << shift;
    let width = 1u64 << shift;
    (low, low.saturating_add(width - 1))
}

/// What the health of a pool is made of: the last check and the last
/// failure, on a clock of the pool's own.
#[derive(Debug)]
pub(crate) struct Health {
    origin: Instant,
    window: Duration,
    /// 0: no check yet, 1: passed, 2: failed.
    last_check: AtomicU8,
    /// Nanoseconds after `origin` of the last failure, 0 for none.
    last_failure: AtomicU64,
    closed: AtomicBool,
}

impl Health {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            origin: Instant::now(),
            window,
            last_check: AtomicU8::new(0),
            last_failure: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Nanoseconds since the pool's origin (at least 1).
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    pub(crate) fn failure(&self) {
        self.last_failure.store(self.now(), Ordering::Relaxed);
    }

    pub(crate) fn checked(&self, passed: bool) {
        self.last_check
            .store(if passed { 1 } else { 2 }, Ordering::Relaxed);
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    pub(crate) fn status(&self) -> ConnectionStatus {
        if self.is_closed() {
            return ConnectionStatus::Closed;
        }
        if self.last_check.load(Ordering::Relaxed) == 2 {
            return ConnectionStatus::Unhealthy;
        }
        let failed = self.last_failure.load(Ordering::Relaxed);
        let window = u64::try_from(self.window.as_nanos()).unwrap_or(u64::MAX);
        if failed != 0 && self.now().saturating_sub(failed) < window {
            ConnectionStatus::Degraded
        } else {
            ConnectionStatus::Healthy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..10_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let b = bucket(v);
            assert!(b >= last && b < BUCKETS, "value {v} in bucket {b}");
            let (low, high) = bounds(b);
            assert!(low <= v && v <= high, "{v} outside {low}..={high}");
            last = b;
        }
    }

    #[test]
    fn percentiles_are_within_an_eighth() {
        let h = WaitHistogram::default();
        assert_eq!(h.percentile(0.99), Duration::ZERO);
        for micros in 1..=1000u64 {
            h.record(Duration::from_micros(micros));
        }
        for (q, expected) in [(0.5, 500_000.0), (0.99, 990_000.0)] {
            let got = h.percentile(q).as_nanos() as f64;
            assert!(
                (got - expected).abs() / expected < 0.125,
                "p{q}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn health_follows_checks_failures_and_close() {
        let h = Health::new(Duration::from_secs(3600));
        assert_eq!(h.status(), ConnectionStatus::Healthy);
        h.failure();
        assert_eq!(h.status(), ConnectionStatus::Degraded);
        h.checked(false);
        assert_eq!(h.status(), ConnectionStatus::Unhealthy);
        h.close();
        assert_eq!(h.status(), ConnectionStatus::Closed);
        let h = Health::new(Duration::from_nanos(1));
        h.failure();
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(h.status(), ConnectionStatus::Healthy);
    }
}
