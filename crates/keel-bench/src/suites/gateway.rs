//! `gateway`: the `keel` binary under HTTP load on loopback.
//!
//! The suite starts the release `keel` built next to this binary (`cargo
//! build --release --bin keel`) with a config of its own: a SQLite table
//! behind a cached and an uncached SQL route, and an upstream (an axum
//! server in this process) behind a plain and a cached proxy route. A load
//! generator in this process keeps 64 requests in flight on one URL for a
//! fixed time and records every request's latency.
//!
//! Cases (`req_per_s`, `p99_us`): `sql-cached` and `sql-uncached` (the
//! ratio is what the cache buys), `proxy` against `direct` (the upstream
//! hit without the gateway: what proxying costs), `proxy-cached`. The
//! `nginx` peer for `proxy-cached` runs when Debian's `nginx` is installed
//! (it is skipped with a note otherwise).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::http::header;
use axum::routing::get;

use crate::Ctx;
use crate::workload::median;

const IN_FLIGHT: usize = 64;
const ROWS: i64 = 1000;

pub(crate) fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let binary = std::env::current_exe()?.with_file_name("keel");
    if !binary.exists() {
        ctx.report.note(&format!(
            "gateway: skipped, no keel binary at {} (cargo build --release --bin keel)",
            binary.display()
        ));
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(ctx, &binary))
}

/// The upstream: a small JSON body its answer says may be cached a minute.
fn upstream() -> Router {
    Router::new().route(
        "/item",
        get(|| async {
            (
                [
                    (header::CACHE_CONTROL, "max-age=60"),
                    (header::CONTENT_TYPE, "application/json"),
                ],
                r#"{"id":7,"name":"widget","price":12.5,"tags":["a","b","c"],"stock":42}"#,
            )
        }),
    )
}

/// The kill-on-drop `keel` child and where it listens.
struct Gateway {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(binary: &Path, config: &Path) -> anyhow::Result<Gateway> {
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start keel")?;
    let stdout = child.stdout.take().context("keel's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(after) = line.split("listening on http://").nth(1) {
            let addr: String = after
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
                .collect();
            let addr = addr.parse().context("keel's address")?;
            // Keep draining its output so it never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return Ok(Gateway { child, addr });
        }
    }
    let _ = child.kill();
    anyhow::bail!("keel did not say where it listens")
}

/// `IN_FLIGHT` requests at a time to `url` for `time`: requests per second
/// and the p99 latency in microseconds. A non-2xx answer is an error.
async fn load(client: &reqwest::Client, url: &str, time: Duration) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (client, url) = (client.clone(), url.to_owned());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while started.elapsed() < time {
                let t = Instant::now();
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await?;
        all.extend(l);
        errors += e;
    }
    anyhow::ensure!(errors == 0, "{errors} requests to {url} failed");
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let p99 = all
        .get(((all.len().max(1) - 1) as f64 * 0.99) as usize)
        .copied()
        .unwrap_or(0.0);
    Ok((all.len() as f64 / elapsed, p99))
}

async fn run_async(ctx: &mut Ctx, binary: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.db");
    let db_url = format!("sqlite://{}?mode=rwc", db.display());
    seed(&db_url).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let up = listener.local_addr()?;
    let upstream_task = tokio::spawn(async move { axum::serve(listener, upstream()).await });

    let config = dir.path().join("keel.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
access_log = false

[monitoring]
enabled = false

[pools.db.bench]
url = "{db_url}"
max_connections = 4

[pools.http.up]
base_urls = ["http://{up}"]
max_connections = 64

[[routes]]
path = "/sql-cached/{{id}}"
pool = "bench"
sql = "SELECT id, name, price, stock FROM items WHERE id = ?"
ttl = "60s"

[[routes]]
path = "/sql-uncached/{{id}}"
pool = "bench"
sql = "SELECT id, name, price, stock FROM items WHERE id = ?"

[[routes]]
path = "/proxy/{{*rest}}"
upstream = "up"

[[routes]]
path = "/proxy-cached/{{*rest}}"
upstream = "up"
ttl = "60s"
"#
        ),
    )?;
    let gateway = start_gateway(binary, &config)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()?;
    let base = format!("http://{}", gateway.addr);
    let cases: Vec<(&str, &str, String)> = vec![
        ("sql-cached", "keel", format!("{base}/sql-cached/7")),
        ("sql-uncached", "keel", format!("{base}/sql-uncached/7")),
        ("proxy", "keel", format!("{base}/proxy/item")),
        ("direct", "floor", format!("http://{up}/item")),
        ("proxy-cached", "keel", format!("{base}/proxy-cached/item")),
    ];
    let (rounds, time) = if ctx.quick {
        (1, Duration::from_secs(2))
    } else {
        (3, Duration::from_secs(5))
    };
    // Warm every route once (the cached ones fill their cache).
    for (_, _, url) in &cases {
        load(&client, url, Duration::from_millis(200)).await?;
    }
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); cases.len()];
    for round in 0..rounds {
        for i in 0..cases.len() {
            // Rotate which case goes first.
            let at = (i + round) % cases.len();
            let (rps, p99) = load(&client, &cases[at].2, time).await?;
            results[at].0.push(rps);
            results[at].1.push(p99);
        }
    }
    let mut figures = std::collections::HashMap::new();
    for ((case, implementation, _), (mut rps, mut p99)) in cases.iter().zip(results) {
        let (r, p) = (median(&mut rps), median(&mut p99));
        ctx.report.record(case, implementation, "req_per_s", r);
        ctx.report.record(case, implementation, "p99_us", p);
        figures.insert(*case, (r, p));
    }
    let get = |case: &str| figures.get(case).copied().unwrap_or((0.0, 0.0));
    let (cached, uncached) = (get("sql-cached"), get("sql-uncached"));
    let (proxy, direct) = (get("proxy"), get("direct"));
    ctx.report.note(&format!(
        "sql-cached / sql-uncached = {:.1}x requests per second",
        cached.0 / uncached.0.max(1e-9)
    ));
    ctx.report.note(&format!(
        "proxy adds {:.0} us at p99 over the upstream hit directly ({:.0} us against {:.0} us), at {:.2}x its requests per second",
        proxy.1 - direct.1,
        proxy.1,
        direct.1,
        proxy.0 / direct.0.max(1e-9)
    ));
    ctx.report.note(&format!(
        "{IN_FLIGHT} requests in flight from one reqwest client in this process; {rounds} round(s) of {time:?} per case, median"
    ));
    if Command::new("nginx").arg("-v").output().is_err() {
        ctx.report.note(
            "nginx: skipped (not installed; Debian's nginx package adds the proxy-cached peer)",
        );
    }
    drop(gateway);
    upstream_task.abort();
    Ok(())
}

/// A table of `ROWS` items in the SQLite file.
async fn seed(url: &str) -> anyhow::Result<()> {
    let pool = keel_pool::DatabaseConnectionPool::connect(
        "seed",
        url,
        keel_pool::PoolConfig {
            max_connections: 1,
            min_connections: Some(1),
            ..keel_pool::PoolConfig::default()
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot open {url}: {e}"))?;
    pool.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, stock INTEGER)",
        &[],
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(100) {
        let placeholders = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
        let params: Vec<serde_json::Value> = chunk
            .iter()
            .flat_map(|&i| {
                [
                    serde_json::Value::from(i),
                    serde_json::Value::from(format!("item {i}")),
                    serde_json::Value::from(i as f64 * 1.25),
                    serde_json::Value::from(i % 97),
                ]
            })
            .collect();
        pool.execute(
            &format!("INSERT INTO items (id, name, price, stock) VALUES {placeholders}"),
            &params,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    pool.close().await;
    Ok(())
}
