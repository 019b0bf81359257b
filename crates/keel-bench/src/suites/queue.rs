//! `queue`: tasks per second through `TaskQueue` against a bounded
//! async-channel, and `Executor::map` against rayon and `spawn_blocking`
//! (crates/keel-bench/README.md).
//!
//! - `queue-w1`, `queue-w2`, `queue-w8` (`tasks_per_s`, `cpu_cores`): one
//!   producer task puts `u64` tasks, 1/2/8 worker tasks take them and add
//!   them up, on a multi-thread tokio runtime with one worker thread per
//!   core. `queue-w1-ct`, `queue-w2-ct`, `queue-w8-ct` are the same on a
//!   `current_thread` runtime. Capacity 1024 everywhere. Keel puts with
//!   four priority levels in turn; the channel has no priorities. Two
//!   pairs compare like with like:
//!   - one task per call: `keel-get` (`TaskQueue::get`) against `mpsc`
//!     (`async_channel::bounded(1024)`, one `recv` per task);
//!   - batches: `keel` (`TaskQueue::get_batch`, `batch_size` 100) against
//!     `mpsc-batch` (`recv().await`, then `try_recv` until the batch holds
//!     100 tasks or the channel is empty).
//!
//!   `cpu_cores` is the CPU time of every thread of the process over the
//!   wall time of the run (Linux only): 1.0 is one core kept busy.
//! - `map-cpu` (`ops_per_s`): items of about 1µs of integer work,
//!   `Executor::map` (one worker per core) against rayon's `par_iter` on
//!   its global pool and against `spawn_blocking` on 1024-item chunks with
//!   at most one chunk per core in flight.
//! - `ratelimit`: measured by `suites::ratelimit`, run at the end.
//!
//! Implementations alternate round by round (the order rotated) and the
//! median round is reported, so machine noise hits all of them alike.
//! Every run checks its result (the sum of all tasks, the mapped vector).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, ensure};
use keel_concurrency::{Executor, Priority, TaskQueue, TaskQueueConfig, ThreadPoolConfig};
use rayon::prelude::*;
use tokio::runtime::Runtime;

use crate::Ctx;

/// Capacity of every queue and channel.
const CAPACITY: usize = 1024;
/// Most tasks one batch takes: Keel's `batch_size`, and where `mpsc-batch`
/// stops draining.
const BATCH: usize = 100;
/// Items per `spawn_blocking` call in `map-cpu`.
const CHUNK: u64 = 1024;
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
            rounds: 5,
        }
    } else {
        Plan {
            tasks: 2_000_000,
            items: 2_000_000,
            rounds: 7,
        }
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let multi_thread = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let current_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the current_thread tokio runtime")?;

    for (runtime, suffix) in [(&multi_thread, ""), (&current_thread, "-ct")] {
        for workers in [1usize, 2, 8] {
            queue_case(
                ctx,
                &plan,
                runtime,
                &format!("queue-w{workers}{suffix}"),
                workers,
            )?;
        }
    }

    map_cpu(ctx, &plan, cores, &multi_thread)?;
    // `ratelimit` (checks/s against governor) belongs to this suite too.
    super::ratelimit::run(ctx)
}

/// One `queue-w*` case: every implementation in alternating rounds, then
/// the medians and the two ratios.
fn queue_case(
    ctx: &mut Ctx,
    plan: &Plan,
    runtime: &Runtime,
    case: &str,
    workers: usize,
) -> anyhow::Result<()> {
    let impls = QueueImpl::ALL;
    let mut rates = vec![Vec::new(); impls.len()];
    let mut cpu = vec![Vec::new(); impls.len()];
    for round in 0..plan.rounds {
        for k in 0..impls.len() {
            let i = (k + round) % impls.len();
            let which = impls[i];
            let cpu_before = cpu_time();
            let start = Instant::now();
            runtime
                .block_on(async {
                    tokio::time::timeout(
                        Duration::from_secs(120),
                        run_queue(which, plan.tasks, workers),
                    )
                    .await
                })
                .map_err(|_| anyhow!("{case}: {} stalled", which.name()))??;
            let elapsed = start.elapsed().as_secs_f64();
            rates[i].push(plan.tasks as f64 / elapsed);
            if let (Some(before), Some(after)) = (cpu_before, cpu_time()) {
                cpu[i].push(after.saturating_sub(before).as_secs_f64() / elapsed);
            }
        }
    }
    for (i, which) in impls.iter().enumerate() {
        ctx.report
            .record(case, which.name(), "tasks_per_s", median(&mut rates[i]));
    }
    for (i, which) in impls.iter().enumerate() {
        if !cpu[i].is_empty() {
            ctx.report
                .record(case, which.name(), "cpu_cores", median(&mut cpu[i]));
        }
    }
    let ratio = |ours: &str, theirs: &str| {
        ctx.report
            .get(case, ours, "tasks_per_s")
            .zip(ctx.report.get(case, theirs, "tasks_per_s"))
            .map_or(f64::NAN, |(ours, theirs)| ours / theirs)
    };
    let (one, batch) = (ratio("keel-get", "mpsc"), ratio("keel", "mpsc-batch"));
    ctx.report.note(&format!(
        "{case}: keel-get / mpsc = {one:.2}, keel / mpsc-batch = {batch:.2}"
    ));
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum QueueImpl {
    /// `TaskQueue::get_batch`.
    KeelBatch,
    /// `recv().await`, then `try_recv` up to [`BATCH`].
    ChannelBatch,
    /// `TaskQueue::get`.
    KeelGet,
    /// One `recv().await` per task.
    Channel,
}

impl QueueImpl {
    const ALL: [Self; 4] = [
        Self::KeelBatch,
        Self::ChannelBatch,
        Self::KeelGet,
        Self::Channel,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::KeelBatch => "keel",
            Self::ChannelBatch => "mpsc-batch",
            Self::KeelGet => "keel-get",
            Self::Channel => "mpsc",
        }
    }
}

/// Pushes `tasks` through one queue with `workers` consumers, all spawned
/// on the current runtime, and checks that every task came out once.
async fn run_queue(which: QueueImpl, tasks: u64, workers: usize) -> anyhow::Result<()> {
    let expected: u64 = (0..tasks).sum();
    let total = match which {
        QueueImpl::KeelBatch | QueueImpl::KeelGet => {
            let queue = TaskQueue::new(TaskQueueConfig {
                max_size: CAPACITY,
                batch_size: BATCH,
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
        QueueImpl::ChannelBatch | QueueImpl::Channel => {
            let (sender, receiver) = async_channel::bounded::<u64>(CAPACITY);
            let consumers: Vec<_> = (0..workers)
                .map(|_| {
                    let receiver = receiver.clone();
                    tokio::spawn(async move {
                        let mut sum = 0u64;
                        if matches!(which, QueueImpl::ChannelBatch) {
                            let mut batch = Vec::with_capacity(BATCH);
                            while let Ok(first) = receiver.recv().await {
                                batch.push(first);
                                while batch.len() < BATCH {
                                    match receiver.try_recv() {
                                        Ok(task) => batch.push(task),
                                        Err(_) => break,
                                    }
                                }
                                for task in batch.drain(..) {
                                    sum = sum.wrapping_add(black_box(task));
                                }
                            }
                        } else {
                            while let Ok(task) = receiver.recv().await {
                                sum = sum.wrapping_add(black_box(task));
                            }
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
    ensure!(total == expected, "{which:?} lost or duplicated tasks");
    Ok(())
}

/// CPU time used so far by the threads of this process that are alive,
/// from `/proc/self/task/*/schedstat`; `None` where that is not readable.
fn cpu_time() -> Option<Duration> {
    // The kernel brings a running thread's figure up to date when it
    // yields; without that the calling thread's lags by up to a tick.
    std::thread::yield_now();
    let mut nanos = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        // A thread may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        nanos += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(nanos))
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

fn map_cpu(ctx: &mut Ctx, plan: &Plan, cores: usize, runtime: &Runtime) -> anyhow::Result<()> {
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
                _ => runtime.block_on(spawn_blocking_map(items, rounds, cores))?,
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

/// `map-cpu` the way a tokio user spreads CPU work: one `spawn_blocking`
/// per [`CHUNK`] items, at most `cores` of them in flight (a semaphore
/// holds back the rest), results in input order.
async fn spawn_blocking_map(items: u64, rounds: u32, cores: usize) -> anyhow::Result<Vec<u64>> {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(cores));
    let mut handles = Vec::with_capacity(items.div_ceil(CHUNK) as usize);
    for from in (0..items).step_by(CHUNK as usize) {
        let to = (from + CHUNK).min(items);
        let permit = Arc::clone(&in_flight).acquire_owned().await?;
        handles.push(tokio::task::spawn_blocking(move || {
            let out: Vec<u64> = (from..to).map(|x| work(x, rounds)).collect();
            drop(permit);
            out
        }));
    }
    let mut out = Vec::with_capacity(items as usize);
    for handle in handles {
        out.extend(handle.await?);
    }
    Ok(out)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
