//! Scheduler on a paused tokio clock: delays, intervals, no overlap,
//! missed-tick policies, jitter bounds, failures, cancellation.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_concurrency::{MissedTickPolicy, Schedule, Scheduler};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

type Run = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A job that takes `busy` and logs its start offsets (ms after `origin`).
fn recorder(origin: Instant, busy: Duration) -> (Arc<Mutex<Vec<u64>>>, impl FnMut() -> Run + Send) {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&starts);
    let job = move || -> Run {
        let log = Arc::clone(&log);
        Box::pin(async move {
            log.lock()
                .unwrap()
                .push((Instant::now() - origin).as_millis() as u64);
            tokio::time::sleep(busy).await;
            Ok(())
        })
    };
    (starts, job)
}

#[tokio::test(start_paused = true)]
async fn once_runs_a_single_time_after_its_delay() {
    let scheduler = Scheduler::new();
    let origin = Instant::now();
    let (starts, job) = recorder(origin, Duration::ZERO);
    let handle = scheduler.spawn("once", Schedule::after(250 * MS), job);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(*starts.lock().unwrap(), vec![250]);
    assert_eq!((handle.runs(), handle.failures()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn interval_runs_on_a_fixed_grid() {
    let scheduler = Scheduler::new();
    let origin = Instant::now();
    let (starts, job) = recorder(origin, 10 * MS);
    let handle = scheduler.spawn("tick", Schedule::every(100 * MS), job);
    tokio::time::sleep(450 * MS).await;
    assert_eq!(*starts.lock().unwrap(), vec![100, 200, 300, 400]);
    assert_eq!(handle.runs(), 4);
    scheduler.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn runs_of_one_job_never_overlap() {
    let scheduler = Scheduler::new();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (Arc::clone(&running), Arc::clone(&most));
    let handle = scheduler.spawn(
        "slow",
        Schedule::every(10 * MS).missed_ticks(MissedTickPolicy::Burst),
        move || {
            let (r, m) = (Arc::clone(&r), Arc::clone(&m));
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(35 * MS).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        },
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(handle.runs() > 10);
    assert_eq!(most.load(Ordering::SeqCst), 1);
    scheduler.shutdown().await;
}

/// A job of period 100ms whose second run (at 200ms) takes 250ms, so the
/// ticks at 300ms and 400ms are missed; other runs take 10ms.
async fn late_run_starts(policy: MissedTickPolicy) -> Vec<u64> {
    let scheduler = Scheduler::new();
    let origin = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&starts);
    scheduler.spawn(
        "late",
        Schedule::every(100 * MS).missed_ticks(policy),
        move || {
            let log = Arc::clone(&log);
            async move {
                let at = (Instant::now() - origin).as_millis() as u64;
                log.lock().unwrap().push(at);
                let busy = if at == 200 { 250 } else { 10 };
                tokio::time::sleep(busy * MS).await;
                Ok::<(), String>(())
            }
        },
    );
    tokio::time::sleep(Duration::from_millis(780)).await;
    scheduler.shutdown().await;
    starts.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn missed_ticks_are_skipped_bursted_or_delayed_per_policy() {
    // Skip: one catch-up run for the missed ticks, then back on the grid.
    assert_eq!(
        late_run_starts(MissedTickPolicy::Skip).await,
        vec![100, 200, 450, 500, 600, 700]
    );
    // Burst: the two missed ticks run back to back, then the grid resumes.
    assert_eq!(
        late_run_starts(MissedTickPolicy::Burst).await,
        vec![100, 200, 450, 460, 500, 600, 700]
    );
    // Delay: the period restarts from the late run.
    assert_eq!(
        late_run_starts(MissedTickPolicy::Delay).await,
        vec![100, 200, 450, 550, 650, 750]
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_delays_each_run_within_its_bound() {
    let scheduler = Scheduler::new();
    let origin = Instant::now();
    let (starts, job) = recorder(origin, Duration::ZERO);
    scheduler.spawn(
        "jittered",
        Schedule::every(Duration::from_secs(1)).jitter(300 * MS),
        job,
    );
    tokio::time::sleep(Duration::from_millis(20_500)).await;
    scheduler.shutdown().await;
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 20);
    for (i, at) in starts.iter().enumerate() {
        let tick = (i as u64 + 1) * 1000;
        assert!(
            (tick..=tick + 300).contains(at),
            "run {i} at {at}ms, tick {tick}ms"
        );
    }
    assert!(
        starts.iter().any(|at| at % 1000 != 0),
        "jitter moved no run: {starts:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn failures_and_panics_are_counted_and_the_schedule_goes_on() {
    let scheduler = Scheduler::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let handle = scheduler.spawn("flaky", Schedule::every(100 * MS), move || {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            match n % 3 {
                0 => Ok(()),
                1 => Err("upstream down"),
                _ => panic!("job bug"),
            }
        }
    });
    tokio::time::sleep(650 * MS).await;
    assert_eq!(handle.runs(), 6);
    assert_eq!(handle.failures(), 4);
    scheduler.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_future_runs_and_lets_the_current_one_finish() {
    let scheduler = Scheduler::new();
    let finished = Arc::new(AtomicUsize::new(0));
    let f = Arc::clone(&finished);
    let handle = scheduler.spawn(
        "cancelled",
        Schedule::every(100 * MS).first_after(Duration::ZERO),
        move || {
            let f = Arc::clone(&f);
            async move {
                tokio::time::sleep(50 * MS).await;
                f.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        },
    );
    tokio::time::sleep(225 * MS).await; // runs at 0 and 100 done, run at 200 in progress
    handle.cancel();
    assert!(handle.is_cancelled());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(finished.load(Ordering::SeqCst), 3);
    assert_eq!(handle.runs(), 3);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_scheduler_cancels_its_jobs() {
    let scheduler = Scheduler::new();
    let origin = Instant::now();
    let (starts, job) = recorder(origin, Duration::ZERO);
    let handle = scheduler.spawn("dropped", Schedule::every(100 * MS), job);
    tokio::time::sleep(250 * MS).await;
    drop(scheduler);
    assert!(handle.is_cancelled());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(*starts.lock().unwrap(), vec![100, 200]);
}
