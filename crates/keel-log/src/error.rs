//! The room's error type.

use std::io;

/// What can go wrong while building the logging pipeline.
///
/// Writing never fails: a file that cannot be written falls back to stderr
/// (see the crate docs), so errors only come from configuration and setup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The level filter is not valid `RUST_LOG` syntax.
    #[error("invalid level filter {filter:?}")]
    InvalidFilter {
        /// The rejected filter.
        filter: String,
        /// Why tracing-subscriber rejected it.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A log file name is empty or contains a path separator.
    #[error("invalid log file name {0:?}: use a plain name such as \"app\" (no '/', no extension)")]
    InvalidFileName(String),
    /// The queue size is zero.
    #[error("queue size must be at least 1")]
    ZeroQueueSize,
    /// A background thread could not be started.
    #[error("cannot start the {0} thread")]
    Spawn(&'static str, #[source] io::Error),
    /// Another global tracing subscriber is already installed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[source] tracing::subscriber::SetGlobalDefaultError),
}
