//! The runtime contract of `#[monitored]`: not public API.

use std::sync::OnceLock;

use crate::performance::{Measure, Operation, PerformanceMonitor};

static DEFAULT: OnceLock<PerformanceMonitor> = OnceLock::new();

/// Makes `monitor` the one `#[monitored]` functions record into. Fails if
/// one was set already, or a monitored function ran before (which set a
/// default monitor of its own).
pub fn set_default_monitor(monitor: PerformanceMonitor) -> Result<(), crate::MonitorError> {
    DEFAULT
        .set(monitor)
        .map_err(|_| crate::MonitorError::DefaultMonitorSet)
}

/// The monitor `#[monitored]` functions record into: the one set by
/// [`set_default_monitor`], or one with the default configuration.
pub fn default_monitor() -> &'static PerformanceMonitor {
    DEFAULT.get_or_init(|| {
        let c = crate::MonitoringConfig::default();
        PerformanceMonitor::new(
            c.max_operations,
            c.sample_rate,
            crate::ErrorStatistics::new(c.max_error_types, c.recent_errors),
        )
    })
}

/// One `#[monitored]` function: its operation, resolved on first call.
#[derive(Debug)]
pub struct Site {
    name: &'static str,
    op: OnceLock<Operation>,
}

impl Site {
    /// A site measuring under `name`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            op: OnceLock::new(),
        }
    }

    /// Starts measuring one call.
    #[inline]
    pub fn start(&'static self) -> Measure<'static> {
        self.op
            .get_or_init(|| default_monitor().operation(self.name))
            .measure()
    }
}

/// Records `result`'s error, if any, under its type, then finishes the
/// call.
pub fn finish<T, E: std::fmt::Display>(guard: Measure<'static>, result: &Result<T, E>) {
    if let Err(e) = result {
        guard.fail(std::any::type_name::<E>(), &e.to_string());
    }
}

/// Fixes an `async` block's output type to the function's return type,
/// so `?` inside it converts errors as in the original body.
#[inline]
pub fn typed<R, F: std::future::Future<Output = R>>(f: F) -> F {
    f
}
