//! The pools' numbers on the `metrics` facade: each acquire's wait as it
//! happens once the manager has published, the rest when it publishes.

use std::time::Duration;

use keel_pool::{ConnectionPoolManager, DatabaseConnectionPool, PoolConfig};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// A recorded series: name, labels, value.
type Series = (String, Vec<(String, String)>, DebugValue);

#[tokio::test]
async fn acquire_waits_and_pool_figures_reach_the_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The test's runtime runs on this thread only.
    let _local = metrics::set_default_local_recorder(&recorder);

    let config = PoolConfig {
        max_connections: 2,
        min_connections: Some(1),
        connection_timeout: Duration::from_secs(5),
        ..PoolConfig::default()
    };
    let pool = DatabaseConnectionPool::connect("main", "sqlite::memory:", config)
        .await
        .unwrap();
    // A wait before the first publish is in the pool's own stats only:
    // the pool cannot know whether the recorder current at its build is
    // the process's last.
    pool.fetch_all("SELECT 1", &[]).await.unwrap();
    let mut manager = ConnectionPoolManager::default();
    manager.insert_db(pool.clone());
    manager.publish_metrics();
    for _ in 0..3 {
        pool.fetch_all("SELECT 1", &[]).await.unwrap();
    }
    manager.publish_metrics();

    let recorded: Vec<Series> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    let find = |name: &str| {
        recorded
            .iter()
            .find(|(n, labels, _)| {
                n == name && labels.iter().any(|(k, v)| k == "pool" && v == "db.main")
            })
            .map(|(_, _, v)| v)
            .unwrap_or_else(|| panic!("{name} not in {recorded:?}"))
    };
    match find("keel_pool_acquire_wait_seconds") {
        DebugValue::Histogram(waits) => assert_eq!(waits.len(), 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(find("keel_pool_acquired_total"), &DebugValue::Counter(4));
    assert_eq!(
        find("keel_pool_max_connections"),
        &DebugValue::Gauge(2.0.into())
    );
    assert_eq!(find("keel_pool_timeouts_total"), &DebugValue::Counter(0));
}
