//! Single-flight loading: one loader call per missing key however many
//! callers, errors and panics shared and not cached, cancellation harmless.
//!
//! The concurrent tests run on a current-thread runtime so "every caller has
//! joined the load" is observable: a caller joins during its first poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keel_cache::{LoadError, LocalCache};
use tokio::sync::watch;

/// A gate loaders wait on; once opened it stays open.
fn gate() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

async fn pass(mut gate: watch::Receiver<bool>) {
    let _ = gate.wait_for(|open| *open).await;
}

/// Yields until `n` callers have started (and so joined the flight).
async fn until_started(started: &AtomicUsize, n: usize) {
    while started.load(Ordering::SeqCst) < n {
        tokio::task::yield_now().await;
    }
    tokio::task::yield_now().await;
}

#[tokio::test]
async fn hundred_concurrent_callers_share_one_loader_call() {
    let cache: LocalCache<u64, u64> = LocalCache::new(100);
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (open, gate) = gate();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (cache, calls, gate, started) =
            (cache.clone(), calls.clone(), gate.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            cache
                .get_or_load(7, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    pass(gate).await;
                    49
                })
                .await
        }));
    }
    until_started(&started, 100).await;
    let _ = open.send(true);
    for t in tasks {
        assert_eq!(t.await.expect("caller task").expect("load"), 49);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get(&7), Some(49));
    let s = cache.stats();
    assert_eq!((s.loads_ok, s.loads_failed), (1, 0));
}

#[tokio::test]
async fn loader_error_reaches_every_waiter_and_is_not_cached() {
    let cache: LocalCache<u64, u64> = LocalCache::new(100);
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (open, gate) = gate();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (cache, calls, gate, started) =
            (cache.clone(), calls.clone(), gate.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            cache
                .try_get_or_load(1, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    pass(gate).await;
                    Err::<u64, _>("backend down")
                })
                .await
        }));
    }
    until_started(&started, 20).await;
    let _ = open.send(true);
    for t in tasks {
        let err = t.await.expect("caller task").expect_err("load failed");
        assert_eq!(err.loader_error(), Some(&"backend down"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(!cache.contains_key(&1));
    // The next call loads again.
    let v = cache
        .try_get_or_load(1, || async { Ok::<_, &str>(5) })
        .await
        .expect("second load");
    assert_eq!(v, 5);
    let s = cache.stats();
    assert_eq!((s.loads_ok, s.loads_failed), (1, 1));
}

#[tokio::test]
async fn cancelled_caller_does_not_cancel_the_load() {
    let cache: LocalCache<u64, u64> = LocalCache::new(100);
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (open, gate) = gate();
    let first = {
        let (cache, calls, gate, started) =
            (cache.clone(), calls.clone(), gate.clone(), started.clone());
        tokio::spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            cache
                .get_or_load(3, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    pass(gate).await;
                    9
                })
                .await
        })
    };
    until_started(&started, 1).await;
    let second = {
        let (cache, started) = (cache.clone(), started.clone());
        tokio::spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            cache.get_or_load(3, || async { 100 }).await
        })
    };
    until_started(&started, 2).await;
    first.abort();
    assert!(first.await.expect_err("aborted").is_cancelled());
    let _ = open.send(true);
    assert_eq!(second.await.expect("second caller").expect("load"), 9);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get(&3), Some(9));
}

#[tokio::test]
async fn load_finishes_even_if_every_caller_gives_up() {
    let cache: LocalCache<u64, u64> = LocalCache::new(100);
    let (open, gate) = gate();
    // Poll the call once (it starts the load), then drop it.
    let gave_up = tokio::select! {
        biased;
        v = cache.get_or_load(4, move || async move {
            pass(gate).await;
            16
        }) => Some(v),
        () = std::future::ready(()) => None,
    };
    assert!(gave_up.is_none());
    let _ = open.send(true);
    // Joining the same flight returns the loaded value, not a second load.
    let v = cache.get_or_load(4, || async { 0 }).await.expect("load");
    assert_eq!(v, 16);
}

#[tokio::test]
async fn panicking_loader_is_an_error_not_a_poisoned_key() {
    let cache: LocalCache<u64, u64> = LocalCache::new(100);
    let a = cache.clone();
    let b = cache.clone();
    let (ra, rb) = tokio::join!(
        a.get_or_load(8, || async { panic!("loader bug") }),
        b.get_or_load(8, || async { 1 }),
    );
    assert!(matches!(ra, Err(LoadError::Panicked)));
    assert!(matches!(rb, Err(LoadError::Panicked)));
    let v = cache.get_or_load(8, || async { 64 }).await.expect("reload");
    assert_eq!(v, 64);
    assert_eq!(cache.stats().loads_failed, 1);
}

#[test]
fn loading_outside_a_runtime_is_an_error() {
    let cache: LocalCache<u64, u64> = LocalCache::new(100);
    let out = futures_lite_block_on(cache.get_or_load(1, || async { 1 }));
    assert!(matches!(out, Err(LoadError::NoRuntime)));
    assert_eq!(
        LoadError::<()>::NoRuntime.to_string(),
        "loading needs a tokio runtime and none is running"
    );
}

/// Polls a future that never waits to completion without a runtime.
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[tokio::test]
async fn cached_value_skips_the_loader() {
    let cache: LocalCache<u64, u64> = LocalCache::new(100);
    cache.insert(2, 4);
    let v = cache
        .get_or_load(2, || async { unreachable!("value is cached") })
        .await
        .expect("cached");
    assert_eq!(v, 4);
}
