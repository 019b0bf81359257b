//! Executor: order, bounded parallelism, backpressure, panics, shutdown, config.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use keel_concurrency::{Executor, ExecutorError, ThreadPoolConfig};

fn pool(min: usize, max: usize, queue: usize) -> Executor {
    Executor::new(ThreadPoolConfig {
        min_workers: min,
        max_workers: max,
        queue_size: queue,
        ..ThreadPoolConfig::default()
    })
    .unwrap()
}

/// Counts tasks running at once and remembers the most ever seen.
#[derive(Default)]
struct HighWater {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl HighWater {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn map_keeps_input_order_and_never_exceeds_max_workers() {
    let executor = pool(1, 3, 8);
    let seen = Arc::new(HighWater::default());
    let probe = Arc::clone(&seen);
    let results = executor
        .map(
            move |i: u64| {
                probe.enter();
                // Enough work per item for chunks to overlap in time.
                let mut x = i;
                for _ in 0..20_000 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                std::hint::black_box(x);
                probe.leave();
                i * 2
            },
            0..5_000u64,
        )
        .await
        .unwrap();
    assert_eq!(results, (0..5_000u64).map(|i| i * 2).collect::<Vec<_>>());
    let max = seen.max.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&max),
        "ran {max} at once with max_workers = 3"
    );
    assert!(executor.stats().workers <= 3);
}

#[tokio::test]
async fn map_with_slow_items_grows_to_max_workers_but_not_beyond() {
    // One item per chunk (few items): every item is its own task, each
    // waits until 4 run at once, so the pool must grow from 1 to 4.
    let executor = pool(1, 4, 16);
    let seen = Arc::new(HighWater::default());
    let barrier = Arc::new(Barrier::new(4));
    let (probe, gate) = (Arc::clone(&seen), Arc::clone(&barrier));
    let results = executor
        .map(
            move |i: usize| {
                probe.enter();
                gate.wait();
                probe.leave();
                i
            },
            0..8usize,
        )
        .await
        .unwrap();
    assert_eq!(results, (0..8).collect::<Vec<_>>());
    assert_eq!(seen.max.load(Ordering::SeqCst), 4);
    assert_eq!(executor.stats().completed, 8);
}

#[tokio::test]
async fn idle_workers_above_min_exit_after_keep_alive() {
    // keep_alive = 0: a worker above min_workers exits as soon as it finds
    // no work, so nothing has to expire in real time.
    let executor = Executor::new(ThreadPoolConfig {
        min_workers: 1,
        max_workers: 4,
        queue_size: 8,
        keep_alive: Duration::ZERO,
    })
    .unwrap();
    let barrier = Arc::new(Barrier::new(4));
    let gate = Arc::clone(&barrier);
    executor
        .map(
            move |_: u8| {
                gate.wait();
            },
            0..4u8,
        )
        .await
        .unwrap();
    // Wait for the three extra threads to notice and exit.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while executor.stats().workers > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            executor.stats()
        );
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
    assert_eq!(executor.stats().workers, 1, "min_workers stay");
    // And the pool grows again on demand.
    assert_eq!(
        executor.map(|x: u8| x + 1, 0..3u8).await.unwrap(),
        vec![1, 2, 3]
    );
}

#[tokio::test]
async fn submit_returns_the_result_and_runs_off_the_runtime_threads() {
    let executor = pool(1, 2, 4);
    let runtime_thread = std::thread::current().id();
    let (value, thread) = executor
        .submit(|| (21 * 2, std::thread::current().id()))
        .await
        .unwrap();
    assert_eq!(value, 42);
    assert_ne!(thread, runtime_thread);
}

#[tokio::test]
async fn full_queue_rejects_try_submit_and_makes_submit_wait() {
    let executor = pool(1, 1, 2);
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    // Occupy the only worker until released.
    let blocker = executor
        .try_submit(move || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        })
        .unwrap();
    started_rx.recv().unwrap();
    // Two more fill the queue; the third is turned away.
    let queued: Vec<_> = (0..2)
        .map(|i| executor.try_submit(move || i).unwrap())
        .collect();
    assert!(matches!(
        executor.try_submit(|| 99),
        Err(ExecutorError::Full)
    ));
    assert_eq!(executor.stats().rejected, 1);
    assert_eq!(executor.stats().queued, 2);

    // `submit` waits for room instead of failing.
    let waiting = {
        let executor = executor.clone();
        tokio::spawn(async move { executor.submit(|| 7).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    release_tx.send(()).unwrap();
    blocker.await.unwrap();
    for (i, handle) in queued.into_iter().enumerate() {
        assert_eq!(handle.await.unwrap(), i);
    }
    assert_eq!(waiting.await.unwrap().unwrap(), 7);
}

#[tokio::test]
async fn a_panicking_task_is_an_error_and_the_pool_keeps_working() {
    let executor = pool(1, 1, 4);
    let err = executor
        .submit(|| -> u32 { panic!("boom at item 3") })
        .await
        .unwrap_err();
    assert_eq!(err, ExecutorError::Panicked("boom at item 3".to_owned()));
    assert_eq!(executor.submit(|| 5).await.unwrap(), 5);
    let stats = executor.stats();
    assert_eq!((stats.panicked, stats.completed), (1, 1));

    let err = executor
        .map(|x: u32| if x == 3 { panic!("bad item") } else { x }, 0..10)
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutorError::Panicked(_)));
}

#[tokio::test]
async fn shutdown_finishes_queued_work_then_refuses_more() {
    let executor = pool(1, 1, 16);
    let done = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let done = Arc::clone(&done);
            executor
                .try_submit(move || {
                    std::thread::sleep(Duration::from_millis(2));
                    done.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap()
        })
        .collect();
    executor.shutdown(Duration::from_secs(30)).await.unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 10);
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(executor.stats().workers, 0);
    assert!(matches!(
        executor.submit(|| 1).await,
        Err(ExecutorError::Shutdown)
    ));
    assert!(matches!(
        executor.try_submit(|| 1),
        Err(ExecutorError::Shutdown)
    ));
}

#[tokio::test]
async fn shutdown_timeout_reports_unfinished_work() {
    let executor = pool(1, 1, 4);
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let blocker = executor
        .try_submit(move || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        })
        .unwrap();
    started_rx.recv().unwrap();
    let err = executor
        .shutdown(Duration::from_millis(1))
        .await
        .unwrap_err();
    assert_eq!(err, ExecutorError::ShutdownTimeout(1));
    release_tx.send(()).unwrap();
    blocker.await.unwrap();
}

#[test]
fn config_reads_the_thread_pool_section_and_rejects_bad_values() {
    let config: ThreadPoolConfig =
        toml::from_str("min_workers = 2\nmax_workers = 8\nqueue_size = 64\nkeep_alive = \"5s\"\n")
            .unwrap();
    assert_eq!(config.min_workers, 2);
    assert_eq!(config.keep_alive, Duration::from_secs(5));

    let defaults: ThreadPoolConfig = toml::from_str("").unwrap();
    assert_eq!(
        (
            defaults.min_workers,
            defaults.max_workers,
            defaults.queue_size
        ),
        (5, 20, 1000)
    );

    let zero = toml::from_str::<ThreadPoolConfig>("max_workers = 0").unwrap_err();
    assert!(zero.to_string().contains("at least 1"), "{zero}");
    let unknown = toml::from_str::<ThreadPoolConfig>("workers = 3").unwrap_err();
    assert!(unknown.to_string().contains("unknown field"), "{unknown}");

    let inverted = Executor::new(ThreadPoolConfig {
        min_workers: 9,
        max_workers: 4,
        ..ThreadPoolConfig::default()
    })
    .unwrap_err();
    assert_eq!(inverted.field, "thread_pool.min_workers");
    assert_eq!(
        inverted.to_string(),
        "thread_pool.min_workers: must be at most max_workers (4), got 9"
    );
}
