//! [`PerformanceMonitor`]: per-operation call counts and latency
//! histograms, recorded per thread.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::RwLock;
use serde::Serialize;
use thread_local::ThreadLocal;

use crate::errors::ErrorStatistics;
use crate::histogram::{AtomicHistogram, HistogramSnapshot, RELATIVE_ERROR};

/// The operation under which names past `max_operations` are measured.
pub const OTHER_OPERATION: &str = "other";

/// Measures named operations: exact call and error counts, and latency
/// histograms of the sampled calls.
///
/// Each thread records into shards only it writes (plain loads and
/// stores, no locked instruction), which readers sum. Cheap to clone;
/// clones share the figures.
#[derive(Clone)]
pub struct PerformanceMonitor {
    inner: Arc<MonitorInner>,
}

impl fmt::Debug for PerformanceMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerformanceMonitor")
            .field("operations", &self.inner.names.read().len())
            .field(
                "sample_every",
                &self.inner.sample_every.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

struct MonitorInner {
    /// Name → operation id; ids index `ops` and every thread's slots.
    names: RwLock<HashMap<Box<str>, u32>>,
    ops: RwLock<Vec<Arc<str>>>,
    max_operations: usize,
    /// Each thread's shards, one slot per operation id.
    shards: ThreadLocal<Box<[OnceLock<Box<OpShard>>]>>,
    /// Each thread's name cache and sampling countdown.
    local: ThreadLocal<LocalState>,
    /// 1 = every call's latency is recorded; n = every n-th per thread.
    sample_every: AtomicU64,
    errors: ErrorStatistics,
}

struct LocalState {
    names: RefCell<HashMap<Box<str>, u32, foldhash::fast::RandomState>>,
    countdown: Cell<u64>,
}

/// One thread's figures for one operation.
#[derive(Default)]
struct OpShard {
    calls: AtomicU64,
    errors: AtomicU64,
    latency: AtomicHistogram,
}

impl OpShard {
    #[inline]
    fn bump(a: &AtomicU64) {
        a.store(a.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

impl PerformanceMonitor {
    /// A monitor measuring at most `max_operations` names (the rest share
    /// [`OTHER_OPERATION`]), recording the latency of a `sample_rate`
    /// share of calls, and counting errors into `errors`.
    pub fn new(max_operations: usize, sample_rate: f64, errors: ErrorStatistics) -> Self {
        let monitor = Self {
            inner: Arc::new(MonitorInner {
                names: RwLock::new(HashMap::new()),
                ops: RwLock::new(Vec::new()),
                max_operations: max_operations.max(1),
                shards: ThreadLocal::new(),
                local: ThreadLocal::new(),
                sample_every: AtomicU64::new(1),
                errors,
            }),
        };
        monitor.set_sample_rate(sample_rate);
        monitor
    }

    /// Changes the share of calls whose latency is recorded (0 < rate ≤ 1;
    /// out-of-range values are clamped). Counts stay exact.
    pub fn set_sample_rate(&self, rate: f64) {
        let every = if rate > 0.0 {
            (1.0 / rate.min(1.0)).round().max(1.0) as u64
        } else {
            u64::MAX
        };
        self.inner.sample_every.store(every, Ordering::Relaxed);
    }

    /// The share of calls whose latency is recorded.
    pub fn sample_rate(&self) -> f64 {
        1.0 / self.inner.sample_every.load(Ordering::Relaxed) as f64
    }

    /// The error statistics this monitor counts failures into.
    pub fn errors(&self) -> &ErrorStatistics {
        &self.inner.errors
    }

    /// Starts measuring one call of `name`; the guard records it when
    /// dropped.
    #[inline]
    pub fn measure(&self, name: &str) -> Measure<'_> {
        let op = self.inner.id_cached(name);
        self.inner.start(op)
    }

    /// A handle on one operation that skips the name lookup.
    pub fn operation(&self, name: &str) -> Operation {
        Operation {
            monitor: self.clone(),
            id: self.inner.id(name),
        }
    }

    /// Records one call of `name` that took `duration` (sampled like
    /// measured calls).
    pub fn record(&self, name: &str, duration: Duration) {
        let op = self.inner.id_cached(name);
        let sampled = self.inner.sampled();
        self.inner
            .finish(op, sampled.then_some(duration.as_nanos() as u64), false);
    }

    /// Records a failed call of `name`: its error type and message go to
    /// the error statistics, and the operation's error count grows.
    pub fn record_error(&self, name: &str, error_type: &str, message: &str) {
        let op = self.inner.id_cached(name);
        self.inner.fail(op, error_type, message);
    }

    /// A serializable snapshot of every operation since the start.
    pub fn get_metrics(&self) -> PerformanceMetrics {
        let ops = self.snapshots();
        let mut operations: Vec<OperationMetrics> = ops
            .iter()
            .filter(|s| s.calls > 0)
            .map(OperationMetrics::from_snapshot)
            .collect();
        operations.sort_by(|a, b| b.total_time_ms.total_cmp(&a.total_time_ms));
        PerformanceMetrics {
            sample_rate: self.sample_rate(),
            relative_error: RELATIVE_ERROR,
            operations,
        }
    }

    /// Every operation's figures summed over threads.
    pub(crate) fn snapshots(&self) -> Vec<OperationSnapshot> {
        let names: Vec<Arc<str>> = self.inner.ops.read().clone();
        let mut out: Vec<OperationSnapshot> = names
            .into_iter()
            .map(|name| OperationSnapshot {
                name,
                calls: 0,
                errors: 0,
                latency: HistogramSnapshot::default(),
            })
            .collect();
        for thread in self.inner.shards.iter() {
            for (slot, snap) in thread.iter().zip(out.iter_mut()) {
                if let Some(shard) = slot.get() {
                    snap.calls += shard.calls.load(Ordering::Relaxed);
                    snap.errors += shard.errors.load(Ordering::Relaxed);
                    shard.latency.add_to(&mut snap.latency);
                }
            }
        }
        out
    }
}

impl MonitorInner {
    /// The id of `name`, registering it (or [`OTHER_OPERATION`] when full).
    fn id(&self, name: &str) -> u32 {
        if let Some(&id) = self.names.read().get(name) {
            return id;
        }
        let mut names = self.names.write();
        if let Some(&id) = names.get(name) {
            return id;
        }
        let mut ops = self.ops.write();
        // The last slot is kept for `other`.
        let name = if ops.len() + 1 < self.max_operations || name == OTHER_OPERATION {
            name
        } else {
            OTHER_OPERATION
        };
        if let Some(&id) = names.get(name) {
            return id;
        }
        let id = ops.len() as u32;
        ops.push(Arc::from(name));
        names.insert(name.into(), id);
        id
    }

    #[inline]
    fn local(&self) -> &LocalState {
        self.local.get_or(|| LocalState {
            names: RefCell::new(HashMap::default()),
            countdown: Cell::new(1),
        })
    }

    /// `id`, through this thread's cache of names.
    #[inline]
    fn id_cached(&self, name: &str) -> u32 {
        let local = self.local();
        if let Ok(names) = local.names.try_borrow()
            && let Some(&id) = names.get(name)
        {
            return id;
        }
        let id = self.id(name);
        if let Ok(mut names) = local.names.try_borrow_mut()
            && names.len() < self.max_operations * 2
        {
            names.insert(name.into(), id);
        }
        id
    }

    /// Whether this call's latency is recorded (every n-th per thread).
    #[inline]
    fn sampled(&self) -> bool {
        let every = self.sample_every.load(Ordering::Relaxed);
        if every == 1 {
            return true;
        }
        let local = self.local();
        let left = local.countdown.get();
        if left <= 1 {
            local.countdown.set(every);
            true
        } else {
            local.countdown.set(left - 1);
            false
        }
    }

    #[inline]
    fn start(&self, op: u32) -> Measure<'_> {
        let start = self.sampled().then(quanta::Instant::now);
        Measure {
            monitor: self,
            op,
            start,
        }
    }

    #[inline]
    fn shard(&self, op: u32) -> &OpShard {
        let slots = self.shards.get_or(|| {
            (0..self.max_operations)
                .map(|_| OnceLock::new())
                .collect::<Vec<_>>()
                .into_boxed_slice()
        });
        slots[op as usize].get_or_init(Box::default)
    }

    #[inline]
    fn finish(&self, op: u32, nanos: Option<u64>, failed: bool) {
        let shard = self.shard(op);
        OpShard::bump(&shard.calls);
        if failed {
            OpShard::bump(&shard.errors);
        }
        if let Some(nanos) = nanos {
            shard.latency.record_owned(nanos);
        }
    }

    fn fail(&self, op: u32, error_type: &str, message: &str) {
        OpShard::bump(&self.shard(op).errors);
        let name = self.ops.read().get(op as usize).cloned();
        self.errors.record(name.as_deref(), error_type, message);
    }
}

/// A handle on one operation of a [`PerformanceMonitor`].
#[derive(Debug, Clone)]
pub struct Operation {
    monitor: PerformanceMonitor,
    id: u32,
}

impl Operation {
    /// Starts measuring one call.
    #[inline]
    pub fn measure(&self) -> Measure<'_> {
        self.monitor.inner.start(self.id)
    }

    /// Records one call that took `duration`.
    pub fn record(&self, duration: Duration) {
        let sampled = self.monitor.inner.sampled();
        self.monitor.inner.finish(
            self.id,
            sampled.then_some(duration.as_nanos() as u64),
            false,
        );
    }
}

/// Measures one call; records it when dropped (on every path out,
/// including `?` and panics).
#[must_use = "the call is measured until the guard is dropped"]
pub struct Measure<'a> {
    monitor: &'a MonitorInner,
    op: u32,
    start: Option<quanta::Instant>,
}

impl fmt::Debug for Measure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Measure")
            .field("op", &self.op)
            .field("sampled", &self.start.is_some())
            .finish()
    }
}

impl Measure<'_> {
    /// Records the call as failed with `error_type` and `message`, then
    /// finishes it.
    pub fn fail(self, error_type: &str, message: &str) {
        self.monitor.fail(self.op, error_type, message);
    }
}

impl Drop for Measure<'_> {
    #[inline]
    fn drop(&mut self) {
        let nanos = self.start.map(|s| s.elapsed().as_nanos() as u64);
        self.monitor.finish(self.op, nanos, false);
    }
}

/// One operation's figures summed over threads.
#[derive(Debug, Clone)]
pub(crate) struct OperationSnapshot {
    pub(crate) name: Arc<str>,
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) latency: HistogramSnapshot,
}

impl OperationSnapshot {
    /// Figures recorded after `earlier`.
    pub(crate) fn since(&self, earlier: Option<&OperationSnapshot>) -> OperationSnapshot {
        match earlier {
            None => self.clone(),
            Some(e) => OperationSnapshot {
                name: self.name.clone(),
                calls: self.calls.saturating_sub(e.calls),
                errors: self.errors.saturating_sub(e.errors),
                latency: self.latency.since(&e.latency),
            },
        }
    }
}

/// Every measured operation, as [`PerformanceMonitor::get_metrics`] or a
/// report returns them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PerformanceMetrics {
    /// The share of calls whose latency was recorded.
    pub sample_rate: f64,
    /// The most a reported percentile differs from the exact one, as a
    /// fraction of it.
    pub relative_error: f64,
    /// Operations, the most total time first.
    pub operations: Vec<OperationMetrics>,
}

/// One operation's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct OperationMetrics {
    /// The operation's name.
    pub name: String,
    /// Calls (exact).
    pub calls: u64,
    /// Calls that failed (exact).
    pub errors: u64,
    /// `errors / calls`.
    pub error_rate: f64,
    /// Calls whose latency was recorded.
    pub sampled: u64,
    /// Mean latency, milliseconds.
    pub mean_ms: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Slowest recorded call, milliseconds.
    pub max_ms: f64,
    /// Time spent in the operation, milliseconds (the sampled mean times
    /// the exact call count).
    pub total_time_ms: f64,
    /// Calls per second over the interval (0 in a snapshot since start).
    pub throughput_per_s: f64,
}

impl OperationMetrics {
    pub(crate) fn from_snapshot(s: &OperationSnapshot) -> Self {
        let ms = |ns: Option<f64>| ns.unwrap_or(0.0) / 1e6;
        let h = &s.latency;
        let mean = ms(h.mean());
        Self {
            name: s.name.to_string(),
            calls: s.calls,
            errors: s.errors,
            error_rate: if s.calls == 0 {
                0.0
            } else {
                s.errors as f64 / s.calls as f64
            },
            sampled: h.count,
            mean_ms: mean,
            p50_ms: ms(h.quantile(0.5)),
            p90_ms: ms(h.quantile(0.9)),
            p99_ms: ms(h.quantile(0.99)),
            max_ms: if h.count == 0 {
                0.0
            } else {
                h.max as f64 / 1e6
            },
            total_time_ms: mean * s.calls as f64,
            throughput_per_s: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(rate: f64) -> PerformanceMonitor {
        PerformanceMonitor::new(4, rate, ErrorStatistics::new(10, 10))
    }

    #[test]
    fn sampling_thins_latencies_and_keeps_counts_exact() {
        let m = monitor(0.25);
        for _ in 0..1000 {
            let _g = m.measure("op");
        }
        let op = &m.get_metrics().operations[0];
        assert_eq!(op.calls, 1000);
        assert_eq!(op.sampled, 250);
    }

    #[test]
    fn names_past_the_bound_share_other() {
        let m = monitor(1.0);
        for name in ["a", "b", "c", "d", "e"] {
            m.record(name, Duration::from_millis(1));
        }
        let mut names: Vec<String> = m
            .get_metrics()
            .operations
            .into_iter()
            .map(|o| o.name)
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c", OTHER_OPERATION]);
    }

    #[test]
    fn calls_from_many_threads_are_all_counted() {
        let m = monitor(1.0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..500u64 {
                        m.record("op", Duration::from_micros(i));
                    }
                });
            }
        });
        let op = &m.get_metrics().operations[0];
        assert_eq!(op.calls, 2000);
        assert!((op.max_ms - 0.499).abs() < 1e-9);
    }

    #[test]
    fn failures_count_by_type() {
        let m = monitor(1.0);
        m.measure("db").fail("Timeout", "slow");
        m.record_error("db", "Timeout", "slow again");
        let op = &m.get_metrics().operations[0];
        assert_eq!((op.calls, op.errors), (1, 2));
        assert_eq!(m.errors().snapshot().by_type["Timeout"], 2);
    }
}
