//! `queue`: tasks per second through `TaskQueue` against a bounded
//! async-channel, and `Executor::map` against rayon and `spawn_blocking`
//! (crates/keel-bench/README.md).
//!
//! - `queue-w1`, `queue-w2`, `queue-w8` (`tasks_per_s`): one producer task
//!   puts `u64` tasks, 1/2/8 worker tasks take them and add them up, on a
//!   tokio runtime with one thread per core. Capacity 1024 everywhere.
//!   `keel` puts with four priority levels in turn and workers take
//!   batches (`get_batch`); `keel-get` is the same queue taken one task at
//!   a time (`get`); `mpsc` is `async_channel::bounded(1024)` (no
//!   priorities), each worker calling `recv`.
//! - `map-cpu` (`ops_per_s`): items of about 1µs of integer work,
//!   `Executor::map` (one worker per core) against rayon's `par_iter` on
//!   its global pool and against one `spawn_blocking` per 1024-item chunk.
//! - `ratelimit`: measured by `suites::ratelimit`, run at the end.
//!
//! Implementations alternate round by round (the order rotated) and the
//! median round is reported, so machine noise hits all of them alike.
//! Every run checks its result (the sum of all tasks, the mapped vector).

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, ensure};
use keel_concurrency::{Executor, Priority, TaskQueue, TaskQueueConfig, ThreadPoolConfig};
use rayon::prelude::*;

use crate::Ctx;

/// Capacity of every queue and channel.
const CAPACITY: usize = 1024;
const PRIORITIES: [Priority; 4] = [
    Priority::Low,
    Priority::Normal,
    Priority::High,
    Priority::Critical,
];

struct Plan {
    tasks: u64,
    items: u64,
    rounds: usize,
}

pub(crate) fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let plan = if ctx.quick {
        Plan {
            tasks: 300_000,
            items: 200_000,
            rounds: 3,
        }
    } else {
        Plan {
            tasks: 2_000_000,
            items: 2_000_000,
            rounds: 5,
        }
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;

    for workers in [1usize, 2, 8] {
        let case = format!("queue-w{workers}");
        let impls: [(&str, QueueImpl); 3] = [
            ("keel", QueueImpl::KeelBatch),
            ("keel-get", QueueImpl::KeelGet),
            ("mpsc", QueueImpl::AsyncChannel),
        ];
        let mut samples = vec![Vec::new(); impls.len()];
        for round in 0..plan.rounds {
            for k in 0..impls.len() {
                let i = (k + round) % impls.len();
                let run = run_queue(impls[i].1, plan.tasks, workers);
                let elapsed = runtime
                    .block_on(async { tokio::time::timeout(Duration::from_secs(120), run).await })
                    .map_err(|_| anyhow!("{case}: {} stalled", impls[i].0))??;
                samples[i].push(plan.tasks as f64 / elapsed.as_secs_f64());
            }
        }
        for ((name, _), values) in impls.iter().zip(&mut samples) {
            ctx.report
                .record(&case, name, "tasks_per_s", median(values));
        }
        if let (Some(keel), Some(base)) = (
            ctx.report.get(&case, "keel", "tasks_per_s"),
            ctx.report.get(&case, "mpsc", "tasks_per_s"),
        ) {
            ctx.report
                .note(&format!("{case}: keel / mpsc = {:.2}", keel / base));
        }
    }

    map_cpu(ctx, &plan, cores, &runtime)?;
    // `ratelimit` (checks/s against governor) belongs to this suite too.
    super::ratelimit::run(ctx)
}

#[derive(Debug, Clone, Copy)]
enum QueueImpl {
    KeelBatch,
    KeelGet,
    AsyncChannel,
}

/// Pushes `tasks` through one queue with `workers` consumers; returns the
/// wall time from the first put to the last task taken.
async fn run_queue(which: QueueImpl, tasks: u64, workers: usize) -> anyhow::Result<Duration> {
    let expected: u64 = (0..tasks).sum();
    let start = Instant::now();
    let total = match which {
        QueueImpl::KeelBatch | QueueImpl::KeelGet => {
            let queue = TaskQueue::new(TaskQueueConfig {
                max_size: CAPACITY,
                ..TaskQueueConfig::default()
            })?;
            let consumers: Vec<_> = (0..workers)
                .map(|_| {
                    let queue = queue.clone();
                    tokio::spawn(async move {
                        let mut sum = 0u64;
                        if matches!(which, QueueImpl::KeelBatch) {
                            loop {
                                let batch = queue.get_batch(Duration::from_millis(1)).await;
                                if batch.is_empty() && queue.is_closed() && queue.is_empty() {
                                    return sum;
                                }
                                for task in batch {
                                    sum = sum.wrapping_add(black_box(task));
                                }
                            }
                        } else {
                            while let Some(task) = queue.get().await {
                                sum = sum.wrapping_add(black_box(task));
                            }
                            sum
                        }
                    })
                })
                .collect();
            let producer = {
                let queue = queue.clone();
                tokio::spawn(async move {
                    for task in 0..tasks {
                        let priority = PRIORITIES[(task % 4) as usize];
                        if queue.put(task, priority).await.is_err() {
                            return Err(anyhow!("queue closed during the run"));
                        }
                    }
                    queue.close();
                    Ok(())
                })
            };
            producer.await??;
            let mut total = 0u64;
            for consumer in consumers {
                total = total.wrapping_add(consumer.await?);
            }
            total
        }
        QueueImpl::AsyncChannel => {
            let (sender, receiver) = async_channel::bounded::<u64>(CAPACITY);
            let consumers: Vec<_> = (0..workers)
                .map(|_| {
                    let receiver = receiver.clone();
                    tokio::spawn(async move {
                        let mut sum = 0u64;
                        while let Ok(task) = receiver.recv().await {
                            sum = sum.wrapping_add(black_box(task));
                        }
                        sum
                    })
                })
                .collect();
            drop(receiver);
            let producer = tokio::spawn(async move {
                for task in 0..tasks {
                    if sender.send(task).await.is_err() {
                        return Err(anyhow!("channel closed during the run"));
                    }
                }
                Ok(())
            });
            producer.await??;
            let mut total = 0u64;
            for consumer in consumers {
                total = total.wrapping_add(consumer.await?);
            }
            total
        }
    };
    let elapsed = start.elapsed();
    ensure!(total == expected, "{which:?} lost or duplicated tasks");
    Ok(elapsed)
}

/// About 1µs of integer work on one core (`rounds` calibrated at start).
#[inline]
fn work(x: u64, rounds: u32) -> u64 {
    let mut h = x ^ 0x9e37_79b9_7f4a_7c15;
    for _ in 0..rounds {
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    }
    h
}

/// Rounds of [`work`] that take about 1µs here.
fn calibrate() -> u32 {
    let probe = 200_000u64;
    let rounds = 256u32;
    let start = Instant::now();
    let mut acc = 0u64;
    for x in 0..probe {
        acc = acc.wrapping_add(work(black_box(x), rounds));
    }
    black_box(acc);
    let per_item = start.elapsed().as_secs_f64() / probe as f64;
    ((f64::from(rounds) * 1e-6 / per_item) as u32).clamp(16, 100_000)
}

fn map_cpu(
    ctx: &mut Ctx,
    plan: &Plan,
    cores: usize,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let rounds = calibrate();
    let items = plan.items;
    let expected: Vec<u64> = (0..items).map(|x| work(x, rounds)).collect();
    let executor = Executor::new(ThreadPoolConfig {
        min_workers: cores,
        max_workers: cores,
        queue_size: CAPACITY,
        ..ThreadPoolConfig::default()
    })?;
    let names = ["keel", "rayon", "spawn_blocking"];
    let mut samples = vec![Vec::new(); names.len()];
    for round in 0..plan.rounds {
        for k in 0..names.len() {
            let i = (k + round) % names.len();
            let start = Instant::now();
            let out: Vec<u64> = match i {
                0 => runtime.block_on(executor.map(move |x| work(x, rounds), 0..items))?,
                1 => (0..items)
                    .into_par_iter()
                    .map(|x| work(x, rounds))
                    .collect(),
                _ => runtime.block_on(async {
                    let chunk = 1024u64;
                    let handles: Vec<_> = (0..items)
                        .step_by(chunk as usize)
                        .map(|from| {
                            let to = (from + chunk).min(items);
                            tokio::task::spawn_blocking(move || {
                                (from..to).map(|x| work(x, rounds)).collect::<Vec<u64>>()
                            })
                        })
                        .collect();
                    let mut out = Vec::with_capacity(items as usize);
                    for handle in handles {
                        out.extend(handle.await?);
                    }
                    Ok::<_, anyhow::Error>(out)
                })?,
            };
            let elapsed = start.elapsed();
            ensure!(out == expected, "{} returned a wrong result", names[i]);
            samples[i].push(items as f64 / elapsed.as_secs_f64());
        }
    }
    for (name, values) in names.iter().zip(&mut samples) {
        ctx.report
            .record("map-cpu", name, "ops_per_s", median(values));
    }
    if let (Some(keel), Some(rayon)) = (
        ctx.report.get("map-cpu", "keel", "ops_per_s"),
        ctx.report.get("map-cpu", "rayon", "ops_per_s"),
    ) {
        ctx.report
            .note(&format!("map-cpu: keel / rayon = {:.2}", keel / rayon));
    }
    runtime.block_on(executor.shutdown(Duration::from_secs(10)))?;
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
