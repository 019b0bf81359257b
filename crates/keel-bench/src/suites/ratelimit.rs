//! The `ratelimit` cases of the `queue` suite: `check()` throughput of
//! keel's `RateLimiter` against `governor`'s direct limiter, on one thread
//! and on one limiter shared by two threads.
//!
//! Both limiters allow 10^9 requests per second with a burst as large, so
//! every check is allowed and writes the shared state (the contended path);
//! the two implementations alternate round by round and each keeps its
//! best round.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Barrier;
use std::time::Instant;

use anyhow::Context as _;

use crate::Ctx;

const RATE: u32 = 1_000_000_000;

/// Records `ratelimit-1t` and `ratelimit` (two threads, shared) in `ops_per_s`.
pub(crate) fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    let (checks, rounds) = if ctx.quick {
        (4_000_000, 3)
    } else {
        (20_000_000, 5)
    };
    measure(ctx, checks, rounds)
}

fn measure(ctx: &mut Ctx, checks: u64, rounds: usize) -> anyhow::Result<()> {
    let keel_quota = keel_concurrency::Quota::per_second(RATE)?;
    let governor_quota =
        governor::Quota::per_second(NonZeroU32::new(RATE).context("rate is not zero")?);
    for (case, threads) in [("ratelimit-1t", 1), ("ratelimit", 2)] {
        let mut best = [0f64; 2];
        for _ in 0..rounds {
            let keel = keel_concurrency::RateLimiter::new(keel_quota);
            best[0] = best[0].max(throughput(threads, checks, || keel.check().is_ok()));
            let governor = governor::RateLimiter::direct(governor_quota);
            best[1] = best[1].max(throughput(threads, checks, || governor.check().is_ok()));
        }
        ctx.report.record(case, "keel", "ops_per_s", best[0]);
        ctx.report.record(case, "governor", "ops_per_s", best[1]);
    }
    Ok(())
}

/// Checks per second when `threads` threads each run `checks` checks.
fn throughput(threads: usize, checks: u64, check: impl Fn() -> bool + Sync) -> f64 {
    let start = Barrier::new(threads + 1);
    let (elapsed, allowed) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    let mut allowed = 0u64;
                    for _ in 0..checks {
                        allowed += u64::from(black_box(check()));
                    }
                    allowed
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        let allowed: u64 = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
        (began.elapsed(), allowed)
    });
    black_box(allowed);
    (threads as u64 * checks) as f64 / elapsed.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;

    #[test]
    fn records_both_cases_for_both_limiters() {
        let mut ctx = Ctx {
            quick: true,
            trace: None,
            format: crate::TraceFormat::Text,
            capacities: Vec::new(),
            report: Report::new(true),
        };
        measure(&mut ctx, 1_000, 1).unwrap();
        for case in ["ratelimit-1t", "ratelimit"] {
            for implementation in ["keel", "governor"] {
                let value = ctx.report.get(case, implementation, "ops_per_s");
                assert!(value.is_some_and(|v| v > 0.0), "{case}/{implementation}");
            }
        }
    }
}
