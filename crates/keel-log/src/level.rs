//! Levels and categories, as written in every line.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The level of a log line, with the names lines carry (`"WARNING"`, not `"WARN"`).
///
/// `Trace` through `Error` map one-to-one onto [`tracing::Level`].
/// tracing has no level above ERROR, so `Critical` is emitted as a
/// tracing ERROR event carrying the field `critical = true`: every
/// subscriber sees an error, and [`StructuredFormatter`](crate::StructuredFormatter)
/// writes `"level":"CRITICAL"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Very fine detail (tracing `TRACE`).
    Trace,
    /// Detail for developers (tracing `DEBUG`).
    Debug,
    /// Normal operation (tracing `INFO`).
    Info,
    /// Something unexpected that the service handled (tracing `WARN`).
    #[serde(alias = "WARN")]
    Warning,
    /// A failed operation (tracing `ERROR`).
    Error,
    /// The service cannot go on as it should (tracing `ERROR` + `critical = true`).
    Critical,
}

impl LogLevel {
    /// The name written in the `level` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
            Self::Critical => "CRITICAL",
        }
    }

    /// The tracing level events of this level are emitted at.
    pub const fn to_tracing(self) -> tracing::Level {
        match self {
            Self::Trace => tracing::Level::TRACE,
            Self::Debug => tracing::Level::DEBUG,
            Self::Info => tracing::Level::INFO,
            Self::Warning => tracing::Level::WARN,
            Self::Error | Self::Critical => tracing::Level::ERROR,
        }
    }

    /// The level of a tracing event (`critical` says whether it carried `critical = true`).
    pub fn from_tracing(level: tracing::Level, critical: bool) -> Self {
        match level {
            tracing::Level::TRACE => Self::Trace,
            tracing::Level::DEBUG => Self::Debug,
            tracing::Level::INFO => Self::Info,
            tracing::Level::WARN => Self::Warning,
            _ if critical => Self::Critical,
            _ => Self::Error,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a line is about; carried as the `category` field of an event.
///
/// An event without a `category` field is [`LogCategory::System`]. Any
/// tracing event can set one: `tracing::warn!(category = "security", "login failed")`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogCategory {
    /// The service's own machinery (the default).
    #[default]
    System,
    /// Business events: orders, sign-ups, payments.
    Business,
    /// Authentication, authorization, suspicious input.
    Security,
    /// Timings and resource use.
    Performance,
}

impl LogCategory {
    /// Every category, in index order.
    pub const ALL: [Self; 4] = [
        Self::System,
        Self::Business,
        Self::Security,
        Self::Performance,
    ];

    /// The name written in the `category` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Business => "business",
            Self::Security => "security",
            Self::Performance => "performance",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for LogCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`LogCategory`] from a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log category {0:?}: expected system, business, security or performance")]
pub struct UnknownCategory(pub String);

impl FromStr for LogCategory {
    type Err = UnknownCategory;

    /// Parses a category name, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownCategory(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_parses_any_case_and_rejects_unknown() {
        assert_eq!("Security".parse(), Ok(LogCategory::Security));
        assert_eq!("PERFORMANCE".parse(), Ok(LogCategory::Performance));
        assert!("audit".parse::<LogCategory>().is_err());
    }

    #[test]
    fn critical_is_an_error_event_that_reads_back_as_critical() {
        assert_eq!(LogLevel::Critical.to_tracing(), tracing::Level::ERROR);
        assert_eq!(
            LogLevel::from_tracing(tracing::Level::ERROR, true),
            LogLevel::Critical
        );
        assert_eq!(
            LogLevel::from_tracing(tracing::Level::ERROR, false),
            LogLevel::Error
        );
        assert_eq!(
            LogLevel::from_tracing(tracing::Level::WARN, true),
            LogLevel::Warning
        );
    }
}
