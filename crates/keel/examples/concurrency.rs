//! The executor's `map` over blocking work, and a priority task queue
//! served by a pool of async workers with retries.
//!
//! ```text
//! cargo run -p keel --example concurrency
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keel::KeelConfig;
use keel::concurrency::{Executor, Priority, TaskQueue};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = KeelConfig::from_toml(
        r#"
        [thread_pool]
        min_workers = 2
        max_workers = 4
        queue_size = 1000

        [task_queue]
        max_size = 10000
        batch_size = 100
        retry_limit = 3
        "#,
    )?;

    // CPU-heavy work on the executor's threads, results in input order.
    let executor = Executor::new(config.thread_pool)?;
    let sums = executor
        .map(|n: u64| (1..=n).sum::<u64>(), [10, 100, 1000])
        .await?;
    println!("sums: {sums:?}");
    assert_eq!(sums, [55, 5050, 500_500]);

    // Tasks by priority, four workers; a failing task is retried.
    let queue = TaskQueue::new(config.task_queue)?;
    let done = Arc::new(AtomicU64::new(0));
    let attempts = Arc::new(AtomicU64::new(0));
    let workers = queue.process(4, {
        let (done, attempts) = (Arc::clone(&done), Arc::clone(&attempts));
        move |order: u64| {
            let (done, attempts) = (Arc::clone(&done), Arc::clone(&attempts));
            async move {
                // Order 13 fails on its first attempt, then succeeds.
                if order == 13 && attempts.fetch_add(1, Ordering::Relaxed) == 0 {
                    return Err(format!("order {order}: payment service busy"));
                }
                done.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    });
    for order in 0..100 {
        let priority = if order % 10 == 0 {
            Priority::High
        } else {
            Priority::Normal
        };
        queue.put(order, priority).await?;
    }
    while done.load(Ordering::Relaxed) < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let unstarted = workers.shutdown().await;
    let stats = queue.stats();
    println!(
        "processed {} tasks, {} retried, {} left unstarted",
        done.load(Ordering::Relaxed),
        stats.retried,
        unstarted.len()
    );
    assert!(unstarted.is_empty());
    executor.shutdown(std::time::Duration::from_secs(5)).await?;
    Ok(())
}
