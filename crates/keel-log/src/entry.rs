//! `StructuredLogEntry`: a line read back, for tools and tests.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::level::{LogCategory, LogLevel};

/// One line of [`StructuredFormatter`](crate::StructuredFormatter) output,
/// parsed back.
///
/// ```
/// use keel_log::{LogCategory, LogLevel, StructuredLogEntry};
///
/// let line = r#"{"timestamp":"2026-11-21T10:00:00.000000Z","level":"WARNING","category":"security","logger":"auth","message":"login failed","user":"ada"}"#;
/// let entry = StructuredLogEntry::parse(line)?;
/// assert_eq!(entry.level, LogLevel::Warning);
/// assert_eq!(entry.category, LogCategory::Security);
/// assert_eq!(entry.fields["user"], "ada");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StructuredLogEntry {
    /// RFC 3339 time of the event.
    pub timestamp: String,
    /// Its level.
    pub level: LogLevel,
    /// Its category (`system` when the line has none).
    #[serde(default)]
    pub category: LogCategory,
    /// The logger name or the event's target.
    pub logger: String,
    /// The message (empty for events without one).
    #[serde(default)]
    pub message: String,
    /// The extra data given to [`EnhancedLogger::log_structured`](crate::EnhancedLogger::log_structured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
    /// The spans the event happened in, root first (`name` plus fields).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<Map<String, Value>>,
    /// The innermost span's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<u64>,
    /// The trace id, from the event or its nearest span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<Value>,
    /// Every other field of the event.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl StructuredLogEntry {
    /// Parses one line (a trailing newline is allowed).
    pub fn parse(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line.trim_end_matches(['\n', '\r']))
    }
}
