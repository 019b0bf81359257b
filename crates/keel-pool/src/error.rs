//! [`PoolError`]: everything a pool operation can fail with.

use std::time::Duration;

use keel_core::InvalidField;
use thiserror::Error;

/// Why a pool could not be built or could not serve a call.
///
/// Callers branch on the variant: [`Timeout`](Self::Timeout) and
/// [`Connect`](Self::Connect) are worth retrying later,
/// [`Authentication`](Self::Authentication) and
/// [`UnknownDatabase`](Self::UnknownDatabase) are configuration problems
/// that no retry fixes. Messages name the pool and say what failed; the
/// underlying driver error is the [`source`](std::error::Error::source).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A setting that cannot be used, named by its field path.
    #[error("invalid `{field}`: {reason}")]
    Config {
        /// The offending field, e.g. `pools.db.main.min_connections`.
        field: String,
        /// What is allowed.
        reason: String,
    },
    /// A database URL whose scheme is not one of the supported backends,
    /// or whose backend is not compiled in.
    #[error("pool {pool}: cannot use database url {url}: {reason}")]
    UnsupportedUrl {
        /// The pool's name.
        pool: String,
        /// The URL with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server refused the user name or password (or, on MySQL, the
    /// user's access to the database).
    #[error("pool {pool}: authentication failed for user {user:?}: wrong password or no access")]
    Authentication {
        /// The pool's name.
        pool: String,
        /// The user name in the URL.
        user: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The server answered that the database in the URL does not exist.
    #[error("pool {pool}: database {database:?} does not exist")]
    UnknownDatabase {
        /// The pool's name.
        pool: String,
        /// The database named in the URL.
        database: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// No connection within `connection_timeout`.
    #[error("pool {pool}: no connection within {}: {kind}", humantime::format_duration(*.waited))]
    Timeout {
        /// The pool's name.
        pool: String,
        /// How long the caller waited.
        waited: Duration,
        /// Why nothing came.
        kind: TimeoutKind,
    },
    /// Opening a connection failed, after the retries `max_retries` allows
    /// when the failure looked transient.
    #[error("pool {pool}: cannot open a connection")]
    Connect {
        /// The pool's name.
        pool: String,
        /// The driver's error of the last attempt.
        #[source]
        source: sqlx::Error,
    },
    /// A statement failed (the connection may have been lost meanwhile).
    #[error("pool {pool}: query failed")]
    Query {
        /// The pool's name.
        pool: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// `fetch_one` found no row.
    #[error("pool {pool}: the query returned no row")]
    NoRow {
        /// The pool's name.
        pool: String,
    },
    /// A result column whose type has no JSON mapping.
    #[error(
        "pool {pool}: column {column:?} has type {type_name}, which has no JSON mapping; cast it to text in the query"
    )]
    UnsupportedColumn {
        /// The pool's name.
        pool: String,
        /// The column's name.
        column: String,
        /// The database's name for its type.
        type_name: String,
    },
    /// An HTTP request could not be built: a bad URL, method or header.
    #[error("pool {pool}: invalid request: {reason}")]
    InvalidRequest {
        /// The pool's name.
        pool: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An HTTP request failed without a response (connect error, timeout,
    /// broken connection), after any retries.
    #[error("pool {pool}: request to {url} failed")]
    Http {
        /// The pool's name.
        pool: String,
        /// The URL of the last attempt.
        url: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// Every endpoint of an HTTP pool is ejected and none is due for a probe.
    #[error("pool {pool}: no healthy endpoint: all {endpoints} are ejected")]
    NoHealthyEndpoint {
        /// The pool's name.
        pool: String,
        /// How many endpoints it has.
        endpoints: usize,
    },
    /// The pool was closed.
    #[error("pool {pool} is closed")]
    Closed {
        /// The pool's name.
        pool: String,
    },
    /// The manager has no pool of that kind and name.
    #[error("no {kind} pool named {name:?} (configured: {known})")]
    UnknownPool {
        /// `database` or `http`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// The configured names, comma-separated, or `none`.
        known: String,
    },
}

/// Why [`PoolError::Timeout`] happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Every connection was in use for the whole wait.
    #[error("all {max_connections} connections are in use")]
    Exhausted {
        /// The pool's `max_connections`.
        max_connections: u32,
    },
    /// There was room for a new connection, but the server did not accept
    /// one in time (down, restarting or unreachable).
    #[error("the server did not accept a connection in time")]
    Connect,
}

/// A field that [`PoolConfig::validate`](crate::PoolConfig::validate) or
/// [`PoolsConfig::validate`](crate::PoolsConfig::validate) rejected, as
/// [`PoolError::Config`].
impl From<InvalidField> for PoolError {
    fn from(problem: InvalidField) -> Self {
        PoolError::Config {
            field: problem.field,
            reason: problem.reason,
        }
    }
}

/// `d` cut to whole milliseconds, so messages read `300ms`, not
/// `300ms 412us 5ns`.
pub(crate) fn whole_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl PoolError {
    /// Whether the caller waited `connection_timeout` in vain.
    pub fn is_timeout(&self) -> bool {
        matches!(self, PoolError::Timeout { .. })
    }

    /// Whether retrying later may succeed: a timeout, a failed connect, a
    /// statement or request that lost its connection, no healthy endpoint.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PoolError::Timeout { .. }
                | PoolError::Connect { .. }
                | PoolError::Http { .. }
                | PoolError::NoHealthyEndpoint { .. }
        ) || matches!(self, PoolError::Query { source, .. } if crate::db::is_connection_lost(source))
    }
}
