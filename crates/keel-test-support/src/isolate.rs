//! Per-test corners of the shared services: a key prefix, a schema, a database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection as _;

use crate::{Service, require};

/// A name no other test (in this or another process) is using:
/// `<prefix>_<pid>_<counter>_<clock>`, lowercase ASCII, safe as an SQL
/// identifier and in a Redis key.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000);
    format!("{prefix}_{}_{n}_{clock}", std::process::id())
}

/// A Redis reachable by this test, with a key prefix of its own. Keys under
/// the prefix are deleted on drop.
#[derive(Debug)]
pub struct TestRedis {
    url: String,
    prefix: String,
}

/// A [`TestRedis`], or `None` (after printing `skipped: ...`) when Redis is
/// unreachable and not required.
pub async fn redis() -> Option<TestRedis> {
    let url = require(Service::Redis)?;
    Some(TestRedis {
        url,
        prefix: unique_name("keel_test"),
    })
}

impl TestRedis {
    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The prefix every key of this test should start with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `key` under this test's prefix: `<prefix>:<key>`.
    pub fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    /// A new multiplexed connection.
    pub async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.url.as_str())?
            .get_multiplexed_async_connection()
            .await
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}*", self.prefix);
        cleanup(async move {
            let mut conn = redis::Client::open(url)?
                .get_multiplexed_async_connection()
                .await?;
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await?;
                if !keys.is_empty() {
                    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
                }
                if next == 0 {
                    return Ok::<(), redis::RedisError>(());
                }
                cursor = next;
            }
        });
    }
}

/// A PostgreSQL schema of this test's own, dropped (with everything in it)
/// on drop. [`TestPostgres::url`] selects it through `search_path`.
#[derive(Debug)]
pub struct TestPostgres {
    base_url: String,
    schema: String,
    url: String,
}

/// A fresh [`TestPostgres`] schema, or `None` (after printing `skipped:
/// ...`) when PostgreSQL is unreachable and not required.
///
/// # Panics
///
/// When the server answers but the schema cannot be created.
pub async fn postgres() -> Option<TestPostgres> {
    let base_url = require(Service::Postgres)?;
    let schema = unique_name("keel_test");
    let mut conn = sqlx::PgConnection::connect(&base_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to postgres at {base_url}: {e}"));
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create schema {schema}: {e}"));
    let _ = conn.close().await;
    let separator = if base_url.contains('?') { '&' } else { '?' };
    let url = format!("{base_url}{separator}options=-c%20search_path%3D{schema}");
    Some(TestPostgres {
        base_url,
        schema,
        url,
    })
}

impl TestPostgres {
    /// A URL whose connections use this test's schema.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The server's URL without the schema selection.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let url = self.base_url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        cleanup(async move {
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            sqlx::query(&sql).execute(&mut conn).await?;
            conn.close().await
        });
    }
}

/// A MariaDB/MySQL database of this test's own, dropped on drop.
#[derive(Debug)]
pub struct TestMysql {
    base_url: String,
    database: String,
    url: String,
}

/// A fresh [`TestMysql`] database, or `None` (after printing `skipped:
/// ...`) when MySQL is unreachable and not required.
///
/// # Panics
///
/// When the server answers but the database cannot be created.
pub async fn mysql() -> Option<TestMysql> {
    let base_url = require(Service::Mysql)?;
    let database = unique_name("keel_test");
    let mut conn = sqlx::MySqlConnection::connect(&base_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to mysql at {base_url}: {e}"));
    sqlx::query(&format!("CREATE DATABASE `{database}`"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create database {database}: {e}"));
    let _ = conn.close().await;
    let url = with_database(&base_url, &database);
    Some(TestMysql {
        base_url,
        database,
        url,
    })
}

impl TestMysql {
    /// A URL whose connections use this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The server's URL as configured.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

impl Drop for TestMysql {
    fn drop(&mut self) {
        let url = self.base_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.database);
        cleanup(async move {
            let mut conn = sqlx::MySqlConnection::connect(&url).await?;
            sqlx::query(&sql).execute(&mut conn).await?;
            conn.close().await
        });
    }
}

/// `url` with its path replaced by `/database`, keeping any query.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("mysql", url));
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    match query {
        Some(q) => format!("{scheme}://{authority}/{database}?{q}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

/// Runs an async clean-up to completion from `Drop`, on a thread of its own
/// so it works inside and outside a runtime. Failures are printed, not
/// raised: a leftover schema must not fail a test that passed.
fn cleanup<F, E>(future: F)
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let joined = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(future).map_err(|e| e.to_string())
    })
    .join();
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("test clean-up failed: {error}"),
        Err(_) => eprintln!("test clean-up panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("a"), unique_name("a"));
        assert!(unique_name("keel_test").starts_with("keel_test_"));
    }

    #[test]
    fn with_database_replaces_the_path() {
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306/test", "x"),
            "mysql://root@127.0.0.1:3306/x"
        );
        assert_eq!(
            with_database("mysql://root@h/test?ssl-mode=disabled", "x"),
            "mysql://root@h/x?ssl-mode=disabled"
        );
        assert_eq!(with_database("mysql://h:1", "x"), "mysql://h:1/x");
    }
}
