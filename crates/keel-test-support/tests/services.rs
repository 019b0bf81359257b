//! One real round trip per service, and the isolation each helper promises.

use sqlx::{Connection as _, Row as _};

#[tokio::test]
async fn redis_round_trip_under_a_private_prefix() {
    let Some(a) = keel_test_support::redis().await else {
        return;
    };
    let Some(b) = keel_test_support::redis().await else {
        return;
    };
    assert_ne!(a.prefix(), b.prefix());
    let mut conn = a.connection().await.expect("connect to redis");
    let key = a.key("greeting");
    assert!(key.starts_with(a.prefix()));
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("hello")
        .query_async(&mut conn)
        .await
        .unwrap();
    let got: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("hello"));
    let other: Option<String> = redis::cmd("GET")
        .arg(b.key("greeting"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(other, None);

    drop(a);
    let after: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(after, None, "dropping TestRedis deletes its keys");
}

#[tokio::test]
async fn postgres_round_trip_in_a_private_schema() {
    let Some(a) = keel_test_support::postgres().await else {
        return;
    };
    let Some(b) = keel_test_support::postgres().await else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(a.url()).await.unwrap();
    sqlx::query("CREATE TABLE items (id INT PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO items VALUES ($1, $2)")
        .bind(7)
        .bind("seven")
        .execute(&mut conn)
        .await
        .unwrap();
    let row = sqlx::query("SELECT name, current_schema() AS s FROM items WHERE id = $1")
        .bind(7)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("name"), "seven");
    assert_eq!(row.get::<String, _>("s"), a.schema());

    let mut other = sqlx::PgConnection::connect(b.url()).await.unwrap();
    let err = sqlx::query("SELECT 1 FROM items")
        .execute(&mut other)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("items"), "{err}");

    let schema = a.schema().to_owned();
    conn.close().await.unwrap();
    drop(a);
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
    )
    .bind(&schema)
    .fetch_one(&mut other)
    .await
    .unwrap();
    assert_eq!(left, 0, "dropping TestPostgres drops its schema");
}

#[tokio::test]
async fn mysql_round_trip_in_a_private_database() {
    let Some(a) = keel_test_support::mysql().await else {
        return;
    };
    let Some(b) = keel_test_support::mysql().await else {
        return;
    };
    let mut conn = sqlx::MySqlConnection::connect(a.url()).await.unwrap();
    sqlx::query("CREATE TABLE items (id INT PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO items VALUES (?, ?)")
        .bind(7)
        .bind("seven")
        .execute(&mut conn)
        .await
        .unwrap();
    let row = sqlx::query("SELECT name, DATABASE() AS d FROM items WHERE id = ?")
        .bind(7)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("name"), "seven");
    assert_eq!(row.get::<String, _>("d"), a.database());

    let mut other = sqlx::MySqlConnection::connect(b.url()).await.unwrap();
    assert!(
        sqlx::query("SELECT 1 FROM items")
            .execute(&mut other)
            .await
            .is_err()
    );

    let database = a.database().to_owned();
    conn.close().await.unwrap();
    drop(a);
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?",
    )
    .bind(&database)
    .fetch_one(&mut other)
    .await
    .unwrap();
    assert_eq!(left, 0, "dropping TestMysql drops its database");
}

#[tokio::test]
async fn a_private_redis_server_stops_and_comes_back_on_its_port() {
    let Some(mut server) = keel_test_support::OwnRedis::start() else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();

    server.stop();
    assert!(client.get_multiplexed_async_connection().await.is_err());

    server.restart();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let after: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(after, None, "a restarted private server starts empty");
}
