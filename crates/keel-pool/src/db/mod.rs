//! [`DatabaseConnectionPool`]: a sqlx pool per database, with fail-fast
//! connects, retries, liveness checks, a background health check, leak
//! detection and JSON helpers.

mod errors;
mod json;
mod maintain;
mod url;

use std::collections::HashMap;
use std::panic::Location;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use std::str::FromStr as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::pool::{PoolConnection, PoolConnectionMetadata, PoolOptions};
use sqlx::{Connection as _, Database, Pool, Sqlite};
use tokio::sync::Notify;

use crate::config::{DbPoolConfig, PoolConfig};
use crate::retry::{backoff, fits};
use crate::stats::{ConnectionStats, ConnectionStatus, Counters, Health, PoolKind};
use crate::{PoolError, TimeoutKind};

pub(crate) use errors::is_connection_lost;
pub use json::JsonRow;
pub use url::Backend;
pub(crate) use url::check_url;
use url::redact;

/// A connection idle at least this long is pinged before it is handed out
/// (HikariCP's `aliveBypassWindowMs`); one used more recently is trusted.
pub const LIVENESS_BYPASS: Duration = Duration::from_millis(500);

/// Runs `$body` with `$p` bound to the sqlx pool (or connection) of
/// whichever backend `$e` holds.
macro_rules! each_backend {
    ($e:expr, $enum:ident, $p:ident => $body:expr) => {
        match $e {
            $enum::Sqlite($p) => $body,
            #[cfg(feature = "postgres")]
            $enum::Postgres($p) => $body,
            #[cfg(feature = "mysql")]
            $enum::MySql($p) => $body,
        }
    };
}
use each_backend;

/// A named pool of connections to one database (SQLite, PostgreSQL or
/// MySQL/MariaDB, chosen by URL), built on sqlx's pool. Cheap to clone;
/// clones share the pool.
///
/// * [`acquire`](Self::acquire) waits up to `connection_timeout`; a
///   transient connect failure (network, server starting or shutting
///   down, too many connections) is retried up to `max_retries` times with
///   jittered backoff within that time, and a refused connection is
///   retried until it; a wrong password or an unknown database fails at
///   once with [`PoolError::Authentication`] or
///   [`PoolError::UnknownDatabase`].
/// * A connection idle for more than [`LIVENESS_BYPASS`], or older than
///   the last lost connection, is pinged before it is handed out and
///   replaced if dead, so a server restart costs only the statements that
///   were running.
/// * `min_connections` are opened by [`connect`](Self::connect) and, every
///   `health_check_interval`, pinged and restored by a background task
///   that stops when the pool is closed or dropped.
/// * With `leak_threshold`, a connection held longer is logged once (a
///   `tracing` warning) with the place it was acquired.
#[derive(Debug, Clone)]
pub struct DatabaseConnectionPool {
    inner: Arc<Inner>,
}

/// A connection checked out of a [`DatabaseConnectionPool`]; back to the
/// pool when dropped. Run sqlx queries on it through
/// [`as_sqlite`](Self::as_sqlite), `as_postgres` (feature `postgres`) or
/// `as_mysql` (feature `mysql`), or use the JSON helpers.
pub struct DbConnection {
    conn: Conn,
    shared: Arc<Shared>,
    lease: Option<u64>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    pools: Pools,
    config: PoolConfig,
    backend: Backend,
    url: String,
    user: String,
    database: String,
    stop: Arc<Notify>,
}

#[derive(Debug)]
enum Pools {
    Sqlite(Pool<Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(Pool<sqlx::Postgres>),
    #[cfg(feature = "mysql")]
    MySql(Pool<sqlx::MySql>),
}

#[derive(Debug)]
enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(PoolConnection<sqlx::Postgres>),
    #[cfg(feature = "mysql")]
    MySql(PoolConnection<sqlx::MySql>),
}

/// What the pool, its connections, its hooks and its task share.
#[derive(Debug)]
struct Shared {
    name: String,
    counters: Counters,
    health: Health,
    /// When a connection was last found dead, on `health`'s clock (0: never).
    last_lost: AtomicU64,
    leaks: Option<Leaks>,
}

/// Connections handed out, for leak detection.
#[derive(Debug)]
struct Leaks {
    threshold: Duration,
    next: AtomicU64,
    held: Mutex<HashMap<u64, Held>>,
}

#[derive(Debug)]
struct Held {
    since: Instant,
    at: &'static Location<'static>,
    reported: bool,
}

impl DatabaseConnectionPool {
    /// Builds the pool `name` for `url` and opens its `min_connections`
    /// (at least one, so a bad URL, password or database fails here).
    ///
    /// `url` is a SQLite file path (created when missing), `sqlite:path`,
    /// `sqlite::memory:`, `postgres://user:pass@host:port/db` (feature
    /// `postgres`) or `mysql://` / `mariadb://` (feature `mysql`). An
    /// in-memory SQLite database keeps one connection for the pool's life
    /// (it would vanish with its last connection).
    pub async fn connect(
        name: impl Into<String>,
        url: &str,
        config: PoolConfig,
    ) -> Result<Self, PoolError> {
        let name = name.into();
        config.validate()?;
        let unsupported = |reason: String| PoolError::UnsupportedUrl {
            pool: name.clone(),
            url: redact(url),
            reason,
        };
        check_url(url).map_err(unsupported)?;
        let backend = Backend::of_url(url).map_err(unsupported)?;
        let mut config = config;
        let shared = Arc::new(Shared {
            name: name.clone(),
            counters: Counters::new(format!("db.{name}")),
            health: Health::new(config.health_check_interval),
            last_lost: AtomicU64::new(0),
            leaks: config.leak_threshold.map(|threshold| Leaks {
                threshold,
                next: AtomicU64::new(0),
                held: Mutex::new(HashMap::new()),
            }),
        });
        let (pools, user, database) = match backend {
            Backend::Sqlite => {
                let options = url::sqlite_options(url).map_err(unsupported)?;
                let memory = url::is_memory(url);
                if memory {
                    config.min_connections = Some(config.min_connections().max(1));
                }
                let database = options.get_filename().display().to_string();
                let pool =
                    pool_options::<Sqlite>(&config, &shared, memory).connect_lazy_with(options);
                (Pools::Sqlite(pool), String::new(), database)
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                let mut options = sqlx::postgres::PgConnectOptions::from_str(url)
                    .map_err(|e| unsupported(e.to_string()))?;
                if options.get_application_name().is_none() {
                    options = options.application_name(&format!("keel-pool {name}"));
                }
                let user = options.get_username().to_owned();
                let database = options.get_database().unwrap_or(&user).to_owned();
                let pool = pool_options::<sqlx::Postgres>(&config, &shared, false)
                    .connect_lazy_with(options);
                (Pools::Postgres(pool), user, database)
            }
            #[cfg(feature = "mysql")]
            Backend::MySql => {
                let options = sqlx::mysql::MySqlConnectOptions::from_str(&url::mysql_url(url))
                    .map_err(|e| unsupported(e.to_string()))?;
                let user = options.get_username().to_owned();
                let database = options.get_database().unwrap_or_default().to_owned();
                let pool =
                    pool_options::<sqlx::MySql>(&config, &shared, false).connect_lazy_with(options);
                (Pools::MySql(pool), user, database)
            }
            #[allow(unreachable_patterns)]
            _ => return Err(unsupported("backend not compiled in".into())),
        };
        let pool = Self {
            inner: Arc::new(Inner {
                shared,
                pools,
                config,
                backend,
                url: redact(url),
                user,
                database,
                stop: Arc::new(Notify::new()),
            }),
        };
        pool.warm().await?;
        maintain::spawn(&pool.inner);
        Ok(pool)
    }

    /// Builds the pool `name` from its `[pools.db.<name>]` section.
    pub async fn from_config(
        name: impl Into<String>,
        config: &DbPoolConfig,
    ) -> Result<Self, PoolError> {
        Self::connect(name, &config.url, config.settings()).await
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// The database it talks to.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Its URL, password replaced by `***`.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Its settings (for an in-memory SQLite database, with the minimum
    /// raised to one).
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// A connection, waiting up to `connection_timeout` for one.
    ///
    /// The call site is remembered for leak reports.
    #[track_caller]
    pub fn acquire(&self) -> impl Future<Output = Result<DbConnection, PoolError>> + Send + '_ {
        let at = Location::caller();
        self.acquire_at(at, true)
    }

    /// Runs a statement with `params` bound in order (`$1`, `$2`, ... in
    /// PostgreSQL, `?` elsewhere); returns the rows it affected.
    #[track_caller]
    pub fn execute<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Value],
    ) -> impl Future<Output = Result<u64, PoolError>> + Send + 'a {
        let at = Location::caller();
        async move { self.acquire_at(at, true).await?.execute(sql, params).await }
    }

    /// Runs a query with `params` bound; returns every row as a JSON
    /// object.
    #[track_caller]
    pub fn fetch_all<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Value],
    ) -> impl Future<Output = Result<Vec<JsonRow>, PoolError>> + Send + 'a {
        let at = Location::caller();
        async move {
            self.acquire_at(at, true)
                .await?
                .fetch_all(sql, params)
                .await
        }
    }

    /// Runs a query with `params` bound; returns its first row, or
    /// [`PoolError::NoRow`].
    #[track_caller]
    pub fn fetch_one<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Value],
    ) -> impl Future<Output = Result<JsonRow, PoolError>> + Send + 'a {
        let at = Location::caller();
        async move {
            self.acquire_at(at, true)
                .await?
                .fetch_one(sql, params)
                .await
        }
    }

    /// Runs a query with `params` bound; returns its first row, if any.
    #[track_caller]
    pub fn fetch_optional<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Value],
    ) -> impl Future<Output = Result<Option<JsonRow>, PoolError>> + Send + 'a {
        let at = Location::caller();
        async move {
            self.acquire_at(at, true)
                .await?
                .fetch_optional(sql, params)
                .await
        }
    }

    /// Registers the pool's wait histogram with the current recorder.
    pub(crate) fn bind_metrics(&self) {
        self.inner.shared.counters.bind_metrics();
    }

    /// The pool's figures now.
    pub fn stats(&self) -> ConnectionStats {
        let (total, idle) = each_backend!(&self.inner.pools, Pools, p => (p.size(), p.num_idle()));
        let counters = &self.inner.shared.counters;
        let in_use = counters.in_use.load(Ordering::Relaxed);
        counters.snapshot(
            self.name(),
            PoolKind::Database,
            Some(total),
            Some(u32::try_from(idle).unwrap_or(u32::MAX)),
            u32::try_from(in_use).unwrap_or(u32::MAX),
        )
    }

    /// The pool's health: the last health check and recent failures.
    pub fn health(&self) -> ConnectionStatus {
        self.inner.shared.health.status()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.health.is_closed()
    }

    /// Closes the pool: new acquires fail with [`PoolError::Closed`], the
    /// background task stops, and this waits until every connection in use
    /// is returned, then closes them all.
    pub async fn close(&self) {
        self.inner.shared.health.close();
        self.inner.stop.notify_one();
        each_backend!(&self.inner.pools, Pools, p => p.close().await);
    }

    /// [`acquire`](Self::acquire) for a caller that passes its own place.
    pub(crate) async fn acquire_with_location(
        &self,
        at: &'static Location<'static>,
    ) -> Result<DbConnection, PoolError> {
        self.acquire_at(at, true).await
    }

    /// Opens `min_connections` (at least one) before the pool is used.
    ///
    /// sqlx's own maintenance opens connections toward the minimum at the
    /// same time, so this takes connections only while the pool is below
    /// it (a connection sqlx is still opening counts), not a fixed number,
    /// which would overshoot the minimum.
    async fn warm(&self) -> Result<(), PoolError> {
        let at = Location::caller();
        let want = self.inner.config.min_connections().max(1);
        let size = || each_backend!(&self.inner.pools, Pools, p => p.size());
        let mut held = Vec::new();
        while held.is_empty() || size() < want {
            held.push(self.acquire_at(at, false).await?);
        }
        Ok(())
    }

    async fn acquire_at(
        &self,
        at: &'static Location<'static>,
        count: bool,
    ) -> Result<DbConnection, PoolError> {
        let inner = &*self.inner;
        let conn = match &inner.pools {
            Pools::Sqlite(p) => Conn::Sqlite(inner.checkout(p, count).await?),
            #[cfg(feature = "postgres")]
            Pools::Postgres(p) => Conn::Postgres(inner.checkout(p, count).await?),
            #[cfg(feature = "mysql")]
            Pools::MySql(p) => Conn::MySql(inner.checkout(p, count).await?),
        };
        let shared = &inner.shared;
        let lease = shared.leaks.as_ref().map(|leaks| leaks.hold(at));
        shared.counters.in_use.fetch_add(1, Ordering::Relaxed);
        Ok(DbConnection {
            conn,
            shared: Arc::clone(shared),
            lease,
        })
    }
}

impl Inner {
    /// One connection from sqlx's pool, with retries and fail-fast errors.
    async fn checkout<DB: Database>(
        &self,
        pool: &Pool<DB>,
        count: bool,
    ) -> Result<PoolConnection<DB>, PoolError> {
        let shared = &*self.shared;
        let name = &shared.name;
        if shared.health.is_closed() {
            return Err(PoolError::Closed { pool: name.clone() });
        }
        let started = Instant::now();
        let deadline = started + self.config.connection_timeout;
        let _waiting = shared.counters.waiting();
        let mut attempt = 0u32;
        loop {
            let result = if attempt == 0 {
                // sqlx's own wait is `connection_timeout`.
                pool.acquire().await
            } else {
                tokio::time::timeout_at(deadline.into(), pool.acquire())
                    .await
                    .unwrap_or(Err(sqlx::Error::PoolTimedOut))
            };
            let error = match result {
                Ok(conn) => {
                    if count {
                        shared.counters.record_wait(started.elapsed());
                        Counters::add(&shared.counters.acquired);
                    }
                    return Ok(conn);
                }
                Err(error) => error,
            };
            let failure = errors::classify(error);
            if let errors::Failure::Closed = failure {
                return Err(PoolError::Closed { pool: name.clone() });
            }
            if let errors::Failure::Transient(error) = &failure {
                attempt += 1;
                let wait = backoff(attempt);
                if attempt <= self.config.max_retries && fits(wait, deadline) {
                    Counters::add(&shared.counters.retries);
                    tracing::debug!(pool = %name, attempt, %error, "retrying a failed connect");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            shared.health.failure();
            let error = match failure {
                errors::Failure::Timeout => {
                    Counters::add(&shared.counters.timed_out);
                    let max_connections = self.config.max_connections;
                    let kind = if pool.size() >= max_connections {
                        TimeoutKind::Exhausted { max_connections }
                    } else {
                        TimeoutKind::Connect
                    };
                    return Err(PoolError::Timeout {
                        pool: name.clone(),
                        waited: crate::error::whole_millis(started.elapsed()),
                        kind,
                    });
                }
                errors::Failure::Authentication(source) => PoolError::Authentication {
                    pool: name.clone(),
                    user: self.user.clone(),
                    source,
                },
                errors::Failure::UnknownDatabase(source) => PoolError::UnknownDatabase {
                    pool: name.clone(),
                    database: self.database.clone(),
                    source,
                },
                errors::Failure::Transient(source) | errors::Failure::Other(source) => {
                    PoolError::Connect {
                        pool: name.clone(),
                        source,
                    }
                }
                errors::Failure::Closed => PoolError::Closed { pool: name.clone() },
            };
            Counters::add(&shared.counters.errors);
            tracing::warn!(pool = %name, url = %self.url, error = %error, "cannot get a database connection");
            return Err(error);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

impl Shared {
    fn lost_connection(&self) {
        self.last_lost.store(self.health.now(), Ordering::Relaxed);
        self.health.failure();
    }

    /// Whether an idle connection must be pinged before use: idle past the
    /// bypass window, or opened before a connection was last lost.
    fn suspect(&self, meta: &PoolConnectionMetadata) -> bool {
        if meta.idle_for >= LIVENESS_BYPASS {
            return true;
        }
        let lost = self.last_lost.load(Ordering::Relaxed);
        if lost == 0 {
            return false;
        }
        let age = u64::try_from(meta.age.as_nanos()).unwrap_or(u64::MAX);
        self.health.now().saturating_sub(age) <= lost
    }
}

impl Leaks {
    fn hold(&self, at: &'static Location<'static>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                Held {
                    since: Instant::now(),
                    at,
                    reported: false,
                },
            );
        id
    }

    fn release(&self, id: u64) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Connections held past the threshold and not reported yet, marked
    /// reported: (held for, acquired at).
    fn overdue(&self) -> Vec<(Duration, &'static Location<'static>)> {
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.values_mut()
            .filter(|h| !h.reported && now.duration_since(h.since) >= self.threshold)
            .map(|h| {
                h.reported = true;
                (now.duration_since(h.since), h.at)
            })
            .collect()
    }
}

/// sqlx pool options from the pool's settings. Liveness is checked by the
/// `before_acquire` hook (only for suspect connections) instead of
/// sqlx's ping before every acquire.
fn pool_options<DB: Database>(
    config: &PoolConfig,
    shared: &Arc<Shared>,
    keep_forever: bool,
) -> PoolOptions<DB> {
    let hook_shared = Arc::clone(shared);
    PoolOptions::<DB>::new()
        .max_connections(config.max_connections)
        .min_connections(config.min_connections())
        .acquire_timeout(config.connection_timeout)
        .idle_timeout((!keep_forever).then_some(config.idle_timeout))
        .max_lifetime((!keep_forever).then_some(config.max_lifetime))
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            let shared = Arc::clone(&hook_shared);
            Box::pin(async move {
                if shared.suspect(&meta)
                    && let Err(error) = conn.ping().await
                {
                    tracing::debug!(pool = %shared.name, %error, "replacing a dead idle connection");
                    shared.lost_connection();
                    return Err(error);
                }
                Ok(true)
            })
        })
}

impl DbConnection {
    /// The database it talks to.
    pub fn backend(&self) -> Backend {
        match &self.conn {
            Conn::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => Backend::Postgres,
            #[cfg(feature = "mysql")]
            Conn::MySql(_) => Backend::MySql,
        }
    }

    /// The sqlx connection, when the pool is SQLite.
    pub fn as_sqlite(&mut self) -> Option<&mut sqlx::SqliteConnection> {
        match &mut self.conn {
            Conn::Sqlite(c) => Some(&mut **c),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The sqlx connection, when the pool is PostgreSQL.
    #[cfg(feature = "postgres")]
    pub fn as_postgres(&mut self) -> Option<&mut sqlx::PgConnection> {
        match &mut self.conn {
            Conn::Postgres(c) => Some(&mut **c),
            _ => None,
        }
    }

    /// The sqlx connection, when the pool is MySQL/MariaDB.
    #[cfg(feature = "mysql")]
    pub fn as_mysql(&mut self) -> Option<&mut sqlx::MySqlConnection> {
        match &mut self.conn {
            Conn::MySql(c) => Some(&mut **c),
            _ => None,
        }
    }

    /// Tells the pool that a statement run through the sqlx connection
    /// failed with `error`: a lost connection is then closed instead of
    /// returned, and older idle connections are pinged before reuse.
    pub fn report_error(&mut self, error: &sqlx::Error) {
        Counters::add(&self.shared.counters.errors);
        if is_connection_lost(error) {
            self.shared.lost_connection();
            each_backend!(&mut self.conn, Conn, c => c.close_on_drop());
        }
    }

    /// Runs a statement with `params` bound; returns the rows it affected.
    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, PoolError> {
        let result = match &mut self.conn {
            Conn::Sqlite(c) => json::bind_sqlite(sql, params)
                .execute(&mut **c)
                .await
                .map(|r| r.rows_affected()),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => json::bind_pg(sql, params)
                .execute(&mut **c)
                .await
                .map(|r| r.rows_affected()),
            #[cfg(feature = "mysql")]
            Conn::MySql(c) => json::bind_mysql(sql, params)
                .execute(&mut **c)
                .await
                .map(|r| r.rows_affected()),
        };
        result.map_err(|e| self.failed(e))
    }

    /// Runs a query with `params` bound; returns every row as a JSON object.
    pub async fn fetch_all(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<JsonRow>, PoolError> {
        let name = self.shared.name.clone();
        let rows = match &mut self.conn {
            Conn::Sqlite(c) => json::bind_sqlite(sql, params)
                .fetch_all(&mut **c)
                .await
                .map(|rows| rows.iter().map(|r| json::sqlite_row(&name, r)).collect()),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => json::bind_pg(sql, params)
                .fetch_all(&mut **c)
                .await
                .map(|rows| rows.iter().map(|r| json::pg_row(&name, r)).collect()),
            #[cfg(feature = "mysql")]
            Conn::MySql(c) => json::bind_mysql(sql, params)
                .fetch_all(&mut **c)
                .await
                .map(|rows| rows.iter().map(|r| json::mysql_row(&name, r)).collect()),
        };
        rows.map_err(|e| self.failed(e))?
    }

    /// Runs a query with `params` bound; returns its first row, if any.
    pub async fn fetch_optional(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> Result<Option<JsonRow>, PoolError> {
        let name = self.shared.name.clone();
        let row = match &mut self.conn {
            Conn::Sqlite(c) => json::bind_sqlite(sql, params)
                .fetch_optional(&mut **c)
                .await
                .map(|row| row.map(|r| json::sqlite_row(&name, &r)).transpose()),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => json::bind_pg(sql, params)
                .fetch_optional(&mut **c)
                .await
                .map(|row| row.map(|r| json::pg_row(&name, &r)).transpose()),
            #[cfg(feature = "mysql")]
            Conn::MySql(c) => json::bind_mysql(sql, params)
                .fetch_optional(&mut **c)
                .await
                .map(|row| row.map(|r| json::mysql_row(&name, &r)).transpose()),
        };
        row.map_err(|e| self.failed(e))?
    }

    /// Runs a query with `params` bound; returns its first row, or
    /// [`PoolError::NoRow`].
    pub async fn fetch_one(&mut self, sql: &str, params: &[Value]) -> Result<JsonRow, PoolError> {
        self.fetch_optional(sql, params)
            .await?
            .ok_or_else(|| PoolError::NoRow {
                pool: self.shared.name.clone(),
            })
    }

    fn failed(&mut self, error: sqlx::Error) -> PoolError {
        self.report_error(&error);
        PoolError::Query {
            pool: self.shared.name.clone(),
            source: error,
        }
    }
}

impl std::fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConnection")
            .field("pool", &self.shared.name)
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Drop for DbConnection {
    fn drop(&mut self) {
        self.shared.counters.in_use.fetch_sub(1, Ordering::Relaxed);
        if let (Some(id), Some(leaks)) = (self.lease, &self.shared.leaks) {
            leaks.release(id);
        }
    }
}
