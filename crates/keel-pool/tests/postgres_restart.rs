//! Database pools on a private PostgreSQL the test starts, stops and
//! starts again (the shared server is never touched): a wrong password
//! fails at once, and a restart under traffic costs only the statements
//! running at that moment.

#![cfg(feature = "postgres")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keel_pool::{ConnectionStatus, DatabaseConnectionPool, PoolConfig, PoolError};
use keel_test_support::{OWN_POSTGRES_PASSWORD, OwnPostgres};

#[tokio::test]
async fn a_wrong_password_fails_well_before_connection_timeout() {
    let Some(server) = tokio::task::spawn_blocking(OwnPostgres::start)
        .await
        .unwrap()
    else {
        return;
    };
    let url = server
        .url()
        .replace(OWN_POSTGRES_PASSWORD, "not-the-password");
    let config = PoolConfig {
        connection_timeout: Duration::from_secs(20),
        ..PoolConfig::default()
    };
    let started = Instant::now();
    let err = DatabaseConnectionPool::connect("wrong-pw", &url, config)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?} of 20 s");
    assert!(
        matches!(&err, PoolError::Authentication { user, .. } if user == "postgres"),
        "{err:?}"
    );
    let text = err.to_string();
    assert_eq!(
        text,
        "pool wrong-pw: authentication failed for user \"postgres\": wrong password or no access"
    );
    assert!(!err.is_transient());
    // The right password works against the same server.
    let pool = DatabaseConnectionPool::connect("right-pw", &server.url(), PoolConfig::default())
        .await
        .unwrap();
    assert_eq!(
        pool.fetch_one("SELECT 1 AS one", &[]).await.unwrap()["one"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_traffic_fails_only_the_statements_in_flight() {
    let Some(server) = tokio::task::spawn_blocking(OwnPostgres::start)
        .await
        .unwrap()
    else {
        return;
    };
    let server = Arc::new(server);
    const WORKERS: usize = 4;
    // More pooled connections than workers: most are idle when the server
    // goes away, and none of them may fail a caller. The health check is
    // kept out of the way: the checks before use alone must do it.
    let config = PoolConfig {
        max_connections: 12,
        min_connections: Some(12),
        connection_timeout: Duration::from_secs(20),
        health_check_interval: Duration::from_secs(3),
        ..PoolConfig::default()
    };
    let pool = DatabaseConnectionPool::connect("restart", &server.url(), config)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (pool, stop, ok, failed) = (
            pool.clone(),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
        );
        workers.push(tokio::spawn(async move {
            let mut my_failures = 0;
            while !stop.load(Ordering::SeqCst) {
                match pool
                    .fetch_one("SELECT pg_sleep(0.005), 1 AS one", &[])
                    .await
                {
                    Ok(row) => {
                        assert_eq!(row["one"], 1);
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(err) => {
                        assert!(err.is_transient(), "{err:?}");
                        my_failures += 1;
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                // Each worker's idle connections rotate, so some have been
                // idle a while, like a real service's.
                tokio::time::sleep(Duration::from_millis(fastrand_ms())).await;
            }
            my_failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ok.load(Ordering::SeqCst);
    assert!(before > 0, "traffic flows before the restart");

    {
        let server = Arc::clone(&server);
        tokio::task::spawn_blocking(move || {
            server.stop();
            std::thread::sleep(Duration::from_millis(500));
            server.start_again();
        })
        .await
        .unwrap();
    }
    let restarted_at = ok.load(Ordering::SeqCst);
    let recovered = support::eventually(Duration::from_secs(20), async || {
        ok.load(Ordering::SeqCst) > restarted_at + 50
    })
    .await;
    assert!(recovered, "traffic resumes by itself after the restart");
    let failed_by_then = failed.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut per_worker = Vec::new();
    for w in workers {
        per_worker.push(w.await.unwrap());
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        failed_by_then,
        "no failures once traffic resumed"
    );
    assert!(
        per_worker.iter().all(|&f| f <= 1),
        "each worker had at most its one statement in flight fail: {per_worker:?}"
    );
    let stats = pool.stats();
    assert_eq!(stats.errors as usize, failed_by_then, "{stats:?}");
    assert_eq!(stats.timed_out, 0, "{stats:?}");
    let healthy = support::eventually(Duration::from_secs(10), async || {
        pool.health() == ConnectionStatus::Healthy
    })
    .await;
    assert!(healthy, "health recovers: {:?}", pool.health());
}

fn fastrand_ms() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher as _;
    RandomState::new().hash_one(Instant::now()) % 20
}
