//! The `ratelimit` cases of the `queue` suite: `check()` throughput of
//! keel's rate limiters against `governor`'s, in `ops_per_s`.
//!
//! - `ratelimit-1t`, `ratelimit` (two threads sharing one limiter): both
//!   allow 10^9 requests per second with a burst as large, so every check
//!   is allowed and writes the shared state (the contended path).
//! - `ratelimit-reject-2t`: two threads on a limiter that allows one
//!   request per hour: every check after the first is refused.
//! - `ratelimit-keyed-2t`: two threads checking 1024 client keys of a
//!   keyed limiter (governor's default keyed store, a `DashMap`).
//!
//! The implementations alternate (each goes first in every other round);
//! the median round is reported. Every run counts what it allowed: every
//! check on the open quotas, exactly one (the burst) on the closed one;
//! a limiter that allows anything else fails the suite instead of scoring.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::Ctx;

const RATE: u32 = 1_000_000_000;
const KEYS: u64 = 1024;

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
    let open = keel_concurrency::Quota::per_second(RATE)?;
    let governor_open = governor::Quota::per_second(nonzero(RATE)?);
    let closed = keel_concurrency::Quota::per(1, Duration::from_secs(3600))?;
    let governor_closed = governor::Quota::per_hour(nonzero(1)?);
    let cases = [
        "ratelimit-1t",
        "ratelimit",
        "ratelimit-reject-2t",
        "ratelimit-keyed-2t",
    ];
    // Per case, each side's rounds: [keel, governor].
    let mut rates: [[Vec<f64>; 2]; 4] = Default::default();
    for round in 0..rounds {
        let mut keep = |case: usize, runs: [Run; 2], allowed: u64| -> anyhow::Result<()> {
            for (side, run) in ["keel", "governor"].into_iter().zip(runs) {
                // A limiter that refuses (or lets through) the wrong checks
                // does not get a score.
                anyhow::ensure!(
                    run.allowed == allowed,
                    "{}: {side} allowed {} checks, the quota allows {allowed}",
                    cases[case],
                    run.allowed
                );
            }
            rates[case][0].push(runs[0].rate);
            rates[case][1].push(runs[1].rate);
            Ok(())
        };
        for threads in [1, 2] {
            let keel = keel_concurrency::RateLimiter::new(open);
            let governor = governor::RateLimiter::direct(governor_open);
            keep(
                threads - 1,
                alternate(
                    round,
                    || throughput(threads, checks, |_| keel.check().is_ok()),
                    || throughput(threads, checks, |_| governor.check().is_ok()),
                ),
                threads as u64 * checks,
            )?;
        }
        let keel = keel_concurrency::RateLimiter::new(closed);
        let governor = governor::RateLimiter::direct(governor_closed);
        keep(
            2,
            alternate(
                round,
                || throughput(2, checks, |_| keel.check().is_ok()),
                || throughput(2, checks, |_| governor.check().is_ok()),
            ),
            1,
        )?;
        let keel = keel_concurrency::KeyedRateLimiter::<u64>::new(open);
        let governor = governor::RateLimiter::keyed(governor_open);
        keep(
            3,
            alternate(
                round,
                || throughput(2, checks / 4, |i| keel.check_key(&(i % KEYS)).is_ok()),
                || throughput(2, checks / 4, |i| governor.check_key(&(i % KEYS)).is_ok()),
            ),
            2 * (checks / 4),
        )?;
    }
    for (case, [mut keel, mut governor]) in cases.into_iter().zip(rates) {
        ctx.report.record(
            case,
            "keel",
            "ops_per_s",
            crate::workload::median(&mut keel),
        );
        ctx.report.record(
            case,
            "governor",
            "ops_per_s",
            crate::workload::median(&mut governor),
        );
    }
    Ok(())
}

/// One timed run: checks per second, and how many checks were allowed.
#[derive(Debug, Clone, Copy)]
struct Run {
    rate: f64,
    allowed: u64,
}

/// Runs both measurements, keel first in even rounds and second in odd
/// ones; returns `[keel, governor]`.
fn alternate(round: usize, keel: impl FnOnce() -> Run, governor: impl FnOnce() -> Run) -> [Run; 2] {
    if round.is_multiple_of(2) {
        let keel = keel();
        [keel, governor()]
    } else {
        let governor = governor();
        [keel(), governor]
    }
}

fn nonzero(n: u32) -> anyhow::Result<NonZeroU32> {
    NonZeroU32::new(n).context("a quota needs a rate above zero")
}

/// Checks per second when `threads` threads each run `checks` checks;
/// `check` gets the check's number (thread `t` starts at `t * checks`).
fn throughput(threads: usize, checks: u64, check: impl Fn(u64) -> bool + Sync) -> Run {
    let start = Barrier::new(threads + 1);
    let (elapsed, allowed) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|t| {
                let (start, check) = (&start, &check);
                scope.spawn(move || {
                    start.wait();
                    let mut allowed = 0u64;
                    for i in t * checks..(t + 1) * checks {
                        allowed += u64::from(black_box(check(i)));
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
    Run {
        rate: (threads as u64 * checks) as f64 / elapsed.as_secs_f64(),
        allowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;

    #[test]
    fn records_both_cases_for_both_limiters() {
        let mut ctx = Ctx {
            counting: false,
            quick: true,
            trace: None,
            format: crate::TraceFormat::Text,
            capacities: Vec::new(),
            soak: None,
            report: Report::new(true),
        };
        measure(&mut ctx, 1_000, 2).unwrap();
        for case in [
            "ratelimit-1t",
            "ratelimit",
            "ratelimit-reject-2t",
            "ratelimit-keyed-2t",
        ] {
            for implementation in ["keel", "governor"] {
                let value = ctx.report.get(case, implementation, "ops_per_s");
                assert!(value.is_some_and(|v| v > 0.0), "{case}/{implementation}");
            }
        }
    }
}
