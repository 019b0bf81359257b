//! Structured logging on [`tracing`]: JSON lines with categories, files
//! rotated by size and time and gzip-compressed in the background, behind
//! a non-blocking writer that counts every line it drops.
//!
//! ```
//! use keel_log::{LogCategory, LogLevel, LoggingConfig, get_logger};
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir()?;
//! let config: LoggingConfig = toml::from_str(&format!(
//!     r#"
//!     level = "info"
//!     directory = "{}"
//!     [rotation]
//!     size = "100MB"
//!     time = "daily"
//!     [routes]
//!     security = "security"
//!     "#,
//!     dir.path().display()
//! ))?;
//! let (dispatch, guard) = config.build()?; // `config.install()` sets it globally
//! tracing::dispatcher::with_default(&dispatch, || {
//!     tracing::info!(order_id = 42, "order placed");
//!     let logger = get_logger("auth");
//!     logger.log_structured(
//!         LogLevel::Warning,
//!         LogCategory::Security,
//!         "login failed",
//!         &json!({"user": "ada", "attempts": 3}),
//!     );
//! });
//! drop(guard); // writes everything queued, then stops the writer
//!
//! let app = std::fs::read_to_string(dir.path().join("app.log"))?;
//! let security = std::fs::read_to_string(dir.path().join("security.log"))?;
//! assert!(app.contains(r#""message":"order placed","order_id":42"#));
//! assert!(security.contains(r#""extra":{"attempts":3,"user":"ada"}"#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The pieces
//!
//! - [`StructuredFormatter`]: a `tracing-subscriber` layer writing one JSON
//!   object per event (keys listed on the type).
//! - [`NonBlocking`] + [`LogGuard`]: a bounded queue in front of a
//!   dedicated writer thread; the guard writes what is queued when dropped.
//! - [`LogRotationManager`]: the rolling files, with size/time triggers,
//!   retention, background gzip, category routing and stderr fallback.
//! - [`EnhancedLogger`] / [`get_logger`]: named loggers with a
//!   `log_structured(level, category, message, extra)` call.
//! - [`LoggingConfig`]: the `[logging]` section; `install` builds all of the
//!   above and sets it as the global subscriber.
//!
//! # Feature flags
//!
//! None: the crate has no optional backend (`default = []`).
//!
//! # Guarantees
//!
//! - **Order.** Lines from one thread reach their file in the order they
//!   were logged; lines from different threads in the order they entered
//!   the queue.
//! - **What can be lost.** Under [`OverflowPolicy::Block`] nothing: a full
//!   queue makes the caller wait. Under [`OverflowPolicy::Shed`], TRACE and
//!   DEBUG lines are dropped once the queue is three-quarters full and INFO
//!   lines once it is full; WARN, ERROR and CRITICAL lines are never dropped.
//!   Every drop is counted ([`LogStats`]) and reported as a
//!   `"dropped N lines"` WARNING line as soon as the writer has room. Lines
//!   logged after the guard is dropped are counted as dropped too.
//! - **Failure.** A file that cannot be opened or written (missing
//!   permission, a path in the way, a full disk) sends its lines to stderr
//!   with one warning, counts them ([`LogStatsSnapshot::fallback`]) and is
//!   retried every `retry_interval`. Writing never returns an error and
//!   never panics.
//! - **Off the caller's path.** Callers format into a per-thread buffer and
//!   copy the line into the queue; the writer thread does the I/O and
//!   rotation renames; a third thread (`keel-log-compress`) compresses and
//!   deletes old files.
//! - **When lines reach the file.** The writer writes and flushes each batch
//!   it takes from the queue. While lines keep coming it looks for new ones
//!   every millisecond, so callers never pay for waking it (a queue half
//!   full wakes it early); after 100 ms without lines it sleeps until the
//!   next line wakes it. A line thus reaches the operating system about a
//!   millisecond after it is logged; [`LogGuard::flush`] waits for it, and
//!   dropping the guard writes everything queued. Nothing is `fsync`ed.
//! - **Allocation.** Once warm, logging an event allocates nothing on the
//!   caller's side (checked by `tests/allocations.rs` with ten fields),
//!   except what the event's own `Debug` values allocate.

#![forbid(unsafe_code)]

mod clock;
mod config;
mod entry;
mod error;
mod format;
mod json;
mod level;
mod logger;
mod pretty;
mod rotation;
mod stats;
mod writer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    ByteSize, LevelFilter, LogFormat, LoggingConfig, RetentionConfig, RotationConfig,
};
pub use entry::StructuredLogEntry;
pub use error::LogError;
pub use format::{LineWriter, StructuredFormatter};
pub use json::TimestampOffset;
pub use level::{LogCategory, LogLevel, UnknownCategory};
pub use logger::{EnhancedLogger, LOGGER_TARGET, get_logger};
pub use rotation::{LogRotationManager, RotationOptions, RotationPeriod, list_rotated};
pub use stats::{LogStats, LogStatsSnapshot};
pub use writer::{
    EventWriter, LineSink, LogGuard, NonBlocking, OverflowPolicy, StdoutSink, WriterOptions,
};
