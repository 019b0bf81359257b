//! Monitoring for Keel services: per-operation latency histograms and
//! throughput, error statistics, dependency health, custom metrics,
//! alerts, periodic reports with suggestions, and the Prometheus text
//! format — plus the in-process recorder behind the `metrics` facade that
//! every Keel room reports through.
//!
//! ```
//! use std::time::Duration;
//! use keel_monitor::{check_fn, CheckOutcome, DataMonitoringService, HealthState, MonitoringConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keel_monitor::MonitorError> {
//! let service = DataMonitoringService::new(MonitoringConfig::default())?;
//! service.start()?; // alerts, reports, process figures in the background
//!
//! // Measure a call: the guard records it when dropped.
//! {
//!     let _call = service.monitor().measure("db.query");
//!     // ... the work ...
//! }
//! service.monitor().record("http.get", Duration::from_millis(12));
//!
//! // A custom business metric.
//! service.counter("orders_total", &[("region", "eu")]).increment(1);
//!
//! // Dependencies: a critical one down makes the service unhealthy.
//! service.register_health_check("db", true, check_fn(|| async { CheckOutcome::healthy() }));
//! let health = service.health_status().await;
//! assert_eq!(health.status, HealthState::Healthy);
//! assert_eq!(health.http_status(), 200);
//!
//! let metrics = service.monitor().get_metrics();
//! assert_eq!(metrics.operations.len(), 2);
//! let text = service.render_prometheus();
//! assert!(text.contains("# TYPE keel_operation_duration_seconds histogram"));
//! assert!(text.contains("orders_total{region=\"eu\"} 1"));
//! # Ok(())
//! # }
//! ```
//!
//! With `#[keel_macros::monitored]` on a function, every call is measured
//! under the function's name (or `name = "..."`) by the default monitor
//! ([`DataMonitoringService::set_default`]), and an `Err` it returns is
//! counted under its Rust type in the [`ErrorStatistics`].
//!
//! # The `metrics` facade
//!
//! [`MetricsRegistry`] is a `metrics::Recorder`;
//! [`DataMonitoringService::install_recorder`] makes it the process's, so
//! every `counter!`, `gauge!` and `histogram!` — the rooms' `keel_*`
//! families and the service's own — is exposed by
//! [`render_prometheus`](DataMonitoringService::render_prometheus). A
//! service that installs another recorder (an OpenTelemetry bridge,
//! `metrics-exporter-prometheus`) gets the rooms' numbers there instead.
//! Rooms keep hot-path counts themselves and publish them through the
//! facade when asked (`publish_metrics`); collectors added with
//! [`add_collector`](DataMonitoringService::add_collector) run before every
//! exposition, alert evaluation and report.
//!
//! # Feature flags
//!
//! None (`default = []`).
//!
//! # Guarantees
//!
//! - **Exact:** call and error counts of every operation, error counts by
//!   type, counters, gauges, the largest recorded latency, and the sum of
//!   recorded latencies.
//! - **Sampled:** with `sample_rate` below 1, only every n-th call per
//!   thread (n = 1 / rate) has its latency recorded; percentiles describe
//!   those calls, and total time is their mean times the exact count.
//! - **Histogram error:** a reported quantile (nearest rank: the
//!   `⌈q·n⌉`-th smallest value) is within [`RELATIVE_ERROR`] (1/64, about
//!   1.6%) of the exact value; values below 64 ns are exact. Prometheus
//!   buckets (`le`) count a value by its bucket's midpoint, so a value
//!   within 1.6% of a bound may fall on either side.
//! - **Bounded memory:** at most `max_series` metric series (more are
//!   refused and counted in `keel_monitor_series_dropped_total`), series
//!   neither updated for `series_idle_timeout` nor held by a handle are
//!   forgotten at each report; at most `max_operations` operation names
//!   and `max_error_types` error types (the rest share `other`);
//!   `recent_errors` messages of at most 512 bytes. A histogram allocates
//!   32 buckets per power of two it has seen (about 260 bytes each); each
//!   thread that measures holds a 16-byte slot per possible operation
//!   (`max_operations`) and a histogram per operation it measured.
//! - **Per-thread recording:** a measured call writes only its thread's
//!   shard (plain loads and stores) and reads the clock through `quanta`
//!   (the TSC where it is stable); reads sum the shards, so a snapshot
//!   taken while calls are running is not one instant.
//! - **Background work** (alerts every `alert_interval`; a report, process
//!   figures and series expiry every `report_interval`) runs in one tokio
//!   task owned by the service: it stops with [`DataMonitoringService::stop`]
//!   or when the last clone is dropped.
//! - Alert rules and health caching use tokio's clock, so a test can pause
//!   and advance it.

#![forbid(unsafe_code)]

mod alerts;
mod config;
mod error;
mod errors;
mod exposition;
mod health;
mod histogram;
mod performance;
mod registry;
mod report;
mod service;
mod system;

#[doc(hidden)]
pub mod __private {
    pub use crate::private::{Site, finish, typed};
}
mod private;

pub use alerts::{Alert, AlertState, AlertSubscription};
pub use config::{AlertRule, MonitoringConfig};
pub use error::MonitorError;
pub use errors::{ErrorRecord, ErrorSnapshot, ErrorStatistics, OTHER};
pub use exposition::{CONTENT_TYPE, LATENCY_BUCKETS};
pub use health::{
    CheckFuture, CheckOutcome, DependencyHealth, HealthCheck, HealthState, ServiceHealthStatus,
    check_fn,
};
pub use histogram::RELATIVE_ERROR;
pub use performance::{
    Measure, OTHER_OPERATION, Operation, OperationMetrics, PerformanceMetrics, PerformanceMonitor,
};
pub use private::{default_monitor, set_default_monitor};
pub use registry::MetricsRegistry;
pub use report::{Change, ErrorSummary, OperationReport, PerformanceReport, Suggestion};
pub use service::DataMonitoringService;
pub use system::ProcessFigures;

// The field error of every room (`keel-core`), what `validate()` returns.
pub use keel_core::InvalidField;

/// Re-exported: the facade the rooms record through.
pub use metrics;
