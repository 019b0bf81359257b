//! `log`: JSON lines with five fields into a rotating file, Keel against
//! tracing-subscriber's JSON format + tracing-appender's `non_blocking`
//! (crates/keel-bench/README.md).
//!
//! - `json5-rotating`: one thread logs N events (`req_id`, `method`,
//!   `path`, `status`, `latency_ms` + a message; 1 in 100 WARN, 1 in 1000
//!   ERROR, the rest INFO) through an `info` `EnvFilter`, timing every call.
//!   - `keel`: `LoggingConfig` with size (16 MB) and hourly rotation, gzip,
//!     the default 8192-line queue, `overflow = "block"`.
//!   - `keel-shed`: the same with `overflow = "shed"`.
//!   - `tracing-appender`: `fmt::layer().json()` into
//!     `tracing_appender::non_blocking` (its defaults: a 128 000-line lossy
//!     queue) over an hourly `RollingFileAppender` (it has no size
//!     rotation and no compression).
//!
//! Metrics: `lines_per_s` (N / time from the first call until every line
//! has reached the file: Keel's `LogGuard::flush`, tracing-appender's guard
//! drop), caller-side latency `p50_us`/`p99_us`/`p999_us` over every call,
//! and `lost` (lines emitted minus lines found in the files, gzip
//! included, summed over the rounds). `keel-shed` also reports
//! `lost_warn_error`, which must be 0.
//!
//! - `format10` (`ns_per_op`): the cost of formatting one event with ten
//!   fields (zap's yardstick: 656 ns and 5 allocations) into a writer that
//!   discards it: `keel` is `StructuredFormatter`, `tracing-subscriber` is
//!   `fmt::layer().json()`, both over `io::sink()` behind a mutex, no filter.
//!
//! Implementations alternate round by round (the order rotated); rates
//! are totals over all rounds and percentiles over all calls.

use std::io::{self, Read as _};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keel_log::{ByteSize, LoggingConfig, OverflowPolicy, RotationConfig, RotationPeriod};
use tracing_subscriber::layer::SubscriberExt as _;

use crate::Ctx;

const CASE: &str = "json5-rotating";
const IMPLS: [&str; 3] = ["keel", "tracing-appender", "keel-shed"];

#[derive(Default)]
struct Totals {
    lines: u64,
    elapsed: Duration,
    latencies_ns: Vec<u32>,
    lost: u64,
    lost_warn_error: u64,
}

struct Run {
    elapsed: Duration,
    latencies_ns: Vec<u32>,
    found: Found,
}

#[derive(Default)]
struct Found {
    lines: u64,
    warn_error: u64,
}

pub(crate) fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let (lines, rounds) = if ctx.quick {
        (200_000, 3)
    } else {
        (1_000_000, 5)
    };
    let expected_warn_error = (0..lines).filter(|&i| level_of(i) != Level::Info).count() as u64;
    let mut totals: Vec<Totals> = IMPLS.iter().map(|_| Totals::default()).collect();
    for round in 0..rounds {
        for k in 0..IMPLS.len() {
            let index = (k + round) % IMPLS.len();
            let run = match IMPLS[index] {
                "keel" => run_keel(lines, OverflowPolicy::Block)?,
                "keel-shed" => run_keel(lines, OverflowPolicy::Shed)?,
                _ => run_tracing_appender(lines)?,
            };
            let t = &mut totals[index];
            t.lines += lines;
            t.elapsed += run.elapsed;
            t.latencies_ns.extend(run.latencies_ns);
            t.lost += lines.saturating_sub(run.found.lines);
            t.lost_warn_error += expected_warn_error.saturating_sub(run.found.warn_error);
        }
    }
    for (name, t) in IMPLS.iter().zip(&mut totals) {
        t.latencies_ns.sort_unstable();
        let pct = |p: f64| {
            let i = ((t.latencies_ns.len() as f64 - 1.0) * p).round() as usize;
            f64::from(t.latencies_ns.get(i).copied().unwrap_or(0)) / 1000.0
        };
        ctx.report.record(
            CASE,
            name,
            "lines_per_s",
            t.lines as f64 / t.elapsed.as_secs_f64().max(1e-9),
        );
        ctx.report.record(CASE, name, "p50_us", pct(0.50));
        ctx.report.record(CASE, name, "p99_us", pct(0.99));
        ctx.report.record(CASE, name, "p999_us", pct(0.999));
        ctx.report.record(CASE, name, "lost", t.lost as f64);
        if *name == "keel-shed" {
            ctx.report
                .record(CASE, name, "lost_warn_error", t.lost_warn_error as f64);
        }
    }
    format10(ctx, if ctx.quick { 300_000 } else { 1_000_000 }, rounds);
    if let (Some(keel), Some(peer)) = (
        ctx.report.get(CASE, "keel", "lines_per_s"),
        ctx.report.get(CASE, "tracing-appender", "lines_per_s"),
    ) {
        ctx.report.note(&format!(
            "{rounds} rounds of {lines} lines each; keel / tracing-appender throughput: {:.2}x",
            keel / peer
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Warn,
    Error,
}

fn level_of(i: u64) -> Level {
    match i % 1000 {
        500 => Level::Error,
        n if n % 100 == 0 => Level::Warn,
        _ => Level::Info,
    }
}

fn format10(ctx: &mut Ctx, events: u64, rounds: usize) {
    const IMPLS: [&str; 2] = ["keel", "tracing-subscriber"];
    let dispatches = [
        tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(keel_log::StructuredFormatter::new(Mutex::new(io::sink()))),
        ),
        tracing::Dispatch::new(
            tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(Mutex::new(io::sink())),
            ),
        ),
    ];
    let mut total = [Duration::ZERO; 2];
    for round in 0..rounds {
        for k in 0..IMPLS.len() {
            let index = (k + round) % IMPLS.len();
            tracing::dispatcher::with_default(&dispatches[index], || {
                let start = Instant::now();
                for i in 0..events {
                    tracing::info!(
                        a = i,
                        b = -3i64,
                        c = 2.5,
                        d = true,
                        e = "text \"quoted\"",
                        f = "/api/v1/items",
                        g = 200u16,
                        h = 7u32,
                        user = "ada",
                        msg_id = i * 7,
                        "request handled"
                    );
                }
                total[index] += start.elapsed();
            });
        }
    }
    for (name, elapsed) in IMPLS.iter().zip(total) {
        let ns = elapsed.as_nanos() as f64 / (events as f64 * rounds as f64);
        ctx.report.record("format10", name, "ns_per_op", ns);
    }
}

/// Logs `lines` events on this thread under `dispatch`, timing each call.
fn emit(dispatch: &tracing::Dispatch, lines: u64) -> Vec<u32> {
    macro_rules! event {
        ($macro:ident, $i:expr) => {
            tracing::$macro!(
                req_id = $i,
                method = "GET",
                path = "/api/v1/items",
                status = 200u16,
                latency_ms = 1.25,
                "request handled"
            )
        };
    }
    let mut latencies = Vec::with_capacity(usize::try_from(lines).unwrap_or(0));
    tracing::dispatcher::with_default(dispatch, || {
        for i in 0..lines {
            let start = Instant::now();
            match level_of(i) {
                Level::Info => event!(info, i),
                Level::Warn => event!(warn, i),
                Level::Error => event!(error, i),
            }
            let ns = start.elapsed().as_nanos();
            latencies.push(u32::try_from(ns).unwrap_or(u32::MAX));
        }
    });
    latencies
}

fn run_keel(lines: u64, overflow: OverflowPolicy) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let config = LoggingConfig {
        directory: Some(dir.path().to_owned()),
        rotation: RotationConfig {
            size: Some(ByteSize(16_000_000)),
            time: RotationPeriod::Hourly,
        },
        overflow,
        ..LoggingConfig::default()
    };
    let (dispatch, guard) = config.build().context("keel pipeline")?;
    let start = Instant::now();
    let latencies_ns = emit(&dispatch, lines);
    guard.flush();
    let elapsed = start.elapsed();
    drop(dispatch);
    drop(guard); // waits for compression
    Ok(Run {
        elapsed,
        latencies_ns,
        found: count(dir.path())?,
    })
}

fn run_tracing_appender(lines: u64) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let appender = tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(tracing_appender::rolling::Rotation::HOURLY)
        .filename_prefix("app")
        .filename_suffix("log")
        .build(dir.path())
        .context("tracing-appender file")?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_subscriber::fmt::layer().json().with_writer(writer));
    let dispatch = tracing::Dispatch::new(subscriber);
    let start = Instant::now();
    let latencies_ns = emit(&dispatch, lines);
    drop(dispatch);
    drop(guard); // flushes the queue and the file
    let elapsed = start.elapsed();
    Ok(Run {
        elapsed,
        latencies_ns,
        found: count(dir.path())?,
    })
}

/// Event lines in every file of `dir` (gzip included).
fn count(dir: &Path) -> anyhow::Result<Found> {
    let mut found = Found::default();
    for entry in std::fs::read_dir(dir).context("list log dir")? {
        let path = entry.context("list log dir")?.path();
        let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let text = if path.extension().is_some_and(|e| e == "gz") {
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(bytes.as_slice())
                .read_to_string(&mut text)
                .with_context(|| format!("gunzip {}", path.display()))?;
            text
        } else {
            String::from_utf8(bytes).with_context(|| format!("utf-8 in {}", path.display()))?
        };
        for line in text.lines().filter(|l| l.contains("\"req_id\":")) {
            found.lines += 1;
            if line.contains("\"level\":\"WARN") || line.contains("\"level\":\"ERROR\"") {
                found.warn_error += 1;
            }
        }
    }
    Ok(found)
}
