//! `[logging]`: the room's config section, and building the pipeline from it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tracing::Dispatch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::clock::{Clock, SystemClock};
use crate::error::LogError;
use crate::format::StructuredFormatter;
use crate::json::TimestampOffset;
use crate::level::LogCategory;
use crate::pretty::Categorized;
use crate::rotation::{LogRotationManager, RotationOptions, RotationPeriod};
use crate::stats::LogStats;
use crate::writer::{LogGuard, NonBlocking, OverflowPolicy, StdoutSink, WriterOptions};

/// The `[logging]` section.
///
/// ```toml
/// [logging]
/// level = "info,my_app=debug"      # RUST_LOG syntax
/// format = "json"                  # or "pretty"
/// directory = "/var/log/my_app"    # absent: stdout
/// file_name = "app"                # app.log
/// compression = true
/// queue_size = 8192
/// overflow = "block"               # or "shed"
/// flush_interval = "1s"
/// retry_interval = "5s"
/// timestamp_offset = "Z"           # or "+02:00"
///
/// [logging.rotation]
/// size = "100MB"
/// time = "daily"                   # "hourly", "daily" or "never"
///
/// [logging.retention]
/// files = 30
/// total_size = "2GB"
///
/// [logging.routes]                 # with a directory, json or pretty
/// security = "security"            # security events go to security.log
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Which events to keep, in `RUST_LOG` syntax (checked when read).
    pub level: LevelFilter,
    /// JSON lines, or tracing-subscriber's multi-line pretty format.
    pub format: LogFormat,
    /// Directory of the log files; `None` writes to stdout.
    pub directory: Option<PathBuf>,
    /// The main file's name without extension.
    pub file_name: String,
    /// When files rotate.
    pub rotation: RotationConfig,
    /// How many rotated files are kept.
    pub retention: RetentionConfig,
    /// Gzip rotated files.
    pub compression: bool,
    /// Lines the writer's queue holds.
    pub queue_size: usize,
    /// What a full queue does.
    pub overflow: OverflowPolicy,
    /// How often an idle writer flushes and reports drops.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// How long an unwritable file waits before it is retried.
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
    /// Categories written to their own file: `security = "security"`
    /// (in either format; ignored when writing to stdout).
    pub routes: BTreeMap<LogCategory, String>,
    /// Offset of timestamps and rotation boundaries.
    pub timestamp_offset: TimestampOffset,
}

impl Default for LoggingConfig {
    /// `info`, JSON, stdout, compression on, 8192 lines, block, flush 1 s, retry 5 s, UTC.
    fn default() -> Self {
        Self {
            level: LevelFilter::default(),
            format: LogFormat::Json,
            directory: None,
            file_name: "app".to_owned(),
            rotation: RotationConfig::default(),
            retention: RetentionConfig::default(),
            compression: true,
            queue_size: 8192,
            overflow: OverflowPolicy::Block,
            flush_interval: Duration::from_secs(1),
            retry_interval: Duration::from_secs(5),
            routes: BTreeMap::new(),
            timestamp_offset: TimestampOffset::UTC,
        }
    }
}

/// `[logging.rotation]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RotationConfig {
    /// Rotate when the file would exceed this size (`"100MB"`).
    pub size: Option<ByteSize>,
    /// Rotate every hour or day.
    pub time: RotationPeriod,
}

/// `[logging.retention]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Keep at most this many rotated files per log.
    pub files: Option<usize>,
    /// Keep rotated files of one log under this total size (`"2GB"`).
    pub total_size: Option<ByteSize>,
}

/// How lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line ([`StructuredFormatter`]).
    #[default]
    Json,
    /// tracing-subscriber's pretty format, for people at a terminal
    /// (colours only on stdout); `routes` apply as they do to JSON, by the
    /// event's `category` field.
    Pretty,
}

/// A level filter in `RUST_LOG` syntax, validated when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelFilter(String);

impl LevelFilter {
    /// Checks `directives` (`"info,my_app=debug"`).
    pub fn new(directives: &str) -> Result<Self, LogError> {
        EnvFilter::builder()
            .parse(directives)
            .map_err(|source| LogError::InvalidFilter {
                filter: directives.to_owned(),
                source,
            })?;
        Ok(Self(directives.to_owned()))
    }

    /// The directives as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn to_env_filter(&self) -> Result<EnvFilter, LogError> {
        EnvFilter::builder()
            .parse(&self.0)
            .map_err(|source| LogError::InvalidFilter {
                filter: self.0.clone(),
                source,
            })
    }
}

impl Default for LevelFilter {
    fn default() -> Self {
        Self("info".to_owned())
    }
}

impl<'de> Deserialize<'de> for LevelFilter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{e}: expected RUST_LOG syntax such as \"info\" or \"warn,my_app=debug\""
            ))
        })
    }
}

/// A size in bytes, written `"100MB"`, `"512KiB"`, `"1GB"` or a plain number.
///
/// `KB`/`MB`/`GB` are powers of 1000, `KiB`/`MiB`/`GiB` powers of 1024.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"100MB"`-style text.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let number: u64 = digits.parse().ok()?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1_000,
            "mb" | "m" => 1_000_000,
            "gb" | "g" => 1_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            _ => return None,
        };
        number.checked_mul(multiplier).map(Self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"100MB\", \"512KiB\" or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).ok_or_else(|| {
                    E::custom(format!(
                        "invalid size {v:?}: expected a number with B, KB, MB, GB, KiB, MiB or GiB, e.g. \"100MB\""
                    ))
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl LoggingConfig {
    /// Builds the subscriber (filter + formatter + non-blocking writer +
    /// rotating files) without installing it; the guard stops the writer.
    pub fn build(&self) -> Result<(Dispatch, LogGuard), LogError> {
        self.build_with_clock(Arc::new(SystemClock))
    }

    /// [`build`](Self::build) reading time from `clock`.
    pub fn build_with_clock(
        &self,
        clock: Arc<dyn Clock>,
    ) -> Result<(Dispatch, LogGuard), LogError> {
        let filter = self.level.to_env_filter()?;
        let stats = LogStats::default();
        let writer_options = WriterOptions {
            queue_size: self.queue_size,
            overflow: self.overflow,
            flush_interval: self.flush_interval,
            clock: Arc::clone(&clock),
            timestamp_offset: self.timestamp_offset,
            stats: stats.clone(),
        };
        let (writer, guard) = match &self.directory {
            Some(directory) => {
                let mut options = RotationOptions::new(directory);
                options.file_name.clone_from(&self.file_name);
                options.max_size = self.rotation.size.map(|s| s.0);
                options.period = self.rotation.time;
                options.max_files = self.retention.files;
                options.max_total_bytes = self.retention.total_size.map(|s| s.0);
                options.compress = self.compression;
                options.routes.clone_from(&self.routes);
                options.retry_interval = self.retry_interval;
                options.timestamp_offset = self.timestamp_offset;
                options.clock = Arc::clone(&clock);
                options.stats = stats;
                NonBlocking::new(LogRotationManager::new(options)?, writer_options)?
            }
            None => NonBlocking::new(StdoutSink::default(), writer_options)?,
        };
        let registry = tracing_subscriber::registry().with(filter);
        let dispatch = match self.format {
            LogFormat::Json => Dispatch::new(
                registry.with(
                    StructuredFormatter::new(writer)
                        .with_offset(self.timestamp_offset)
                        .with_clock(clock),
                ),
            ),
            LogFormat::Pretty => Dispatch::new(
                registry.with(Categorized::new(
                    tracing_subscriber::fmt::layer()
                        .pretty()
                        .with_ansi(self.directory.is_none())
                        .with_writer(writer),
                )),
            ),
        };
        Ok((dispatch, guard))
    }

    /// Builds the pipeline and installs it as the global subscriber.
    /// Keep the returned guard alive; dropping it flushes and stops the writer.
    pub fn install(&self) -> Result<LogGuard, LogError> {
        let (dispatch, guard) = self.build()?;
        tracing::dispatcher::set_global_default(dispatch).map_err(LogError::AlreadyInstalled)?;
        Ok(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("100MB"), Some(ByteSize(100_000_000)));
        assert_eq!(ByteSize::parse("512KiB"), Some(ByteSize(512 * 1024)));
        assert_eq!(ByteSize::parse("7"), Some(ByteSize(7)));
        assert_eq!(ByteSize::parse("1 gb"), Some(ByteSize(1_000_000_000)));
        assert_eq!(ByteSize::parse("MB"), None);
        assert_eq!(ByteSize::parse("10XB"), None);
        assert_eq!(ByteSize::parse("99999999999999999999GB"), None);
    }

    #[test]
    fn level_filter_rejects_bad_syntax() {
        assert!(LevelFilter::new("warn,my_app=debug").is_ok());
        assert!(LevelFilter::new("my_app=loud").is_err());
    }
}
