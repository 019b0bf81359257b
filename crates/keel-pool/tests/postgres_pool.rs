//! Database pools on the shared PostgreSQL: JSON rows, the minimum kept
//! open through killed sessions, idle connections closed, unknown
//! databases refused at once.

#![cfg(feature = "postgres")]

mod support;

use std::time::{Duration, Instant};

use keel_pool::{ConnectionStatus, DatabaseConnectionPool, PoolConfig, PoolError};
use serde_json::json;
use sqlx::Connection as _;

/// Sessions of the pool `name` on the server, seen from a connection of
/// the test's own.
async fn sessions(base_url: &str, name: &str) -> i64 {
    session_pids(base_url, name).await.len() as i64
}

/// Backend process ids of the pool `name`'s sessions. A terminated backend
/// stays listed until its process has exited, so a count alone cannot tell
/// a restored minimum from sessions still dying.
async fn session_pids(base_url: &str, name: &str) -> Vec<i32> {
    let mut conn = sqlx::PgConnection::connect(base_url).await.unwrap();
    let pids: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
            .bind(format!("keel-pool {name}"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let _ = conn.close().await;
    pids
}

async fn kill_sessions(base_url: &str, name: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(base_url).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(format!("keel-pool {name}"))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
    killed
}

#[tokio::test]
async fn rows_come_back_as_json_with_parameters_bound() {
    let Some(pg) = keel_test_support::postgres().await else {
        return;
    };
    let config = PoolConfig {
        max_connections: 2,
        min_connections: Some(1),
        ..PoolConfig::default()
    };
    let pool = DatabaseConnectionPool::connect("pg-json", pg.url(), config)
        .await
        .unwrap();
    pool.execute(
        "CREATE TABLE t (id int4 PRIMARY KEY, big int8, small int2, f float8, r real, ok bool, \
         name text, v varchar(9), at timestamptz, naive timestamp, day date, tod time, \
         doc jsonb, u uuid, raw bytea, price numeric)",
        &[],
    )
    .await
    .unwrap();
    pool.execute(
        "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
         '2024-03-01 10:20:30+02', '2024-03-01 10:20:30', '2024-03-01', '10:20:30.5', \
         $9, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff', 1.50)",
        &[
            json!(1),
            json!(9_000_000_000_i64),
            json!(7),
            json!(0.25),
            json!(1.5),
            json!(true),
            json!("o'brien"),
            json!(null),
            json!({"k": [1, 2]}),
        ],
    )
    .await
    .unwrap();
    let row = pool
        .fetch_one(
            "SELECT id, big, small, f, r, ok, name, v, at, naive, day, tod, doc, u, raw \
             FROM t WHERE name = $1",
            &[json!("o'brien")],
        )
        .await
        .unwrap();
    assert_eq!(row["id"], json!(1));
    assert_eq!(row["big"], json!(9_000_000_000_i64));
    assert_eq!(row["small"], json!(7));
    assert_eq!(row["f"], json!(0.25));
    assert_eq!(row["r"], json!(1.5));
    assert_eq!(row["ok"], json!(true));
    assert_eq!(row["name"], json!("o'brien"));
    assert_eq!(
        row["v"],
        json!(null),
        "an untyped null fits a varchar column"
    );
    assert_eq!(row["at"], json!("2024-03-01T08:20:30Z"));
    assert_eq!(row["naive"], json!("2024-03-01T10:20:30Z"));
    assert_eq!(row["day"], json!("2024-03-01"));
    assert_eq!(row["tod"], json!("10:20:30.500000"));
    assert_eq!(row["doc"], json!({"k": [1, 2]}));
    assert_eq!(row["u"], json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
    assert_eq!(row["raw"], json!("AP8="));

    let err = pool
        .fetch_one("SELECT price FROM t", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PoolError::UnsupportedColumn { column, type_name, .. }
            if column == "price" && type_name == "NUMERIC"),
        "{err}"
    );
    let row = pool
        .fetch_one("SELECT price::text AS price FROM t", &[])
        .await
        .unwrap();
    assert_eq!(row["price"], json!("1.50"), "a cast to text gets it out");
}

#[tokio::test]
async fn min_connections_open_at_start_and_come_back_after_the_server_kills_them() {
    let Some(pg) = keel_test_support::postgres().await else {
        return;
    };
    let name = keel_test_support::unique_name("pg_min");
    let config = PoolConfig {
        max_connections: 5,
        min_connections: Some(3),
        health_check_interval: Duration::from_millis(200),
        ..PoolConfig::default()
    };
    let pool = DatabaseConnectionPool::connect(name.clone(), pg.url(), config)
        .await
        .unwrap();
    assert_eq!(pool.stats().total, Some(3), "opened at start");
    let opened = support::eventually(Duration::from_secs(5), async || {
        sessions(pg.base_url(), &name).await == 3
    })
    .await;
    assert!(opened, "{} sessions", sessions(pg.base_url(), &name).await);

    let killed_pids = session_pids(pg.base_url(), &name).await;
    assert_eq!(kill_sessions(pg.base_url(), &name).await, 3);
    let restored = support::eventually(Duration::from_secs(10), async || {
        let pids = session_pids(pg.base_url(), &name).await;
        pids.len() == 3
            && pids.iter().all(|pid| !killed_pids.contains(pid))
            && pool.stats().total == Some(3)
    })
    .await;
    assert!(
        restored,
        "the minimum is restored with new sessions: {:?} (killed {killed_pids:?}), {:?}",
        session_pids(pg.base_url(), &name).await,
        pool.stats()
    );
    // Every pooled connection works (none of the dead ones was kept).
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = pool.acquire().await.unwrap();
        conn.fetch_one("SELECT 1 AS one", &[]).await.unwrap();
        held.push(conn);
    }
    assert_eq!(pool.stats().errors, 0, "no caller saw the killed sessions");
    drop(held);
    let healthy = support::eventually(Duration::from_secs(5), async || {
        pool.health() == ConnectionStatus::Healthy
    })
    .await;
    assert!(healthy, "health recovers: {:?}", pool.health());
    pool.close().await;
    // The server notices each closed socket on its own time.
    let closed = support::eventually(Duration::from_secs(5), async || {
        sessions(pg.base_url(), &name).await == 0
    })
    .await;
    assert!(
        closed,
        "close closes them all: {} sessions left",
        sessions(pg.base_url(), &name).await
    );
}

#[tokio::test]
async fn idle_connections_above_the_minimum_close_after_idle_timeout() {
    let Some(pg) = keel_test_support::postgres().await else {
        return;
    };
    let name = keel_test_support::unique_name("pg_idle");
    let config = PoolConfig {
        max_connections: 4,
        min_connections: Some(1),
        idle_timeout: Duration::from_millis(300),
        health_check_interval: Duration::from_millis(100),
        ..PoolConfig::default()
    };
    let pool = DatabaseConnectionPool::connect(name.clone(), pg.url(), config)
        .await
        .unwrap();
    let held = [
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
    ];
    assert_eq!(sessions(pg.base_url(), &name).await, 4);
    drop(held);
    let shrunk = support::eventually(Duration::from_secs(10), async || {
        pool.stats().total == Some(1) && sessions(pg.base_url(), &name).await == 1
    })
    .await;
    assert!(shrunk, "back to the minimum: {:?}", pool.stats());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(pool.stats().total, Some(1), "the minimum stays open");
    assert_eq!(sessions(pg.base_url(), &name).await, 1);
}

#[tokio::test]
async fn an_unknown_database_fails_at_once_and_says_so() {
    let Some(pg) = keel_test_support::postgres().await else {
        return;
    };
    let base = pg.base_url();
    let (server, _) = base.rsplit_once('/').unwrap();
    let url = format!("{server}/keel_no_such_database");
    let started = Instant::now();
    let err = DatabaseConnectionPool::connect("nodb", &url, PoolConfig::default())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not retried until connection_timeout (30 s): {:?}",
        started.elapsed()
    );
    assert!(
        matches!(&err, PoolError::UnknownDatabase { database, .. } if database == "keel_no_such_database"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "pool nodb: database \"keel_no_such_database\" does not exist"
    );
    assert!(!err.is_transient());
}
