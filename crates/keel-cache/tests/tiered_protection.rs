//! The tiered cache's protections on its local tier: single flight,
//! negative caching, Bloom filter, jitter, refresh-ahead, stale-if-error,
//! warming and snapshots. Time moves by hand; nothing sleeps for expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_cache::{BloomSettings, CacheSettings, Clock, LoadError, ManualClock, TieredCache};

fn settings() -> CacheSettings {
    let mut s = CacheSettings::default();
    s.capacity = 10_000;
    s.ttl = Some(Duration::from_secs(60));
    s
}

fn cache(s: CacheSettings) -> (TieredCache<u64, String>, ManualClock) {
    let (clock, time) = Clock::manual();
    let cache = TieredCache::builder("users", s)
        .clock(clock)
        .build()
        .unwrap();
    (cache, time)
}

type LoadFuture = std::pin::Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send>>;

fn counting_loader(
    calls: &Arc<AtomicUsize>,
    value: Option<&str>,
) -> impl FnOnce() -> LoadFuture + use<> {
    loader_taking(calls, value, Duration::ZERO)
}

/// A loader that counts its calls and takes `delay` (so callers overlap).
fn loader_taking(
    calls: &Arc<AtomicUsize>,
    value: Option<&str>,
    delay: Duration,
) -> impl FnOnce() -> LoadFuture + use<> {
    let calls = Arc::clone(calls);
    let value = value.map(str::to_owned);
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(value)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_callers_share_one_load() {
    let (cache, _time) = cache(settings());
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let cache = cache.clone();
        let loader = loader_taking(&calls, Some("ada"), Duration::from_millis(20));
        tasks.push(tokio::spawn(async move {
            cache.try_get_or_load(1, loader).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().as_deref(), Some("ada"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().loads, 1);
}

#[tokio::test]
async fn a_loader_error_reaches_every_waiter_and_is_not_cached() {
    let (cache, _time) = cache(settings());
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = |calls: &Arc<AtomicUsize>| {
        let calls = Arc::clone(calls);
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            Err::<Option<String>, _>("db down".to_owned())
        }
    };
    let (a, b) = tokio::join!(
        cache.try_get_or_load(1, failing(&calls)),
        cache.try_get_or_load(1, failing(&calls))
    );
    for r in [a, b] {
        match r {
            Err(LoadError::Loader(e)) => assert_eq!(*e, "db down"),
            other => panic!("expected the loader's error, got {other:?}"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let ok = cache
        .try_get_or_load(1, counting_loader(&calls, Some("back")))
        .await
        .unwrap();
    assert_eq!(ok.as_deref(), Some("back"), "the error was not cached");
}

#[tokio::test]
async fn a_panicking_loader_is_an_error_not_a_poisoned_key() {
    let (cache, _time) = cache(settings());
    let r = cache
        .try_get_or_load(1, || async {
            if true {
                panic!("loader bug");
            }
            Ok::<Option<String>, String>(None)
        })
        .await;
    assert!(matches!(r, Err(LoadError::Panicked)), "{r:?}");
    let calls = Arc::new(AtomicUsize::new(0));
    let ok = cache
        .try_get_or_load(1, counting_loader(&calls, Some("fine")))
        .await;
    assert_eq!(ok.unwrap().as_deref(), Some("fine"));
}

#[tokio::test]
async fn not_found_is_cached_for_the_negative_ttl_only() {
    let mut s = settings();
    s.negative_ttl = Some(Duration::from_secs(5));
    let (cache, time) = cache(s);
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let found = cache
            .try_get_or_load(9, counting_loader(&calls, None))
            .await
            .unwrap();
        assert_eq!(found, None);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "absence served from the cache"
    );
    assert_eq!(cache.stats().negative_hits, 2);

    time.advance(Duration::from_secs(6));
    cache
        .try_get_or_load(9, counting_loader(&calls, None))
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "absence expired after negative_ttl"
    );
}

#[tokio::test]
async fn without_negative_caching_not_found_loads_every_time() {
    let (cache, _time) = cache(settings());
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        cache
            .try_get_or_load(9, counting_loader(&calls, None))
            .await
            .unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_bloom_filter_answers_absent_without_loading_and_never_forgets_a_key() {
    let mut s = settings();
    s.bloom = Some({
        let mut b = BloomSettings::default();
        b.expected_items = 10_000;
        b
    });
    let (cache, _time) = cache(s);
    for k in 0..5_000u64 {
        cache.mark_exists(&k);
    }
    let calls = Arc::new(AtomicUsize::new(0));
    // Every known key reaches the loader (no false negatives).
    for k in 0..5_000u64 {
        cache
            .try_get_or_load(k, counting_loader(&calls, Some("v")))
            .await
            .unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5_000);
    // Unknown keys are answered absent, except for rare false positives.
    calls.store(0, Ordering::SeqCst);
    for k in 1_000_000..1_010_000u64 {
        let found = cache
            .try_get_or_load(k, counting_loader(&calls, None))
            .await
            .unwrap();
        assert_eq!(found, None);
    }
    let leaked = calls.load(Ordering::SeqCst);
    assert!(
        leaked < 300,
        "{leaked} of 10000 absent keys reached the loader"
    );
    assert_eq!(cache.stats().bloom_rejections as usize, 10_000 - leaked);

    // get_or_load has no value to give for a key known not to exist.
    let err = cache
        .get_or_load(2_000_000, || async { "v".to_owned() })
        .await;
    assert!(matches!(err, Err(LoadError::NotFound)), "{err:?}");

    // A value written by the application is known from then on.
    cache.insert(77_777_777, "new".into()).await;
    assert_eq!(cache.get(&77_777_777).await.as_deref(), Some("new"));
}

#[tokio::test]
async fn jitter_spreads_expiry_of_entries_written_together() {
    let mut s = settings();
    s.ttl = Some(Duration::from_secs(100));
    s.ttl_jitter = 0.5;
    let (cache, time) = cache(s);
    for k in 0..1_000u64 {
        cache.insert(k, "v".into()).await;
    }
    let mut alive = Vec::new();
    for step in [49, 60, 75, 90, 101] {
        time.advance(Duration::from_secs(step) - time.elapsed());
        let mut n = 0;
        for k in 0..1_000u64 {
            if cache.get(&k).await.is_some() {
                n += 1;
            }
        }
        alive.push(n);
    }
    // Nothing expires before half the TTL, everything by the full TTL, and
    // in between the entries leave gradually, not all at once.
    assert_eq!(alive[0], 1_000, "{alive:?}");
    assert_eq!(alive[4], 0, "{alive:?}");
    assert!(alive[1] < 1_000 && alive[1] > 0, "{alive:?}");
    assert!(alive[1] > alive[2] && alive[2] > alive[3], "{alive:?}");
}

#[tokio::test]
async fn insert_many_jitters_each_entry_on_its_own() {
    let mut s = settings();
    s.ttl = Some(Duration::from_secs(100));
    s.ttl_jitter = 0.5;
    let (cache, time) = cache(s);
    cache
        .insert_many((0..1_000u64).map(|k| (k, "v".to_owned())))
        .await;
    assert_eq!(cache.local_len(), 1_000);
    time.advance(Duration::from_secs(75));
    let mut alive = 0;
    for k in 0..1_000u64 {
        if cache.get(&k).await.is_some() {
            alive += 1;
        }
    }
    // Expiry uniform over 50..100 s: about half are left at 75 s.
    assert!((300..700).contains(&alive), "{alive} of 1000 alive at 75s");
}

#[tokio::test]
async fn refresh_ahead_serves_the_current_value_and_reloads_once_in_the_background() {
    let mut s = settings();
    s.refresh_after = Some(Duration::from_secs(40));
    let (cache, time) = cache(s);
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .try_get_or_load(1, counting_loader(&calls, Some("v1")))
        .await
        .unwrap();
    time.advance(Duration::from_secs(45));
    for _ in 0..10 {
        let got = cache
            .try_get_or_load(1, counting_loader(&calls, Some("v2")))
            .await
            .unwrap();
        assert_eq!(
            got.as_deref(),
            Some("v1"),
            "the current value is returned at once"
        );
    }
    for _ in 0..200 {
        if cache.get(&1).await.as_deref() == Some("v2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(cache.get(&1).await.as_deref(), Some("v2"));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one initial load, one refresh"
    );
    assert_eq!(cache.stats().refreshes, 1);
}

#[tokio::test]
async fn stale_if_error_serves_an_expired_value_within_max_stale() {
    let mut s = settings();
    s.max_stale = Some(Duration::from_secs(300));
    let (cache, time) = cache(s);
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .try_get_or_load(1, counting_loader(&calls, Some("old")))
        .await
        .unwrap();
    let failing = || async { Err::<Option<String>, _>("upstream down".to_owned()) };

    time.advance(Duration::from_secs(61));
    assert_eq!(
        cache.get(&1).await,
        None,
        "expired values are not served by get"
    );
    let got = cache.try_get_or_load(1, failing).await.unwrap();
    assert_eq!(
        got.as_deref(),
        Some("old"),
        "served stale on a loader error"
    );
    assert_eq!(cache.stats().stale_served, 1);

    time.advance(Duration::from_secs(301));
    let err = cache.try_get_or_load(1, failing).await;
    assert!(
        matches!(err, Err(LoadError::Loader(_))),
        "past max_stale the error shows"
    );

    let got = cache
        .try_get_or_load(1, counting_loader(&calls, Some("new")))
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("new"));
}

#[tokio::test]
async fn warming_loads_in_bulk_and_reports_what_it_did() {
    let (cache, _time) = cache(settings());
    let summary = cache
        .warm(
            0..1_000u64,
            |k| async move {
                match k % 100 {
                    0 => Err(format!("no {k}")),
                    1 => Ok(None),
                    _ => Ok(Some(format!("v{k}"))),
                }
            },
            16,
        )
        .await;
    assert_eq!(
        (summary.loaded, summary.absent, summary.failed),
        (980, 10, 10)
    );
    assert!(summary.rate() > 0.0);
    assert_eq!(cache.get(&5).await.as_deref(), Some("v5"));
    assert_eq!(cache.local_len(), 980);
}

#[tokio::test]
async fn a_snapshot_restores_fresh_entries_into_a_new_cache() {
    let dir = std::env::temp_dir().join(keel_test_support::unique_name("keel_snap"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("users.snap");

    let (cache, _) = cache(settings());
    for k in 0..100u64 {
        cache.insert(k, format!("v{k}")).await;
    }
    assert_eq!(cache.snapshot(&path).unwrap(), 100);

    let (restarted, _) = self::cache(settings());
    assert_eq!(restarted.restore(&path).unwrap(), 100);
    assert_eq!(restarted.get(&42).await.as_deref(), Some("v42"));

    std::fs::write(&path, b"garbage").unwrap();
    let err = restarted.restore(&path).unwrap_err();
    assert!(
        err.to_string().contains("not a keel cache snapshot"),
        "{err}"
    );
    let other: TieredCache<u64, Vec<u64>> = TieredCache::builder("x", settings()).build().unwrap();
    cache.snapshot(&path).unwrap();
    assert!(
        other.restore(&path).is_err(),
        "a snapshot of other types does not load"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_cancelled_caller_does_not_cancel_the_load_for_the_others() {
    let (cache, _time) = cache(settings());
    let calls = Arc::new(AtomicUsize::new(0));
    let first = {
        let cache = cache.clone();
        let loader = loader_taking(&calls, Some("v"), Duration::from_millis(50));
        tokio::spawn(async move { cache.try_get_or_load(1, loader).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let second = cache.try_get_or_load(1, loader_taking(&calls, Some("other"), Duration::ZERO));
    first.abort();
    assert_eq!(
        second.await.unwrap().as_deref(),
        Some("v"),
        "joined the first load"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        cache.get(&1).await.as_deref(),
        Some("v"),
        "the load still filled the cache"
    );
}

#[tokio::test]
async fn a_loader_says_how_long_its_value_is_kept_and_the_caller_learns_where_it_came_from() {
    use keel_cache::{Keep, Loaded, Served};
    let (cache, time) = cache(settings());
    let load = |value: &str, keep: Keep| {
        let value = value.to_owned();
        move || async move { Ok::<_, String>(Loaded::keep(Some(value), keep)) }
    };

    // Not kept: every call loads.
    let got = cache
        .try_get_or_load_with(1, load("a", Keep::Never))
        .await
        .unwrap();
    assert_eq!(
        (got.value.as_deref(), got.served),
        (Some("a"), Served::Loaded)
    );
    assert_eq!(cache.get(&1).await, None, "a `Never` value is not kept");

    // Kept for its own time, shorter than the cache's 60 s.
    let got = cache
        .try_get_or_load_with(2, load("b", Keep::For(Duration::from_secs(5))))
        .await
        .unwrap();
    assert_eq!(got.served, Served::Loaded);
    let got = cache
        .try_get_or_load_with(2, load("other", Keep::Default))
        .await
        .unwrap();
    assert_eq!(
        (got.value.as_deref(), got.served),
        (Some("b"), Served::Cached)
    );
    time.advance(Duration::from_secs(6));
    assert_eq!(cache.get(&2).await, None, "gone after its own 5 s");

    // A stale copy after a failed load says so.
    let mut s = settings();
    s.max_stale = Some(Duration::from_secs(600));
    let (cache, time) = self::cache(s);
    cache.insert(3, "old".into()).await;
    time.advance(Duration::from_secs(61));
    let got = cache
        .try_get_or_load_with(3, || async { Err::<Loaded<String>, _>("down".to_owned()) })
        .await
        .unwrap();
    assert_eq!(
        (got.value.as_deref(), got.served),
        (Some("old"), Served::Stale)
    );
}
