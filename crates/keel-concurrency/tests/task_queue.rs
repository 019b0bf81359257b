//! TaskQueue: priorities, backpressure, batches, retries with backoff on a
//! paused clock, dead letters, timeouts, shutdown.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_concurrency::{Priority, QueueError, TaskQueue, TaskQueueConfig};
use tokio::time::Instant;

fn queue<T>(config: TaskQueueConfig) -> TaskQueue<T> {
    TaskQueue::new(config).unwrap()
}

#[tokio::test]
async fn higher_priorities_come_first_and_fifo_within_one() {
    let q = queue(TaskQueueConfig::default());
    let input = [
        (1, Priority::Low),
        (2, Priority::Normal),
        (3, Priority::Critical),
        (4, Priority::Low),
        (5, Priority::High),
        (6, Priority::Normal),
        (7, Priority::Critical),
        (8, Priority::High),
    ];
    for (task, priority) in input {
        q.put(task, priority).await.unwrap();
    }
    let mut out = Vec::new();
    while let Some(task) = q.try_get() {
        out.push(task);
    }
    assert_eq!(out, vec![3, 7, 5, 8, 2, 6, 1, 4]);
}

#[tokio::test]
async fn full_queue_rejects_try_put_with_the_task_and_put_waits_for_room() {
    let q = queue(TaskQueueConfig {
        max_size: 2,
        ..TaskQueueConfig::default()
    });
    q.try_put("a", Priority::Normal).unwrap();
    q.try_put("b", Priority::Critical).unwrap();
    let rejected = q.try_put("c", Priority::High).unwrap_err();
    assert_eq!(rejected.task, "c");
    assert!(matches!(rejected.reason, QueueError::Full));
    assert_eq!(q.stats().rejected, 1);

    let producer = {
        let q = q.clone();
        tokio::spawn(async move { q.put("d", Priority::Low).await })
    };
    tokio::task::yield_now().await;
    assert!(
        !producer.is_finished(),
        "put must wait while the queue is full"
    );
    assert_eq!(q.get().await, Some("b"));
    producer.await.unwrap().unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.get().await, Some("a"));
    assert_eq!(q.get().await, Some("d"));
}

#[tokio::test]
async fn get_waits_for_a_task_and_ends_when_closed_and_drained() {
    let q = queue::<u32>(TaskQueueConfig::default());
    let consumer = {
        let q = q.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(task) = q.get().await {
                got.push(task);
            }
            got
        })
    };
    for i in 0..5 {
        q.put(i, Priority::Normal).await.unwrap();
        tokio::task::yield_now().await;
    }
    q.close();
    let closed = q.put(9, Priority::Normal).await.unwrap_err();
    assert!(matches!(closed.reason, QueueError::Closed));
    assert_eq!(consumer.await.unwrap(), vec![0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn get_batch_returns_at_most_batch_size_and_waits_at_most_the_given_time() {
    let q = queue(TaskQueueConfig {
        batch_size: 100,
        ..TaskQueueConfig::default()
    });
    for i in 0..250u32 {
        let priority = if i % 2 == 0 {
            Priority::High
        } else {
            Priority::Low
        };
        q.put(i, priority).await.unwrap();
    }
    let wait = Duration::from_secs(2);

    // Batches never exceed batch_size, come highest priority first, and do
    // not wait while tasks are queued, even when short.
    let start = Instant::now();
    let first = q.get_batch(wait).await;
    assert_eq!(first, (0..200).step_by(2).collect::<Vec<u32>>());
    assert_eq!(q.get_batch(wait).await.len(), 100);
    assert_eq!(q.get_batch(wait).await.len(), 50);
    assert_eq!(start.elapsed(), Duration::ZERO);

    // An empty queue: waits for the first task to arrive...
    let producer = {
        let q = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            q.put(7, Priority::Normal).await.unwrap();
        })
    };
    let start = Instant::now();
    assert_eq!(q.get_batch(wait).await, vec![7]);
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    producer.await.unwrap();

    // ...but no longer than `wait`.
    let start = Instant::now();
    assert!(q.get_batch(wait).await.is_empty());
    assert_eq!(start.elapsed(), wait);
}

#[tokio::test(start_paused = true)]
async fn failing_task_is_retried_retry_limit_times_with_growing_backoff_then_dead_lettered() {
    let config = TaskQueueConfig {
        retry_limit: 4,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(60),
        ..TaskQueueConfig::default()
    };
    let q = queue(config.clone());
    let attempts_at = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&attempts_at);
    let workers = q.process(1, move |task: &'static str| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().unwrap().push(Instant::now());
            Err(format!("{task} failed"))
        }
    });
    q.put("send mail", Priority::Normal).await.unwrap();
    // Wait (on the paused clock) until the task is dead-lettered.
    let letter = loop {
        if let Some(letter) = q.take_dead_letters().pop() {
            break letter;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letter.task, "send mail");
    assert_eq!(letter.attempts, 5);
    assert_eq!(letter.error, "send mail failed");

    let at = attempts_at.lock().unwrap().clone();
    assert_eq!(at.len(), 5, "1 attempt + retry_limit retries");
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, gap) in gaps.iter().enumerate() {
        // Retry n waits in [d/2, d] with d = base * 2^(n-1).
        let full = config.backoff_base * 2u32.pow(i as u32);
        assert!(
            *gap >= full / 2 && *gap <= full,
            "retry {} waited {gap:?}, expected {:?}..={full:?}",
            i + 1,
            full / 2
        );
    }
    assert!(
        gaps.windows(2).all(|w| w[1] >= w[0]),
        "backoff must grow: {gaps:?}"
    );

    let stats = q.stats();
    assert_eq!(
        (
            stats.failed_attempts,
            stats.retried,
            stats.dead_lettered,
            stats.succeeded
        ),
        (5, 4, 1, 0)
    );
    assert!(workers.shutdown().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_task_that_fails_then_succeeds_is_not_dead_lettered() {
    let q = queue(TaskQueueConfig::default());
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let workers = q.process(2, move |_: u32| {
        let counter = Arc::clone(&counter);
        async move {
            if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                Err("flaky")
            } else {
                Ok(())
            }
        }
    });
    q.put(1, Priority::Normal).await.unwrap();
    while q.stats().succeeded == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(q.take_dead_letters().is_empty());
    assert_eq!(q.stats().retried, 2);
    workers.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn attempts_over_task_timeout_and_panics_count_as_failures() {
    let q = queue(TaskQueueConfig {
        retry_limit: 1,
        task_timeout: Duration::from_secs(1),
        ..TaskQueueConfig::default()
    });
    let workers = q.process(1, |task: &'static str| async move {
        match task {
            "hang" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
            "panic" => panic!("handler bug"),
            _ => Ok::<(), String>(()),
        }
    });
    q.put("hang", Priority::Normal).await.unwrap();
    q.put("panic", Priority::Normal).await.unwrap();
    q.put("fine", Priority::Normal).await.unwrap();
    while q.stats().dead_lettered < 2 || q.stats().succeeded < 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut letters = q.take_dead_letters();
    letters.sort_by_key(|l| l.task);
    assert_eq!(letters[0].task, "hang");
    assert_eq!(letters[0].error, "timed out after 1s");
    assert_eq!(letters[1].task, "panic");
    assert_eq!(letters[1].error, "handler panicked");
    assert_eq!(q.stats().timed_out, 2);
    workers.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_tasks_and_hands_back_the_rest() {
    let q = queue(TaskQueueConfig::default());
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Notify::new());
    let finished = Arc::new(Mutex::new(Vec::new()));
    let workers = {
        let (release, finished) = (Arc::clone(&release), Arc::clone(&finished));
        q.process(2, move |task: u32| {
            let (started_tx, release, finished) = (
                started_tx.clone(),
                Arc::clone(&release),
                Arc::clone(&finished),
            );
            async move {
                started_tx.send(task).unwrap();
                release.notified().await;
                finished.lock().unwrap().push(task);
                Ok::<(), String>(())
            }
        })
    };
    for task in 0..10 {
        q.put(task, Priority::Normal).await.unwrap();
    }
    // Both workers are mid-task.
    let mut running = vec![
        started_rx.recv().await.unwrap(),
        started_rx.recv().await.unwrap(),
    ];
    running.sort();
    assert_eq!(running, vec![0, 1]);

    let shutdown = tokio::spawn(workers.shutdown());
    tokio::task::yield_now().await;
    assert!(q.is_closed());
    release.notify_waiters();
    let mut rest = shutdown.await.unwrap();
    rest.sort();
    let mut done = finished.lock().unwrap().clone();
    done.sort();
    assert_eq!(done, vec![0, 1], "in-flight tasks finish");
    assert_eq!(rest, (2..10).collect::<Vec<_>>(), "the others come back");
    assert_eq!(q.stats().succeeded, 2);
}

#[tokio::test(start_paused = true)]
async fn shutdown_hands_back_a_task_waiting_out_its_backoff() {
    let q = queue(TaskQueueConfig {
        backoff_base: Duration::from_secs(10),
        ..TaskQueueConfig::default()
    });
    let workers = q.process(1, |_: u32| async { Err::<(), _>("down") });
    q.put(7, Priority::Normal).await.unwrap();
    while q.stats().retried == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(workers.shutdown().await, vec![7]);
    assert!(q.take_dead_letters().is_empty());
}

#[tokio::test]
async fn many_producers_and_consumers_lose_and_duplicate_nothing() {
    let q = queue::<u64>(TaskQueueConfig {
        max_size: 64,
        ..TaskQueueConfig::default()
    });
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let q = q.clone();
            tokio::spawn(async move {
                for i in 0..5_000u64 {
                    let priority =
                        [Priority::Low, Priority::Normal, Priority::High][(i % 3) as usize];
                    q.put(p * 1_000_000 + i, priority).await.unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = q.get_batch(Duration::from_millis(5)).await;
                    if batch.is_empty() && q.is_closed() {
                        return got;
                    }
                    got.extend(batch);
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
    q.close();
    let mut all = Vec::new();
    for c in consumers {
        all.extend(c.await.unwrap());
    }
    all.sort_unstable();
    let mut expected: Vec<u64> = (0..4u64)
        .flat_map(|p| (0..5_000u64).map(move |i| p * 1_000_000 + i))
        .collect();
    expected.sort_unstable();
    assert_eq!(all, expected);
}

#[test]
fn config_reads_the_task_queue_section_and_rejects_bad_values() {
    let config: TaskQueueConfig = toml::from_str(
        "max_size = 500\nbatch_size = 10\nretry_limit = 5\ntask_timeout = \"2s\"\nbackoff_base = \"50ms\"\nbackoff_max = \"10s\"\n",
    )
    .unwrap();
    assert_eq!(config.max_size, 500);
    assert_eq!(config.backoff_base, Duration::from_millis(50));
    let defaults: TaskQueueConfig = toml::from_str("").unwrap();
    assert_eq!(
        (defaults.max_size, defaults.batch_size, defaults.retry_limit),
        (10_000, 100, 3)
    );
    let zero = toml::from_str::<TaskQueueConfig>("batch_size = 0").unwrap_err();
    assert!(zero.to_string().contains("at least 1"), "{zero}");
    let bad_duration = toml::from_str::<TaskQueueConfig>("task_timeout = \"soon\"").unwrap_err();
    assert!(
        bad_duration.to_string().contains("task_timeout"),
        "{bad_duration}"
    );
    let inverted = TaskQueue::<u8>::new(TaskQueueConfig {
        backoff_base: Duration::from_secs(5),
        backoff_max: Duration::from_secs(1),
        ..TaskQueueConfig::default()
    })
    .unwrap_err();
    assert_eq!(inverted.field, "task_queue.backoff_base");
}

/// Regression: a getter could see the closed queue with `len > 0` while
/// another getter had already taken the last task but not yet counted it,
/// then sleep forever because nobody woke it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getters_of_a_closed_queue_never_hang_when_racing_for_the_last_tasks() {
    // The race sits at the end of a round, so many short rounds.
    for round in 0..1_000u64 {
        let q = queue::<u64>(TaskQueueConfig {
            max_size: 64,
            ..TaskQueueConfig::default()
        });
        let getters: Vec<_> = (0..8)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move {
                    let mut sum = 0;
                    while let Some(task) = q.get().await {
                        sum += task;
                    }
                    sum
                })
            })
            .collect();
        for task in 0..1_000u64 {
            q.put(task, Priority::Normal).await.unwrap();
        }
        q.close();
        let all = tokio::time::timeout(Duration::from_secs(60), async {
            let mut total = 0;
            for getter in getters {
                total += getter.await.unwrap();
            }
            total
        })
        .await
        .unwrap_or_else(|_| panic!("getters hung in round {round}: {:?}", q.stats()));
        assert_eq!(all, (0..1_000u64).sum::<u64>());
    }
}
