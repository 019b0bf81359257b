//! [`DataMonitoringService`]: the monitor, the registry, errors, health,
//! alerts and reports of one service, with the background task that
//! drives them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use metrics::{Counter, Gauge, Histogram};
use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;

use crate::alerts::{AlertEngine, AlertSubscription};
use crate::config::{AlertRule, MonitoringConfig};
use crate::errors::ErrorStatistics;
use crate::exposition::{self, Extra};
use crate::health::{HealthCheck, HealthRegistry, HealthState, ServiceHealthStatus};
use crate::histogram::HistogramSnapshot;
use crate::performance::{OperationMetrics, OperationSnapshot, PerformanceMonitor};
use crate::registry::{MetricsRegistry, SCALE};
use crate::report::{Change, ErrorSummary, OperationReport, PerformanceReport, Suggestion};
use crate::system::ProcessSampler;
use crate::{Alert, MonitorError};

type Collector = Arc<dyn Fn() + Send + Sync>;

/// Monitoring for one service, from its `[monitoring]` section: a
/// [`PerformanceMonitor`], the [`MetricsRegistry`] the rooms report into,
/// [`ErrorStatistics`], health checks, alert rules and reports.
///
/// Cheap to clone; clones share everything. [`start`](Self::start) runs
/// the background task (alert evaluation every `alert_interval`; process
/// figures, a report and the expiry of idle series every
/// `report_interval`), which stops when the last clone is dropped or
/// [`stop`](Self::stop) is called.
#[derive(Clone)]
pub struct DataMonitoringService {
    inner: Arc<Inner>,
}

impl fmt::Debug for DataMonitoringService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataMonitoringService")
            .field("config", &self.inner.config)
            .field("series", &self.inner.registry.series())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: MonitoringConfig,
    registry: MetricsRegistry,
    monitor: PerformanceMonitor,
    health: HealthRegistry,
    alerts: Mutex<AlertEngine>,
    alert_window: Mutex<AlertWindow>,
    collectors: RwLock<Vec<Collector>>,
    reporting: Mutex<ReportState>,
    latest: RwLock<Option<Arc<PerformanceReport>>>,
    last_health: Mutex<Option<HealthState>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

/// The latency samples alert rules compare: each histogram's figures at
/// the previous evaluation, and the samples of its latest interval that
/// had any (an interval with no calls leaves a rule as it was).
#[derive(Default)]
struct AlertWindow {
    ops: HashMap<Arc<str>, OperationSnapshot>,
    op_recent: HashMap<Arc<str>, HistogramSnapshot>,
    histograms: HashMap<(Box<str>, Box<str>), HistogramSnapshot>,
    recent: HashMap<(Box<str>, Box<str>), HistogramSnapshot>,
}

impl AlertWindow {
    /// Moves the window to `ops` and the registry's histograms now.
    fn advance(&mut self, ops: &[OperationSnapshot], registry: &MetricsRegistry) {
        let mut seen = HashMap::with_capacity(ops.len());
        for op in ops {
            let interval = op.since(self.ops.get(&op.name));
            if interval.latency.count > 0 {
                self.op_recent.insert(op.name.clone(), interval.latency);
            }
            seen.insert(op.name.clone(), op.clone());
        }
        self.op_recent.retain(|name, _| seen.contains_key(name));
        self.ops = seen;
        let mut histograms = HashMap::new();
        for h in registry.histograms() {
            let key: (Box<str>, Box<str>) = (h.id.name.clone(), h.id.labels.clone());
            let now = h.hist.snapshot();
            let interval = match self.histograms.get(&key) {
                Some(before) => now.since(before),
                None => now.clone(),
            };
            if interval.count > 0 {
                self.recent.insert(key.clone(), interval);
            }
            histograms.insert(key, now);
        }
        self.recent.retain(|key, _| histograms.contains_key(key));
        self.histograms = histograms;
    }
}

/// What a report compares against: the previous one's figures.
struct ReportState {
    at: Instant,
    ops: HashMap<Arc<str>, OperationSnapshot>,
    metrics: HashMap<String, OperationMetrics>,
    counters: HashMap<(Box<str>, Box<str>), u64>,
    histograms: HashMap<(Box<str>, Box<str>), HistogramSnapshot>,
    errors_total: u64,
    dropped: u64,
    sampler: ProcessSampler,
}

impl DataMonitoringService {
    /// A service configured by `config` (checked with
    /// [`MonitoringConfig::validate`]). Nothing runs until
    /// [`start`](Self::start).
    pub fn new(config: MonitoringConfig) -> Result<Self, MonitorError> {
        config.validate().map_err(MonitorError::Config)?;
        let errors = ErrorStatistics::new(config.max_error_types, config.recent_errors);
        let monitor = PerformanceMonitor::new(config.max_operations, config.sample_rate, errors);
        let registry = MetricsRegistry::new(config.max_series, config.series_idle_timeout);
        Ok(Self {
            inner: Arc::new(Inner {
                health: HealthRegistry::new(config.health_timeout, config.health_cache),
                alerts: Mutex::new(AlertEngine::new(config.alerts.clone())),
                alert_window: Mutex::new(AlertWindow::default()),
                collectors: RwLock::new(Vec::new()),
                reporting: Mutex::new(ReportState {
                    at: Instant::now(),
                    ops: HashMap::new(),
                    metrics: HashMap::new(),
                    counters: HashMap::new(),
                    histograms: HashMap::new(),
                    errors_total: 0,
                    dropped: 0,
                    sampler: ProcessSampler::new(),
                }),
                latest: RwLock::new(None),
                last_health: Mutex::new(None),
                task: Mutex::new(None),
                config,
                registry,
                monitor,
            }),
        })
    }

    /// Starts the background task on the current tokio runtime (when
    /// `enabled`). Calling it again does nothing.
    pub fn start(&self) -> Result<(), MonitorError> {
        if !self.inner.config.enabled {
            return Ok(());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MonitorError::NoRuntime)?;
        // The process gauges exist from the start; the report refreshes them.
        self.inner
            .sample_process(&mut self.inner.reporting.lock().sampler);
        let mut task = self.inner.task.lock();
        if task.is_none() {
            let weak = Arc::downgrade(&self.inner);
            *task = Some(runtime.spawn(run(
                weak,
                self.inner.config.alert_interval,
                self.inner.config.report_interval,
            )));
        }
        Ok(())
    }

    /// Stops the background task.
    pub fn stop(&self) {
        if let Some(task) = self.inner.task.lock().take() {
            task.abort();
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &MonitoringConfig {
        &self.inner.config
    }

    /// The registry that custom metrics and (once installed) the rooms'
    /// `metrics` calls go to.
    pub fn registry(&self) -> &MetricsRegistry {
        &self.inner.registry
    }

    /// Makes this service's registry the process's `metrics` recorder.
    pub fn install_recorder(&self) -> Result<(), MonitorError> {
        self.inner.registry.install()
    }

    /// The performance monitor.
    pub fn monitor(&self) -> &PerformanceMonitor {
        &self.inner.monitor
    }

    /// Makes this service's monitor the one `#[monitored]` functions record
    /// into. Fails if another was set, or a monitored function already ran.
    pub fn set_default(&self) -> Result<(), MonitorError> {
        crate::private::set_default_monitor(self.inner.monitor.clone())
    }

    /// The error statistics.
    pub fn errors(&self) -> &ErrorStatistics {
        self.inner.monitor.errors()
    }

    /// A custom counter (`name` ending in `_total`), with labels.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Counter {
        self.inner.registry.counter(name, labels)
    }

    /// A custom gauge, with labels.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Gauge {
        self.inner.registry.gauge(name, labels)
    }

    /// A custom histogram (values in base units), with labels.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Histogram {
        self.inner.registry.histogram(name, labels)
    }

    /// Adds a function run before every exposition, alert evaluation and
    /// report: where rooms publish the counters they keep themselves
    /// (`CacheManager::publish_metrics`, ...).
    pub fn add_collector(&self, collect: impl Fn() + Send + Sync + 'static) {
        self.inner.collectors.write().push(Arc::new(collect));
    }

    /// Registers the health check of dependency `name`. A critical
    /// dependency down makes the service unhealthy; any other, degraded.
    pub fn register_health_check(&self, name: &str, critical: bool, check: impl HealthCheck) {
        self.inner.health.register(name, critical, Box::new(check));
    }

    /// Runs the health checks concurrently (or reuses results younger than
    /// `health_cache`) and aggregates them.
    pub async fn health_status(&self) -> ServiceHealthStatus {
        let status = self.inner.health.status().await;
        *self.inner.last_health.lock() = Some(status.status);
        status
    }

    /// Adds (or replaces, by name) an alert rule.
    pub fn add_alert_rule(&self, rule: AlertRule) {
        self.inner.alerts.lock().add(rule);
    }

    /// A subscription to alert events, raised and resolved.
    pub fn subscribe_alerts(&self) -> AlertSubscription {
        self.inner.alerts.lock().subscribe()
    }

    /// Evaluates every alert rule now (tokio's clock), sending and
    /// returning the events. Counters and gauges compare their value now;
    /// a histogram's quantile or mean is over the samples recorded since
    /// the previous evaluation (one `alert_interval` when the service
    /// runs), so a latency alert resolves once calls are fast again. An
    /// interval without samples keeps the latest one that had any.
    pub fn evaluate_alerts(&self) -> Vec<Alert> {
        self.collect();
        let ops = self.inner.monitor.snapshots();
        let errors = self.errors().snapshot();
        let mut window = self.inner.alert_window.lock();
        window.advance(&ops, &self.inner.registry);
        let mut alerts = self.inner.alerts.lock();
        alerts.evaluate(Instant::now(), |rule| {
            value_of(&self.inner.registry, &ops, &window, &errors.by_type, rule)
        })
    }

    /// Every series in the Prometheus text format.
    pub fn render_prometheus(&self) -> String {
        self.collect();
        let ops = self.inner.monitor.snapshots();
        let errors: Vec<(String, u64)> = self.errors().snapshot().by_type.into_iter().collect();
        exposition::render(
            &self.inner.registry,
            Some(Extra {
                operations: &ops,
                errors_by_type: &errors,
            }),
        )
    }

    /// The latest report, if one was made.
    pub fn latest_report(&self) -> Option<Arc<PerformanceReport>> {
        self.inner.latest.read().clone()
    }

    /// Makes a report over the time since the previous one, logs it as a
    /// `performance` line, keeps it as the latest and returns it. Also
    /// samples the process and forgets idle series.
    pub fn report_now(&self) -> Arc<PerformanceReport> {
        self.collect();
        let report = Arc::new(self.inner.make_report());
        match serde_json::to_string(&*report) {
            Ok(json) => tracing::info!(
                target: "keel_monitor",
                category = "performance",
                report = %json,
                "performance report"
            ),
            Err(error) => {
                tracing::warn!(target: "keel_monitor", %error, "cannot encode the report")
            }
        }
        *self.inner.latest.write() = Some(report.clone());
        self.inner.registry.expire_idle();
        report
    }

    fn collect(&self) {
        let collectors: Vec<Collector> = self.inner.collectors.read().clone();
        for c in collectors {
            c();
        }
    }
}

async fn run(
    inner: Weak<Inner>,
    alert_every: std::time::Duration,
    report_every: std::time::Duration,
) {
    let mut alerts = tokio::time::interval(alert_every);
    let mut reports = tokio::time::interval(report_every);
    alerts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first ticks complete at once: skip them.
    alerts.tick().await;
    reports.tick().await;
    loop {
        let report = tokio::select! {
            _ = alerts.tick() => false,
            _ = reports.tick() => true,
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let service = DataMonitoringService { inner };
        if report {
            service.report_now();
        } else {
            service.evaluate_alerts();
        }
    }
}

/// The value an alert rule compares: the highest among the series of
/// `rule.metric` carrying its labels (histograms: over `window`).
fn value_of(
    registry: &MetricsRegistry,
    ops: &[OperationSnapshot],
    window: &AlertWindow,
    errors_by_type: &std::collections::BTreeMap<String, u64>,
    rule: &AlertRule,
) -> Option<f64> {
    let labels_match =
        |has: &dyn Fn(&str, &str) -> bool| rule.labels.iter().all(|(k, v)| has(k, v));
    let hist_value = |h: &HistogramSnapshot| match rule.quantile {
        Some(q) => h.quantile(q),
        None => h.mean(),
    };
    let mut best: Option<f64> = None;
    let mut consider = |v: Option<f64>| {
        if let Some(v) = v {
            best = Some(best.map_or(v, |b: f64| b.max(v)));
        }
    };
    let name = rule.metric.as_str();
    match name {
        "keel_operation_duration_seconds"
        | "keel_operation_calls_total"
        | "keel_operation_errors_total" => {
            for op in ops {
                if !labels_match(&|k, v| k == "operation" && v == &*op.name) {
                    continue;
                }
                consider(match name {
                    "keel_operation_calls_total" => Some(op.calls as f64),
                    "keel_operation_errors_total" => Some(op.errors as f64),
                    _ => window
                        .op_recent
                        .get(&op.name)
                        .and_then(hist_value)
                        .map(|ns| ns / 1e9),
                });
            }
        }
        "keel_errors_total" => {
            for (ty, n) in errors_by_type {
                if labels_match(&|k, v| k == "type" && v == ty) {
                    consider(Some(*n as f64));
                }
            }
        }
        _ => {
            let base = name.strip_suffix("_total").unwrap_or(name);
            for c in registry.counters() {
                if (&*c.id.name == name || &*c.id.name == base)
                    && labels_match(&|k, v| c.id.has_label(k, v))
                {
                    consider(Some(c.value() as f64));
                }
            }
            for g in registry.gauges() {
                if &*g.id.name == name && labels_match(&|k, v| g.id.has_label(k, v)) {
                    consider(Some(g.value()));
                }
            }
            for h in registry.histograms() {
                if &*h.id.name == name && labels_match(&|k, v| h.id.has_label(k, v)) {
                    let key = (h.id.name.clone(), h.id.labels.clone());
                    consider(
                        window
                            .recent
                            .get(&key)
                            .and_then(hist_value)
                            .map(|v| v / SCALE),
                    );
                }
            }
        }
    }
    best
}

impl Inner {
    /// Samples the process and sets its gauges.
    fn sample_process(&self, sampler: &mut ProcessSampler) -> Option<crate::ProcessFigures> {
        let p = sampler.sample()?;
        self.registry.describe(
            "keel_process_cpu_usage_ratio",
            None,
            "CPU used by the process over the last report interval, in cores (1 = one core busy).",
        );
        self.registry.describe(
            "keel_process_resident_memory_bytes",
            Some(metrics::Unit::Bytes),
            "Resident memory of the process.",
        );
        self.registry
            .gauge("keel_process_cpu_usage_ratio", &[])
            .set(p.cpu_percent / 100.0);
        self.registry
            .gauge("keel_process_resident_memory_bytes", &[])
            .set(p.resident_memory_bytes as f64);
        Some(p)
    }

    fn make_report(&self) -> PerformanceReport {
        let mut state = self.reporting.lock();
        let now = Instant::now();
        let seconds = now.duration_since(state.at).as_secs_f64();
        let per_s = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };

        // Operations over the interval.
        let snapshots = self.monitor.snapshots();
        let mut operations: Vec<OperationReport> = Vec::new();
        let mut next_ops = HashMap::new();
        let mut next_metrics = HashMap::new();
        for snap in &snapshots {
            let interval = snap.since(state.ops.get(&snap.name));
            next_ops.insert(snap.name.clone(), snap.clone());
            if interval.calls == 0 {
                continue;
            }
            let mut m = OperationMetrics::from_snapshot(&interval);
            m.throughput_per_s = per_s(interval.calls);
            let change = state.metrics.get(&m.name).map(|p| Change {
                p99: relative(p.p99_ms, m.p99_ms),
                throughput: relative(p.throughput_per_s, m.throughput_per_s),
                error_rate: m.error_rate - p.error_rate,
            });
            next_metrics.insert(m.name.clone(), m.clone());
            operations.push(OperationReport {
                metrics: m,
                share_of_time: 0.0,
                change,
            });
        }
        let total_time: f64 = operations.iter().map(|o| o.metrics.total_time_ms).sum();
        for o in &mut operations {
            if total_time > 0.0 {
                o.share_of_time = o.metrics.total_time_ms / total_time;
            }
        }
        operations.sort_by(|a, b| b.metrics.total_time_ms.total_cmp(&a.metrics.total_time_ms));
        let mut by_p99: Vec<&OperationReport> = operations.iter().collect();
        by_p99.sort_by(|a, b| b.metrics.p99_ms.total_cmp(&a.metrics.p99_ms));
        let mut by_errors: Vec<&OperationReport> =
            operations.iter().filter(|o| o.metrics.errors > 0).collect();
        by_errors.sort_by(|a, b| b.metrics.error_rate.total_cmp(&a.metrics.error_rate));

        // Errors.
        let errors = self.monitor.errors().snapshot();
        let in_interval = errors.total.saturating_sub(state.errors_total);
        let mut top_types: Vec<(String, u64)> = errors.by_type.clone().into_iter().collect();
        top_types.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top_types.truncate(10);

        let process = self.sample_process(&mut state.sampler);

        let mut suggestions = Vec::new();
        self.suggest_from_rooms(&mut state, &mut suggestions);
        for o in &operations {
            let m = &o.metrics;
            if m.calls >= 20 && m.error_rate >= 0.05 {
                suggestions.push(Suggestion::new(
                    format!("operation:{}", m.name),
                    format!("{:.1}% of {} calls failed", m.error_rate * 100.0, m.calls),
                    "look at the errors of this operation (recent errors below); retry or shed what fails",
                ));
            }
            if let Some(c) = &o.change
                && m.calls >= 100
                && c.p99 >= 0.5
            {
                suggestions.push(Suggestion::new(
                    format!("operation:{}", m.name),
                    format!("p99 rose {:.0}% to {:.3} ms since the last report", c.p99 * 100.0, m.p99_ms),
                    "a regression or a slower dependency: compare with the dependency's own latency",
                ));
            }
            if operations.len() > 1 && o.share_of_time >= 0.5 {
                suggestions.push(Suggestion::new(
                    format!("operation:{}", m.name),
                    format!("{:.0}% of the measured time", o.share_of_time * 100.0),
                    "the bottleneck: cache its results (#[cached]) or make it cheaper first",
                ));
            }
        }
        let dropped = self.registry.dropped_series();
        if dropped > state.dropped {
            suggestions.push(Suggestion::new(
                "monitoring".to_owned(),
                format!(
                    "{} series refused at max_series = {}",
                    dropped - state.dropped,
                    self.config.max_series
                ),
                "raise monitoring.max_series or remove a label with many values",
            ));
        }

        state.at = now;
        state.ops = next_ops;
        state.metrics = next_metrics;
        state.errors_total = errors.total;
        state.dropped = dropped;
        let alerts_firing = self.alerts.lock().firing();
        PerformanceReport {
            generated_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            interval_seconds: seconds,
            by_p99: by_p99.iter().map(|o| o.metrics.name.clone()).collect(),
            by_error_rate: by_errors.iter().map(|o| o.metrics.name.clone()).collect(),
            operations,
            errors: ErrorSummary {
                total: errors.total,
                in_interval,
                rate_per_s: per_s(in_interval),
                top_types,
                recent: errors.recent.into_iter().rev().take(10).collect(),
            },
            process,
            health: *self.last_health.lock(),
            alerts_firing,
            series: self.registry.series(),
            series_dropped: dropped,
            suggestions,
        }
    }

    /// Suggestions from the rooms' metrics over the interval.
    fn suggest_from_rooms(&self, state: &mut ReportState, out: &mut Vec<Suggestion>) {
        let mut counters: HashMap<(Box<str>, Box<str>), u64> = HashMap::new();
        let mut delta = |name: &str, labels: &str, value: u64| -> u64 {
            let key: (Box<str>, Box<str>) = (name.into(), labels.into());
            let before = state.counters.get(&key).copied().unwrap_or(0);
            counters.insert(key, value);
            value.saturating_sub(before)
        };
        let mut gauges: HashMap<(&str, String), f64> = HashMap::new();
        let all_gauges = self.registry.gauges();
        for g in &all_gauges {
            let label =
                g.id.pairs
                    .first()
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default();
            gauges.insert((&g.id.name, label), g.value());
        }
        let gauge = |name: &str, label: &str| gauges.get(&(name, label.to_owned())).copied();

        // Caches: a low hit ratio while full.
        let mut lookups: HashMap<String, (u64, u64)> = HashMap::new();
        let mut log_dropped = 0;
        for c in self.registry.counters() {
            let label =
                c.id.pairs
                    .first()
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default();
            let d = delta(&c.id.name, &c.id.labels, c.value());
            match &*c.id.name {
                "keel_cache_hits_total" => lookups.entry(label).or_default().0 += d,
                "keel_cache_misses_total" => lookups.entry(label).or_default().1 += d,
                "keel_log_dropped_lines_total" => log_dropped += d,
                _ => {}
            }
        }
        let mut caches: Vec<_> = lookups.into_iter().collect();
        caches.sort();
        for (cache, (hits, misses)) in caches {
            let total = hits + misses;
            let (Some(entries), Some(capacity)) = (
                gauge("keel_cache_entries", &cache),
                gauge("keel_cache_capacity", &cache),
            ) else {
                continue;
            };
            let ratio = hits as f64 / total.max(1) as f64;
            if total >= 100 && ratio < 0.8 && capacity > 0.0 && entries >= 0.95 * capacity {
                out.push(Suggestion::new(
                    format!("cache:{cache}"),
                    format!(
                        "hit ratio {:.0}% with {entries} of {capacity} entries held",
                        ratio * 100.0
                    ),
                    "raise this cache's `capacity`: it is full and still misses",
                ));
            }
        }
        // Queues near their bound.
        for g in &all_gauges {
            let label =
                g.id.pairs
                    .first()
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default();
            let (capacity_name, subject, advice) = match &*g.id.name {
                "keel_queue_depth" => (
                    "keel_queue_capacity",
                    "queue",
                    "add workers (or a bigger batch): tasks arrive faster than they are processed",
                ),
                "keel_executor_queued_jobs" => (
                    "keel_executor_queue_capacity",
                    "executor",
                    "raise `thread_pool.max_workers`: jobs wait for a thread",
                ),
                _ => continue,
            };
            if let Some(capacity) = gauge(capacity_name, &label)
                && capacity > 0.0
                && g.value() >= 0.8 * capacity
            {
                out.push(Suggestion::new(
                    format!("{subject}:{label}"),
                    format!("{} of {capacity} slots used", g.value()),
                    advice,
                ));
            }
        }
        // Pools whose callers wait for a connection.
        let mut histograms = HashMap::new();
        for h in self.registry.histograms() {
            if &*h.id.name != "keel_pool_acquire_wait_seconds" {
                continue;
            }
            let key: (Box<str>, Box<str>) = (h.id.name.clone(), h.id.labels.clone());
            let now = h.hist.snapshot();
            let interval = match state.histograms.get(&key) {
                Some(before) => now.since(before),
                None => now.clone(),
            };
            let label =
                h.id.pairs
                    .first()
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default();
            if let Some(p90) = interval.quantile(0.9)
                && interval.count >= 20
                && p90 / SCALE >= 0.005
            {
                out.push(Suggestion::new(
                    format!("pool:{label}"),
                    format!("p90 wait for a connection {:.1} ms", p90 / 1e6),
                    "raise this pool's `max_connections`: callers wait for a free connection",
                ));
            }
            histograms.insert(key, now);
        }
        if log_dropped > 0 {
            out.push(Suggestion::new(
                "log".to_owned(),
                format!("{log_dropped} log lines shed"),
                "raise `logging.queue_size` or the level (`info` instead of `debug`)",
            ));
        }
        state.counters = counters;
        state.histograms = histograms;
    }
}

/// `(now - before) / before`, 0 when `before` is 0.
fn relative(before: f64, now: f64) -> f64 {
    if before > 0.0 {
        (now - before) / before
    } else {
        0.0
    }
}
