//! [`MonitorError`]: what can fail when monitoring starts.

use keel_core::InvalidField;

/// Errors of the monitoring room.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// The configuration was rejected: every field
    /// [`MonitoringConfig::validate`](crate::MonitoringConfig::validate)
    /// found.
    #[error("invalid monitoring configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<InvalidField>),
    /// Another `metrics` recorder is already installed in this process.
    #[error("a metrics recorder is already installed")]
    RecorderInstalled,
    /// `start` was called outside a tokio runtime.
    #[error("the monitoring service needs a tokio runtime to start")]
    NoRuntime,
    /// A default monitor was already set.
    #[error("a default performance monitor is already set")]
    DefaultMonitorSet,
}
