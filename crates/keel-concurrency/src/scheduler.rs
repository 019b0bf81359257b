//! [`Scheduler`]: async jobs run after a delay or at a fixed interval, on
//! tokio's clock (so tests can pause and advance it).
//!
//! Each job is one tokio task that loops "wait for the tick, wait the
//! jitter, run, await the run", so two runs of one job never overlap; a run
//! that outlasts its period makes later ticks late, and
//! [`MissedTickPolicy`] says what happens to them.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// What a periodic job does with ticks it missed because a run (or the
/// process) was late.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissedTickPolicy {
    /// Run once, at once, for all the missed ticks together, then go on at
    /// the next tick of the original grid.
    #[default]
    Skip,
    /// Run once for every missed tick, back to back, until caught up.
    Burst,
    /// Start counting the period again from the late run (the grid shifts).
    Delay,
}

/// When a job runs.
///
/// ```
/// use std::time::Duration;
/// use keel_concurrency::{MissedTickPolicy, Schedule};
///
/// let refresh = Schedule::every(Duration::from_secs(30))
///     .jitter(Duration::from_secs(3))
///     .missed_ticks(MissedTickPolicy::Skip);
/// let once = Schedule::after(Duration::from_millis(500));
/// # let _ = (refresh, once);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    first: Duration,
    period: Option<Duration>,
    jitter: Duration,
    missed: MissedTickPolicy,
}

impl Schedule {
    /// One run, `delay` from now.
    pub fn after(delay: Duration) -> Self {
        Self {
            first: delay,
            period: None,
            jitter: Duration::ZERO,
            missed: MissedTickPolicy::Skip,
        }
    }

    /// A run every `period`, the first one `period` from now. A zero
    /// period is taken as 1ms.
    pub fn every(period: Duration) -> Self {
        let period = period.max(Duration::from_millis(1));
        Self {
            first: period,
            period: Some(period),
            jitter: Duration::ZERO,
            missed: MissedTickPolicy::Skip,
        }
    }

    /// Moves the first run to `delay` from now (e.g. zero: at once).
    pub fn first_after(mut self, delay: Duration) -> Self {
        self.first = delay;
        self
    }

    /// Delays each run by a random extra wait in `[0, jitter]` so many
    /// instances do not fire together.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the [`MissedTickPolicy`] (default [`Skip`](MissedTickPolicy::Skip)).
    pub fn missed_ticks(mut self, policy: MissedTickPolicy) -> Self {
        self.missed = policy;
        self
    }
}

/// Runs jobs on a [`Schedule`]; [`shutdown`](Scheduler::shutdown) stops
/// them all and waits for runs in progress, dropping the scheduler stops
/// them without waiting.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use keel_concurrency::{Schedule, Scheduler};
///
/// let scheduler = Scheduler::new();
/// let job = scheduler.spawn("sample", Schedule::every(Duration::from_secs(1)), || async {
///     Ok::<(), std::io::Error>(())
/// });
/// tokio::time::sleep(Duration::from_millis(3500)).await;
/// assert_eq!(job.runs(), 3);
/// scheduler.shutdown().await;
/// # }
/// ```
#[derive(Default)]
pub struct Scheduler {
    jobs: Mutex<Vec<(Arc<JobShared>, JoinHandle<()>)>>,
}

/// A scheduled job: its counters and a way to cancel it. Dropping the
/// handle does not cancel the job.
#[derive(Clone)]
pub struct JobHandle {
    shared: Arc<JobShared>,
}

impl Scheduler {
    /// A scheduler with no jobs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `job` on `schedule`. A run that returns `Err` or panics counts
    /// as a failure (and is logged with `name`); the schedule goes on.
    ///
    /// Must be called within a tokio runtime.
    pub fn spawn<F, Fut, E>(&self, name: &str, schedule: Schedule, mut job: F) -> JobHandle
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let (cancel, _) = watch::channel(false);
        let shared = Arc::new(JobShared {
            name: name.to_owned(),
            cancel,
            runs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let state = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let mut cancelled = state.cancel.subscribe();
            let start = Instant::now() + schedule.first;
            let mut ticks = schedule.period.map(|period| {
                let mut ticks = tokio::time::interval_at(start, period);
                ticks.set_missed_tick_behavior(match schedule.missed {
                    MissedTickPolicy::Skip => MissedTickBehavior::Skip,
                    MissedTickPolicy::Burst => MissedTickBehavior::Burst,
                    MissedTickPolicy::Delay => MissedTickBehavior::Delay,
                });
                ticks
            });
            loop {
                let wait = async {
                    match ticks.as_mut() {
                        Some(ticks) => {
                            ticks.tick().await;
                        }
                        None => tokio::time::sleep_until(start).await,
                    }
                    if !schedule.jitter.is_zero() {
                        tokio::time::sleep(schedule.jitter.mul_f64(fastrand::f64())).await;
                    }
                };
                tokio::select! {
                    biased;
                    _ = cancelled.wait_for(|c| *c) => return,
                    () = wait => {}
                }
                let outcome = tokio::spawn(job()).await;
                state.runs.fetch_add(1, Ordering::Relaxed);
                let failure = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(error.to_string()),
                    Err(join) if join.is_panic() => Some("job panicked".to_owned()),
                    Err(_) => Some("job was cancelled".to_owned()),
                };
                if let Some(error) = failure {
                    state.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(job = %state.name, %error, "scheduled job failed");
                }
                if ticks.is_none() {
                    return;
                }
            }
        });
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.retain(|(_, task)| !task.is_finished());
        jobs.push((Arc::clone(&shared), task));
        JobHandle { shared }
    }

    /// Cancels every job and waits for runs in progress to finish.
    pub async fn shutdown(&self) {
        let jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(PoisonError::into_inner));
        for (shared, _) in &jobs {
            shared.cancel.send_replace(true);
        }
        for (shared, task) in jobs {
            if let Err(error) = task.await {
                tracing::error!(job = %shared.name, %error, "scheduler job loop ended abnormally");
            }
        }
    }
}

impl JobHandle {
    /// Stops the job: no run starts after this call; a run in progress
    /// finishes.
    pub fn cancel(&self) {
        self.shared.cancel.send_replace(true);
    }

    /// Whether [`cancel`](Self::cancel) (or the scheduler's shutdown) was called.
    pub fn is_cancelled(&self) -> bool {
        *self.shared.cancel.borrow()
    }

    /// Runs finished so far, failed ones included.
    pub fn runs(&self) -> u64 {
        self.shared.runs.load(Ordering::Relaxed)
    }

    /// Runs that returned `Err` or panicked.
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// The name given to [`Scheduler::spawn`].
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

impl Drop for Scheduler {
    /// Cancels every job (runs in progress finish on their own).
    fn drop(&mut self) {
        let jobs = self.jobs.get_mut().unwrap_or_else(PoisonError::into_inner);
        for (shared, _) in jobs.iter() {
            shared.cancel.send_replace(true);
        }
    }
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Scheduler")
            .field("jobs", &jobs.len())
            .finish()
    }
}

impl fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("name", &self.shared.name)
            .field("runs", &self.runs())
            .field("failures", &self.failures())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

struct JobShared {
    name: String,
    cancel: watch::Sender<bool>,
    runs: AtomicU64,
    failures: AtomicU64,
}
