//! [`PoolConfig`] (one pool's settings) and [`PoolsConfig`], the `[pools]`
//! section of the configuration file.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_concurrency::LoadBalancerConfig;
use keel_core::InvalidField;
use serde::Deserialize;

/// One pool's settings, with HikariCP's defaults where it has one.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `max_connections` | 10 | connections open at most (HikariCP `maximumPoolSize`) |
/// | `min_connections` | = `max_connections` | connections kept open even when idle (HikariCP `minimumIdle`; database pools only) |
/// | `connection_timeout` | 30 s | how long `acquire` waits before failing (HikariCP `connectionTimeout`) |
/// | `idle_timeout` | 10 min | an idle connection above the minimum is closed after this (HikariCP `idleTimeout`) |
/// | `max_lifetime` | 30 min | a connection is replaced once this old (HikariCP `maxLifetime`) |
/// | `max_retries` | 3 | retries of a transient failure (a connect, an idempotent HTTP request) |
/// | `health_check_interval` | 30 s | how often a database pool pings its idle connections and restores the minimum |
/// | `leak_threshold` | off | a connection held longer is logged once, with where it was acquired (HikariCP `leakDetectionThreshold`) |
///
/// Durations are written as `"300ms"`, `"5s"`, `"10m"`. Build one with
/// struct update syntax: `PoolConfig { max_connections: 20,
/// ..PoolConfig::default() }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Connections open at most.
    pub max_connections: u32,
    /// Connections kept open even when idle; `None` means as many as
    /// `max_connections` (a fixed-size pool, HikariCP's default).
    pub min_connections: Option<u32>,
    /// How long a caller waits for a connection before a timeout error.
    #[serde(with = "humantime_serde")]
    pub connection_timeout: Duration,
    /// Idle time after which a connection above the minimum is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Age at which a connection is closed and replaced.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// Retries of a transient failure, with jittered backoff, within
    /// `connection_timeout`.
    pub max_retries: u32,
    /// Period of the health check (and of restoring `min_connections`).
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// Hold time after which a connection is reported as a possible leak
    /// (`None`: not watched).
    #[serde(with = "humantime_serde")]
    pub leak_threshold: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: None,
            connection_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(1800),
            max_retries: 3,
            health_check_interval: Duration::from_secs(30),
            leak_threshold: None,
        }
    }
}

impl PoolConfig {
    /// `min_connections`, with `None` resolved to `max_connections`.
    pub fn min_connections(&self) -> u32 {
        self.min_connections.unwrap_or(self.max_connections)
    }

    /// Every problem of the settings, each field path under `path`.
    pub fn problems(&self, path: &str) -> Vec<InvalidField> {
        let mut problems = Vec::new();
        let field = |name: &str| {
            if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            }
        };
        if self.max_connections == 0 {
            problems.push(InvalidField::new(
                field("max_connections"),
                "must be at least 1",
            ));
        }
        if let Some(min) = self.min_connections
            && min > self.max_connections
        {
            problems.push(InvalidField::new(
                field("min_connections"),
                format!(
                    "{min} must not exceed max_connections {}",
                    self.max_connections
                ),
            ));
        }
        for (name, value) in [
            ("connection_timeout", Some(self.connection_timeout)),
            ("idle_timeout", Some(self.idle_timeout)),
            ("max_lifetime", Some(self.max_lifetime)),
            ("health_check_interval", Some(self.health_check_interval)),
            ("leak_threshold", self.leak_threshold),
        ] {
            if value == Some(Duration::ZERO) {
                problems.push(InvalidField::new(field(name), "must be longer than 0s"));
            }
        }
        problems
    }

    /// Checks the settings; the error names the first field that cannot
    /// be used (all of them: [`problems`](Self::problems)).
    pub fn validate(&self) -> Result<(), InvalidField> {
        match self.problems("").into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }
}

/// The `[pools]` section: named database and HTTP pools.
///
/// ```toml
/// [pools.db.default]                 # answers get_db_connection()
/// url = "sqlite://keel.db"           # or sqlite::memory:, postgres://..., mysql://...
/// max_connections = 10
/// min_connections = 2
/// connection_timeout = "5s"
///
/// [pools.http.default]               # answers get_http_connection()
/// base_urls = ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]
/// max_connections = 100              # requests in flight, all hosts together
/// max_connections_per_host = 20
/// request_timeout = "10s"
/// [pools.http.default.balance]       # how base_urls are balanced
/// strategy = "least_in_flight"
/// eject_after_failures = 5
/// ejection_cooldown = "10s"
/// ```
///
/// Every [`PoolConfig`] field can be set in each named pool.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolsConfig {
    /// `[pools.db.<name>]`: database pools.
    pub db: BTreeMap<String, DbPoolConfig>,
    /// `[pools.http.<name>]`: HTTP pools.
    pub http: BTreeMap<String, HttpPoolConfig>,
}

impl PoolsConfig {
    /// Checks every pool; each problem's field path starts at `pools.`.
    pub fn validate(&self) -> Result<(), Vec<InvalidField>> {
        let mut problems = Vec::new();
        for (name, db) in &self.db {
            problems.extend(db.problems(&format!("pools.db.{name}")));
        }
        for (name, http) in &self.http {
            problems.extend(http.problems(&format!("pools.http.{name}")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// `[pools.db.<name>]`: a database pool. `url` picks the backend:
/// a file path, `sqlite:path` or `sqlite::memory:` (SQLite, always
/// available), `postgres://` (feature `postgres`), `mysql://` or
/// `mariadb://` (feature `mysql`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DbPoolConfig {
    /// Where the database is. Default `sqlite://keel.db` (created when
    /// missing).
    pub url: String,
    /// See [`PoolConfig::max_connections`].
    pub max_connections: u32,
    /// See [`PoolConfig::min_connections`].
    pub min_connections: Option<u32>,
    /// See [`PoolConfig::connection_timeout`].
    #[serde(with = "humantime_serde")]
    pub connection_timeout: Duration,
    /// See [`PoolConfig::idle_timeout`].
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// See [`PoolConfig::max_lifetime`].
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// See [`PoolConfig::max_retries`].
    pub max_retries: u32,
    /// See [`PoolConfig::health_check_interval`].
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// See [`PoolConfig::leak_threshold`].
    #[serde(with = "humantime_serde")]
    pub leak_threshold: Option<Duration>,
}

impl Default for DbPoolConfig {
    fn default() -> Self {
        Self::new("sqlite://keel.db", PoolConfig::default())
    }
}

impl DbPoolConfig {
    /// A pool of `url` with `settings`.
    pub fn new(url: impl Into<String>, settings: PoolConfig) -> Self {
        let PoolConfig {
            max_connections,
            min_connections,
            connection_timeout,
            idle_timeout,
            max_lifetime,
            max_retries,
            health_check_interval,
            leak_threshold,
        } = settings;
        Self {
            url: url.into(),
            max_connections,
            min_connections,
            connection_timeout,
            idle_timeout,
            max_lifetime,
            max_retries,
            health_check_interval,
            leak_threshold,
        }
    }

    /// The pool settings of this section.
    pub fn settings(&self) -> PoolConfig {
        PoolConfig {
            max_connections: self.max_connections,
            min_connections: self.min_connections,
            connection_timeout: self.connection_timeout,
            idle_timeout: self.idle_timeout,
            max_lifetime: self.max_lifetime,
            max_retries: self.max_retries,
            health_check_interval: self.health_check_interval,
            leak_threshold: self.leak_threshold,
        }
    }

    fn problems(&self, path: &str) -> Vec<InvalidField> {
        let mut problems = Vec::new();
        if self.url.trim().is_empty() {
            problems.push(InvalidField::new(
                format!("{path}.url"),
                "must be set: a SQLite file path, sqlite::memory:, postgres://... or mysql://...",
            ));
        } else if let Err(reason) = crate::db::check_url(&self.url) {
            problems.push(InvalidField::new(format!("{path}.url"), reason));
        }
        problems.extend(self.settings().problems(path));
        problems
    }
}

/// `[pools.http.<name>]`: an HTTP pool over `base_urls`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpPoolConfig {
    /// Upstreams that relative paths are sent to, balanced by `balance`;
    /// empty: the pool takes absolute URLs only.
    pub base_urls: Vec<String>,
    /// Requests in flight at most, all hosts together (each holds one
    /// connection).
    pub max_connections: u32,
    /// Requests in flight at most to one host (`None`: `max_connections`).
    pub max_connections_per_host: Option<u32>,
    /// How long a request waits for a free connection slot.
    #[serde(with = "humantime_serde")]
    pub connection_timeout: Duration,
    /// How long an unused connection is kept. Default 90 s.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Retries of an idempotent request (GET, HEAD, PUT, DELETE, OPTIONS)
    /// after a connect error or a 502, 503 or 504.
    pub max_retries: u32,
    /// The window in which a failure keeps the pool's health `degraded`.
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// How long opening a TCP connection may take. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a whole request (response body included) may take.
    /// Default 30 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Share of requests that may be retries (0 to 1), on top of a reserve
    /// of 10, so an outage does not multiply the load. Default 0.2.
    pub retry_budget: f64,
    /// How `base_urls` are balanced and when a failing one is ejected.
    pub balance: LoadBalancerConfig,
}

impl Default for HttpPoolConfig {
    fn default() -> Self {
        let p = PoolConfig::default();
        Self {
            base_urls: Vec::new(),
            max_connections: 100,
            max_connections_per_host: None,
            connection_timeout: p.connection_timeout,
            idle_timeout: Duration::from_secs(90),
            max_retries: p.max_retries,
            health_check_interval: p.health_check_interval,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry_budget: 0.2,
            balance: LoadBalancerConfig::default(),
        }
    }
}

impl HttpPoolConfig {
    /// A pool over `base_urls` with the defaults.
    pub fn new<S: Into<String>>(base_urls: impl IntoIterator<Item = S>) -> Self {
        Self {
            base_urls: base_urls.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// The pool settings of this section (an HTTP pool opens connections
    /// on demand: its minimum is 0 and nothing expires by age).
    pub fn settings(&self) -> PoolConfig {
        PoolConfig {
            max_connections: self.max_connections,
            min_connections: Some(0),
            connection_timeout: self.connection_timeout,
            idle_timeout: self.idle_timeout,
            max_retries: self.max_retries,
            health_check_interval: self.health_check_interval,
            ..PoolConfig::default()
        }
    }

    /// `max_connections_per_host`, with `None` resolved.
    pub fn per_host(&self) -> u32 {
        self.max_connections_per_host
            .unwrap_or(self.max_connections)
            .min(self.max_connections)
    }

    pub(crate) fn problems(&self, path: &str) -> Vec<InvalidField> {
        let mut problems = Vec::new();
        for (i, url) in self.base_urls.iter().enumerate() {
            if let Err(reason) = crate::http::check_base_url(url) {
                problems.push(InvalidField::new(format!("{path}.base_urls[{i}]"), reason));
            }
        }
        problems.extend(self.settings().problems(path));
        if self.max_connections_per_host == Some(0) {
            problems.push(InvalidField::new(
                format!("{path}.max_connections_per_host"),
                "must be at least 1",
            ));
        }
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                problems.push(InvalidField::new(
                    format!("{path}.{name}"),
                    "must be longer than 0s",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.retry_budget) {
            problems.push(InvalidField::new(
                format!("{path}.retry_budget"),
                format!("{} is not a share between 0 and 1", self.retry_budget),
            ));
        }
        if let Err(e) = self.balance.validate() {
            let field = e.field.strip_prefix("load_balancer.").unwrap_or(&e.field);
            problems.push(InvalidField::new(
                format!("{path}.balance.{field}"),
                e.reason,
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_hikaricp_like_and_valid() {
        let c = PoolConfig::default();
        assert_eq!(c.max_connections, 10);
        assert_eq!(c.min_connections(), 10);
        assert_eq!(c.connection_timeout, Duration::from_secs(30));
        assert_eq!(c.idle_timeout, Duration::from_secs(600));
        assert_eq!(c.max_lifetime, Duration::from_secs(1800));
        assert!(c.validate().is_ok());
        assert!(PoolsConfig::default().validate().is_ok());
    }

    #[test]
    fn every_bad_field_is_named() {
        let c = PoolConfig {
            max_connections: 2,
            min_connections: Some(3),
            connection_timeout: Duration::ZERO,
            leak_threshold: Some(Duration::ZERO),
            ..PoolConfig::default()
        };
        let fields: Vec<String> = c.problems("p").into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "p.min_connections",
                "p.connection_timeout",
                "p.leak_threshold"
            ]
        );
        assert_eq!(
            c.validate(),
            Err(InvalidField::new(
                "min_connections",
                "3 must not exceed max_connections 2"
            ))
        );
    }

    #[test]
    fn the_section_reads_from_toml_and_checks_each_pool() {
        let config: PoolsConfig = toml::from_str(
            r#"
            [db.default]
            url = "sqlite::memory:"
            max_connections = 4
            min_connections = 5
            [db.other]
            url = "oracle://db"
            [http.api]
            base_urls = ["http://127.0.0.1:1", "ftp://x"]
            retry_budget = 2.0
            connection_timeout = "0s"
            [http.api.balance]
            eject_after_failures = 0
            "#,
        )
        .unwrap();
        assert_eq!(config.db["default"].max_connections, 4);
        let problems = config.validate().unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "pools.db.default.min_connections",
                "pools.db.other.url",
                "pools.http.api.base_urls[1]",
                "pools.http.api.connection_timeout",
                "pools.http.api.retry_budget",
                "pools.http.api.balance.eject_after_failures",
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<PoolsConfig>("[db.x]\nmax_conections = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_conections"), "{err}");
    }
}
