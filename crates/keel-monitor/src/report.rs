//! [`PerformanceReport`]: what the last interval looked like, what changed,
//! and what to do about it.

use serde::Serialize;

use crate::errors::ErrorRecord;
use crate::health::HealthState;
use crate::performance::OperationMetrics;
use crate::system::ProcessFigures;

/// A report over one `report_interval`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PerformanceReport {
    /// When it was made (RFC 3339).
    pub generated_at: String,
    /// The interval it covers, seconds.
    pub interval_seconds: f64,
    /// Operations called in the interval, the most total time first.
    pub operations: Vec<OperationReport>,
    /// Operation names, the highest p99 first.
    pub by_p99: Vec<String>,
    /// Operation names with errors, the highest error rate first.
    pub by_error_rate: Vec<String>,
    /// Errors in the interval.
    pub errors: ErrorSummary,
    /// The process's CPU and memory, when the platform tells.
    pub process: Option<ProcessFigures>,
    /// The last health status seen, if health was checked.
    pub health: Option<HealthState>,
    /// Alerts firing when the report was made.
    pub alerts_firing: Vec<String>,
    /// Metric series held, and refused since the start.
    pub series: usize,
    /// Series refused since the start because `max_series` were held.
    pub series_dropped: u64,
    /// What to look at or change, drawn from the numbers above and the
    /// rooms' metrics.
    pub suggestions: Vec<Suggestion>,
}

/// One operation in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct OperationReport {
    /// Figures over the interval.
    #[serde(flatten)]
    pub metrics: OperationMetrics,
    /// Its share of the measured time in the interval (0..1).
    pub share_of_time: f64,
    /// Against the previous report, when the operation was in it.
    pub change: Option<Change>,
}

/// How an operation moved since the previous report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Change {
    /// Relative change of the p99 (0.5 = 50% slower).
    pub p99: f64,
    /// Relative change of the throughput.
    pub throughput: f64,
    /// Change of the error rate, in points (0.01 = one point more).
    pub error_rate: f64,
}

/// Errors over an interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ErrorSummary {
    /// Errors since the start.
    pub total: u64,
    /// Errors in the interval.
    pub in_interval: u64,
    /// Errors per second in the interval.
    pub rate_per_s: f64,
    /// The most frequent types since the start, with their counts.
    pub top_types: Vec<(String, u64)>,
    /// The latest errors.
    pub recent: Vec<ErrorRecord>,
}

/// A suggestion: what was seen and what to change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Suggestion {
    /// What it is about: `cache:users`, `queue:jobs`, `operation:db.query`.
    pub subject: String,
    /// The numbers behind it.
    pub observed: String,
    /// The change to make.
    pub advice: String,
}

impl Suggestion {
    pub(crate) fn new(subject: String, observed: String, advice: &str) -> Self {
        Self {
            subject,
            observed,
            advice: advice.to_owned(),
        }
    }
}
