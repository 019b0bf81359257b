//! RedisTaskQueue against the real Redis, a Redis Cluster of the test's
//! own and a primary behind Sentinels of its own (each test runs on all
//! three): a worker process killed with
//! SIGKILL mid-task loses no task; unacknowledged tasks are reclaimed only
//! after the visibility timeout; bad entries and tasks handed out too often
//! go to the dead-letter stream.
#![cfg(feature = "redis")]

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_concurrency::redis::AsyncCommands;
use keel_concurrency::{QueueError, RedisQueueOptions, RedisTaskQueue};
use keel_test_support::{OwnCluster, OwnSentinel, TestTopology, on_every_topology};

/// Set in the child process: which role the re-invoked test plays.
const ROLE: &str = "KEEL_TEST_QUEUE_ROLE";
const URL: &str = "KEEL_TEST_QUEUE_URL";
const PREFIX: &str = "KEEL_TEST_QUEUE_PREFIX";
const TASKS: u64 = 20;
/// The child hangs (mid-task) on the task it starts after this many.
const CHILD_FINISHES: usize = 3;

fn options(prefix: &str, consumer: &str, visibility: Duration) -> RedisQueueOptions {
    RedisQueueOptions {
        consumer: consumer.to_owned(),
        visibility_timeout: visibility,
        ..RedisQueueOptions::new(format!("{prefix}:jobs"))
    }
}

/// The killed worker: takes tasks two at a time, records each as started,
/// finishes and acknowledges a few, then hangs in the middle of the next
/// one until the parent kills it.
async fn child_worker(url: &str, prefix: &str) {
    let mut conn = keel_test_support::topology_connection(url).await.unwrap();
    let queue: RedisTaskQueue<u64> =
        RedisTaskQueue::open(url, options(prefix, "child", Duration::from_secs(60)))
            .await
            .unwrap();
    let mut finished = 0;
    loop {
        for delivery in queue.fetch(2, Duration::from_millis(200)).await.unwrap() {
            let _: () = conn
                .sadd(format!("{prefix}:started"), delivery.task)
                .await
                .unwrap();
            if finished == CHILD_FINISHES {
                // Mid-task: never finishes; the parent sends SIGKILL.
                std::future::pending::<()>().await;
            }
            let _: () = conn
                .sadd(format!("{prefix}:done"), delivery.task)
                .await
                .unwrap();
            queue.ack(&delivery.id).await.unwrap();
            finished += 1;
        }
    }
}

on_every_topology!(worker_killed_mid_task_loses_no_task);

async fn worker_killed_mid_task_loses_no_task(redis: TestTopology) {
    if std::env::var(ROLE).as_deref() == Ok("child") {
        let (url, prefix) = (std::env::var(URL).unwrap(), std::env::var(PREFIX).unwrap());
        child_worker(&url, &prefix).await;
        return;
    }
    let mut conn = redis.connection().await.unwrap();
    let producer: RedisTaskQueue<u64> = RedisTaskQueue::open(
        &redis.url(),
        options(redis.prefix(), "producer", Duration::from_secs(60)),
    )
    .await
    .unwrap();
    for task in 0..TASKS {
        producer.enqueue(&task).await.unwrap();
    }

    // The child runs the single-server test, which plays the child's role
    // on whatever URL it is given.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "worker_killed_mid_task_loses_no_task::on_one_server",
            "--nocapture",
        ])
        .env(ROLE, "child")
        .env(URL, redis.url())
        .env(PREFIX, redis.prefix())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    // Wait until the child is in the middle of a task.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let started: usize = conn.scard(redis.key("started")).await.unwrap();
        if started > CHILD_FINISHES {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("worker child exited early with {status}");
        }
        assert!(Instant::now() < deadline, "worker child made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let done: BTreeSet<u64> = conn.smembers(redis.key("done")).await.unwrap();
    let started: BTreeSet<u64> = conn.smembers(redis.key("started")).await.unwrap();
    assert_eq!(done.len(), CHILD_FINISHES);
    let interrupted: Vec<u64> = started.difference(&done).copied().collect();
    assert_eq!(interrupted.len(), 1, "one task was cut off mid-way");
    assert!(producer.pending().await.unwrap() >= 1);

    // A second worker. The child is dead (waited for above), so its
    // entries may be taken over at once: a zero visibility timeout.
    let rescuer: RedisTaskQueue<u64> = RedisTaskQueue::open(
        &redis.url(),
        options(redis.prefix(), "rescuer", Duration::ZERO),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for delivery in rescuer.fetch(5, Duration::from_millis(100)).await.unwrap() {
            let _: () = conn.sadd(redis.key("done"), delivery.task).await.unwrap();
            rescuer.ack(&delivery.id).await.unwrap();
        }
        let finished: usize = conn.scard(redis.key("done")).await.unwrap();
        if finished as u64 == TASKS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {finished} of {TASKS} tasks done"
        );
    }
    let done: BTreeSet<u64> = conn.smembers(redis.key("done")).await.unwrap();
    assert_eq!(
        done,
        (0..TASKS).collect::<BTreeSet<u64>>(),
        "every enqueued task was processed"
    );
    assert!(done.contains(&interrupted[0]));
    assert_eq!(rescuer.pending().await.unwrap(), 0);
    assert_eq!(
        rescuer.stream_len().await.unwrap(),
        0,
        "acknowledged tasks leave the stream"
    );
}

on_every_topology!(unacknowledged_task_is_reclaimed_only_after_visibility_timeout);

async fn unacknowledged_task_is_reclaimed_only_after_visibility_timeout(redis: TestTopology) {
    let long = Duration::from_secs(3600);
    let a: RedisTaskQueue<String> =
        RedisTaskQueue::open(&redis.url(), options(redis.prefix(), "a", long))
            .await
            .unwrap();
    let b: RedisTaskQueue<String> =
        RedisTaskQueue::open(&redis.url(), options(redis.prefix(), "b", long))
            .await
            .unwrap();
    a.enqueue(&"first".to_owned()).await.unwrap();
    a.enqueue(&"second".to_owned()).await.unwrap();

    let taken = a.fetch(1, Duration::from_millis(100)).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].task, "first");

    // b sees only the other task while a's is within its timeout.
    let other = b.fetch(10, Duration::from_millis(100)).await.unwrap();
    assert_eq!(
        other.iter().map(|d| d.task.as_str()).collect::<Vec<_>>(),
        ["second"]
    );
    b.ack(&other[0].id).await.unwrap();
    assert!(
        b.fetch(10, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );

    // Past the timeout (zero here) the same entry is handed out again.
    let c: RedisTaskQueue<String> =
        RedisTaskQueue::open(&redis.url(), options(redis.prefix(), "c", Duration::ZERO))
            .await
            .unwrap();
    let again = c.fetch(10, Duration::from_millis(50)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id.as_str(), again[0].task.as_str()),
        (taken[0].id.as_str(), "first")
    );
    c.ack(&again[0].id).await.unwrap();
    assert_eq!(c.pending().await.unwrap(), 0);
}

on_every_topology!(entry_that_is_not_a_task_goes_to_the_dead_letter_stream);

async fn entry_that_is_not_a_task_goes_to_the_dead_letter_stream(redis: TestTopology) {
    let queue: RedisTaskQueue<u64> = RedisTaskQueue::open(
        &redis.url(),
        options(redis.prefix(), "w", Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let mut conn = redis.connection().await.unwrap();
    let _: String = keel_concurrency::redis::cmd("XADD")
        .arg(redis.key("jobs"))
        .arg("*")
        .arg("task")
        .arg("not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    queue.enqueue(&5).await.unwrap();

    let got = queue.fetch(10, Duration::from_millis(50)).await.unwrap();
    assert_eq!(got.iter().map(|d| d.task).collect::<Vec<_>>(), [5]);
    assert_eq!(
        queue.pending().await.unwrap(),
        1,
        "the bad entry is not pending"
    );
    let dead: Vec<(String, Vec<(String, String)>)> = keel_concurrency::redis::cmd("XRANGE")
        .arg(redis.key("jobs:dead"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let fields = &dead[0].1;
    assert!(
        fields.contains(&("task".to_owned(), "not json".to_owned())),
        "{fields:?}"
    );
    assert!(
        fields
            .iter()
            .any(|(k, v)| k == "error" && v.contains("expected")),
        "{fields:?}"
    );
}

on_every_topology!(task_handed_out_more_than_max_deliveries_is_dead_lettered);

async fn task_handed_out_more_than_max_deliveries_is_dead_lettered(redis: TestTopology) {
    let url = redis.url();
    let worker = |name: &str| {
        let mut options = options(redis.prefix(), name, Duration::ZERO);
        options.max_deliveries = Some(2);
        RedisTaskQueue::<String>::open(&url, options)
    };
    let first = worker("first").await.unwrap();
    first
        .enqueue(&"crashes every worker".to_owned())
        .await
        .unwrap();

    // Delivery 1 (read) and 2 (reclaim): handed out, never acknowledged.
    assert_eq!(
        first
            .fetch(1, Duration::from_millis(50))
            .await
            .unwrap()
            .len(),
        1
    );
    let second = worker("second").await.unwrap();
    assert_eq!(
        second
            .fetch(1, Duration::from_millis(50))
            .await
            .unwrap()
            .len(),
        1
    );
    // Delivery 3 would exceed the limit: buried instead of handed out.
    let third = worker("third").await.unwrap();
    assert!(
        third
            .fetch(1, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(third.pending().await.unwrap(), 0);
    assert_eq!(third.stream_len().await.unwrap(), 0);

    let mut conn = redis.connection().await.unwrap();
    let dead: Vec<(String, Vec<(String, String)>)> = keel_concurrency::redis::cmd("XRANGE")
        .arg(redis.key("jobs:dead"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let fields = &dead[0].1;
    assert!(
        fields.contains(&("task".to_owned(), "\"crashes every worker\"".to_owned())),
        "{fields:?}"
    );
    assert!(
        fields.contains(&(
            "error".to_owned(),
            "handed out 3 times without an ack".to_owned()
        )),
        "{fields:?}"
    );
}

#[tokio::test]
async fn on_a_cluster_a_dead_letter_stream_in_another_slot_is_refused() {
    let Some(cluster) = OwnCluster::start(3, 0) else {
        return;
    };
    let untagged = RedisQueueOptions::new(keel_test_support::unique_name("jobs"));
    let error = RedisTaskQueue::<u64>::open(&cluster.url(), untagged)
        .await
        .unwrap_err();
    let QueueError::Config(problem) = error else {
        panic!("expected a config error, got {error:?}");
    };
    assert_eq!(problem.field, "dead_letter_stream");
    assert!(problem.reason.contains("hash tag"), "{problem}");
}

#[tokio::test]
async fn an_address_of_no_known_form_names_the_url() {
    let error =
        RedisTaskQueue::<u64>::open("http://127.0.0.1:6379", RedisQueueOptions::new("jobs"))
            .await
            .unwrap_err();
    let QueueError::Config(problem) = error else {
        panic!("expected a config error, got {error:?}");
    };
    assert_eq!(problem.field, "url");
    assert!(problem.reason.contains("redis+cluster://"), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_sentinels_the_queue_follows_a_failover_and_keeps_replicated_tasks() {
    let Some(mut sentinel) = OwnSentinel::start() else {
        return;
    };
    let url = sentinel.url();
    let prefix = keel_test_support::unique_name("queue");
    let queue: RedisTaskQueue<u64> =
        RedisTaskQueue::open(&url, options(&prefix, "w", Duration::from_secs(60)))
            .await
            .unwrap();
    for task in 0..5 {
        queue.enqueue(&task).await.unwrap();
    }
    // Replication is asynchronous: the replica has them before the
    // primary dies.
    let mut conn = keel_test_support::topology_connection(&url).await.unwrap();
    let replicas: i64 = keel_concurrency::redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(replicas, 1);

    sentinel.kill_primary();
    tokio::task::block_in_place(|| sentinel.wait_promoted(Duration::from_secs(30)));
    // The first call on each of the queue's two connections finds the
    // primary gone and fails; once a lookup finds the new primary (a
    // Sentinel may still name the old one for a moment), calls reach it.
    let mut failures = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while queue.enqueue(&99).await.is_err() {
        failures += 1;
        assert!(Instant::now() < deadline, "enqueue never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got = BTreeSet::new();
    while got.len() < 6 {
        assert!(Instant::now() < deadline, "only {got:?} fetched");
        match queue.fetch(10, Duration::from_millis(100)).await {
            Ok(deliveries) => {
                for delivery in deliveries {
                    got.insert(delivery.task);
                    queue.ack(&delivery.id).await.unwrap();
                }
            }
            Err(_) => failures += 1,
        }
    }
    assert_eq!(got, BTreeSet::from([0, 1, 2, 3, 4, 99]));
    assert!(
        failures <= 6,
        "{failures} calls failed: the queue did not settle on the new primary"
    );
}
