//! [`MonitorError`]: what can fail when monitoring starts.

/// Errors of the monitoring room.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// The configuration was rejected; each entry is `(field, reason)`.
    #[error("invalid monitoring configuration: {}", .0.iter().map(|(f, r)| format!("{f}: {r}")).collect::<Vec<_>>().join("; "))]
    Config(Vec<(String, String)>),
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
