//! The process-wide sweeper: one background thread that reclaims the
//! expired entries of caches nobody writes to, so their memory comes back
//! without a caller touching the keys.
//!
//! Caches register a weak handle and their interval; the thread sleeps
//! until the next cache is due, sweeps it and forgets the caches that were
//! dropped. It starts with the first registration and ends when no cache
//! is left (within one interval of the last one being dropped), so an idle
//! process has no sweeper. A sweep is `purge_expired`: per shard, the write
//! lock, and at once out again when nothing has a deadline.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The finest interval the sweeper keeps.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

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

struct State {
    caches: Vec<Registration>,
    /// Whether the thread is running (or about to).
    running: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    caches: Vec::new(),
    running: false,
});

/// Wakes the thread when a cache is added (it may be due sooner).
static ADDED: Condvar = Condvar::new();

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds a cache to the sweeper, starting its thread if none runs. Under
/// loom (which cannot model it) or if the thread cannot start, nothing is
/// swept in the background: writes and `purge_expired` still reclaim.
pub(crate) fn register(cache: Box<dyn Sweep>, every: Duration) {
    if cfg!(keel_loom) {
        return;
    }
    let every = every.max(MIN_INTERVAL);
    let mut state = state();
    state.caches.push(Registration {
        cache,
        every,
        due: Instant::now() + every,
    });
    if state.running {
        ADDED.notify_one();
        return;
    }
    let started = std::thread::Builder::new()
        .name("keel-cache-sweeper".to_owned())
        .spawn(run);
    match started {
        Ok(_) => state.running = true,
        Err(error) => {
            tracing::warn!(%error, "cannot start the cache sweeper; expired entries are reclaimed by writes only");
            state.caches.clear();
        }
    }
}

fn run() {
    let mut state = state();
    loop {
        let Some(next) = state.caches.iter().map(|r| r.due).min() else {
            state.running = false;
            return;
        };
        let now = Instant::now();
        if next > now {
            state = ADDED
                .wait_timeout(state, next - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        }
        // Take the due caches out so a sweep (and the listener calls it
        // makes) never runs under the lock.
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut state.caches)
            .into_iter()
            .partition(|r| r.due <= now);
        state.caches = rest;
        drop(state);
        let kept: Vec<Registration> = due
            .into_iter()
            .filter(|r| r.cache.sweep())
            .map(|mut r| {
                r.due = Instant::now() + r.every;
                r
            })
            .collect();
        state = self::state();
        state.caches.extend(kept);
    }
}
