//! [`TaskQueue`]: an in-process bounded priority queue of tasks, with a
//! worker pool that retries, times out and dead-letters; and, behind the
//! `redis` feature, [`RedisTaskQueue`](redis::RedisTaskQueue), a durable
//! queue on Redis Streams.
//!
//! Layout: one lock-free bounded ring (`crossbeam_queue::ArrayQueue`) per
//! priority level; the length across all levels, which enforces
//! `max_size`, kept as two counters on cache lines of their own, tasks
//! accepted (written by putters) and tasks popped (written by getters), so
//! a putter and a getter on different cores do not fight over one word
//! per task (a putter reads `popped` only when the queue looks full); and
//! two `event_listener` events (`not_empty`, `not_full`) that are only
//! touched on the slow path: a waker notifies only while a waiter has
//! counted itself in. A put wakes at most one getter at a time (none while
//! a woken getter has not run yet), and a woken getter that takes tasks
//! wakes the next one while tasks remain, so a burst of puts does not
//! wake every idle getter, each to find the queue already drained. A
//! getter scans the levels from the highest; within one level order is
//! FIFO.

mod backoff;
#[cfg(feature = "redis")]
pub(crate) mod redis;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use event_listener::Event;
use serde::{Deserialize, Deserializer};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::InvalidField;
use crate::error::{PutError, QueueError};

use backoff::backoff_delay;

/// The `[task_queue]` config section.
///
/// ```toml
/// [task_queue]
/// max_size = 10000
/// batch_size = 100
/// retry_limit = 3
/// task_timeout = "30s"
/// backoff_base = "100ms"
/// backoff_max = "30s"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskQueueConfig {
    /// Most tasks queued at once, all priorities together (default 10000,
    /// at least 1). `put` waits and `try_put` rejects beyond it.
    #[serde(deserialize_with = "at_least_one")]
    pub max_size: usize,
    /// Most tasks one `get_batch` returns (default 100, at least 1).
    #[serde(deserialize_with = "at_least_one")]
    pub batch_size: usize,
    /// Retries after a task's first failed attempt before it is
    /// dead-lettered (default 3, so at most 4 attempts).
    pub retry_limit: u32,
    /// Longest one attempt may run in `process` before it counts as
    /// failed (default 30s).
    #[serde(with = "humantime_serde")]
    pub task_timeout: Duration,
    /// Backoff before the first retry; it doubles per retry (default 100ms).
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Ceiling of the backoff (default 30s).
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
}

impl Default for TaskQueueConfig {
    fn default() -> Self {
        Self {
            max_size: 10_000,
            batch_size: 100,
            retry_limit: 3,
            task_timeout: Duration::from_secs(30),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl TaskQueueConfig {
    /// Checks the fields against each other.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if self.max_size == 0 {
            return Err(InvalidField::new(
                "task_queue.max_size",
                "must be at least 1, got 0",
            ));
        }
        if self.batch_size == 0 {
            return Err(InvalidField::new(
                "task_queue.batch_size",
                "must be at least 1, got 0",
            ));
        }
        if self.task_timeout.is_zero() {
            return Err(InvalidField::new(
                "task_queue.task_timeout",
                "must be longer than 0s",
            ));
        }
        if self.backoff_base > self.backoff_max {
            return Err(InvalidField::new(
                "task_queue.backoff_base",
                format!(
                    "must be at most backoff_max ({:?}), got {:?}",
                    self.backoff_max, self.backoff_base
                ),
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

/// How urgent a task is. Higher levels are always taken first; tasks of
/// one level come out in the order they went in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Background work.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Ahead of normal work.
    High,
    /// Ahead of everything else.
    Critical,
}

const LEVELS: usize = 4;

impl Priority {
    /// Index into the level array: 0 is taken first.
    fn level(self) -> usize {
        match self {
            Priority::Critical => 0,
            Priority::High => 1,
            Priority::Normal => 2,
            Priority::Low => 3,
        }
    }
}

/// A task that failed `retry_limit + 1` times in [`TaskQueue::process`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter<T> {
    /// The task as it was queued.
    pub task: T,
    /// Attempts made.
    pub attempts: u32,
    /// What the last attempt failed with.
    pub error: String,
}

/// A point-in-time view of a [`TaskQueue`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Tasks queued now.
    pub len: usize,
    /// Tasks accepted by `put`/`try_put`.
    pub accepted: u64,
    /// `try_put` calls turned away because the queue was full.
    pub rejected: u64,
    /// Tasks `process` finished successfully.
    pub succeeded: u64,
    /// Failed attempts (errors and timeouts) in `process`.
    pub failed_attempts: u64,
    /// Attempts that ran out of `task_timeout` (also counted as failed).
    pub timed_out: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Tasks moved to the dead-letter queue.
    pub dead_lettered: u64,
    /// Dead letters dropped because the dead-letter queue held `max_size`.
    pub dead_dropped: u64,
    /// Tasks a `process` worker is handling now (running or backing off).
    pub in_flight: usize,
}

/// A bounded, in-process priority queue of tasks (the seeds' `TaskQueue`).
///
/// Cloning is cheap; every clone is the same queue, so producers and
/// consumers may live on different tasks and threads.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use keel_concurrency::{Priority, TaskQueue, TaskQueueConfig};
///
/// let queue = TaskQueue::new(TaskQueueConfig::default())?;
/// queue.put("resize thumbnails", Priority::Low).await?;
/// queue.put("charge card", Priority::High).await?;
/// assert_eq!(queue.get().await, Some("charge card"));
/// # Ok(())
/// # }
/// ```
pub struct TaskQueue<T> {
    inner: Arc<Inner<T>>,
}

/// The worker pool started by [`TaskQueue::process`].
///
/// Dropping the handle leaves the workers running; call
/// [`shutdown`](ProcessHandle::shutdown) to stop them.
pub struct ProcessHandle<T> {
    queue: TaskQueue<T>,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    handed_back: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for TaskQueue<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> TaskQueue<T> {
    /// An empty queue.
    pub fn new(config: TaskQueueConfig) -> Result<Self, InvalidField> {
        config.validate()?;
        let levels = std::array::from_fn(|_| ArrayQueue::new(config.max_size));
        Ok(Self {
            inner: Arc::new(Inner {
                levels,
                puts: Padded(Puts::default()),
                popped: Padded(AtomicUsize::new(0)),
                closed: AtomicBool::new(false),
                not_empty: Event::new(),
                not_full: Event::new(),
                getters_waiting: Padded(AtomicUsize::new(0)),
                putters_waiting: Padded(AtomicUsize::new(0)),
                dead: Mutex::new(VecDeque::new()),
                counters: Padded(Counters::default()),
                config,
            }),
        })
    }

    /// The config the queue runs with.
    pub fn config(&self) -> &TaskQueueConfig {
        &self.inner.config
    }

    /// Queues `task`, waiting while the queue holds `max_size` tasks.
    /// Fails only when the queue is closed; the error hands the task back.
    pub async fn put(&self, task: T, priority: Priority) -> Result<(), PutError<T>> {
        let mut task = match self.try_push(task, priority) {
            Ok(()) => return Ok(()),
            Err((task, QueueError::Full)) => task,
            Err((task, reason)) => return Err(PutError { task, reason }),
        };
        loop {
            let _waiting = Waiting::new(&self.inner.putters_waiting);
            let listener = self.inner.not_full.listen();
            task = match self.try_push(task, priority) {
                Ok(()) => return Ok(()),
                Err((task, QueueError::Full)) => task,
                Err((task, reason)) => return Err(PutError { task, reason }),
            };
            listener.await;
        }
    }

    /// Queues `task` now, or hands it back with [`QueueError::Full`] (or
    /// [`QueueError::Closed`]).
    pub fn try_put(&self, task: T, priority: Priority) -> Result<(), PutError<T>> {
        self.try_push(task, priority).map_err(|(task, reason)| {
            if matches!(reason, QueueError::Full) {
                self.inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
            }
            PutError { task, reason }
        })
    }

    /// The next task (highest priority first), waiting while the queue is
    /// empty; `None` once the queue is closed and empty.
    pub async fn get(&self) -> Option<T> {
        let mut woken = false;
        loop {
            if let Some(task) = self.inner.pop() {
                if woken {
                    self.inner.wake_next_getter();
                }
                return Some(task);
            }
            if self.is_closed() && self.is_empty() {
                return None;
            }
            let _waiting = Waiting::new(&self.inner.getters_waiting);
            let listener = self.inner.not_empty.listen();
            if let Some(task) = self.inner.pop() {
                return Some(task);
            }
            if self.is_closed() && self.is_empty() {
                return None;
            }
            listener.await;
            woken = true;
        }
    }

    /// The next task if one is queued now.
    pub fn try_get(&self) -> Option<T> {
        self.inner.pop()
    }

    /// Up to `batch_size` tasks, highest priority first: everything queued
    /// now, up to that many.
    ///
    /// When the queue is empty it waits at most `wait` for a task, then
    /// returns what has arrived (possibly nothing). It never waits once it
    /// holds a task, so a worker is not woken task by task while a batch
    /// fills. Returns at once when the queue is closed.
    pub async fn get_batch(&self, wait: Duration) -> Vec<T> {
        let max = self.inner.config.batch_size;
        let mut batch = Vec::with_capacity(max);
        self.inner.drain_into(&mut batch, max);
        if !batch.is_empty() || self.is_closed() {
            return batch;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let _waiting = Waiting::new(&self.inner.getters_waiting);
            let listener = self.inner.not_empty.listen();
            self.inner.drain_into(&mut batch, max);
            if !batch.is_empty() || self.is_closed() {
                return batch;
            }
            if tokio::time::timeout_at(deadline, listener).await.is_err() {
                self.inner.drain_into(&mut batch, max);
                return batch;
            }
            self.inner.drain_into(&mut batch, max);
            if !batch.is_empty() {
                self.inner.wake_next_getter();
                return batch;
            }
        }
    }

    /// Tasks queued now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no task is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops taking tasks: later puts fail with [`QueueError::Closed`];
    /// queued tasks can still be taken. Wakes every waiter.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.not_empty.notify(usize::MAX);
        self.inner.not_full.notify(usize::MAX);
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Removes and returns the dead letters collected so far, oldest first.
    pub fn take_dead_letters(&self) -> Vec<DeadLetter<T>> {
        let mut dead = self
            .inner
            .dead
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        dead.drain(..).collect()
    }

    /// The queue's counters now.
    pub fn stats(&self) -> QueueStats {
        let c = &self.inner.counters;
        QueueStats {
            len: self.len(),
            accepted: self.inner.puts.accepted.load(Ordering::Relaxed) as u64,
            rejected: c.rejected.load(Ordering::Relaxed),
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            dead_dropped: c.dead_dropped.load(Ordering::Relaxed),
            in_flight: c.in_flight.load(Ordering::Relaxed),
        }
    }

    fn try_push(&self, task: T, priority: Priority) -> Result<(), (T, QueueError)> {
        let inner = &*self.inner;
        if self.is_closed() {
            return Err((task, QueueError::Closed));
        }
        let puts = &*inner.puts;
        let max = inner.config.max_size;
        let mut accepted = puts.accepted.load(Ordering::Relaxed);
        loop {
            // `popped_seen` lags `popped`, so this can only overstate the
            // length: the shared `popped` is read only when it looks full.
            if accepted.wrapping_sub(puts.popped_seen.load(Ordering::Relaxed)) >= max {
                let popped = inner.popped.load(Ordering::SeqCst);
                puts.popped_seen.store(popped, Ordering::Relaxed);
                if accepted.wrapping_sub(popped) >= max {
                    return Err((task, QueueError::Full));
                }
            }
            match puts.accepted.compare_exchange_weak(
                accepted,
                accepted.wrapping_add(1),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => accepted = actual,
            }
        }
        // Every level holds `max_size` slots and the reservation above keeps
        // the total at or under `max_size`, so this push finds room.
        if let Err(task) = inner.levels[priority.level()].push(task) {
            puts.accepted.fetch_sub(1, Ordering::SeqCst);
            return Err((task, QueueError::Full));
        }
        // Pairs with the fence in `listen` after a getter counted itself.
        fence(Ordering::SeqCst);
        if inner.getters_waiting.load(Ordering::Relaxed) > 0 {
            inner.not_empty.notify_relaxed(1);
        }
        Ok(())
    }
}

impl<T> TaskQueue<T>
where
    T: Clone + Send + 'static,
{
    /// Starts `workers` tokio tasks that take tasks (highest priority
    /// first) and run `handler` on each.
    ///
    /// Each attempt runs as its own tokio task bounded by `task_timeout`;
    /// an error, a timeout or a panic is a failed attempt. A failed task is
    /// retried up to `retry_limit` times after a jittered exponential
    /// backoff (the worker waits, on tokio's clock, before the retry);
    /// then it goes to the dead-letter queue
    /// ([`take_dead_letters`](Self::take_dead_letters)).
    ///
    /// Must be called within a tokio runtime.
    pub fn process<H, Fut, E>(&self, workers: usize, handler: H) -> ProcessHandle<T>
    where
        H: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let (stop, _) = watch::channel(false);
        let handler = Arc::new(handler);
        let handed_back = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..workers.max(1))
            .map(|_| {
                let worker = Worker {
                    queue: self.clone(),
                    handler: Arc::clone(&handler),
                    stop: stop.subscribe(),
                    handed_back: Arc::clone(&handed_back),
                };
                tokio::spawn(worker.run())
            })
            .collect();
        ProcessHandle {
            queue: self.clone(),
            stop,
            workers,
            handed_back,
        }
    }
}

impl<T> ProcessHandle<T> {
    /// Graceful shutdown: closes the queue, lets every worker finish the
    /// attempt it is running, and returns the tasks that were not run:
    /// the still queued ones (highest priority first), then those that
    /// were waiting out a retry backoff.
    pub async fn shutdown(self) -> Vec<T> {
        self.queue.close();
        self.stop.send_replace(true);
        for worker in self.workers {
            if let Err(error) = worker.await {
                tracing::error!(%error, "task queue worker ended abnormally");
            }
        }
        let mut rest = std::mem::take(
            &mut *self
                .handed_back
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut queued = Vec::with_capacity(self.queue.len());
        while let Some(task) = self.queue.try_get() {
            queued.push(task);
        }
        queued.append(&mut rest);
        queued
    }

    /// The queue the workers take from.
    pub fn queue(&self) -> &TaskQueue<T> {
        &self.queue
    }
}

impl<T> fmt::Debug for TaskQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskQueue")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T> fmt::Debug for ProcessHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

struct Inner<T> {
    levels: [ArrayQueue<T>; LEVELS],
    /// Written by putters only; getters read it for `len`.
    puts: Padded<Puts>,
    /// Tasks ever taken; written by getters only. `len` is
    /// `accepted - popped`: a task is popped only after it was accepted.
    popped: Padded<AtomicUsize>,
    closed: AtomicBool,
    not_empty: Event,
    not_full: Event,
    /// Getters (and putters) between counting themselves in and leaving
    /// the slow path; wakers skip the event, and its lock, while it is 0.
    getters_waiting: Padded<AtomicUsize>,
    putters_waiting: Padded<AtomicUsize>,
    dead: Mutex<VecDeque<DeadLetter<T>>>,
    counters: Padded<Counters>,
    config: TaskQueueConfig,
}

/// Keeps a value on cache lines of its own, so that threads writing it
/// do not slow down threads reading its neighbours (128 bytes: two lines,
/// as adjacent-line prefetchers pull pairs).
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The putters' side of the length.
#[derive(Default)]
struct Puts {
    /// Tasks ever accepted (reserved before they are pushed, the
    /// reservation undone if the push fails).
    accepted: AtomicUsize,
    /// A value `popped` had, no later than now.
    popped_seen: AtomicUsize,
}

#[derive(Default)]
struct Counters {
    rejected: AtomicU64,
    succeeded: AtomicU64,
    failed_attempts: AtomicU64,
    timed_out: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    dead_dropped: AtomicU64,
    in_flight: AtomicUsize,
}

impl<T> Inner<T> {
    fn len(&self) -> usize {
        // `popped` first: it never passes `accepted`, and reading it
        // before `accepted` keeps the difference from going below zero.
        let popped = self.popped.load(Ordering::SeqCst);
        self.puts
            .accepted
            .load(Ordering::SeqCst)
            .wrapping_sub(popped)
    }

    fn pop(&self) -> Option<T> {
        for level in &self.levels {
            // Reading a level's ends is cheaper than a failed `pop` (which
            // fences), and most levels a getter passes are empty.
            if level.is_empty() {
                continue;
            }
            if let Some(task) = level.pop() {
                self.taken(1);
                return Some(task);
            }
        }
        None
    }

    fn drain_into(&self, batch: &mut Vec<T>, max: usize) {
        let before = batch.len();
        for level in &self.levels {
            if level.is_empty() {
                continue;
            }
            while batch.len() < max {
                match level.pop() {
                    Some(task) => batch.push(task),
                    None => break,
                }
            }
        }
        let taken = batch.len() - before;
        if taken > 0 {
            self.taken(taken);
        }
    }

    /// Accounts for `n` tasks just popped. A task leaves its ring before
    /// `popped` counts it, so a getter of a closed queue can see `len > 0`
    /// with nothing left to pop and go to sleep; whoever brings `len` to
    /// zero on a closed queue therefore wakes every getter to see the end.
    fn taken(&self, n: usize) {
        let popped = self.popped.fetch_add(n, Ordering::SeqCst).wrapping_add(n);
        fence(Ordering::SeqCst);
        if self.putters_waiting.load(Ordering::Relaxed) > 0 {
            self.not_full.notify_additional_relaxed(n);
        }
        if self.closed.load(Ordering::SeqCst) && self.puts.accepted.load(Ordering::SeqCst) == popped
        {
            self.not_empty.notify(usize::MAX);
        }
    }

    /// A put wakes one getter at a time: it notifies only when no waiting
    /// getter is notified yet (`notify(1)`, not one more getter per task).
    /// So a woken getter that took its task wakes the next one while tasks
    /// remain.
    fn wake_next_getter(&self) {
        if self.getters_waiting.load(Ordering::SeqCst) > 0 && self.len() > 0 {
            self.not_empty.notify(1);
        }
    }

    fn dead_letter(&self, letter: DeadLetter<T>) {
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
        let mut dead = self.dead.lock().unwrap_or_else(PoisonError::into_inner);
        if dead.len() >= self.config.max_size {
            dead.pop_front();
            self.counters.dead_dropped.fetch_add(1, Ordering::Relaxed);
        }
        dead.push_back(letter);
    }
}

/// Counts one waiter in for as long as it lives. Declared before the
/// listener so it is dropped after it: a waker that reads 0 knows no
/// listener of a counted waiter can still be registered.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Worker<T, H> {
    queue: TaskQueue<T>,
    handler: Arc<H>,
    stop: watch::Receiver<bool>,
    handed_back: Arc<Mutex<Vec<T>>>,
}

impl<T, H, Fut, E> Worker<T, H>
where
    T: Clone + Send + 'static,
    H: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    async fn run(mut self) {
        loop {
            let task = tokio::select! {
                biased;
                _ = self.stop.wait_for(|stop| *stop) => return,
                task = self.queue.get() => match task {
                    Some(task) => task,
                    None => return,
                },
            };
            let inner = Arc::clone(&self.queue.inner);
            inner.counters.in_flight.fetch_add(1, Ordering::Relaxed);
            self.handle(task).await;
            inner.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    async fn handle(&mut self, task: T) {
        let inner = Arc::clone(&self.queue.inner);
        let config = &inner.config;
        let counters = &inner.counters;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut attempt = tokio::spawn((self.handler)(task.clone()));
            let error = match tokio::time::timeout(config.task_timeout, &mut attempt).await {
                Ok(Ok(Ok(()))) => {
                    counters.succeeded.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(Ok(Err(error))) => error.to_string(),
                Ok(Err(join)) => {
                    if join.is_panic() {
                        "handler panicked".to_owned()
                    } else {
                        "handler was cancelled".to_owned()
                    }
                }
                Err(_) => {
                    attempt.abort();
                    counters.timed_out.fetch_add(1, Ordering::Relaxed);
                    format!("timed out after {:?}", config.task_timeout)
                }
            };
            counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
            if attempts > config.retry_limit {
                tracing::warn!(attempts, %error, "task dead-lettered");
                inner.dead_letter(DeadLetter {
                    task,
                    attempts,
                    error,
                });
                return;
            }
            counters.retried.fetch_add(1, Ordering::Relaxed);
            let delay = backoff_delay(config, attempts, fastrand::f64());
            tracing::debug!(attempts, %error, ?delay, "task failed, retrying");
            tokio::select! {
                biased;
                _ = self.stop.wait_for(|stop| *stop) => {
                    self.handed_back
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(task);
                    return;
                }
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Priority, TaskQueue, TaskQueueConfig};

    const GETTERS: usize = 8;

    fn queue(batch_size: usize) -> TaskQueue<usize> {
        TaskQueue::new(TaskQueueConfig {
            batch_size,
            ..TaskQueueConfig::default()
        })
        .unwrap()
    }

    /// Waits until `n` getters have counted themselves in.
    async fn until_waiting(queue: &TaskQueue<usize>, n: usize) {
        while queue
            .inner
            .getters_waiting
            .load(std::sync::atomic::Ordering::SeqCst)
            < n
        {
            tokio::task::yield_now().await;
        }
    }

    /// A burst of puts wakes one getter; each woken getter that takes a task
    /// wakes the next while tasks remain, so every getter gets one even
    /// though none of them comes back for more.
    async fn a_burst_reaches_every_waiting_getter(batches: bool) {
        // Batches of one, or the first batch would take every task.
        let queue = queue(1);
        let getters: Vec<_> = (0..GETTERS)
            .map(|_| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    if batches {
                        let mut batch = Vec::new();
                        while batch.is_empty() {
                            batch = queue.get_batch(Duration::from_secs(60)).await;
                        }
                        batch.len()
                    } else {
                        queue.get().await.map_or(0, |_| 1)
                    }
                })
            })
            .collect();
        until_waiting(&queue, GETTERS).await;
        for task in 0..GETTERS {
            queue.try_put(task, Priority::Normal).unwrap();
        }
        let mut taken = 0;
        for getter in getters {
            taken += tokio::time::timeout(Duration::from_secs(10), getter)
                .await
                .expect("a getter stayed asleep with tasks queued")
                .unwrap();
        }
        assert_eq!(taken, GETTERS);
        assert!(queue.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_reaches_every_waiting_get() {
        a_burst_reaches_every_waiting_getter(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_reaches_every_waiting_get_batch() {
        a_burst_reaches_every_waiting_getter(true).await;
    }

    #[tokio::test]
    async fn a_burst_reaches_every_waiting_get_on_one_thread() {
        a_burst_reaches_every_waiting_getter(false).await;
    }

    /// A getter that was woken and then cancelled before it took anything
    /// hands the wake to another getter.
    #[tokio::test]
    async fn a_cancelled_woken_getter_passes_the_wake_on() {
        let queue = queue(1);
        let first = tokio::spawn({
            let queue = queue.clone();
            async move { queue.get().await }
        });
        until_waiting(&queue, 1).await;
        let second = tokio::spawn({
            let queue = queue.clone();
            async move { queue.get().await }
        });
        until_waiting(&queue, 2).await;
        // On this one thread nothing runs until the test yields, so the first
        // getter is notified and aborted before it can take the task.
        queue.try_put(7, Priority::Normal).unwrap();
        first.abort();
        let got = tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .expect("the wake of the cancelled getter was lost")
            .unwrap();
        assert_eq!(got, Some(7));
    }
}
