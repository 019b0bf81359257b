//! Database and HTTP pools under one `ConnectionPoolManager`: the pools
//! named `default` answer `get_db_connection()` and `get_http_connection()`.
//!
//! ```text
//! cargo run -p keel --example pools
//! ```
//!
//! The database is SQLite in memory; the HTTP pool talks to a small server
//! this example starts on a free loopback port.

use keel::KeelConfig;
use keel::pool::ConnectionPoolManager;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An upstream to call: GET /data answers a JSON object.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/data",
        axum::routing::get(|| async { axum::Json(json!({"price": 101.5})) }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let config = KeelConfig::from_toml(&format!(
        r#"
        [pools.db.default]
        url = "sqlite::memory:"
        max_connections = 4
        min_connections = 1
        connection_timeout = "5s"

        [pools.http.default]
        base_urls = ["http://{upstream}"]
        max_connections = 16
        max_retries = 3
        "#
    ))?;
    let pools = ConnectionPoolManager::from_config(&config.pools).await?;

    // Parameters are always bound, never spliced into the SQL.
    let db = pools.db("default")?;
    db.execute(
        "CREATE TABLE stocks (symbol TEXT PRIMARY KEY, price REAL)",
        &[],
    )
    .await?;
    for (symbol, price) in [("AAPL", 189.9), ("MSFT", 411.2)] {
        db.execute(
            "INSERT INTO stocks (symbol, price) VALUES (?, ?)",
            &[json!(symbol), json!(price)],
        )
        .await?;
    }
    let mut conn = pools.get_db_connection().await?;
    let rows = conn
        .fetch_all("SELECT * FROM stocks ORDER BY symbol", &[])
        .await?;
    drop(conn);
    println!("stocks: {}", serde_json::to_string(&rows)?);
    assert_eq!(rows.len(), 2);

    let response = pools.get_http_connection()?.get("/data").await?;
    println!("GET /data -> {} {}", response.status, response.text());
    assert!(response.status.is_success());

    for (name, stats) in pools.stats() {
        println!(
            "pool {name:<12} in use {} acquired {} errors {} wait p99 {:?}",
            stats.in_use, stats.acquired, stats.errors, stats.wait_p99
        );
    }
    for (name, status) in pools.health() {
        println!("pool {name:<12} {status:?}");
    }
    pools.close().await;
    server.abort();
    Ok(())
}
