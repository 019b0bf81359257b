//! [`Executor`]: a pool of its own threads for blocking and CPU-heavy
//! closures, awaited from async code.
//!
//! Work waits in one FIFO bounded by `queue_size` (a semaphore permit rides
//! with each queued job and is returned when a worker takes it). Workers
//! start at `min_workers`, a new one is started whenever more jobs wait than
//! workers are idle (up to `max_workers`), and a worker above `min_workers`
//! that finds nothing to do for `keep_alive` exits.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, oneshot, watch};

use crate::InvalidField;
use crate::error::ExecutorError;

/// The `[thread_pool]` config section.
///
/// ```toml
/// [thread_pool]
/// min_workers = 5
/// max_workers = 20
/// queue_size = 1000
/// keep_alive = "60s"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThreadPoolConfig {
    /// Workers kept alive even when idle (default 5).
    pub min_workers: usize,
    /// Most workers running at once, so most tasks running at once
    /// (default 20, at least 1).
    #[serde(deserialize_with = "at_least_one")]
    pub max_workers: usize,
    /// Most tasks waiting for a worker; `submit` waits and `try_submit`
    /// rejects beyond it (default 1000, at least 1).
    #[serde(deserialize_with = "at_least_one")]
    pub queue_size: usize,
    /// How long a worker above `min_workers` stays idle before it exits
    /// (default 60s).
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
}

impl Default for ThreadPoolConfig {
    fn default() -> Self {
        Self {
            min_workers: 5,
            max_workers: 20,
            queue_size: 1000,
            keep_alive: Duration::from_secs(60),
        }
    }
}

impl ThreadPoolConfig {
    /// Checks the fields against each other: `1 <= max_workers`,
    /// `min_workers <= max_workers`, `1 <= queue_size`.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if self.max_workers == 0 {
            return Err(InvalidField::new(
                "thread_pool.max_workers",
                "must be at least 1, got 0",
            ));
        }
        if self.min_workers > self.max_workers {
            return Err(InvalidField::new(
                "thread_pool.min_workers",
                format!(
                    "must be at most max_workers ({}), got {}",
                    self.max_workers, self.min_workers
                ),
            ));
        }
        if self.queue_size == 0 {
            return Err(InvalidField::new(
                "thread_pool.queue_size",
                "must be at least 1, got 0",
            ));
        }
        Ok(())
    }
}

fn at_least_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let value = usize::deserialize(deserializer)?;
    if value == 0 {
        return Err(serde::de::Error::custom("must be at least 1, got 0"));
    }
    Ok(value)
}

/// A point-in-time view of an [`Executor`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutorStats {
    /// Tasks waiting for a worker.
    pub queued: usize,
    /// Tasks running now.
    pub active: usize,
    /// Worker threads alive now.
    pub workers: usize,
    /// Tasks that returned normally.
    pub completed: u64,
    /// `try_submit` calls turned away because the queue was full.
    pub rejected: u64,
    /// Tasks that panicked.
    pub panicked: u64,
}

/// A thread pool for blocking and CPU-heavy closures (the seeds'
/// `ThreadPoolExecutor`).
///
/// Cloning is cheap and every clone drives the same pool. When the last
/// clone is dropped the pool stops taking work; its workers finish what is
/// queued and exit.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use keel_concurrency::{Executor, ThreadPoolConfig};
///
/// let pool = Executor::new(ThreadPoolConfig { min_workers: 1, max_workers: 2, ..Default::default() })?;
/// assert_eq!(pool.submit(|| 6 * 7).await?, 42);
/// assert_eq!(pool.map(|x: u64| x * x, 1..=4).await?, vec![1, 4, 9, 16]);
/// pool.shutdown(std::time::Duration::from_secs(5)).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Executor {
    owner: Arc<Owner>,
}

/// The result of one submitted task; resolves when the task has run.
///
/// Dropping the handle does not cancel the task.
#[must_use = "the handle is the only way to learn the task's result"]
pub struct TaskHandle<R> {
    receiver: oneshot::Receiver<Result<R, ExecutorError>>,
}

impl Executor {
    /// Starts `min_workers` threads; more start on demand.
    pub fn new(config: ThreadPoolConfig) -> Result<Self, InvalidField> {
        config.validate()?;
        let (workers_tx, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                workers: 0,
                idle: 0,
                shutdown: false,
            }),
            work: Condvar::new(),
            slots: Arc::new(Semaphore::new(config.queue_size)),
            workers_tx,
            active: AtomicUsize::new(0),
            completed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            config,
        });
        {
            let mut state = shared.lock();
            for _ in 0..shared.config.min_workers {
                shared.spawn_worker(&mut state);
            }
        }
        Ok(Self {
            owner: Arc::new(Owner { shared }),
        })
    }

    /// Runs `f` on a worker and resolves to its result; waits for room
    /// when `queue_size` tasks are already waiting.
    pub async fn submit<F, R>(&self, f: F) -> Result<R, ExecutorError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let permit = self.shared().slot().await?;
        self.shared().enqueue(f, permit)?.await
    }

    /// Queues `f` at once, or fails with [`ExecutorError::Full`] when
    /// `queue_size` tasks are already waiting.
    pub fn try_submit<F, R>(&self, f: F) -> Result<TaskHandle<R>, ExecutorError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let shared = self.shared();
        let permit = match shared.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                shared.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(ExecutorError::Full);
            }
            Err(TryAcquireError::Closed) => return Err(ExecutorError::Shutdown),
        };
        shared.enqueue(f, permit)
    }

    /// Applies `f` to every item on the pool's workers and returns the
    /// results in input order.
    ///
    /// Items are cut into contiguous chunks (so per-task overhead is paid
    /// once per chunk, not per item); at most `max_workers` chunks run at
    /// once, because only that many threads exist. If any item panics the
    /// call fails with [`ExecutorError::Panicked`].
    pub async fn map<T, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>, ExecutorError>
    where
        I: IntoIterator<Item = T>,
        F: Fn(T) -> R + Send + Sync + 'static,
        T: Send + 'static,
        R: Send + 'static,
    {
        let items: Vec<T> = items.into_iter().collect();
        let len = items.len();
        if len == 0 {
            return Ok(Vec::new());
        }
        let chunk = chunk_size(len, self.shared().config.max_workers);
        let f = Arc::new(f);
        let mut handles = Vec::with_capacity(len.div_ceil(chunk));
        let mut items = items.into_iter();
        loop {
            let part: Vec<T> = items.by_ref().take(chunk).collect();
            if part.is_empty() {
                break;
            }
            let f = Arc::clone(&f);
            let permit = self.shared().slot().await?;
            handles.push(self.shared().enqueue(
                move || part.into_iter().map(|x| f(x)).collect::<Vec<R>>(),
                permit,
            )?);
        }
        let mut out = Vec::with_capacity(len);
        for handle in handles {
            out.extend(handle.await?);
        }
        Ok(out)
    }

    /// Stops taking work, lets the workers finish everything already
    /// queued, and waits up to `timeout` for them to exit.
    ///
    /// Later `submit`/`try_submit` calls fail with
    /// [`ExecutorError::Shutdown`]. On timeout the workers keep going in
    /// the background and the error says how many tasks were unfinished.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), ExecutorError> {
        let shared = self.shared();
        shared.begin_shutdown();
        let mut workers = shared.workers_tx.subscribe();
        match tokio::time::timeout(timeout, workers.wait_for(|n| *n == 0)).await {
            Ok(_) => Ok(()),
            Err(_) => {
                let stats = self.stats();
                Err(ExecutorError::ShutdownTimeout(stats.queued + stats.active))
            }
        }
    }

    /// The pool's counters now.
    pub fn stats(&self) -> ExecutorStats {
        let shared = self.shared();
        let (queued, workers) = {
            let state = shared.lock();
            (state.queue.len(), state.workers)
        };
        ExecutorStats {
            queued,
            active: shared.active.load(Ordering::Relaxed),
            workers,
            completed: shared.completed.load(Ordering::Relaxed),
            rejected: shared.rejected.load(Ordering::Relaxed),
            panicked: shared.panicked.load(Ordering::Relaxed),
        }
    }

    /// The config the pool runs with.
    pub fn config(&self) -> &ThreadPoolConfig {
        &self.shared().config
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.owner.shared
    }
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("config", self.config())
            .field("stats", &self.stats())
            .finish()
    }
}

impl<R> Future for TaskHandle<R> {
    type Output = Result<R, ExecutorError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|result| result.unwrap_or(Err(ExecutorError::Shutdown)))
    }
}

impl<R> fmt::Debug for TaskHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle").finish_non_exhaustive()
    }
}

/// Chunk length for `map`: about 16 chunks per worker so a slow worker
/// does not hold the tail, capped so one chunk stays short.
fn chunk_size(len: usize, workers: usize) -> usize {
    (len / (workers.saturating_mul(16))).clamp(1, 2048)
}

/// Drops with the last [`Executor`] clone and tells the workers to wind down.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
    }
}

/// A queued job; it settles the counters itself.
type Job = Box<dyn FnOnce(&Shared) + Send>;

struct Queued {
    job: Job,
    _slot: OwnedSemaphorePermit,
}

struct State {
    queue: VecDeque<Queued>,
    workers: usize,
    idle: usize,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    slots: Arc<Semaphore>,
    workers_tx: watch::Sender<usize>,
    active: AtomicUsize,
    completed: AtomicU64,
    rejected: AtomicU64,
    panicked: AtomicU64,
    config: ThreadPoolConfig,
}

impl Shared {
    /// Waits for a queue slot; fails once the executor is shut down.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, ExecutorError> {
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| ExecutorError::Shutdown)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock and catch their own panics, so a
        // poisoned lock still guards consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue<F, R>(
        self: &Arc<Self>,
        f: F,
        slot: OwnedSemaphorePermit,
    ) -> Result<TaskHandle<R>, ExecutorError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        // The counters are settled before the result is sent, so a caller
        // that has its result sees it counted.
        let job: Job = Box::new(move |shared: &Shared| {
            let outcome = catch_unwind(AssertUnwindSafe(f));
            shared.active.fetch_sub(1, Ordering::Relaxed);
            let result = match outcome {
                Ok(value) => {
                    shared.completed.fetch_add(1, Ordering::Relaxed);
                    Ok(value)
                }
                Err(payload) => {
                    shared.panicked.fetch_add(1, Ordering::Relaxed);
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic payload".to_owned());
                    Err(ExecutorError::Panicked(message))
                }
            };
            let _ = sender.send(result);
        });
        let mut state = self.lock();
        if state.shutdown {
            return Err(ExecutorError::Shutdown);
        }
        state.queue.push_back(Queued { job, _slot: slot });
        if state.queue.len() > state.idle && state.workers < self.config.max_workers {
            self.spawn_worker(&mut state);
        }
        if state.idle > 0 {
            self.work.notify_one();
        }
        if state.workers == 0 {
            state.queue.pop_back();
            return Err(ExecutorError::Shutdown);
        }
        Ok(TaskHandle { receiver })
    }

    fn spawn_worker(self: &Arc<Self>, state: &mut State) {
        let shared = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("keel-executor".to_owned())
            .spawn(move || shared.run_worker());
        match spawned {
            Ok(_) => {
                state.workers += 1;
                self.workers_tx.send_replace(state.workers);
            }
            Err(error) => {
                tracing::error!(%error, workers = state.workers, "executor cannot start a worker thread");
            }
        }
    }

    fn run_worker(&self) {
        let mut state = self.lock();
        loop {
            if let Some(queued) = state.queue.pop_front() {
                drop(state);
                let Queued { job, _slot } = queued;
                drop(_slot);
                self.active.fetch_add(1, Ordering::Relaxed);
                job(self);
                state = self.lock();
                continue;
            }
            if state.shutdown {
                break;
            }
            state.idle += 1;
            let (guard, waited) = self
                .work
                .wait_timeout(state, self.config.keep_alive)
                .unwrap_or_else(PoisonError::into_inner);
            state = guard;
            state.idle -= 1;
            if waited.timed_out()
                && state.queue.is_empty()
                && state.workers > self.config.min_workers
            {
                break;
            }
        }
        state.workers -= 1;
        self.workers_tx.send_replace(state.workers);
    }

    fn begin_shutdown(&self) {
        let mut state = self.lock();
        state.shutdown = true;
        self.slots.close();
        self.work.notify_all();
    }
}
