//! `log`: JSON lines with five fields into a rotating file, Keel against
//! tracing-subscriber's JSON format + tracing-appender's `non_blocking`
//! (crates/keel-bench/README.md).
//!
//! The suite runs in a child process with the counting allocator off
//! (`suites::child`): the peer allocates a `Vec` per line and would pay the
//! counter's atomic add on every one.
//!
//! - `json5-rotating`: one thread logs N events (`req_id`, `method`,
//!   `path`, `status`, `latency_ms` + a message; 1 in 100 WARN, 1 in 1000
//!   ERROR, the rest INFO) through an `info` `EnvFilter`, timing every call.
//!   - `keel`: `LoggingConfig` with size (16 MB) and hourly rotation, gzip,
//!     the default 8192-line queue, `overflow = "block"`.
//!   - `tracing-appender-buffered`: `fmt::layer().json()` into
//!     `tracing_appender::non_blocking` made lossless
//!     (`NonBlockingBuilder::lossy(false)`, its 128 000-line queue) over a
//!     64 KiB `BufWriter` around an hourly `RollingFileAppender`: the peer
//!     as a user who tunes it runs it.
//!   - `tracing-appender`: the same with `non_blocking`'s defaults (lossy)
//!     straight over the `RollingFileAppender` (a `write` per line).
//!   - `keel-shed`: `keel` with `overflow = "shed"`.
//!
//!   tracing-appender has no size rotation and no compression.
//! - `json5-rotating-2t`: the same N events from two threads at once, N/2
//!   each, for `keel`, `tracing-appender-buffered` and `tracing-appender`,
//!   both tracing-appender sides lossless (`lossy(false)`).
//!
//! Metrics: `lines_per_s` (lines found in the files, over the time from
//! the first call until the pipeline has shut down: every line written and,
//! for Keel, every rotated file gzipped; both guards' drops), caller-side
//! latency `p50_us`/`p99_us`/`p999_us` over every call, and `lost` (lines
//! emitted minus lines found in the files, gzip included, summed over the
//! rounds). `keel-shed` also reports `lost_warn_error`, which must be 0.
//!
//! - `format10` (`ns_per_op`): the cost of formatting one event with ten
//!   fields (zap's yardstick: 656 ns and 5 allocations) into a writer that
//!   discards it: `keel` is `StructuredFormatter`, `tracing-subscriber` is
//!   `fmt::layer().json()`, both over `io::sink()` behind a mutex, no filter.
//!
//! Implementations alternate round by round (the order rotated); rates
//! are totals over all rounds and percentiles over all calls.

use std::fs::File;
use std::io::{self, BufRead as _, BufReader};
use std::path::Path;
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use keel_log::{ByteSize, LoggingConfig, OverflowPolicy, RotationConfig, RotationPeriod};
use tracing_subscriber::layer::SubscriberExt as _;

use crate::Ctx;
use crate::report::Report;

/// The buffer the tuned tracing-appender writes through.
const BUFFER: usize = 64 * 1024;

/// One side of a case.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// Keel's pipeline with this overflow policy.
    Keel(OverflowPolicy),
    /// `non_blocking` over the rolling file, through a [`BUFFER`] when
    /// `buffered`, dropping lines on a full queue when `lossy`.
    Appender { buffered: bool, lossy: bool },
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Keel(OverflowPolicy::Block) => "keel",
            Side::Keel(OverflowPolicy::Shed) => "keel-shed",
            Side::Appender { buffered: true, .. } => "tracing-appender-buffered",
            Side::Appender {
                buffered: false, ..
            } => "tracing-appender",
        }
    }
}

/// A rotating-file case: who runs it, on how many threads.
struct Case {
    name: &'static str,
    threads: u64,
    sides: &'static [Side],
}

const CASE_1T: &str = "json5-rotating";
const CASE_2T: &str = "json5-rotating-2t";

const CASES: [Case; 2] = [
    Case {
        name: CASE_1T,
        threads: 1,
        sides: &[
            Side::Keel(OverflowPolicy::Block),
            Side::Appender {
                buffered: true,
                lossy: false,
            },
            Side::Appender {
                buffered: false,
                lossy: true,
            },
            Side::Keel(OverflowPolicy::Shed),
        ],
    },
    Case {
        name: CASE_2T,
        threads: 2,
        sides: &[
            Side::Keel(OverflowPolicy::Block),
            Side::Appender {
                buffered: true,
                lossy: false,
            },
            Side::Appender {
                buffered: false,
                lossy: false,
            },
        ],
    },
];

/// How much the suite logs.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Lines per round and case, over all threads.
    lines: u64,
    rounds: usize,
    /// Events per round of `format10`.
    format_events: u64,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                lines: 200_000,
                rounds: 3,
                format_events: 300_000,
            }
        } else {
            Self {
                lines: 1_000_000,
                rounds: 5,
                format_events: 1_000_000,
            }
        }
    }
}

#[derive(Default)]
struct Totals {
    found: u64,
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

/// Runs the suite (in the child process of `suites::child`).
pub(crate) fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let plan = Plan::new(ctx.quick);
    measure(plan, &mut ctx.report)?;
    notes(ctx, plan);
    Ok(())
}

fn measure(plan: Plan, report: &mut Report) -> anyhow::Result<()> {
    let expected_warn_error = (0..plan.lines)
        .filter(|&i| level_of(i) != Level::Info)
        .count() as u64;
    let mut totals: Vec<Vec<Totals>> = CASES
        .iter()
        .map(|case| case.sides.iter().map(|_| Totals::default()).collect())
        .collect();
    for round in 0..plan.rounds {
        for (case, totals) in CASES.iter().zip(&mut totals) {
            let per_thread = plan.lines / case.threads;
            for k in 0..case.sides.len() {
                let index = (k + round) % case.sides.len();
                let run = run_side(case.sides[index], case.threads, per_thread)?;
                let t = &mut totals[index];
                t.found += run.found.lines;
                t.elapsed += run.elapsed;
                t.latencies_ns.extend(run.latencies_ns);
                t.lost += (per_thread * case.threads).saturating_sub(run.found.lines);
                t.lost_warn_error += expected_warn_error.saturating_sub(run.found.warn_error);
            }
        }
    }
    for (case, totals) in CASES.iter().zip(&mut totals) {
        for (side, t) in case.sides.iter().zip(totals) {
            let name = side.name();
            t.latencies_ns.sort_unstable();
            let pct = |p: f64| {
                let i = ((t.latencies_ns.len() as f64 - 1.0) * p).round() as usize;
                f64::from(t.latencies_ns.get(i).copied().unwrap_or(0)) / 1000.0
            };
            report.record(
                case.name,
                name,
                "lines_per_s",
                t.found as f64 / t.elapsed.as_secs_f64().max(1e-9),
            );
            report.record(case.name, name, "p50_us", pct(0.50));
            report.record(case.name, name, "p99_us", pct(0.99));
            report.record(case.name, name, "p999_us", pct(0.999));
            report.record(case.name, name, "lost", t.lost as f64);
            if matches!(side, Side::Keel(OverflowPolicy::Shed)) {
                report.record(case.name, name, "lost_warn_error", t.lost_warn_error as f64);
            }
        }
    }
    format10(report, plan.format_events, plan.rounds);
    Ok(())
}

/// The notes under the table, from what the child measured.
fn notes(ctx: &Ctx, plan: Plan) {
    let report = &ctx.report;
    ctx.report.note(&format!(
        "{} rounds of {} lines per case ({CASE_2T}: {} per thread)",
        plan.rounds,
        plan.lines,
        plan.lines / 2
    ));
    for case in [CASE_1T, CASE_2T] {
        let get = |side: &str, metric: &str| report.get(case, side, metric);
        let (Some(keel), Some(buffered), Some(plain)) = (
            get("keel", "lines_per_s"),
            get("tracing-appender-buffered", "lines_per_s"),
            get("tracing-appender", "lines_per_s"),
        ) else {
            continue;
        };
        let mut note = format!(
            "{case}: keel / tracing-appender-buffered = {:.2}x lines per second",
            keel / buffered
        );
        if let (Some(p99), Some(peer_p99)) = (
            get("keel", "p99_us"),
            get("tracing-appender-buffered", "p99_us"),
        ) {
            note.push_str(&format!(", p99 {p99:.2} us against {peer_p99:.2} us"));
        }
        note.push_str(&format!("; keel / tracing-appender = {:.2}x", keel / plain));
        ctx.report.note(&note);
    }
    ctx.report.note(
        "tracing-appender-buffered: non_blocking with lossy(false) over a 64 KiB BufWriter; \
         tracing-appender: non_blocking's defaults (lossy) at one thread, lossy(false) at two",
    );
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

fn format10(report: &mut Report, events: u64, rounds: usize) {
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
        report.record("format10", name, "ns_per_op", ns);
    }
}

/// Logs events `first..first + lines` on this thread under `dispatch`,
/// timing each call.
fn emit(dispatch: &tracing::Dispatch, first: u64, lines: u64) -> Vec<u32> {
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
        for i in first..first + lines {
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

/// What keeps a pipeline's writer running.
enum Guard {
    Keel(keel_log::LogGuard),
    Appender(tracing_appender::non_blocking::WorkerGuard),
}

impl Guard {
    /// Shuts the pipeline down: returns once every queued line is in its
    /// file and, for Keel, every rotated file is gzipped (the writer thread
    /// drops the rotation manager, which waits for its compressor).
    /// tracing-appender's guard waits for its worker at most 1 s.
    fn shut_down(self) {
        match self {
            Guard::Keel(guard) => drop(guard),
            Guard::Appender(guard) => drop(guard),
        }
    }
}

/// Builds `side`'s pipeline writing into `dir`.
fn pipeline(side: Side, dir: &Path) -> anyhow::Result<(tracing::Dispatch, Guard)> {
    match side {
        Side::Keel(overflow) => {
            let config = LoggingConfig {
                directory: Some(dir.to_owned()),
                rotation: RotationConfig {
                    size: Some(ByteSize(16_000_000)),
                    time: RotationPeriod::Hourly,
                },
                overflow,
                ..LoggingConfig::default()
            };
            let (dispatch, guard) = config.build().context("keel pipeline")?;
            Ok((dispatch, Guard::Keel(guard)))
        }
        Side::Appender { buffered, lossy } => {
            let appender = tracing_appender::rolling::RollingFileAppender::builder()
                .rotation(tracing_appender::rolling::Rotation::HOURLY)
                .filename_prefix("app")
                .filename_suffix("log")
                .build(dir)
                .context("tracing-appender file")?;
            let builder =
                tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(lossy);
            let (writer, guard) = if buffered {
                builder.finish(io::BufWriter::with_capacity(BUFFER, appender))
            } else {
                builder.finish(appender)
            };
            let subscriber = tracing_subscriber::registry()
                .with(tracing_subscriber::EnvFilter::new("info"))
                .with(tracing_subscriber::fmt::layer().json().with_writer(writer));
            Ok((tracing::Dispatch::new(subscriber), Guard::Appender(guard)))
        }
    }
}

/// One run of `side`: `threads` threads log `per_thread` lines each, then
/// the pipeline shuts down and the files are counted.
fn run_side(side: Side, threads: u64, per_thread: u64) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let (dispatch, guard) = pipeline(side, dir.path())?;
    let barrier = Barrier::new(usize::try_from(threads)? + 1);
    let (start, latencies_ns) = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (dispatch, barrier) = (&dispatch, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    emit(dispatch, t * per_thread, per_thread)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut latencies_ns = Vec::new();
        for worker in workers {
            latencies_ns.extend(
                worker
                    .join()
                    .map_err(|_| anyhow!("a logging thread panicked"))?,
            );
        }
        anyhow::Ok((start, latencies_ns))
    })?;
    drop(dispatch);
    guard.shut_down();
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
        let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
        let mut reader: Box<dyn io::BufRead> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .with_context(|| format!("read {}", path.display()))?;
            if n == 0 {
                break;
            }
            if line.contains("\"req_id\":") {
                found.lines += 1;
                if line.contains("\"level\":\"WARN") || line.contains("\"level\":\"ERROR\"") {
                    found.warn_error += 1;
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_side_writes_every_line_it_is_given() -> anyhow::Result<()> {
        for case in &CASES {
            for &side in case.sides {
                let run = run_side(side, case.threads, 1500)?;
                let lines = 1500 * case.threads;
                assert_eq!(run.found.lines, lines, "{} {}", case.name, side.name());
                assert_eq!(run.latencies_ns.len() as u64, lines);
                let warn_error = (0..lines).filter(|&i| level_of(i) != Level::Info).count();
                assert_eq!(run.found.warn_error, warn_error as u64, "{}", side.name());
            }
        }
        Ok(())
    }
}
