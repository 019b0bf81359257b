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
            && let Some((field, reason)) = problems.into_iter().next()
        {
            return Err(PoolError::Config { field, reason });
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
