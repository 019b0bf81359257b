//! The embedded demo: with no config file, `keel` keeps a SQLite file
//! `keel.db` with a `stocks` table and serves it, cached, at `/api/stocks`
//! and `/api/stocks/{symbol}`.

use std::time::Duration;

use anyhow::Context as _;
use keel::pool::{DatabaseConnectionPool, DbPoolConfig, PoolConfig};
use keel::{KeelConfig, RouteConfig, Rows};
use serde_json::Value;

/// The demo's database pool.
pub(crate) const POOL: &str = "demo";
/// Rows the demo table holds.
const ROWS: usize = 300;

/// Adds the demo pool and routes to `config`.
pub(crate) fn apply(config: &mut KeelConfig) {
    config.pools.db.insert(
        POOL.into(),
        DbPoolConfig::new("sqlite://keel.db?mode=rwc", PoolConfig::default()),
    );
    let mut all = RouteConfig::default();
    all.path = "/api/stocks".into();
    all.pool = Some(POOL.into());
    all.sql = Some("SELECT symbol, name, price, change, volume FROM stocks ORDER BY symbol".into());
    all.rows = Some(Rows::All);
    all.ttl = Some(Duration::from_secs(5));
    let mut one = RouteConfig::default();
    one.path = "/api/stocks/{symbol}".into();
    one.pool = Some(POOL.into());
    one.sql = Some(
        "SELECT symbol, name, price, change, volume, updated_at FROM stocks WHERE symbol = ?"
            .into(),
    );
    one.ttl = Some(Duration::from_secs(30));
    one.negative_ttl = Some(Duration::from_secs(5));
    config.routes.extend([all, one]);
}

/// Creates and fills the demo table unless it holds rows already.
pub(crate) async fn seed(pool: &DatabaseConnectionPool) -> anyhow::Result<()> {
    pool.execute(
        "CREATE TABLE IF NOT EXISTS stocks (
            symbol TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            price REAL NOT NULL,
            change REAL NOT NULL,
            volume INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        )",
        &[],
    )
    .await
    .context("cannot create the demo table")?;
    let count = pool
        .fetch_one("SELECT COUNT(*) AS n FROM stocks", &[])
        .await
        .context("cannot count the demo rows")?;
    if count.get("n").and_then(Value::as_i64).unwrap_or(0) > 0 {
        return Ok(());
    }
    let rows: Vec<[Value; 6]> = (0..ROWS).map(row).collect();
    for chunk in rows.chunks(50) {
        let placeholders = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO stocks (symbol, name, price, change, volume, updated_at) VALUES {placeholders}"
        );
        let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
        pool.execute(&sql, &params)
            .await
            .context("cannot fill the demo table")?;
    }
    tracing::info!(rows = ROWS, "demo table `stocks` created in keel.db");
    Ok(())
}

/// Row `i`: a made-up ticker with a deterministic price.
fn row(i: usize) -> [Value; 6] {
    const LETTERS: &[u8; 26] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut n = i * 7919 + 17;
    let mut symbol = String::new();
    for _ in 0..4 {
        symbol.push(char::from(LETTERS[n % 26]));
        n /= 26;
    }
    symbol.push_str(&format!("{:02}", i % 100));
    let price = 10.0 + ((i * 37) % 990) as f64 + ((i * 13) % 100) as f64 / 100.0;
    let change = (((i * 31) % 200) as f64 - 100.0) / 20.0;
    [
        Value::from(symbol.clone()),
        Value::from(format!("{symbol} Holdings")),
        Value::from(price),
        Value::from(change),
        Value::from((i as u64 * 104_729) % 5_000_000),
        Value::from("2026-01-02T15:30:00Z"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_symbols_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..ROWS {
            let symbol = row(i)[0].as_str().unwrap_or_default().to_owned();
            assert!(seen.insert(symbol), "row {i}");
        }
    }
}
