//! [`KeelConfig`]: the whole configuration, one section per room.

mod de;
mod load;
mod routes;
mod server;

use std::ffi::OsString;
use std::path::Path;

use serde::Deserialize;

use crate::{ConfigError, FieldError};

pub use routes::{RouteConfig, RouteKind, RouteRateLimit, RouteWarm, Rows};
pub use server::ServerConfig;

/// The configuration of a Keel service: one section per room.
///
/// Each section's type belongs to the room that reads it. All fields have
/// defaults, so `KeelConfig::default()` is the embedded configuration that
/// `keel` runs with when given no file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct KeelConfig {
    /// `[server]`: where the gateway listens and how it stops.
    pub server: ServerConfig,
    /// `[cache]`: the named caches, their protections and the Redis tier.
    #[cfg(feature = "cache")]
    pub cache: keel_cache::CacheConfig,
    /// `[logging]`: level, format, files, rotation, the writer's queue.
    #[cfg(feature = "log")]
    pub logging: keel_log::LoggingConfig,
    /// `[monitoring]`: sampling, reports, series bounds, health, alerts.
    #[cfg(feature = "monitor")]
    pub monitoring: keel_monitor::MonitoringConfig,
    /// `[thread_pool]`: the executor for blocking and CPU-heavy work.
    #[cfg(feature = "concurrency")]
    pub thread_pool: keel_concurrency::ThreadPoolConfig,
    /// `[task_queue]`: the in-process task queue.
    #[cfg(feature = "concurrency")]
    pub task_queue: keel_concurrency::TaskQueueConfig,
    /// `[pools]`: the named database and HTTP pools.
    #[cfg(feature = "pool")]
    pub pools: keel_pool::PoolsConfig,
    /// `[websocket]`: the WebSocket hub, its limits and Redis fan-out.
    #[cfg(feature = "websocket")]
    pub websocket: keel_websocket::WebSocketConfig,
    /// `[[routes]]`: the gateway's SQL and HTTP routes.
    pub routes: Vec<RouteConfig>,
}

impl KeelConfig {
    /// Loads the configuration from an optional TOML file and the process
    /// environment (`KEEL_SECTION__KEY=value` overrides).
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Self::from_sources(text.as_deref(), std::env::vars_os())
    }

    /// Parses a TOML document, ignoring the environment.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_sources(Some(text), std::iter::empty::<(OsString, OsString)>())
    }

    /// Builds the configuration from an optional TOML document and a set of
    /// environment variables; variables not of the form `KEEL_A__B` are
    /// ignored.
    pub fn from_sources<I, K, V>(toml: Option<&str>, env: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        load::load(
            toml,
            env.into_iter().map(|(k, v)| (k.into(), v.into())),
            KeelConfig::cross_field_errors,
        )
    }

    /// What field types cannot check: each section's fields against each
    /// other (`thread_pool.min_workers` ≤ `max_workers`, a cache's
    /// `local_ttl` ≤ its `ttl`, a pool's `min_connections` ≤
    /// `max_connections`, ...).
    fn cross_field_errors(&self) -> Vec<FieldError> {
        #[allow(unused_mut)]
        let mut errors: Vec<FieldError> = Vec::new();
        #[cfg(feature = "concurrency")]
        {
            for result in [self.thread_pool.validate(), self.task_queue.validate()] {
                if let Err(problem) = result {
                    errors.push(problem.into());
                }
            }
        }
        #[cfg(feature = "cache")]
        if let Err(problems) = self.cache.validate() {
            errors.extend(problems.into_iter().map(FieldError::from));
        }
        #[cfg(feature = "pool")]
        if let Err(problems) = self.pools.validate() {
            errors.extend(problems.into_iter().map(FieldError::from));
        }
        #[cfg(feature = "websocket")]
        if let Err(problems) = self.websocket.validate() {
            errors.extend(problems.into_iter().map(FieldError::from));
        }
        #[cfg(feature = "monitor")]
        if let Err(problems) = self.monitoring.validate() {
            errors.extend(problems.into_iter().map(FieldError::from));
        }
        #[cfg(feature = "pool")]
        let (db, http): (Vec<String>, Vec<String>) = (
            self.pools.db.keys().cloned().collect(),
            self.pools.http.keys().cloned().collect(),
        );
        #[cfg(not(feature = "pool"))]
        let (db, http): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        for (i, route) in self.routes.iter().enumerate() {
            errors.extend(
                route
                    .problems(i, &db, &http)
                    .into_iter()
                    .map(|(field, reason)| FieldError::new(field, reason)),
            );
        }
        errors
    }
}

#[cfg(all(
    test,
    feature = "cache",
    feature = "concurrency",
    feature = "log",
    feature = "monitor",
    feature = "pool",
    feature = "websocket"
))]
mod tests {
    use super::*;

    #[test]
    fn every_room_section_reads_with_defaults() {
        let config = KeelConfig::from_toml("").unwrap();
        assert_eq!(config, KeelConfig::default());
        let config = KeelConfig::from_toml(
            r#"
            [cache]
            capacity = 500
            [cache.caches.users]
            ttl = "5m"
            [logging]
            level = "warn"
            [thread_pool]
            max_workers = 4
            min_workers = 2
            [task_queue]
            batch_size = 10
            [pools.db.default]
            url = "sqlite::memory:"
            max_connections = 4
            [pools.http.api]
            base_urls = ["http://127.0.0.1:9000"]
            [websocket]
            path = "/hub"
            ping_interval = "15s"
            slow_client = "disconnect"
            allowed_origins = ["https://app.example"]
            [websocket.auth]
            tokens = ["t"]
            [monitoring]
            sample_rate = 0.5
            report_interval = "30s"
            [[monitoring.alerts]]
            name = "slow"
            metric = "keel_operation_duration_seconds"
            labels = { operation = "db" }
            quantile = 0.99
            above = 0.25
            for = "1m"
            "#,
        )
        .unwrap();
        assert_eq!(config.pools.db["default"].max_connections, 4);
        assert_eq!(config.pools.http["api"].base_urls.len(), 1);
        assert_eq!(config.websocket.path, "/hub");
        assert_eq!(
            config.websocket.ping_interval,
            std::time::Duration::from_secs(15)
        );
        assert_eq!(
            config.websocket.slow_client,
            keel_websocket::SlowClientPolicy::Disconnect
        );
        assert_eq!(config.websocket.auth.unwrap().tokens, ["t"]);
        assert_eq!(config.cache.defaults.capacity, Some(500));
        assert_eq!(config.monitoring.sample_rate, 0.5);
        assert_eq!(
            config.monitoring.alerts[0].hold,
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(config.thread_pool.max_workers, 4);
        assert_eq!(config.task_queue.batch_size, 10);
    }

    #[test]
    fn a_named_cache_layers_over_cache_which_layers_over_the_defaults() {
        let config = KeelConfig::from_toml(
            r#"
            [cache]
            capacity = 500
            ttl = "5m"
            negative_ttl = "30s"
            [cache.redis]
            url = "redis://127.0.0.1:6390"
            [cache.caches.users]
            ttl = "10m"
            tiered = false
            [cache.caches.sessions]
            "#,
        )
        .unwrap();
        let cache = &config.cache;
        assert_eq!(cache.redis.as_ref().unwrap().url, "redis://127.0.0.1:6390");
        let minutes = |m: u64| Some(std::time::Duration::from_secs(m * 60));
        let users = cache.settings("users").unwrap();
        assert_eq!(
            (users.capacity, users.ttl, users.tiered),
            (500, minutes(10), false),
            "its own ttl and tiered, [cache]'s capacity"
        );
        assert_eq!(users.negative_ttl, Some(std::time::Duration::from_secs(30)));
        let sessions = cache.settings("sessions").unwrap();
        assert_eq!((sessions.capacity, sessions.ttl), (500, minutes(5)));
        assert!(sessions.tiered, "the built-in default");
        assert_eq!(cache.default_settings().schema_version, 1);
        assert!(cache.settings("nowhere").is_none());
    }

    #[test]
    fn cache_errors_name_the_field_at_each_layer() {
        let err = KeelConfig::from_toml(
            r#"
            [cache]
            capasity = 5
            ttl = "soon"
            [cache.redis]
            pool_size = "four"
            [cache.caches.users]
            colour = "blue"
            ttl_jitter = 3.0
            "#,
        )
        .unwrap_err();
        let mut paths: Vec<&str> = err.field_errors().iter().map(|e| e.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            [
                "cache.caches.users.colour",
                "cache.caches.users.ttl_jitter",
                "cache.capasity",
                "cache.redis.pool_size",
                "cache.ttl"
            ],
            "{err}"
        );
    }

    #[test]
    fn checks_across_fields_are_reported_with_the_type_errors() {
        let err = KeelConfig::from_toml(
            r#"
            [server]
            listen = 1
            [thread_pool]
            min_workers = 30
            max_workers = 10
            [cache.caches.users]
            ttl = "1m"
            local_ttl = "5m"
            [pools.db.main]
            url = "sqlite::memory:"
            max_connections = 2
            min_connections = 3
            connection_timeout = "soon"
            [pools.http.api]
            base_urls = ["ftp://x"]
            [websocket]
            queue_size = 0
            slow_client = "sometimes"
            [monitoring]
            sample_rate = 2.0
            "#,
        )
        .unwrap_err();
        let paths: Vec<&str> = err.field_errors().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "server.listen",
                "pools.db.main.connection_timeout",
                "websocket.slow_client",
                "thread_pool.min_workers",
                "cache.caches.users.local_ttl",
                "pools.db.main.min_connections",
                "pools.http.api.base_urls[0]",
                "websocket.queue_size",
                "monitoring.sample_rate"
            ],
            "{err}"
        );
    }
}
