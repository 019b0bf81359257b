//! Database pools on MariaDB/MySQL: JSON rows, a wrong password and an
//! unknown database told apart, at once.

#![cfg(feature = "mysql")]

use std::time::{Duration, Instant};

use keel_pool::{Backend, DatabaseConnectionPool, PoolConfig, PoolError};
use serde_json::json;
use sqlx::Connection as _;

fn settings() -> PoolConfig {
    PoolConfig {
        max_connections: 3,
        min_connections: Some(1),
        connection_timeout: Duration::from_secs(20),
        ..PoolConfig::default()
    }
}

#[tokio::test]
async fn rows_come_back_as_json_with_parameters_bound() {
    let Some(my) = keel_test_support::mysql().await else {
        return;
    };
    let url = my.url().replacen("mysql://", "mariadb://", 1);
    let pool = DatabaseConnectionPool::connect("my-json", &url, settings())
        .await
        .unwrap();
    assert_eq!(pool.backend(), Backend::MySql);
    pool.execute(
        "CREATE TABLE t (id INT PRIMARY KEY, big BIGINT UNSIGNED, f DOUBLE, ok BOOLEAN, \
         name VARCHAR(20), note TEXT, at DATETIME, day DATE, price DECIMAL(6,2), raw VARBINARY(4), doc JSON)",
        &[],
    )
    .await
    .unwrap();
    let n = pool
        .execute(
            "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, '2024-03-01 10:20:30', '2024-03-01', 1.50, x'00ff', ?)",
            &[
                json!(1),
                json!(18_000_000_000_000_000_000_u64),
                json!(0.25),
                json!(true),
                json!("o'brien"),
                json!(null),
                json!({"k": [1, 2]}),
            ],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let row = pool
        .fetch_one("SELECT * FROM t WHERE name = ?", &[json!("o'brien")])
        .await
        .unwrap();
    assert_eq!(row["id"], json!(1));
    assert_eq!(row["big"], json!(18_000_000_000_000_000_000_u64));
    assert_eq!(row["f"], json!(0.25));
    assert_eq!(row["ok"], json!(true));
    assert_eq!(row["name"], json!("o'brien"));
    assert_eq!(row["note"], json!(null));
    assert_eq!(row["at"], json!("2024-03-01T10:20:30Z"));
    assert_eq!(row["day"], json!("2024-03-01"));
    assert_eq!(row["price"], json!("1.50"), "decimals stay exact");
    assert_eq!(row["raw"], json!("AP8="));
    // MySQL's JSON type comes back as JSON; MariaDB's is text holding it.
    let doc = match &row["doc"] {
        serde_json::Value::String(text) => serde_json::from_str(text).unwrap(),
        other => other.clone(),
    };
    assert_eq!(doc, json!({"k": [1, 2]}));
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_database_fail_at_once_and_differently() {
    let Some(my) = keel_test_support::mysql().await else {
        return;
    };
    let user = keel_test_support::unique_name("keel_u");
    let mut admin = sqlx::MySqlConnection::connect(my.base_url()).await.unwrap();
    sqlx::query(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'right-pw'"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(&format!(
        "GRANT ALL ON `{}`.* TO '{user}'@'%'",
        my.database()
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let host = my
        .base_url()
        .split_once('@')
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest).to_owned())
        .unwrap();

    let wrong = format!("mysql://{user}:wrong-pw@{host}/{}", my.database());
    let started = Instant::now();
    let err = DatabaseConnectionPool::connect("my-pw", &wrong, settings())
        .await
        .unwrap_err();
    let wrong_took = started.elapsed();
    assert!(
        matches!(&err, PoolError::Authentication { user: u, .. } if *u == user),
        "{err:?}"
    );
    assert!(!err.to_string().contains("wrong-pw"));

    let started = Instant::now();
    let err = DatabaseConnectionPool::connect(
        "my-db",
        &format!("mysql://root@{host}/keel_no_such_database"),
        settings(),
    )
    .await
    .unwrap_err();
    let unknown_took = started.elapsed();
    assert!(
        matches!(&err, PoolError::UnknownDatabase { database, .. } if database == "keel_no_such_database"),
        "{err:?}"
    );
    for took in [wrong_took, unknown_took] {
        assert!(took < Duration::from_secs(5), "took {took:?} of 20 s");
    }

    let right = format!("mysql://{user}:right-pw@{host}/{}", my.database());
    let pool = DatabaseConnectionPool::connect("my-right", &right, settings())
        .await
        .unwrap();
    assert_eq!(
        pool.fetch_one("SELECT 1 AS one", &[]).await.unwrap()["one"],
        1
    );
    pool.close().await;
    sqlx::query(&format!("DROP USER '{user}'@'%'"))
        .execute(&mut admin)
        .await
        .unwrap();
}
