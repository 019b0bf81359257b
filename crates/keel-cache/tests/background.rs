//! The room's background threads (the coarse clock's upkeep and the
//! sweeper) run only while a cache exists: an idle process has none, and
//! dropping the last cache stops them.

use std::time::{Duration, Instant};

use keel_cache::{CacheConfig, CacheManager, LocalCache, TieredCache};

/// The names of this process's threads (as the kernel keeps them: at most
/// 15 bytes).
fn threads() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

fn running(prefix: &str) -> bool {
    threads().iter().any(|name| name.starts_with(prefix))
}

/// Both threads run (a new thread takes its name a moment after it starts).
fn both_run() -> bool {
    eventually(Duration::from_secs(5), || {
        running(CLOCK) && running(SWEEPER)
    })
}

fn eventually(within: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check()
}

const CLOCK: &str = "quanta-upkeep";
const SWEEPER: &str = "keel-cache-swee";

#[tokio::test]
async fn the_clock_and_the_sweeper_run_only_while_a_cache_exists() {
    if !std::path::Path::new("/proc/self/task").exists() {
        return;
    }
    assert!(!running(CLOCK) && !running(SWEEPER), "{:?}", threads());

    let local: LocalCache<u64, u64> = LocalCache::builder(100)
        .time_to_live(Duration::from_millis(50))
        .build();
    local.insert(1, 1);
    assert!(both_run(), "{:?}", threads());
    // The sweeper reclaims the quiet cache's expired entry on its own.
    assert!(eventually(Duration::from_secs(5), || local.is_empty()));

    let mut config = CacheConfig::default();
    config.defaults.sweep_interval = Some(Duration::from_millis(20));
    let manager = CacheManager::new(config).unwrap();
    let tiered: TieredCache<String, u64> = manager.cache_or_default("quiet").unwrap();
    tiered.insert("a".into(), 1).await;
    let copy = local.clone();
    drop(local);
    assert!(
        both_run(),
        "a clone and the manager's cache keep them: {:?}",
        threads()
    );
    drop((copy, tiered, manager));
    assert!(
        eventually(Duration::from_secs(5), || !running(CLOCK)
            && !running(SWEEPER)),
        "both stop with the last cache: {:?}",
        threads()
    );

    // And start again with the next one.
    let again: LocalCache<u64, u64> = LocalCache::builder(10).build();
    again.insert(1, 1);
    assert!(both_run(), "{:?}", threads());
    assert_eq!(again.get(&1), Some(1));
}

#[test]
fn a_sweep_interval_below_ten_milliseconds_is_refused() {
    let mut config = CacheConfig::default();
    config.defaults.sweep_interval = Some(Duration::from_millis(5));
    let problems = config.validate().unwrap_err();
    assert_eq!(
        problems,
        [keel_cache::InvalidField::new(
            "cache.sweep_interval",
            "must be at least 10ms"
        )]
    );
}

#[tokio::test]
async fn a_quiet_cache_is_swept_at_the_configured_interval() {
    let mut config = CacheConfig::default();
    config.defaults.ttl = Some(Duration::from_millis(10));
    config.defaults.sweep_interval = Some(Duration::from_millis(20));
    let manager = CacheManager::new(config).unwrap();
    let quiet: TieredCache<String, u64> = manager.cache_or_default("quiet").unwrap();
    quiet.insert("a".into(), 1).await;
    assert_eq!(quiet.local_len(), 1);
    // Nothing writes to the cache again: only the sweeper reclaims the
    // expired copy, well before the default interval of one second.
    assert!(
        eventually(Duration::from_millis(600), || quiet.local_len() == 0),
        "{} entries left",
        quiet.local_len()
    );
}
