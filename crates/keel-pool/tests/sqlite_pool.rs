//! Database pools on SQLite files and memory: JSON rows, bound parameters,
//! exhaustion, leak reports, and the manager's names, figures and health.

mod support;

use std::time::{Duration, Instant};

use keel_pool::{
    Backend, ConnectionPoolManager, ConnectionStatus, DatabaseConnectionPool, PoolConfig,
    PoolError, PoolsConfig, TimeoutKind,
};
use serde_json::json;

fn settings(max: u32, min: u32) -> PoolConfig {
    PoolConfig {
        max_connections: max,
        min_connections: Some(min),
        connection_timeout: Duration::from_millis(300),
        ..PoolConfig::default()
    }
}

#[tokio::test]
async fn a_sqlite_file_is_created_and_rows_come_back_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let url = path.display().to_string();
    let pool = DatabaseConnectionPool::connect("files", &url, settings(3, 1))
        .await
        .unwrap();
    assert_eq!(pool.backend(), Backend::Sqlite);
    assert!(path.exists(), "the database file is created");

    pool.execute(
        "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, f BOOLEAN, d DATETIME, n TEXT)",
        &[],
    )
    .await
    .unwrap();
    let inserted = pool
        .execute(
            "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)",
            &[
                json!(-7),
                json!(2.5),
                json!("héllo"),
                json!([1, 2]),
                json!(true),
                json!("2024-03-01 10:20:30"),
                json!(null),
            ],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    pool.execute("UPDATE t SET b = x'00ff'", &[]).await.unwrap();
    let row = pool.fetch_one("SELECT * FROM t", &[]).await.unwrap();
    assert_eq!(row["i"], json!(-7));
    assert_eq!(row["r"], json!(2.5));
    assert_eq!(row["s"], json!("héllo"));
    assert_eq!(row["b"], json!("AP8="), "bytes are base64");
    assert_eq!(row["f"], json!(true));
    assert_eq!(
        row["d"],
        json!("2024-03-01T10:20:30Z"),
        "a zoneless time is UTC"
    );
    assert_eq!(row["n"], json!(null));

    // Another pool on the same file sees the data.
    let again =
        DatabaseConnectionPool::connect("again", &format!("sqlite://{url}"), settings(1, 1))
            .await
            .unwrap();
    let rows = again.fetch_all("SELECT i FROM t", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn parameters_are_bound_never_spliced_into_the_sql() {
    let pool = DatabaseConnectionPool::connect("bound", "sqlite::memory:", settings(2, 1))
        .await
        .unwrap();
    pool.execute("CREATE TABLE users (name TEXT)", &[])
        .await
        .unwrap();
    let hostile = "x'); DROP TABLE users; --";
    pool.execute("INSERT INTO users (name) VALUES (?)", &[json!(hostile)])
        .await
        .unwrap();
    let row = pool
        .fetch_one("SELECT name FROM users WHERE name = ?", &[json!(hostile)])
        .await
        .unwrap();
    assert_eq!(row["name"], json!(hostile));
    let missing = pool
        .fetch_optional("SELECT name FROM users WHERE name = ?", &[json!("nobody")])
        .await
        .unwrap();
    assert!(missing.is_none());
    let err = pool
        .fetch_one("SELECT name FROM users WHERE name = ?", &[json!("nobody")])
        .await
        .unwrap_err();
    assert!(matches!(err, PoolError::NoRow { .. }), "{err}");
    // The in-memory database is shared by the pool's connections.
    let mut a = pool.acquire().await.unwrap();
    let mut b = pool.acquire().await.unwrap();
    assert_eq!(
        a.fetch_all("SELECT * FROM users", &[]).await.unwrap().len(),
        1
    );
    assert_eq!(
        b.fetch_all("SELECT * FROM users", &[]).await.unwrap().len(),
        1
    );
    let err = a.execute("SELEC nonsense", &[]).await.unwrap_err();
    assert!(matches!(err, PoolError::Query { .. }), "{err}");
    assert!(!err.is_transient(), "a syntax error is not worth a retry");
}

#[tokio::test]
async fn an_exhausted_pool_times_out_a_waiter_after_connection_timeout() {
    let pool = DatabaseConnectionPool::connect("tight", "sqlite::memory:", settings(2, 2))
        .await
        .unwrap();
    let held = [pool.acquire().await.unwrap(), pool.acquire().await.unwrap()];
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            (pool.acquire().await, started.elapsed())
        })
    };
    let waiting =
        support::eventually(Duration::from_secs(5), async || pool.stats().waiters == 1).await;
    assert!(waiting, "the third caller waits");
    let (result, waited) = waiter.await.unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Timeout {
                kind: TimeoutKind::Exhausted { max_connections: 2 },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_timeout() && err.is_transient());
    assert!(waited >= Duration::from_millis(300), "waited {waited:?}");
    assert!(
        err.to_string().contains("all 2 connections are in use"),
        "{err}"
    );
    let stats = pool.stats();
    assert_eq!((stats.in_use, stats.waiters, stats.timed_out), (2, 0, 1));
    assert_eq!(stats.acquired, 2);
    assert_eq!(pool.health(), ConnectionStatus::Degraded);
    drop(held);
    assert!(
        pool.acquire().await.is_ok(),
        "a returned connection serves again"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_held_past_the_leak_threshold_is_reported_once_with_its_origin() {
    let captured = support::Captured::default();
    let _guard = captured.install();
    let config = PoolConfig {
        leak_threshold: Some(Duration::from_millis(100)),
        ..settings(2, 1)
    };
    let pool = DatabaseConnectionPool::connect("leaky", "sqlite::memory:", config)
        .await
        .unwrap();
    let line = line!() + 1;
    let held = pool.acquire().await.unwrap();
    let reported =
        support::eventually(Duration::from_secs(5), async || pool.stats().leaked == 1).await;
    assert!(reported, "the held connection is reported");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pool.stats().leaked, 1, "reported once");
    let text = captured.text();
    assert!(text.contains("possible leak"), "{text}");
    assert!(
        text.contains(&format!("sqlite_pool.rs:{line}")),
        "the log names where it was acquired (line {line}): {text}"
    );
    drop(held);
    let quick = pool.acquire().await.unwrap();
    drop(quick);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pool.stats().leaked,
        1,
        "returned connections are not reported"
    );
}

#[tokio::test]
async fn the_manager_serves_named_pools_their_figures_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keel.db").display().to_string();
    let config: PoolsConfig = toml::from_str(&format!(
        r#"
        [db.default]
        url = "sqlite::memory:"
        max_connections = 2
        min_connections = 1
        [db.files]
        url = "{file}"
        max_connections = 3
        min_connections = 2
        [http.default]
        base_urls = ["http://127.0.0.1:9"]
        "#
    ))
    .unwrap();
    let pools = ConnectionPoolManager::from_config(&config).await.unwrap();
    let mut conn = pools.get_db_connection().await.unwrap();
    conn.execute("CREATE TABLE t (x INTEGER)", &[])
        .await
        .unwrap();
    assert_eq!(pools.get_http_connection().unwrap().name(), "default");
    let stats = pools.stats();
    assert_eq!(
        stats.keys().collect::<Vec<_>>(),
        ["db.default", "db.files", "http.default"]
    );
    let files = &stats["db.files"];
    assert_eq!((files.total, files.in_use), (Some(2), 0));
    // sqlx puts a returned connection back from a task of its own.
    let idle = support::eventually(Duration::from_secs(5), async || {
        pools.stats()["db.files"].idle == Some(2)
    })
    .await;
    assert!(idle, "both warm connections are idle");
    assert_eq!(stats["db.default"].in_use, 1);
    assert_eq!(stats["db.default"].acquired, 1);
    assert_eq!(stats["http.default"].total, None);
    assert!(
        pools
            .health()
            .values()
            .all(|s| *s == ConnectionStatus::Healthy)
    );
    let err = pools.db("reports").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no database pool named \"reports\" (configured: default, files)"
    );
    drop(conn);

    pools.close().await;
    assert_eq!(pools.overall_health(), ConnectionStatus::Closed);
    let err = pools.get_db_connection().await.unwrap_err();
    assert!(matches!(err, PoolError::Closed { .. }), "{err}");
    let err = pools.http("default").unwrap().get("/").await.unwrap_err();
    assert!(matches!(err, PoolError::Closed { .. }), "{err}");
}

#[tokio::test]
async fn bad_settings_and_urls_are_refused_naming_the_field() {
    let config: PoolsConfig = toml::from_str(
        r#"
        [db.main]
        url = "sqlite::memory:"
        max_connections = 2
        min_connections = 3
        "#,
    )
    .unwrap();
    let err = ConnectionPoolManager::from_config(&config)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `pools.db.main.min_connections`: 3 must not exceed max_connections 2"
    );
    let err = DatabaseConnectionPool::connect("x", "oracle://scott:tiger@db/x", settings(1, 1))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unknown scheme \"oracle\""), "{text}");
    assert!(
        !text.contains("tiger"),
        "the password is not printed: {text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("no/such/dir/x.db").display().to_string();
    let started = Instant::now();
    let err = DatabaseConnectionPool::connect("x", &missing_dir, PoolConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PoolError::Connect { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no retry of a bad path"
    );
}

#[tokio::test]
async fn dropping_every_handle_stops_the_background_task() {
    let pool = DatabaseConnectionPool::connect(
        "dropped",
        "sqlite::memory:",
        PoolConfig {
            health_check_interval: Duration::from_millis(20),
            ..settings(2, 1)
        },
    )
    .await
    .unwrap();
    let weak_probe = pool.clone();
    drop(pool);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Still alive through the clone: the task kept checking.
    assert_eq!(weak_probe.health(), ConnectionStatus::Healthy);
    let alive = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    drop(weak_probe);
    let stopped = support::eventually(Duration::from_secs(5), async || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            < alive
    })
    .await;
    assert!(stopped, "the health task ends with the pool");
}
