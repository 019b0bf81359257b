//! The `monitor` suite, in `ns_per_op` (thread time per operation):
//!
//! - `measure-1t`, `measure-2t`: a call measured by
//!   `PerformanceMonitor::measure` (`keel`) against the same call between
//!   two `Instant::now()` reads (`floor`, the least any latency
//!   measurement costs) and against those two reads feeding a
//!   metrics-exporter-prometheus histogram through the `metrics` facade
//!   (`metrics`). At two threads both threads measure the same operation.
//!   The unmeasured call's cost is printed under the table.
//! - `counter-2t`: two threads incrementing one counter through a
//!   `metrics::Counter` handle: keel's registry against
//!   metrics-exporter-prometheus's recorder, each registered the same way.
//! - `render-10k`: the Prometheus text of 10,000 series (8,000 counters,
//!   1,500 gauges, 500 histograms with the same latency buckets on both
//!   sides), per series.
//!
//! Rounds alternate which implementation goes first; the median of the
//! rounds is reported.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use keel_monitor::{DataMonitoringService, LATENCY_BUCKETS, MonitoringConfig};
use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::Ctx;
use crate::workload::median;

/// An implementation's name and its measurement.
type Run<'a, T> = (&'static str, Box<dyn Fn() -> T + 'a>);

static METADATA: Metadata<'static> = Metadata::new("keel_bench", metrics::Level::INFO, None);

/// The measured work: a call the optimizer cannot remove.
#[inline(never)]
fn call(i: u64) -> u64 {
    black_box(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

pub(crate) fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let (ops, rounds) = if ctx.quick {
        (1_000_000, 5)
    } else {
        (5_000_000, 11)
    };
    measure(ctx, ops, rounds, 10_000)
}

fn exporter() -> anyhow::Result<PrometheusRecorder> {
    Ok(PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)?
        .build_recorder())
}

fn service() -> anyhow::Result<DataMonitoringService> {
    let mut config = MonitoringConfig::default();
    config.max_series = 100_000;
    Ok(DataMonitoringService::new(config)?)
}

fn measure(ctx: &mut Ctx, ops: u64, rounds: usize, series: usize) -> anyhow::Result<()> {
    let keel = service()?;
    let prometheus = exporter()?;
    let histogram = prometheus.register_histogram(&Key::from_name("call_seconds"), &METADATA);
    let monitor = keel.monitor();
    // Warm up: the clock's calibration, the operation's registration and
    // each thread's shard happen outside the timed loops.
    drop(monitor.measure("call"));

    // (case, impl) → per-round results.
    let mut results: Vec<((&str, &str), Vec<f64>)> = Vec::new();
    let mut push = |case: &'static str, imp: &'static str, v: f64| match results
        .iter_mut()
        .find(|(k, _)| *k == (case, imp))
    {
        Some((_, values)) => values.push(v),
        None => results.push(((case, imp), vec![v])),
    };
    let mut unmeasured = Vec::new();
    for round in 0..rounds {
        for (threads, case) in [(1, "measure-1t"), (2, "measure-2t")] {
            let mut runs: Vec<Run<'_, f64>> = vec![
                (
                    "keel",
                    Box::new(|| {
                        per_op(threads, ops, |i| {
                            let _call = monitor.measure("call");
                            call(i)
                        })
                    }),
                ),
                (
                    "floor",
                    Box::new(|| {
                        per_op(threads, ops, |i| {
                            let start = Instant::now();
                            let r = call(i);
                            black_box(start.elapsed());
                            r
                        })
                    }),
                ),
                (
                    "metrics",
                    Box::new(|| {
                        per_op(threads, ops, |i| {
                            let start = Instant::now();
                            let r = call(i);
                            histogram.record(start.elapsed());
                            r
                        })
                    }),
                ),
            ];
            let n = runs.len();
            runs.rotate_left(round % n);
            for (imp, run) in &runs {
                push(case, imp, run());
            }
            if threads == 1 {
                unmeasured.push(per_op(1, ops, call));
            }
        }

        // counter-2t
        let keel_counter = keel.counter("bench_total", &[]);
        let prometheus_counter =
            prometheus.register_counter(&Key::from_name("bench_total"), &METADATA);
        let mut runs: Vec<(&'static str, &metrics::Counter)> =
            vec![("keel", &keel_counter), ("metrics", &prometheus_counter)];
        runs.rotate_left(round % 2);
        for (imp, counter) in runs {
            push(
                "counter-2t",
                imp,
                per_op(2, ops * 4, |_| {
                    counter.increment(1);
                    0
                }),
            );
        }

        // render-10k: fresh registries each round, filled alike.
        let keel_render = service()?;
        let prometheus_render = exporter()?;
        fill(keel_render.registry(), series);
        fill(&prometheus_render, series);
        let handle = prometheus_render.handle();
        let mut runs: Vec<Run<'_, usize>> = vec![
            ("keel", Box::new(|| keel_render.render_prometheus().len())),
            ("metrics", Box::new(|| handle.render().len())),
        ];
        runs.rotate_left(round % 2);
        for (imp, render) in &runs {
            // One untimed render first: the exporter drains histogram
            // samples into its buckets on its first render.
            black_box(render());
            let reps = 5;
            let began = Instant::now();
            for _ in 0..reps {
                black_box(render());
            }
            let ns = began.elapsed().as_nanos() as f64 / (reps * series) as f64;
            push("render-10k", imp, ns);
        }
    }
    for ((case, imp), mut values) in results {
        ctx.report
            .record(case, imp, "ns_per_op", median(&mut values));
    }
    let ratio = |case: &str, a: &str, b: &str| match (
        ctx.report.get(case, a, "ns_per_op"),
        ctx.report.get(case, b, "ns_per_op"),
    ) {
        (Some(x), Some(y)) if x > 0.0 => y / x,
        _ => f64::NAN,
    };
    // Speed ratios: above 1 means keel is faster (or, against the floor,
    // how many floors a measured call costs).
    let notes = [
        format!(
            "measure-1t: keel / floor = {:.2}x the floor's time",
            1.0 / ratio("measure-1t", "keel", "floor")
        ),
        format!(
            "measure-2t: keel / floor = {:.2}x the floor's time",
            1.0 / ratio("measure-2t", "keel", "floor")
        ),
        format!(
            "counter-2t: metrics / keel = {:.2}x (speed of keel's counter)",
            ratio("counter-2t", "keel", "metrics")
        ),
        format!(
            "render-10k: metrics / keel = {:.2}x (speed of keel's rendering)",
            ratio("render-10k", "keel", "metrics")
        ),
        format!("unmeasured call: {:.2} ns_per_op", median(&mut unmeasured)),
    ];
    for note in notes {
        ctx.report.note(&note);
    }
    Ok(())
}

/// Fills `recorder` with `series` series: 80% counters (80 names × label
/// values), 15% gauges, 5% histograms of ten latency samples each.
fn fill(recorder: &dyn Recorder, series: usize) {
    let counters = series * 80 / 100;
    let gauges = series * 15 / 100;
    let histograms = series - counters - gauges;
    let key = |name: String, i: usize| {
        Key::from_parts(
            name,
            vec![
                Label::new("route", format!("/api/v1/items/{i}")),
                Label::new("method", "GET"),
            ],
        )
    };
    for i in 0..counters {
        recorder
            .register_counter(
                &key(format!("bench_requests_{}_total", i % 80), i),
                &METADATA,
            )
            .increment(i as u64);
    }
    for i in 0..gauges {
        recorder
            .register_gauge(&key(format!("bench_depth_{}", i % 20), i), &METADATA)
            .set(i as f64);
    }
    for i in 0..histograms {
        let h = recorder
            .register_histogram(&key(format!("bench_wait_{}_seconds", i % 10), i), &METADATA);
        for j in 0..10u32 {
            h.record(Duration::from_micros(u64::from(j) * 370 + i as u64));
        }
    }
}

/// Thread time per call when `threads` threads each make `ops` calls.
fn per_op(threads: usize, ops: u64, f: impl Fn(u64) -> u64 + Sync) -> f64 {
    let start = Barrier::new(threads + 1);
    let elapsed = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (start, f) = (&start, &f);
                scope.spawn(move || {
                    start.wait();
                    let began = Instant::now();
                    let mut acc = 0u64;
                    for i in 0..ops {
                        acc = acc.wrapping_add(f(i));
                    }
                    black_box(acc);
                    began.elapsed()
                })
            })
            .collect();
        start.wait();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .sum::<Duration>()
    });
    elapsed.as_nanos() as f64 / (threads as u64 * ops) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;

    #[test]
    fn records_every_case_of_the_contract() {
        let mut ctx = Ctx {
            counting: false,
            quick: true,
            trace: None,
            format: crate::TraceFormat::Text,
            capacities: Vec::new(),
            soak: None,
            report: Report::new(true),
        };
        measure(&mut ctx, 1_000, 2, 200).unwrap();
        for (case, imps) in [
            ("measure-1t", &["keel", "floor", "metrics"][..]),
            ("measure-2t", &["keel", "floor", "metrics"][..]),
            ("counter-2t", &["keel", "metrics"][..]),
            ("render-10k", &["keel", "metrics"][..]),
        ] {
            for imp in imps {
                let value = ctx.report.get(case, imp, "ns_per_op");
                assert!(value.is_some_and(|v| v > 0.0), "{case}/{imp}");
            }
        }
    }
}
