//! `pool`: connection pools under load, Keel against the pools people use.
//!
//! Cases:
//! - `pg-select1-c1`, `-c8`, `-c64`: that many tasks each loop acquire a
//!   connection, run `SELECT 1` (a prepared statement, cached per
//!   connection on every side) and release it, on one PostgreSQL pool of
//!   16 connections opened before timing. Impls: `keel`
//!   (`DatabaseConnectionPool`), `sqlx` (a raw `PgPool` with the same
//!   settings: sizes, timeouts, and no ping before each acquire, since
//!   Keel pings only connections idle for over 500 ms), and
//!   `deadpool-postgres` (its `Config` with `RecyclingMethod::Fast`, as its
//!   docs recommend for speed, and `prepare_cached`). `ops_per_s`; `p99_us`
//!   is the 99th percentile of the acquire call alone.
//! - `http-get-c1`, `-c8`, `-c64`: that many tasks each loop GET a 2-byte
//!   body from an axum server on loopback in the same process. Impls:
//!   `keel` (`HttpConnectionPool`, 64 connections per host) and `reqwest`
//!   (a `Client` with the same idle pool and timeouts). `ops_per_s`;
//!   `p99_us` is the whole request (reqwest has no separate acquire step).
//!
//! Every case runs each implementation for the same time per round, the
//! order rotating between rounds; the median round is reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keel_pool::{DatabaseConnectionPool, HttpConnectionPool, HttpPoolConfig, PoolConfig};
use sqlx::Connection as _;

use crate::Ctx;
use crate::workload::median;

const POOL: u32 = 16;
const CONCURRENCY: [usize; 3] = [1, 8, 64];

pub(crate) fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(ctx))
}

fn postgres_url() -> String {
    std::env::var("KEEL_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("KEEL_TEST_POSTGRES_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

struct Plan {
    rounds: usize,
    per_round: Duration,
}

async fn run_async(ctx: &mut Ctx) -> anyhow::Result<()> {
    let plan = if ctx.quick {
        Plan {
            rounds: 3,
            per_round: Duration::from_millis(600),
        }
    } else {
        Plan {
            rounds: 5,
            per_round: Duration::from_secs(3),
        }
    };
    postgres(ctx, &plan).await?;
    http(ctx, &plan).await
}

/// One pool under test: a name and an operation that takes its own time.
#[derive(Clone)]
enum Db {
    Keel(DatabaseConnectionPool),
    Sqlx(sqlx::PgPool),
    Deadpool(deadpool_postgres::Pool),
}

impl Db {
    fn name(&self) -> &'static str {
        match self {
            Db::Keel(_) => "keel",
            Db::Sqlx(_) => "sqlx",
            Db::Deadpool(_) => "deadpool-postgres",
        }
    }

    /// Acquire, `SELECT 1`, release; the acquire's duration.
    async fn op(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        match self {
            Db::Keel(pool) => {
                let mut conn = pool.acquire().await?;
                let waited = started.elapsed();
                let conn = conn.as_postgres().context("not a postgres pool")?;
                let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(conn).await?;
                std::hint::black_box(one);
                Ok(waited)
            }
            Db::Sqlx(pool) => {
                let mut conn = pool.acquire().await?;
                let waited = started.elapsed();
                let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await?;
                std::hint::black_box(one);
                Ok(waited)
            }
            Db::Deadpool(pool) => {
                let client = pool.get().await?;
                let waited = started.elapsed();
                let statement = client.prepare_cached("SELECT 1").await?;
                let row = client.query_one(&statement, &[]).await?;
                std::hint::black_box(row.get::<_, i32>(0));
                Ok(waited)
            }
        }
    }
}

async fn postgres(ctx: &mut Ctx, plan: &Plan) -> anyhow::Result<()> {
    let url = postgres_url();
    let settings = PoolConfig {
        max_connections: POOL,
        min_connections: Some(POOL),
        connection_timeout: Duration::from_secs(30),
        ..PoolConfig::default()
    };
    let keel = DatabaseConnectionPool::connect("bench", &url, settings.clone())
        .await
        .with_context(|| {
            format!("the pool suite needs PostgreSQL at {url} (set KEEL_BENCH_POSTGRES_URL)")
        })?;
    let raw = sqlx::postgres::PgPoolOptions::new()
        .max_connections(POOL)
        .min_connections(POOL)
        .acquire_timeout(settings.connection_timeout)
        .idle_timeout(settings.idle_timeout)
        .max_lifetime(settings.max_lifetime)
        .test_before_acquire(false)
        .connect(&url)
        .await?;
    let mut config = deadpool_postgres::Config::new();
    config.url = Some(url.clone());
    config.manager = Some(deadpool_postgres::ManagerConfig {
        recycling_method: deadpool_postgres::RecyclingMethod::Fast,
    });
    let mut pool_config = deadpool_postgres::PoolConfig::new(POOL as usize);
    pool_config.timeouts.wait = Some(settings.connection_timeout);
    config.pool = Some(pool_config);
    let deadpool = config.create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )?;
    let mut impls = [Db::Keel(keel), Db::Sqlx(raw), Db::Deadpool(deadpool)];
    // Open every pool's connections (deadpool has no minimum) and fill
    // their statement caches before timing.
    for db in &impls {
        drive(db, 64, Duration::from_millis(300)).await?;
    }
    for tasks in CONCURRENCY {
        let case = format!("pg-select1-c{tasks}");
        let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![Default::default(); impls.len()];
        for round in 0..plan.rounds {
            for k in 0..impls.len() {
                let i = (k + round) % impls.len();
                let (rate, p99) = drive(&impls[i], tasks, plan.per_round).await?;
                results[i].0.push(rate);
                results[i].1.push(p99);
            }
        }
        for (db, (rates, p99s)) in impls.iter().zip(&mut results) {
            ctx.report
                .record(&case, db.name(), "ops_per_s", median(rates));
            ctx.report.record(&case, db.name(), "p99_us", median(p99s));
        }
        let get = |name: &str| ctx.report.get(&case, name, "ops_per_s").unwrap_or(0.0);
        ctx.report.note(&format!(
            "{case}: keel / sqlx = {:.2}, deadpool-postgres / sqlx = {:.2}",
            get("keel") / get("sqlx"),
            get("deadpool-postgres") / get("sqlx")
        ));
    }
    let driver = drivers(&url, plan).await?;
    ctx.report.note(&format!(
        "driver alone (one connection, no pool, one task): tokio-postgres / sqlx = {driver:.2}"
    ));
    if let Db::Keel(pool) = &mut impls[0] {
        pool.close().await;
    }
    Ok(())
}

/// `tasks` tasks run `db.op()` for `time`; (ops per second, p99 of the
/// acquire in µs).
async fn drive(db: &Db, tasks: usize, time: Duration) -> anyhow::Result<(f64, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (db, stop) = (db.clone(), Arc::clone(&stop));
        handles.push(tokio::spawn(async move {
            let mut waits = Vec::with_capacity(4096);
            while !stop.load(Ordering::Relaxed) {
                waits.push(db.op().await?);
            }
            Ok::<_, anyhow::Error>(waits)
        }));
    }
    tokio::time::sleep(time).await;
    stop.store(true, Ordering::Relaxed);
    let mut waits = Vec::new();
    for handle in handles {
        waits.extend(handle.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok((waits.len() as f64 / elapsed, p99_us(&mut waits)))
}

fn p99_us(samples: &mut [Duration]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let rank = ((samples.len() as f64) * 0.99).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1e6
}

/// One connection of each driver, `SELECT 1` prepared, one task:
/// tokio-postgres's rate over sqlx's (median of rounds), to tell how much
/// of a pool's gap is its driver.
async fn drivers(url: &str, plan: &Plan) -> anyhow::Result<f64> {
    let mut sqlx_conn = sqlx::PgConnection::connect(url).await?;
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver_task = tokio::spawn(connection);
    let statement = client.prepare("SELECT 1").await?;
    let mut ratios = Vec::new();
    for _ in 0..plan.rounds {
        let time = plan.per_round / 2;
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < time {
            let one: i32 = sqlx::query_scalar("SELECT 1")
                .fetch_one(&mut sqlx_conn)
                .await?;
            std::hint::black_box(one);
            n += 1;
        }
        let sqlx_rate = n as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < time {
            let row = client.query_one(&statement, &[]).await?;
            std::hint::black_box(row.get::<_, i32>(0));
            n += 1;
        }
        ratios.push(n as f64 / started.elapsed().as_secs_f64() / sqlx_rate);
    }
    drop(client);
    let _ = driver_task.await;
    let _ = sqlx_conn.close().await;
    Ok(median(&mut ratios))
}

/// One HTTP client under test.
#[derive(Clone)]
enum Http {
    Keel(HttpConnectionPool),
    Reqwest(reqwest::Client, Arc<str>),
}

impl Http {
    fn name(&self) -> &'static str {
        match self {
            Http::Keel(_) => "keel",
            Http::Reqwest(..) => "reqwest",
        }
    }

    /// One GET read whole; its duration.
    async fn op(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        match self {
            Http::Keel(pool) => {
                let response = pool.get("/").await?;
                anyhow::ensure!(response.status.is_success(), "status {}", response.status);
                std::hint::black_box(response.body);
            }
            Http::Reqwest(client, url) => {
                let response = client.get(&**url).send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "status {}",
                    response.status()
                );
                std::hint::black_box(response.bytes().await?);
            }
        }
        Ok(started.elapsed())
    }
}

async fn http(ctx: &mut Ctx, plan: &Plan) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");

    let mut config = HttpPoolConfig::new([base.clone()]);
    config.max_connections = 64;
    let keel = HttpConnectionPool::new("bench", config.clone())?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(config.per_host() as usize)
        .pool_idle_timeout(config.idle_timeout)
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .build()?;
    let impls = [
        Http::Keel(keel.clone()),
        Http::Reqwest(client, Arc::from(format!("{base}/"))),
    ];
    for h in &impls {
        drive_http(h, 64, Duration::from_millis(300)).await?;
    }
    for tasks in CONCURRENCY {
        let case = format!("http-get-c{tasks}");
        let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![Default::default(); impls.len()];
        for round in 0..plan.rounds {
            for k in 0..impls.len() {
                let i = (k + round) % impls.len();
                let (rate, p99) = drive_http(&impls[i], tasks, plan.per_round).await?;
                results[i].0.push(rate);
                results[i].1.push(p99);
            }
        }
        for (h, (rates, p99s)) in impls.iter().zip(&mut results) {
            ctx.report
                .record(&case, h.name(), "ops_per_s", median(rates));
            ctx.report.record(&case, h.name(), "p99_us", median(p99s));
        }
        let get = |name: &str| ctx.report.get(&case, name, "ops_per_s").unwrap_or(0.0);
        ctx.report.note(&format!(
            "{case}: keel / reqwest = {:.2}",
            get("keel") / get("reqwest")
        ));
    }
    let stats = keel.stats();
    ctx.report.note(&format!(
        "keel http slot wait over the whole suite: p50 {:.1} µs, p99 {:.1} µs",
        stats.wait_p50.as_secs_f64() * 1e6,
        stats.wait_p99.as_secs_f64() * 1e6
    ));
    server.abort();
    Ok(())
}

async fn drive_http(h: &Http, tasks: usize, time: Duration) -> anyhow::Result<(f64, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (h, stop) = (h.clone(), Arc::clone(&stop));
        handles.push(tokio::spawn(async move {
            let mut took = Vec::with_capacity(4096);
            while !stop.load(Ordering::Relaxed) {
                took.push(h.op().await?);
            }
            Ok::<_, anyhow::Error>(took)
        }));
    }
    tokio::time::sleep(time).await;
    stop.store(true, Ordering::Relaxed);
    let mut took = Vec::new();
    for handle in handles {
        took.extend(handle.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok((took.len() as f64 / elapsed, p99_us(&mut took)))
}
