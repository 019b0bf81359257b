//! The process-wide sweeper: one background thread that reclaims the
//! expired entries of caches nobody writes to, so their memory comes back
//! without a caller touching the keys.
//!
//! Caches register a weak handle and their interval; the thread wakes every
//! [`WAKE`], sweeps the caches that are due and forgets the ones that were
//! dropped. A sweep is `purge_expired`: per shard, the write lock, and at
//! once out again when nothing has a deadline.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often the thread looks for due caches; the finest interval it keeps.
const WAKE: Duration = Duration::from_millis(10);

/// A registered cache: sweeps it, or says it is gone.
pub(crate) trait Sweep: Send + Sync {
    /// Reclaims the cache's expired entries; false once the cache is dropped.
    fn sweep(&self) -> bool;
}

struct Registration {
    cache: Box<dyn Sweep>,
    every: Duration,
    due: Instant,
}

/// Adds a cache to the sweeper, starting its thread on first use. Under
/// loom (which cannot model it) or if the thread cannot start, nothing is
/// swept in the background: writes and `purge_expired` still reclaim.
pub(crate) fn register(cache: Box<dyn Sweep>, every: Duration) {
    if cfg!(keel_loom) {
        return;
    }
    let Some(list) = registry() else {
        return;
    };
    let every = every.max(WAKE);
    list.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Registration {
            cache,
            every,
            due: Instant::now() + every,
        });
}

fn registry() -> Option<&'static Mutex<Vec<Registration>>> {
    static LIST: OnceLock<Option<Mutex<Vec<Registration>>>> = OnceLock::new();
    LIST.get_or_init(|| {
        std::thread::Builder::new()
            .name("keel-cache-sweeper".to_owned())
            .spawn(run)
            .ok()
            .map(|_| Mutex::new(Vec::new()))
    })
    .as_ref()
}

fn run() {
    loop {
        std::thread::sleep(WAKE);
        let Some(list) = registry() else {
            return;
        };
        // Take the due caches out so a sweep (and the listener calls it
        // makes) never runs under the registry lock.
        let now = Instant::now();
        let due: Vec<Registration> = {
            let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
            let (due, rest) = std::mem::take(&mut *list)
                .into_iter()
                .partition(|r| r.due <= now);
            *list = rest;
            due
        };
        if due.is_empty() {
            continue;
        }
        let kept: Vec<Registration> = due
            .into_iter()
            .filter(|r| r.cache.sweep())
            .map(|mut r| {
                r.due = Instant::now() + r.every;
                r
            })
            .collect();
        list.lock().unwrap_or_else(|p| p.into_inner()).extend(kept);
    }
}
