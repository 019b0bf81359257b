//! The in-process registry behind the `metrics` facade: every `counter!`,
//! `gauge!` and `histogram!` of every room lands here once
//! [`MetricsRegistry::install`] made it the global recorder.
//!
//! The plumbing (sharded maps of `metrics::Key` to handles) is
//! `metrics_util::registry::Registry`; the handles are this crate's:
//! counters striped per thread, gauges as `f64` bits, histograms
//! log-linear (see [`RELATIVE_ERROR`](crate::RELATIVE_ERROR)). Each handle
//! carries its name and rendered labels, so exposition formats without
//! looking keys up again.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_util::registry::{Registry, Storage};
use parking_lot::RwLock;

use crate::MonitorError;
use crate::histogram::AtomicHistogram;

/// Kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// What a handle shares: its identity and whether it was used lately.
#[derive(Debug)]
pub(crate) struct SeriesId {
    /// Sanitized metric name.
    pub(crate) name: Box<str>,
    /// Rendered labels: `{a="1",b="2"}`, or empty.
    pub(crate) labels: Box<str>,
    /// Label pairs, for alert matching.
    pub(crate) pairs: Box<[(Box<str>, Box<str>)]>,
    touched: AtomicBool,
    /// Milliseconds since the registry's start when last seen touched.
    last_seen: AtomicU64,
}

impl SeriesId {
    fn new(key: &Key, now_ms: u64) -> Self {
        let pairs: Box<[(Box<str>, Box<str>)]> = key
            .labels()
            .map(|l| (sanitize(l.key()).into_boxed_str(), l.value().into()))
            .collect();
        Self {
            name: sanitize(key.name()).into_boxed_str(),
            labels: render_labels(pairs.iter().map(|(k, v)| (&**k, &**v))).into_boxed_str(),
            pairs,
            touched: AtomicBool::new(true),
            last_seen: AtomicU64::new(now_ms),
        }
    }

    #[inline]
    fn touch(&self) {
        // A load first: the common case writes nothing, so threads using the
        // same series share its line instead of bouncing it.
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a label `key` has `value`.
    pub(crate) fn has_label(&self, key: &str, value: &str) -> bool {
        self.pairs.iter().any(|(k, v)| &**k == key && &**v == value)
    }
}

/// A counter striped over cache-line-padded cells, one per thread slot.
#[derive(Debug)]
pub(crate) struct CounterCell {
    pub(crate) id: SeriesId,
    stripes: Box<[CachePadded<AtomicU64>]>,
}

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

#[inline]
fn stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed);
        s.set(v);
        v
    })
}

impl CounterCell {
    /// The counter's total.
    pub(crate) fn value(&self) -> u64 {
        self.stripes
            .iter()
            .fold(0u64, |a, s| a.wrapping_add(s.load(Ordering::Relaxed)))
    }
}

impl CounterFn for CounterCell {
    #[inline]
    fn increment(&self, value: u64) {
        self.id.touch();
        let s = &self.stripes[stripe() & (self.stripes.len() - 1)];
        s.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.id.touch();
        let others = self.stripes[1..]
            .iter()
            .fold(0u64, |a, s| a.wrapping_add(s.load(Ordering::Relaxed)));
        self.stripes[0].fetch_max(value.saturating_sub(others), Ordering::Relaxed);
    }
}

/// A gauge: an `f64` in an atomic word.
#[derive(Debug)]
pub(crate) struct GaugeCell {
    pub(crate) id: SeriesId,
    bits: AtomicU64,
}

impl GaugeCell {
    /// The gauge's value.
    pub(crate) fn value(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }

    fn update(&self, f: impl Fn(f64) -> f64) {
        self.id.touch();
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(f(f64::from_bits(b)).to_bits())
            });
    }
}

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.id.touch();
        self.bits.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// A histogram of facade values, kept in nano-units (value × 10⁹).
#[derive(Debug)]
pub(crate) struct HistogramCell {
    pub(crate) id: SeriesId,
    pub(crate) hist: AtomicHistogram,
}

/// Facade values are scaled by this before bucketing.
pub(crate) const SCALE: f64 = 1e9;

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        self.id.touch();
        let scaled = if value > 0.0 {
            (value * SCALE) as u64
        } else {
            0
        };
        self.hist.record(scaled);
    }
}

/// Creates handles, counting the series that exist.
#[derive(Debug)]
pub(crate) struct KeelStorage {
    series: Arc<AtomicUsize>,
    stripes: usize,
    start: Instant,
}

impl KeelStorage {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn id(&self, key: &Key) -> SeriesId {
        self.series.fetch_add(1, Ordering::Relaxed);
        SeriesId::new(key, self.now_ms())
    }
}

impl Storage<Key> for KeelStorage {
    type Counter = Arc<CounterCell>;
    type Gauge = Arc<GaugeCell>;
    type Histogram = Arc<HistogramCell>;

    fn counter(&self, key: &Key) -> Self::Counter {
        Arc::new(CounterCell {
            id: self.id(key),
            stripes: (0..self.stripes)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        })
    }

    fn gauge(&self, key: &Key) -> Self::Gauge {
        Arc::new(GaugeCell {
            id: self.id(key),
            bits: AtomicU64::new(0f64.to_bits()),
        })
    }

    fn histogram(&self, key: &Key) -> Self::Histogram {
        Arc::new(HistogramCell {
            id: self.id(key),
            hist: AtomicHistogram::default(),
        })
    }
}

/// A family's description from `describe_*!`.
#[derive(Debug, Clone)]
pub(crate) struct Description {
    pub(crate) unit: Option<Unit>,
    pub(crate) help: SharedString,
}

/// The registry of every series recorded through the `metrics` facade or
/// the custom-metric methods, bounded to `max_series` at once.
///
/// Cheap to clone (an `Arc` inside); [`install`](Self::install) makes a
/// clone the process's `metrics` recorder.
#[derive(Debug, Clone)]
pub struct MetricsRegistry {
    inner: Arc<RegistryInner>,
}

#[derive(Debug)]
struct RegistryInner {
    registry: Registry<Key, KeelStorage>,
    series: Arc<AtomicUsize>,
    max_series: usize,
    idle_timeout: Option<Duration>,
    dropped: AtomicU64,
    expired: AtomicU64,
    descriptions: RwLock<HashMap<Box<str>, Description>>,
}

impl MetricsRegistry {
    /// A registry keeping at most `max_series` series, forgetting those
    /// neither updated for `idle_timeout` nor held by a handle.
    pub fn new(max_series: usize, idle_timeout: Option<Duration>) -> Self {
        let series = Arc::new(AtomicUsize::new(0));
        let stripes = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .next_power_of_two()
            .min(16);
        let storage = KeelStorage {
            series: series.clone(),
            stripes,
            start: Instant::now(),
        };
        Self {
            inner: Arc::new(RegistryInner {
                registry: Registry::new(storage),
                series,
                max_series: max_series.max(1),
                idle_timeout,
                dropped: AtomicU64::new(0),
                expired: AtomicU64::new(0),
                descriptions: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Makes this registry the process's `metrics` recorder, so every
    /// `counter!`, `gauge!` and `histogram!` lands here.
    pub fn install(&self) -> Result<(), MonitorError> {
        metrics::set_global_recorder(self.clone()).map_err(|_| MonitorError::RecorderInstalled)
    }

    /// A counter series (`name` should end in `_total`).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Counter {
        self.register_counter(&key(name, labels), &METADATA)
    }

    /// A gauge series.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Gauge {
        self.register_gauge(&key(name, labels), &METADATA)
    }

    /// A histogram series (values in base units: seconds, bytes).
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Histogram {
        self.register_histogram(&key(name, labels), &METADATA)
    }

    /// Sets the help text and unit shown for a family.
    pub fn describe(&self, name: &str, unit: Option<Unit>, help: &str) {
        self.inner.descriptions.write().insert(
            sanitize(name).into_boxed_str(),
            Description {
                unit,
                help: SharedString::from(help.to_owned()),
            },
        );
    }

    /// Series held now.
    pub fn series(&self) -> usize {
        self.inner.series.load(Ordering::Relaxed)
    }

    /// Series refused because `max_series` were held.
    pub fn dropped_series(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Series forgotten after being idle.
    pub fn expired_series(&self) -> u64 {
        self.inner.expired.load(Ordering::Relaxed)
    }

    /// Forgets the series neither updated since the last sweep for the
    /// idle timeout nor held by a handle outside the registry.
    pub fn expire_idle(&self) {
        let Some(timeout) = self.inner.idle_timeout else {
            return;
        };
        let now = self.inner.registry.storage().now_ms();
        let timeout = timeout.as_millis() as u64;
        let mut removed = 0usize;
        let mut keep = |id: &SeriesId, held: bool| {
            if id.touched.swap(false, Ordering::Relaxed) {
                id.last_seen.store(now, Ordering::Relaxed);
                return true;
            }
            if held || now.saturating_sub(id.last_seen.load(Ordering::Relaxed)) < timeout {
                return true;
            }
            removed += 1;
            false
        };
        let r = &self.inner.registry;
        r.retain_counters(|_, c| keep(&c.id, Arc::strong_count(c) > 1));
        r.retain_gauges(|_, g| keep(&g.id, Arc::strong_count(g) > 1));
        r.retain_histograms(|_, h| keep(&h.id, Arc::strong_count(h) > 1));
        self.inner.series.fetch_sub(removed, Ordering::Relaxed);
        self.inner
            .expired
            .fetch_add(removed as u64, Ordering::Relaxed);
    }

    pub(crate) fn descriptions(&self) -> HashMap<Box<str>, Description> {
        self.inner.descriptions.read().clone()
    }

    pub(crate) fn counters(&self) -> Vec<Arc<CounterCell>> {
        let mut out = Vec::new();
        self.inner
            .registry
            .visit_counters(|_, c| out.push(c.clone()));
        out
    }

    pub(crate) fn gauges(&self) -> Vec<Arc<GaugeCell>> {
        let mut out = Vec::new();
        self.inner.registry.visit_gauges(|_, g| out.push(g.clone()));
        out
    }

    pub(crate) fn histograms(&self) -> Vec<Arc<HistogramCell>> {
        let mut out = Vec::new();
        self.inner
            .registry
            .visit_histograms(|_, h| out.push(h.clone()));
        out
    }

    /// Whether a new series may be created; counts a refusal.
    fn admit(&self) -> bool {
        if self.inner.series.load(Ordering::Relaxed) < self.inner.max_series {
            true
        } else {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    fn describe_kind(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.inner.descriptions.write().insert(
            sanitize(key.as_str()).into_boxed_str(),
            Description { unit, help },
        );
    }
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|(k, v)| metrics::Label::new(k.to_string(), v.to_string()))
        .collect();
    Key::from_parts(name.to_owned(), labels)
}

impl Recorder for MetricsRegistry {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe_kind(key, unit, help);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe_kind(key, unit, help);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe_kind(key, unit, help);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let r = &self.inner.registry;
        match r.get_counter(key) {
            Some(c) => Counter::from_arc(c),
            None if self.admit() => r.get_or_create_counter(key, |c| Counter::from_arc(c.clone())),
            None => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let r = &self.inner.registry;
        match r.get_gauge(key) {
            Some(g) => Gauge::from_arc(g),
            None if self.admit() => r.get_or_create_gauge(key, |g| Gauge::from_arc(g.clone())),
            None => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let r = &self.inner.registry;
        match r.get_histogram(key) {
            Some(h) => Histogram::from_arc(h),
            None if self.admit() => {
                r.get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
            }
            None => Histogram::noop(),
        }
    }
}

/// A metric or label name with every character outside `[a-zA-Z0-9_:]`
/// replaced by `_` (and a leading digit prefixed with `_`).
pub(crate) fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for (i, c) in name.chars().enumerate() {
        if i == 0 && c.is_ascii_digit() {
            out.push('_');
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}

/// `{a="1",b="2"}` with values escaped for the text format; empty for no
/// labels.
pub(crate) fn render_labels<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        out.push(if out.is_empty() { '{' } else { ',' });
        let _ = write!(out, "{k}=\"");
        escape_into(&mut out, v);
        out.push('"');
    }
    if !out.is_empty() {
        out.push('}');
    }
    out
}

/// Escapes `\`, `"` and newlines of a label value.
pub(crate) fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_are_made_valid() {
        assert_eq!(sanitize("keel.cache-hits"), "keel_cache_hits");
        assert_eq!(sanitize("9lives"), "_9lives");
        assert_eq!(
            render_labels([("a", "x\"y\\z\n")].into_iter()),
            r#"{a="x\"y\\z\n"}"#
        );
    }

    #[test]
    fn striped_counters_sum_every_thread() {
        let registry = MetricsRegistry::new(10, None);
        let c = registry.counter("hits_total", &[]);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        c.increment(1);
                    }
                });
            }
        });
        assert_eq!(registry.counters()[0].value(), 4000);
        c.absolute(10_000);
        assert_eq!(registry.counters()[0].value(), 10_000);
    }
}
