//! [`ConnectionPoolManager`]: the named pools of `[pools]`.

use std::collections::BTreeMap;

use crate::PoolError;
use crate::config::PoolsConfig;
use crate::db::{DatabaseConnectionPool, DbConnection};
use crate::http::HttpConnectionPool;
use crate::stats::{ConnectionStats, ConnectionStatus};

/// The name of the pools that answer [`get_db_connection`] and
/// [`get_http_connection`].
///
/// [`get_db_connection`]: ConnectionPoolManager::get_db_connection
/// [`get_http_connection`]: ConnectionPoolManager::get_http_connection
pub const DEFAULT_POOL: &str = "default";

/// Named database and HTTP pools, built from [`PoolsConfig`]. Figures and
/// health are keyed `db.<name>` and `http.<name>`.
#[derive(Debug, Clone, Default)]
pub struct ConnectionPoolManager {
    db: BTreeMap<String, DatabaseConnectionPool>,
    http: BTreeMap<String, HttpConnectionPool>,
}

impl ConnectionPoolManager {
    /// Builds every pool of the section, database pools opening their
    /// `min_connections`. The section is checked first; the first problem
    /// is returned, named by its field path.
    pub async fn from_config(config: &PoolsConfig) -> Result<Self, PoolError> {
        if let Err(problems) = config.validate()
            && let Some(problem) = problems.into_iter().next()
        {
            return Err(problem.into());
        }
        let mut manager = Self::default();
        for (name, section) in &config.http {
            manager.insert_http(HttpConnectionPool::new(name.clone(), section.clone())?);
        }
        for (name, section) in &config.db {
            match DatabaseConnectionPool::from_config(name.clone(), section).await {
                Ok(pool) => manager.insert_db(pool),
                Err(error) => {
                    manager.close().await;
                    return Err(error);
                }
            }
        }
        Ok(manager)
    }

    /// Adds (or replaces) a database pool under its name.
    pub fn insert_db(&mut self, pool: DatabaseConnectionPool) {
        self.db.insert(pool.name().to_owned(), pool);
    }

    /// Adds (or replaces) an HTTP pool under its name.
    pub fn insert_http(&mut self, pool: HttpConnectionPool) {
        self.http.insert(pool.name().to_owned(), pool);
    }

    /// The database pool `name`.
    pub fn db(&self, name: &str) -> Result<DatabaseConnectionPool, PoolError> {
        self.db
            .get(name)
            .cloned()
            .ok_or_else(|| PoolError::UnknownPool {
                kind: "database",
                name: name.to_owned(),
                known: known(self.db.keys()),
            })
    }

    /// The HTTP pool `name`.
    pub fn http(&self, name: &str) -> Result<HttpConnectionPool, PoolError> {
        self.http
            .get(name)
            .cloned()
            .ok_or_else(|| PoolError::UnknownPool {
                kind: "http",
                name: name.to_owned(),
                known: known(self.http.keys()),
            })
    }

    /// A connection from the database pool named `default`.
    #[track_caller]
    pub fn get_db_connection(
        &self,
    ) -> impl Future<Output = Result<DbConnection, PoolError>> + Send + '_ {
        let pool = self.db(DEFAULT_POOL);
        let acquire = pool.map(|p| {
            let at = std::panic::Location::caller();
            (p, at)
        });
        async move {
            let (pool, at) = acquire?;
            pool.acquire_with_location(at).await
        }
    }

    /// The HTTP pool named `default`.
    pub fn get_http_connection(&self) -> Result<HttpConnectionPool, PoolError> {
        self.http(DEFAULT_POOL)
    }

    /// Every pool's figures, keyed `db.<name>` and `http.<name>`.
    pub fn stats(&self) -> BTreeMap<String, ConnectionStats> {
        let db = self.db.iter().map(|(n, p)| (format!("db.{n}"), p.stats()));
        let http = self
            .http
            .iter()
            .map(|(n, p)| (format!("http.{n}"), p.stats()));
        db.chain(http).collect()
    }

    /// Publishes every pool's figures through the `metrics` facade as the
    /// `keel_pool_*` families labelled `pool = db.<name>` or
    /// `http.<name>`: each counter set to the pool's total, each gauge to
    /// its value now. The first call also registers each pool's
    /// `keel_pool_acquire_wait_seconds` histogram with the recorder current
    /// then; from that moment every acquire's wait reaches it as it
    /// happens.
    pub fn publish_metrics(&self) {
        use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
        describe_gauge!(
            "keel_pool_connections",
            Unit::Count,
            "Connections by state (idle, in_use; HTTP pools: in_use = requests in flight)."
        );
        describe_gauge!(
            "keel_pool_max_connections",
            Unit::Count,
            "Most connections the pool opens."
        );
        describe_gauge!(
            "keel_pool_waiters",
            Unit::Count,
            "Callers waiting for a connection now."
        );
        describe_counter!(
            "keel_pool_acquired_total",
            "Connections handed out (HTTP: requests admitted)."
        );
        describe_counter!(
            "keel_pool_timeouts_total",
            "Callers that gave up after connection_timeout."
        );
        describe_counter!(
            "keel_pool_errors_total",
            "Connects, statements or requests that failed."
        );
        describe_counter!("keel_pool_retries_total", "Retries made.");
        describe_counter!(
            "keel_pool_leaks_total",
            "Connections held past leak_threshold."
        );
        let max = self
            .db
            .iter()
            .map(|(n, p)| (format!("db.{n}"), p.config().max_connections))
            .chain(
                self.http
                    .iter()
                    .map(|(n, p)| (format!("http.{n}"), p.config().max_connections)),
            );
        for pool in self.db.values() {
            pool.bind_metrics();
        }
        for pool in self.http.values() {
            pool.bind_metrics();
        }
        for (pool, max) in max {
            gauge!("keel_pool_max_connections", "pool" => pool).set(f64::from(max));
        }
        for (pool, s) in self.stats() {
            if let Some(idle) = s.idle {
                gauge!("keel_pool_connections", "pool" => pool.clone(), "state" => "idle")
                    .set(f64::from(idle));
            }
            gauge!("keel_pool_connections", "pool" => pool.clone(), "state" => "in_use")
                .set(f64::from(s.in_use));
            gauge!("keel_pool_waiters", "pool" => pool.clone()).set(f64::from(s.waiters));
            counter!("keel_pool_acquired_total", "pool" => pool.clone()).absolute(s.acquired);
            counter!("keel_pool_timeouts_total", "pool" => pool.clone()).absolute(s.timed_out);
            counter!("keel_pool_errors_total", "pool" => pool.clone()).absolute(s.errors);
            counter!("keel_pool_retries_total", "pool" => pool.clone()).absolute(s.retries);
            counter!("keel_pool_leaks_total", "pool" => pool).absolute(s.leaked);
        }
    }

    /// Every pool's health, keyed `db.<name>` and `http.<name>`.
    pub fn health(&self) -> BTreeMap<String, ConnectionStatus> {
        let db = self.db.iter().map(|(n, p)| (format!("db.{n}"), p.health()));
        let http = self
            .http
            .iter()
            .map(|(n, p)| (format!("http.{n}"), p.health()));
        db.chain(http).collect()
    }

    /// The worst health of any pool (`Healthy` when there is none).
    pub fn overall_health(&self) -> ConnectionStatus {
        self.health()
            .into_values()
            .max()
            .unwrap_or(ConnectionStatus::Healthy)
    }

    /// Closes every pool, all at once, each waiting for its connections in
    /// use to come back.
    pub async fn close(&self) {
        let mut tasks = tokio::task::JoinSet::new();
        for pool in self.db.values() {
            let pool = pool.clone();
            tasks.spawn(async move { pool.close().await });
        }
        for pool in self.http.values() {
            let pool = pool.clone();
            tasks.spawn(async move { pool.close().await });
        }
        while tasks.join_next().await.is_some() {}
    }
}

fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
