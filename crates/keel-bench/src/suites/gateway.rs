//! `gateway`: the `keel` binary under HTTP load on loopback.
//!
//! The suite starts the release `keel` built next to this binary (`cargo
//! build --release --bin keel`) with a config of its own: a SQLite table
//! behind cached and uncached SQL routes, and an upstream (an axum
//! server in this process) behind a plain and a cached proxy route.
//!
//! Throughput cases (`req_per_s`, `p99_us`), 64 connections kept busy for
//! a fixed time: `sql-cached` and `sql-uncached`, one row by primary key,
//! and `sql-top-cached` and `sql-top-uncached`, the ten priciest rows
//! (a scan and a sort of the table), where each ratio is what the cache
//! buys for a query of that cost; and `proxy-cached`, whose peer `nginx` is nginx with
//! `proxy_cache` in front of the same upstream (Debian's package, started
//! by the suite on a free port; skipped with a note when not installed).
//! The load comes from `wrk` (Debian's package, one thread, a process of
//! its own) when it is installed, else from a reqwest client in this
//! process, which saturates before the gateway does and says so.
//!
//! Latency cases (`p50_us`, `p99_us`) at a moderate, fixed rate
//! (`PACED_RATE` requests per second, released each millisecond whatever
//! the answers to earlier ones, so a stall counts against every request
//! sent meanwhile): `proxy` against
//! `direct` (the upstream hit without the gateway: what proxying adds).
//!
//! `--soak SECS` runs only the soak: a mix of every route over many keys
//! at the paced rate for SECS seconds, sampling the gateway's resident
//! memory (`rss_mib` at the start and end of the measured part, after a
//! tenth of the time spent warming) and reporting its drift.

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
/// Requests per second of the latency cases and the soak: moderate load.
const PACED_RATE: u32 = 2000;

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

/// The gateway's config: two SQL routes on `db_url`, two proxy routes to
/// `up`.
fn gateway_config(db_url: &str, up: SocketAddr) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
access_log = false

[monitoring]
enabled = false

[cache]
capacity = 100000

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
path = "/sql-top-cached/{{min}}"
pool = "bench"
sql = "SELECT id, name, price, stock FROM items WHERE price >= ? ORDER BY price DESC, id LIMIT 10"
rows = "all"
ttl = "60s"

[[routes]]
path = "/sql-top-uncached/{{min}}"
pool = "bench"
sql = "SELECT id, name, price, stock FROM items WHERE price >= ? ORDER BY price DESC, id LIMIT 10"
rows = "all"

[[routes]]
path = "/proxy/{{*rest}}"
upstream = "up"

[[routes]]
path = "/proxy-cached/{{*rest}}"
upstream = "up"
ttl = "60s"
"#
    )
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
    std::fs::write(&config, gateway_config(&db_url, up))?;
    let gateway = start_gateway(binary, &config)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()?;
    let base = format!("http://{}", gateway.addr);
    let result = match ctx.soak {
        Some(secs) => soak(ctx, &client, &base, &gateway, Duration::from_secs(secs)).await,
        None => {
            let nginx = match Nginx::start(dir.path(), up) {
                Ok(nginx) => Some(nginx),
                Err(reason) => {
                    ctx.report.note(&format!("nginx: skipped ({reason})"));
                    None
                }
            };
            measure(ctx, &client, &base, up, nginx.as_ref()).await
        }
    };
    drop(gateway);
    upstream_task.abort();
    result
}

/// The throughput and latency cases.
async fn measure(
    ctx: &mut Ctx,
    client: &reqwest::Client,
    base: &str,
    up: SocketAddr,
    nginx: Option<&Nginx>,
) -> anyhow::Result<()> {
    let wrk = Command::new("wrk").arg("--version").output().is_ok();
    let mut cases: Vec<(&str, &str, String)> = vec![
        ("sql-cached", "keel", format!("{base}/sql-cached/7")),
        ("sql-uncached", "keel", format!("{base}/sql-uncached/7")),
        (
            "sql-top-cached",
            "keel",
            format!("{base}/sql-top-cached/10"),
        ),
        (
            "sql-top-uncached",
            "keel",
            format!("{base}/sql-top-uncached/10"),
        ),
        ("proxy-cached", "keel", format!("{base}/proxy-cached/item")),
    ];
    if let Some(nginx) = nginx {
        cases.push((
            "proxy-cached",
            "nginx",
            format!("http://{}/proxy-cached/item", nginx.addr),
        ));
    }
    let (rounds, time) = if ctx.quick {
        (1, Duration::from_secs(2))
    } else {
        (3, Duration::from_secs(5))
    };
    // Warm every route once (the cached ones fill their cache).
    for (_, _, url) in &cases {
        load(client, url, Duration::from_millis(200)).await?;
    }
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); cases.len()];
    for round in 0..rounds {
        for i in 0..cases.len() {
            // Rotate which case goes first.
            let at = (i + round) % cases.len();
            let url = &cases[at].2;
            let (rps, p99) = if wrk {
                run_wrk(url, time)?
            } else {
                load(client, url, time).await?
            };
            results[at].0.push(rps);
            results[at].1.push(p99);
        }
    }
    let mut figures = std::collections::HashMap::new();
    for ((case, implementation, _), (mut rps, mut p99)) in cases.iter().zip(results) {
        let (r, p) = (median(&mut rps), median(&mut p99));
        ctx.report.record(case, implementation, "req_per_s", r);
        ctx.report.record(case, implementation, "p99_us", p);
        figures.insert((*case, *implementation), (r, p));
    }

    // Latency at a moderate rate: proxy against the upstream hit directly.
    let paced_cases = [
        ("proxy", "keel", format!("{base}/proxy/item")),
        ("direct", "floor", format!("http://{up}/item")),
    ];
    let mut paced_results: Vec<(Vec<f64>, Vec<f64>)> = vec![Default::default(); 2];
    for round in 0..rounds {
        for i in 0..paced_cases.len() {
            let at = (i + round) % paced_cases.len();
            let (p50, p99) = paced(client, &paced_cases[at].2, PACED_RATE, time).await?;
            paced_results[at].0.push(p50);
            paced_results[at].1.push(p99);
        }
    }
    for ((case, implementation, _), (mut p50, mut p99)) in paced_cases.iter().zip(paced_results) {
        let (p50, p99) = (median(&mut p50), median(&mut p99));
        ctx.report.record(case, implementation, "p50_us", p50);
        ctx.report.record(case, implementation, "p99_us", p99);
        figures.insert((*case, *implementation), (p50, p99));
    }

    let get = |case: &str, implementation: &str| {
        figures
            .get(&(case, implementation))
            .copied()
            .unwrap_or((0.0, 0.0))
    };
    let (cached, uncached) = (get("sql-cached", "keel"), get("sql-uncached", "keel"));
    ctx.report.note(&format!(
        "sql-cached / sql-uncached = {:.1}x requests per second (a primary-key lookup)",
        cached.0 / uncached.0.max(1e-9)
    ));
    let (cached, uncached) = (
        get("sql-top-cached", "keel"),
        get("sql-top-uncached", "keel"),
    );
    ctx.report.note(&format!(
        "sql-top-cached / sql-top-uncached = {:.1}x requests per second (ten rows by price: a scan and a sort of {ROWS} rows)",
        cached.0 / uncached.0.max(1e-9)
    ));
    if nginx.is_some() {
        let (keel, nginx) = (get("proxy-cached", "keel"), get("proxy-cached", "nginx"));
        ctx.report.note(&format!(
            "proxy-cached: keel / nginx = {:.2}x requests per second, p99 {:.0} us against {:.0} us",
            keel.0 / nginx.0.max(1e-9),
            keel.1,
            nginx.1
        ));
    }
    let (proxy, direct) = (get("proxy", "keel"), get("direct", "floor"));
    ctx.report.note(&format!(
        "proxy adds {:.0} us at p99 over the upstream hit directly ({:.0} us against {:.0} us) at {PACED_RATE} requests/s",
        proxy.1 - direct.1,
        proxy.1,
        direct.1,
    ));
    let generator = if wrk {
        format!("wrk -t1 -c{IN_FLIGHT}, a process of its own")
    } else {
        format!(
            "{IN_FLIGHT} requests in flight from one reqwest client in this process (wrk is not installed; this generator saturates before the gateway does)"
        )
    };
    ctx.report.note(&format!(
        "throughput load: {generator}; {rounds} round(s) of {time:?} per case, median"
    ));
    Ok(())
}

/// `wrk -t1 -c64 -d<time> --latency url`: requests per second and the p99
/// latency in microseconds. Any socket error or non-2xx answer fails.
fn run_wrk(url: &str, time: Duration) -> anyhow::Result<(f64, f64)> {
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{IN_FLIGHT}")])
        .arg(format!("-d{}s", time.as_secs().max(1)))
        .args(["--latency", url])
        .output()
        .context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed on {url}: {text}");
    parse_wrk(&text).with_context(|| format!("wrk's report on {url}:\n{text}"))
}

/// Requests/sec and the 99% latency (in microseconds) of a `wrk --latency`
/// report; an error if it counted socket errors or non-2xx/3xx answers.
fn parse_wrk(text: &str) -> anyhow::Result<(f64, f64)> {
    anyhow::ensure!(!text.contains("Socket errors"), "wrk saw socket errors");
    anyhow::ensure!(!text.contains("Non-2xx"), "wrk saw non-2xx answers");
    let mut rate = None;
    let mut p99 = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("Requests/sec:") => rate = words.next().and_then(|w| w.parse::<f64>().ok()),
            Some("99%") => p99 = words.next().and_then(wrk_micros),
            _ => {}
        }
    }
    Ok((
        rate.context("no Requests/sec line")?,
        p99.context("no 99% line")?,
    ))
}

/// A wrk duration (`512.00us`, `1.20ms`, `2.00s`) in microseconds.
fn wrk_micros(word: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = word.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = word.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = word.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = word.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// `rate` requests per second to `url` for `time`, each sent at its due
/// time whatever the others are doing: the p50 and p99 latency in
/// microseconds, measured from when each request was due.
async fn paced(
    client: &reqwest::Client,
    url: &str,
    rate: u32,
    time: Duration,
) -> anyhow::Result<(f64, f64)> {
    let urls = [url.to_owned()];
    let (latencies, errors) = paced_mix(client, &urls, rate, time).await;
    anyhow::ensure!(errors == 0, "{errors} requests to {url} failed");
    let mut latencies = latencies;
    latencies.sort_by(f64::total_cmp);
    Ok((quantile(&latencies, 0.5), quantile(&latencies, 0.99)))
}

/// `rate` requests per second for `time`, the n-th to `urls[n % len]`:
/// every latency (microseconds from its release) and the number of failed
/// requests.
///
/// Each millisecond the requests due by then are released at once, each
/// in a task of its own, so a slow answer delays no later request; each is
/// timed from its release, not from the tick it was due at, whose
/// distance from the release is the timer's rounding (up to a millisecond
/// on tokio), not the server's.
async fn paced_mix(
    client: &reqwest::Client,
    urls: &[String],
    rate: u32,
    time: Duration,
) -> (Vec<f64>, u64) {
    const TICK: Duration = Duration::from_millis(1);
    let started = tokio::time::Instant::now();
    let ticks = u32::try_from(time.as_millis()).unwrap_or(u32::MAX);
    let total = u64::from(ticks) * u64::from(rate) / 1000;
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    for tick in 1..=ticks {
        let due = started + TICK * tick;
        tokio::time::sleep_until(due).await;
        let released = tokio::time::Instant::now();
        // Requests due by this tick: `rate` a second, spread evenly.
        let until = u64::from(tick) * u64::from(rate) / 1000;
        while sent < until {
            let (client, url) = (client.clone(), urls[sent as usize % urls.len()].clone());
            sent += 1;
            tasks.spawn(async move {
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        Some(released.elapsed().as_secs_f64() * 1e6)
                    }
                    _ => None,
                }
            });
        }
    }
    let mut latencies = Vec::with_capacity(total as usize);
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Some(latency)) => latencies.push(latency),
            _ => errors += 1,
        }
    }
    (latencies, errors)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * q) as usize)
        .copied()
        .unwrap_or(0.0)
}

/// The soak: every route over many keys at `PACED_RATE` for `time`,
/// the gateway's RSS sampled throughout.
async fn soak(
    ctx: &mut Ctx,
    client: &reqwest::Client,
    base: &str,
    gateway: &Gateway,
    time: Duration,
) -> anyhow::Result<()> {
    // Every row on every route: the caches fill, then churn stays level.
    let mut urls = Vec::new();
    for id in 0..ROWS {
        urls.push(format!("{base}/sql-cached/{id}"));
        urls.push(format!("{base}/sql-uncached/{id}"));
        urls.push(format!("{base}/proxy-cached/item?v={id}"));
        urls.push(format!("{base}/proxy/item?v={id}"));
    }
    let pid = gateway.child.id();
    let steps = 20u32;
    let step = time / steps;
    let warm = (steps / 10).max(1);
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut sent = 0;
    for i in 0..steps {
        let (latencies, failed) = paced_mix(client, &urls, PACED_RATE, step).await;
        sent += latencies.len() as u64 + failed;
        errors += failed;
        let rss = rss_mib(pid)?;
        if i + 1 >= warm {
            samples.push(rss);
        }
        eprintln!(
            "soak: {:>4.0} s of {:.0} s, rss {rss:.1} MiB",
            step.as_secs_f64() * f64::from(i + 1),
            time.as_secs_f64()
        );
    }
    anyhow::ensure!(errors == 0, "{errors} of {sent} soak requests failed");
    let first = samples.first().copied().unwrap_or(0.0);
    let last = samples.last().copied().unwrap_or(0.0);
    let max = samples.iter().copied().fold(0.0, f64::max);
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    ctx.report.record("soak", "keel", "rss_mib_start", first);
    ctx.report.record("soak", "keel", "rss_mib_end", last);
    ctx.report.record("soak", "keel", "rss_mib_max", max);
    ctx.report.note(&format!(
        "soak: {sent} requests over {:.0} s at {PACED_RATE}/s; after {:.0} s of warm-up RSS went {first:.1} -> {last:.1} MiB ({:+.1}%), range {min:.1}..{max:.1} MiB ({:.1}% of the start)",
        time.as_secs_f64(),
        step.as_secs_f64() * f64::from(warm),
        (last - first) / first.max(1e-9) * 100.0,
        (max - min) / first.max(1e-9) * 100.0,
    ));
    Ok(())
}

/// Resident memory of process `pid` in MiB, from `/proc/<pid>/status`.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read the gateway's /proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")?;
    Ok(kib / 1024.0)
}

/// nginx with `proxy_cache` in front of the upstream, on a free port,
/// stopped on drop.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Nginx {
    /// Stops the master with SIGTERM, which stops its workers and cache
    /// processes too (a SIGKILL would leave them running, orphaned, on
    /// the cores the next measurement uses); SIGKILL only if it is still
    /// there after 5 s.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts it under `dir`; the error says why it could not run (not
    /// installed, did not start).
    fn start(dir: &Path, up: SocketAddr) -> Result<Self, String> {
        if Command::new("nginx").arg("-v").output().is_err() {
            return Err("not installed; Debian's nginx-light package adds this peer".into());
        }
        let root = dir.join("nginx");
        std::fs::create_dir_all(root.join("cache")).map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let user = if is_root() { "user root;" } else { "" };
        // As nginx's docs set up a caching reverse proxy: keep-alive to the
        // upstream, the cache honouring the upstream's Cache-Control, one
        // fill per key at a time.
        let conf = format!(
            r#"{user}
worker_processes auto;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    proxy_cache_path {root}/cache levels=1:2 keys_zone=keel:10m max_size=100m inactive=10m use_temp_path=off;
    upstream up {{ server {up}; keepalive 64; }}
    server {{
        listen {addr};
        location /proxy-cached/ {{
            proxy_pass http://up/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache keel;
            proxy_cache_lock on;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
"#,
            root = root.display()
        );
        let conf_path = root.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&root)
            .arg("-e")
            .arg(root.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start it: {e}"))?;
        let nginx = Nginx { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(root.join("error.log")).unwrap_or_default();
                return Err(format!("it did not listen on {addr} within 10 s: {log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

/// Whether this process runs as root (nginx then needs `user root;` to
/// read its files under a private temporary directory).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rate_and_p99_from_a_wrk_report() {
        let report = "Running 2s test @ http://127.0.0.1:8080/x
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.05ms  320.11us   9.87ms   88.00%
    Req/Sec    61.02k     2.10k   64.00k    80.00%
  Latency Distribution
     50%    0.98ms
     75%    1.10ms
     90%    1.40ms
     99%    2.50ms
  121443 requests in 2.00s, 19.00MB read
Requests/sec:  60702.13
Transfer/sec:      9.50MB
";
        let (rate, p99) = parse_wrk(report).unwrap();
        assert_eq!(rate, 60702.13);
        assert_eq!(p99, 2500.0);
        let failing = report.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 3\nRequests/sec",
        );
        assert!(parse_wrk(&failing).is_err());
        assert!(parse_wrk("nothing").is_err());
    }

    #[test]
    fn reads_wrk_durations() {
        assert_eq!(wrk_micros("512.00us"), Some(512.0));
        assert_eq!(wrk_micros("1.50ms"), Some(1500.0));
        assert_eq!(wrk_micros("2.00s"), Some(2e6));
        assert_eq!(wrk_micros("1.00m"), Some(60e6));
        assert_eq!(wrk_micros("fast"), None);
    }
}
