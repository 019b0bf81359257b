//! A refusal counter that keeps the refusal path free of locked
//! instructions: a refused `check` is then a load of the limiter's state
//! plus a plain store to a line only the calling thread writes.
//!
//! Each thread claims one of [`STRIPES`] stripe numbers for its lifetime
//! (returned when it exits); in every counter, only the thread holding
//! stripe `i` writes stripe `i`, so a load and a store count exactly.
//! Threads beyond that many share an extra stripe through `fetch_add`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::limiter::CacheAligned;

const STRIPES: usize = 16;

/// Stripe numbers free to claim (returned by exited threads) and the next
/// never-claimed one.
static RETURNED: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The calling thread's stripe, if it got one of its own.
struct Claim(Option<usize>);

impl Claim {
    fn new() -> Self {
        let returned = RETURNED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        Claim(returned.or_else(|| {
            NEXT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < STRIPES).then_some(n + 1)
            })
            .ok()
        }))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(stripe) = self.0 {
            // The mutex orders this thread's last stores before the next
            // claimer's loads.
            RETURNED
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(stripe);
        }
    }
}

thread_local! {
    static CLAIM: Claim = Claim::new();
}

/// Adds land on the calling thread's stripe; reads sum the stripes.
#[derive(Debug, Default)]
pub(crate) struct StripedCounter {
    stripes: [CacheAligned<AtomicU64>; STRIPES],
    shared: CacheAligned<AtomicU64>,
}

impl StripedCounter {
    #[inline]
    pub(crate) fn increment(&self) {
        match CLAIM.try_with(|claim| claim.0).ok().flatten() {
            Some(stripe) => {
                let own = &self.stripes[stripe].0;
                own.store(own.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
            None => {
                self.shared.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn sum(&self) -> u64 {
        self.stripes
            .iter()
            .chain([&self.shared])
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_exactly_across_more_threads_than_stripes() {
        let counter = StripedCounter::default();
        // 3 waves of 24 threads: stripes are claimed, returned and reused,
        // and some threads share the extra stripe.
        for _ in 0..3 {
            std::thread::scope(|scope| {
                for _ in 0..24 {
                    scope.spawn(|| {
                        for _ in 0..1000 {
                            counter.increment();
                        }
                    });
                }
            });
        }
        assert_eq!(counter.sum(), 3 * 24 * 1000);
    }
}
