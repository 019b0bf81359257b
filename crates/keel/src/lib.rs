//! Keel: the infrastructure layer beneath an async Rust service.
//!
//! This crate is the facade. It owns [`KeelConfig`], the one configuration
//! that every room of Keel reads its section from, and re-exports each room
//! behind a cargo feature as the rooms land.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! let config = keel::KeelConfig::from_toml(
//!     r#"
//!     [server]
//!     listen = "127.0.0.1:9000"
//!     shutdown_timeout = "5s"
//!     "#,
//! )?;
//! assert_eq!(config.server.listen.port(), 9000);
//! assert_eq!(config.server.shutdown_timeout, Duration::from_secs(5));
//! # Ok::<(), keel::ConfigError>(())
//! ```
//!
//! Every section has defaults, so an empty file (or no file at all) is a
//! valid configuration. Invalid input is reported all at once, each error
//! naming the full field path, the offending value and what is allowed:
//!
//! ```
//! let err = keel::KeelConfig::from_toml(
//!     r#"
//!     [server]
//!     listen = "nowhere"
//!     shutdown_timeout = "5 parsecs"
//!     colour = "blue"
//!     "#,
//! )
//! .unwrap_err();
//! let fields: Vec<&str> = err.field_errors().iter().map(|e| e.path.as_str()).collect();
//! assert_eq!(fields, ["server.listen", "server.shutdown_timeout", "server.colour"]);
//! ```
//!
//! # Configuration sources
//!
//! [`KeelConfig::load`] reads, in increasing precedence:
//!
//! 1. the embedded defaults,
//! 2. a TOML file, when one is given,
//! 3. `KEEL_`-prefixed environment variables, with `__` separating path
//!    segments: `KEEL_SERVER__LISTEN=0.0.0.0:9000` sets `server.listen`.
//!    Values are read as TOML scalars when they parse as one (`10`, `true`)
//!    and as strings otherwise. Variables without `__` are not overrides.
//!
//! # Feature flags
//!
//! Each room is re-exported as a module behind a feature of its name; the
//! section it reads joins [`KeelConfig`] with it.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `cache` | yes | [`cache`] (`keel-cache`), `[cache]`, and [`cached`] |
//! | `concurrency` | yes | [`concurrency`] (`keel-concurrency`), `[thread_pool]`, `[task_queue]` |
//! | `log` | yes | [`log`] (`keel-log`), `[logging]` |
//! | `monitor` | yes | [`monitor`] (`keel-monitor`), `[monitoring]`, and [`monitored`] |
//! | `pool` | yes | [`pool`] (`keel-pool`), `[pools]` (database pools on SQLite, HTTP pools) |
//! | `postgres` | no | PostgreSQL database pools |
//! | `mysql` | no | MySQL and MariaDB database pools |
//! | `websocket` | yes | [`websocket`] (`keel-websocket`), `[websocket]` |
//! | `redis` | no | the Redis backends of the rooms: the L2 cache tier and invalidation bus, the durable task queue, WebSocket fan-out across instances |
//!
//! `#[cached]` expands to paths of `keel_cache`; through this facade write
//! `#[keel::cached(crate = "keel::cache", ...)]`, and likewise
//! `#[keel::monitored(crate = "keel::monitor")]`.

#![forbid(unsafe_code)]

mod config;
mod error;
#[cfg(all(
    feature = "cache",
    feature = "concurrency",
    feature = "monitor",
    feature = "pool",
    feature = "websocket"
))]
mod keel;

pub use config::{
    KeelConfig, RouteConfig, RouteKind, RouteRateLimit, RouteWarm, Rows, ServerConfig,
};
pub use error::{ConfigError, FieldError};
#[cfg(all(
    feature = "cache",
    feature = "concurrency",
    feature = "monitor",
    feature = "pool",
    feature = "websocket"
))]
pub use keel::{Job, Keel, KeelError};

// The field error every room's `validate()` reports (`keel-core`);
// `FieldError` is the loader's, with the value and where it came from.
pub use keel_core::InvalidField;

#[cfg(feature = "cache")]
pub use keel_cache as cache;
#[cfg(feature = "concurrency")]
pub use keel_concurrency as concurrency;
#[cfg(feature = "log")]
pub use keel_log as log;
#[cfg(feature = "cache")]
pub use keel_macros::cached;
#[cfg(feature = "monitor")]
pub use keel_macros::monitored;
#[cfg(feature = "monitor")]
pub use keel_monitor as monitor;
#[cfg(feature = "pool")]
pub use keel_pool as pool;
#[cfg(feature = "websocket")]
pub use keel_websocket as websocket;
