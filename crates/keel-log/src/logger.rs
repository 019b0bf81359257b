//! `EnhancedLogger`: a named logger with levels, categories and extra data,
//! emitting ordinary tracing events.

use std::sync::Arc;

use serde::Serialize;

use crate::level::{LogCategory, LogLevel};

/// The target of every event an [`EnhancedLogger`] emits; filter on it
/// (`keel_log=debug`). The logger's own name is in the `logger` field.
pub const LOGGER_TARGET: &str = "keel_log";

/// Returns the logger called `name` (cheap: loggers hold only their name).
pub fn get_logger(name: &str) -> EnhancedLogger {
    EnhancedLogger {
        name: Arc::from(name),
    }
}

/// A named logger for code that wants levels, categories and a map of
/// extra data per line rather than tracing's macros.
///
/// Each call emits one tracing event (target [`LOGGER_TARGET`]) with the
/// fields `logger` (this name), `category`, `critical` (for
/// [`LogLevel::Critical`]) and `keel.extra` (the extra data as JSON), so any
/// subscriber sees it; [`StructuredFormatter`](crate::StructuredFormatter)
/// turns them into the line's `logger`, `category`, `level` and `extra`.
///
/// The calls are synchronous: logging only queues a line, so there is
/// nothing to await, and a sync call works from async and blocking code alike.
#[derive(Debug, Clone)]
pub struct EnhancedLogger {
    name: Arc<str>,
}

macro_rules! emit {
    ($level:expr, $name:expr, $category:expr, $message:expr, $($extra:tt)*) => {
        match $level {
            LogLevel::Trace => tracing::event!(target: LOGGER_TARGET, tracing::Level::TRACE,
                logger = $name, category = $category, $($extra)* "{}", $message),
            LogLevel::Debug => tracing::event!(target: LOGGER_TARGET, tracing::Level::DEBUG,
                logger = $name, category = $category, $($extra)* "{}", $message),
            LogLevel::Info => tracing::event!(target: LOGGER_TARGET, tracing::Level::INFO,
                logger = $name, category = $category, $($extra)* "{}", $message),
            LogLevel::Warning => tracing::event!(target: LOGGER_TARGET, tracing::Level::WARN,
                logger = $name, category = $category, $($extra)* "{}", $message),
            LogLevel::Error => tracing::event!(target: LOGGER_TARGET, tracing::Level::ERROR,
                logger = $name, category = $category, $($extra)* "{}", $message),
            LogLevel::Critical => tracing::event!(target: LOGGER_TARGET, tracing::Level::ERROR,
                logger = $name, category = $category, critical = true, $($extra)* "{}", $message),
        }
    };
}

impl EnhancedLogger {
    /// The logger's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Logs `message` at `level` in `category`, with `extra` (any value that
    /// serializes to JSON, usually a map or a struct) written under `extra`.
    ///
    /// If `extra` cannot be serialized (a map with non-string keys, a
    /// failing `Serialize`), the line is still written, with the reason in
    /// the `extra_error` field.
    pub fn log_structured<E>(
        &self,
        level: LogLevel,
        category: LogCategory,
        message: &str,
        extra: &E,
    ) where
        E: Serialize + ?Sized,
    {
        let name: &str = &self.name;
        let category = category.as_str();
        match serde_json::to_string(extra) {
            Ok(json) => {
                let json = json.as_str();
                emit!(level, name, category, message, keel.extra = json,);
            }
            Err(error) => {
                let error = error.to_string();
                let error = error.as_str();
                emit!(level, name, category, message, extra_error = error,);
            }
        }
    }

    /// Logs `message` at `level` in `category`, without extra data.
    pub fn log(&self, level: LogLevel, category: LogCategory, message: &str) {
        let name: &str = &self.name;
        let category = category.as_str();
        emit!(level, name, category, message,);
    }

    /// `DEBUG` in the `system` category.
    pub fn debug(&self, message: &str) {
        self.log(LogLevel::Debug, LogCategory::System, message);
    }

    /// `INFO` in the `system` category.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, LogCategory::System, message);
    }

    /// `WARNING` in the `system` category.
    pub fn warning(&self, message: &str) {
        self.log(LogLevel::Warning, LogCategory::System, message);
    }

    /// `ERROR` in the `system` category.
    pub fn error(&self, message: &str) {
        self.log(LogLevel::Error, LogCategory::System, message);
    }

    /// `CRITICAL` in the `system` category.
    pub fn critical(&self, message: &str) {
        self.log(LogLevel::Critical, LogCategory::System, message);
    }
}
