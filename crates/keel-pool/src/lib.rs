//! Connection pools for async services: database pools (SQLite,
//! PostgreSQL, MySQL/MariaDB) on sqlx and HTTP pools on reqwest, named and
//! held by one [`ConnectionPoolManager`], with HikariCP's settings,
//! fail-fast errors and figures.
//!
//! # Example
//!
//! ```
//! use keel_pool::{ConnectionPoolManager, ConnectionStatus, PoolsConfig};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config: PoolsConfig = toml::from_str(
//!     r#"
//!     [db.default]
//!     url = "sqlite::memory:"
//!     max_connections = 4
//!     min_connections = 1
//!     connection_timeout = "2s"
//!     "#,
//! )?;
//! let pools = ConnectionPoolManager::from_config(&config).await?;
//!
//! let db = pools.db("default")?;
//! db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)", &[]).await?;
//! db.execute("INSERT INTO users (name) VALUES (?)", &[json!("ada")]).await?;
//!
//! let mut conn = pools.get_db_connection().await?;
//! let row = conn.fetch_one("SELECT id, name FROM users WHERE name = ?", &[json!("ada")]).await?;
//! assert_eq!(row["name"], "ada");
//! drop(conn);
//!
//! let stats = &pools.stats()["db.default"];
//! assert_eq!(stats.in_use, 0);
//! assert_eq!(pools.health()["db.default"], ConnectionStatus::Healthy);
//! pools.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! # The pools
//!
//! * [`DatabaseConnectionPool`]: the backend is chosen by URL.
//!   [`acquire`](DatabaseConnectionPool::acquire) waits up to
//!   `connection_timeout`, retries transient connect failures with
//!   jittered backoff, and fails at once on a wrong password
//!   ([`PoolError::Authentication`]) or an unknown database
//!   ([`PoolError::UnknownDatabase`]). `execute`, `fetch_all`,
//!   `fetch_one` and `fetch_optional` bind JSON parameters (never
//!   interpolate them) and return rows as JSON objects; see
//!   [`JsonRow`] for the type mapping.
//! * [`HttpConnectionPool`]: caps on requests (hence connections) in
//!   flight per host and in total, retries of idempotent requests on
//!   connect errors and 502/503/504 within a retry budget, and
//!   `base_urls` balanced by `keel-concurrency`'s `LoadBalancer`, which
//!   ejects failing endpoints and probes them back.
//! * [`ConnectionPoolManager`]: the pools of [`PoolsConfig`] (the
//!   `[pools]` section) by name; the pools named `default` answer
//!   [`get_db_connection`](ConnectionPoolManager::get_db_connection) and
//!   [`get_http_connection`](ConnectionPoolManager::get_http_connection);
//!   [`stats`](ConnectionPoolManager::stats) and
//!   [`health`](ConnectionPoolManager::health) for every pool.
//!
//! [`PoolConfig`] lists the settings and their defaults.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `postgres` | no | PostgreSQL pools (`postgres://` URLs) and `DbConnection::as_postgres` |
//! | `mysql` | no | MySQL and MariaDB pools (`mysql://`, `mariadb://` URLs) and `DbConnection::as_mysql` |
//!
//! SQLite, the embedded default, needs no feature. The HTTP pool speaks
//! plain `http://` (this crate turns on no TLS backend).
//!
//! # Implementation details
//!
//! * Database pools are sqlx pools. sqlx's ping before every acquire is
//!   off; instead a connection is pinged before use only when it has been
//!   idle for more than [`LIVENESS_BYPASS`] (500 ms, as HikariCP) or was
//!   opened before a connection of the pool was last found dead. After a
//!   server restart, the statements running at that moment fail; later
//!   acquires get new connections (waiting, within `connection_timeout`,
//!   while the server refuses them).
//! * Each database pool owns one tokio task: every
//!   `health_check_interval`, when the pool is at its minimum, it pings
//!   the idle connections (a pool above its minimum is left for
//!   `idle_timeout` to shrink: a ping counts as use), closes dead ones,
//!   reopens up to `min_connections`, and, when no pooled connection was
//!   pinged or opened, probes the server with a connection of its own
//!   (for a moment one above `max_connections`); with `leak_threshold` it
//!   also reports connections held too long. The task holds the pool
//!   weakly and ends when the pool is closed or its last handle is
//!   dropped. HTTP pools have no task.
//! * Counters are relaxed atomics, read without stopping the pool:
//!   figures read at one moment are each exact but not a consistent
//!   snapshot. Acquire-wait percentiles come from a log-linear histogram
//!   accurate to 1/8 and cover the pool's whole life.
//! * Health: `Closed` after `close`; `Unhealthy` when the last health
//!   check failed (database) or every base URL is ejected (HTTP);
//!   `Degraded` when an acquire, a lost connection or a request failed
//!   within the last `health_check_interval`, or a base URL is ejected;
//!   otherwise `Healthy`.
//! * Nothing here reads files, the environment or argv; events are
//!   `tracing` events (lost connections, retries, leaks, ejections).

#![forbid(unsafe_code)]

mod config;
mod db;
mod error;
mod http;
mod manager;
mod retry;
mod stats;

pub use config::{DbPoolConfig, HttpPoolConfig, PoolConfig, PoolsConfig};
pub use db::{Backend, DatabaseConnectionPool, DbConnection, JsonRow, LIVENESS_BYPASS};
pub use error::{PoolError, TimeoutKind};
pub use http::{HttpConnectionPool, HttpRequest, HttpResponse};
pub use manager::{ConnectionPoolManager, DEFAULT_POOL};
pub use stats::{ConnectionStats, ConnectionStatus, PoolKind};

// The field error of every room (`keel-core`), what `validate()` returns.
pub use keel_core::InvalidField;

pub use reqwest;
pub use serde_json;
pub use sqlx;
