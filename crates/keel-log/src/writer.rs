//! The non-blocking writer: a bounded in-memory queue in front of a
//! dedicated thread that owns the files.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;
use tracing::Level;

use crate::clock::{Clock, SystemClock};
use crate::error::LogError;
use crate::json::{self, TimestampOffset};
use crate::level::LogCategory;
use crate::pretty;
use crate::rotation::LogRotationManager;
use crate::stats::LogStats;

/// Where the writer thread puts lines: files, stdout, or your own.
///
/// A sink runs on the writer thread and must not emit tracing events that
/// come back to the same writer: with a full queue it would wait for itself.
pub trait LineSink: Send + 'static {
    /// Writes one line (ending in `\n`) of `category`. Must not fail:
    /// a sink that cannot write handles it itself (counting, falling back).
    fn write_line(&mut self, category: LogCategory, line: &[u8]);
    /// Pushes buffered lines out; called after every batch and on shutdown.
    fn flush(&mut self);
}

impl LineSink for LogRotationManager {
    fn write_line(&mut self, category: LogCategory, line: &[u8]) {
        self.write(category, line);
    }
    fn flush(&mut self) {
        LogRotationManager::flush(self);
    }
}

/// Lines to standard output (write errors are ignored: there is nowhere
/// else to report them).
#[derive(Debug)]
pub struct StdoutSink {
    out: io::BufWriter<io::Stdout>,
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self {
            out: io::BufWriter::with_capacity(64 * 1024, io::stdout()),
        }
    }
}

impl LineSink for StdoutSink {
    fn write_line(&mut self, _category: LogCategory, line: &[u8]) {
        let _ = self.out.write_all(line);
    }
    fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

/// What a full queue does to the thread that logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverflowPolicy {
    /// Wait for room: nothing is lost, a slow disk slows the caller.
    #[default]
    Block,
    /// Shed low levels so callers never wait for them: TRACE and DEBUG are
    /// dropped once the queue is three-quarters full, INFO once it is full;
    /// WARN and ERROR are never dropped (they wait for room).
    Shed,
}

/// Settings of a [`NonBlocking`] writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Lines the queue holds (besides the batch being written).
    pub queue_size: usize,
    /// What a full queue does.
    pub overflow: OverflowPolicy,
    /// How often an idle (cold) writer wakes to flush and report drops.
    pub flush_interval: Duration,
    /// Time source for the `dropped N lines` line.
    pub clock: Arc<dyn Clock>,
    /// Offset for the `dropped N lines` line's timestamp.
    pub timestamp_offset: TimestampOffset,
    /// Where `written`/`dropped` are counted.
    pub stats: LogStats,
}

impl Default for WriterOptions {
    /// 8192 lines, block when full, flush every second.
    fn default() -> Self {
        Self {
            queue_size: 8192,
            overflow: OverflowPolicy::Block,
            flush_interval: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
            timestamp_offset: TimestampOffset::UTC,
            stats: LogStats::default(),
        }
    }
}

/// The caller's side of the non-blocking writer; cheap to clone.
///
/// [`write_line`](Self::write_line) copies the line into a shared buffer
/// under a short lock and returns; the writer thread swaps the whole
/// buffer out and writes it in one batch, so a line costs one `memcpy` and
/// no allocation in steady state.
#[derive(Debug, Clone)]
pub struct NonBlocking {
    shared: Arc<Shared>,
}

/// Stops the writer when dropped, after writing every queued line (and,
/// with a [`LogRotationManager`] sink, after compressing the files already
/// rotated).
///
/// Keep it alive for as long as the program logs (`let _guard = ...`).
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// The writer waits here for lines.
    work: Condvar,
    /// Callers wait here for room (block policy, WARN/ERROR under shed).
    room: Condvar,
    /// [`NonBlocking::flush`] waits here.
    flushed: Condvar,
    capacity: usize,
    shed_debug_at: usize,
    /// Queue length at which a polling writer is woken early.
    wake_at: usize,
    policy: OverflowPolicy,
    stats: LogStats,
}

#[derive(Debug, Default)]
struct Queue {
    batch: Batch,
    shutdown: bool,
    writer_idle: bool,
    /// Callers waiting for room / for a flush (so nobody is woken for nothing).
    waiting_room: usize,
    waiting_flush: usize,
    /// Lines accepted so far / lines written so far.
    pushed: u64,
    done: u64,
}

#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    /// End offset and category of each line in `bytes`.
    lines: Vec<(usize, LogCategory)>,
}

impl NonBlocking {
    /// Starts the writer thread (`keel-log-writer`) in front of `sink`.
    pub fn new(sink: impl LineSink, options: WriterOptions) -> Result<(Self, LogGuard), LogError> {
        if options.queue_size == 0 {
            return Err(LogError::ZeroQueueSize);
        }
        let capacity = options.queue_size;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            room: Condvar::new(),
            flushed: Condvar::new(),
            capacity,
            shed_debug_at: (capacity - capacity / 4).max(1),
            wake_at: (capacity / 2).max(1),
            policy: options.overflow,
            stats: options.stats.clone(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("keel-log-writer".to_owned())
            .spawn(move || run(&worker, sink, &options))
            .map_err(|e| LogError::Spawn("keel-log-writer", e))?;
        Ok((
            Self {
                shared: Arc::clone(&shared),
            },
            LogGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Queues one line (ending in `\n`) of `level` and `category`.
    ///
    /// Returns `false` if the line was dropped (shed, or the writer has
    /// stopped); the drop is counted.
    pub fn write_line(&self, level: Level, category: LogCategory, line: &[u8]) -> bool {
        let shared = &*self.shared;
        let limit = match (shared.policy, level) {
            (OverflowPolicy::Shed, Level::TRACE | Level::DEBUG) => Some(shared.shed_debug_at),
            (OverflowPolicy::Shed, Level::INFO) => Some(shared.capacity),
            _ => None,
        };
        let mut q = shared.lock();
        loop {
            if q.shutdown {
                drop(q);
                shared.stats.add_dropped();
                return false;
            }
            let len = q.batch.lines.len();
            match limit {
                Some(limit) if len >= limit => {
                    drop(q);
                    shared.stats.add_dropped();
                    return false;
                }
                _ if len >= shared.capacity => {
                    q.waiting_room += 1;
                    q = shared.room.wait(q).unwrap_or_else(PoisonError::into_inner);
                    q.waiting_room -= 1;
                }
                _ => break,
            }
        }
        q.batch.bytes.extend_from_slice(line);
        let end = q.batch.bytes.len();
        q.batch.lines.push((end, category));
        q.pushed += 1;
        // A cold writer needs waking; a warm one polls, unless lines pile up.
        if q.writer_idle || q.batch.lines.len() == shared.wake_at {
            q.writer_idle = false;
            shared.work.notify_one();
        }
        true
    }

    /// Waits until every line queued before this call is written to the
    /// sink and flushed (or the writer has stopped).
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// The counters this writer updates.
    pub fn stats(&self) -> &LogStats {
        &self.shared.stats
    }
}

impl LogGuard {
    /// Waits until every line queued so far is written and flushed.
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// The pipeline's counters.
    pub fn stats(&self) -> &LogStats {
        &self.shared.stats
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        {
            let mut q = self.shared.lock();
            q.shutdown = true;
        }
        self.shared.work.notify_all();
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn flush(&self) {
        let mut q = self.lock();
        let target = q.pushed;
        q.writer_idle = false;
        self.work.notify_one();
        while q.done < target && !q.shutdown {
            q.waiting_flush += 1;
            q = self.flushed.wait(q).unwrap_or_else(PoisonError::into_inner);
            q.waiting_flush -= 1;
        }
    }
}

/// How often a warm writer looks for lines.
const POLL: Duration = Duration::from_millis(1);
/// Empty polls (100 ms) before the writer goes cold.
const WARM_POLLS: u32 = 100;

/// The writer thread: swap the queue's batch out, write it, repeat.
fn run(shared: &Shared, mut sink: impl LineSink, options: &WriterOptions) {
    let _stopped = Stopped(shared);
    let mut batch = Batch::default();
    let mut reported_drops = 0;
    let mut finished = 0u64;
    let mut empty_polls = WARM_POLLS;
    loop {
        let stop = {
            let mut q = shared.lock();
            q.done += finished;
            if q.waiting_flush > 0 {
                shared.flushed.notify_all();
            }
            while q.batch.lines.is_empty() && !q.shutdown {
                // Warm (lines came lately): poll, so callers never pay for
                // a wake-up. Cold: sleep until a caller wakes us or the timer.
                let cold = empty_polls >= WARM_POLLS;
                q.writer_idle = cold;
                let wait = if cold { options.flush_interval } else { POLL };
                let (guard, timeout) = shared
                    .work
                    .wait_timeout(q, wait)
                    .unwrap_or_else(PoisonError::into_inner);
                q = guard;
                if timeout.timed_out() {
                    if cold {
                        break;
                    }
                    empty_polls += 1;
                }
            }
            q.writer_idle = false;
            std::mem::swap(&mut q.batch, &mut batch);
            if !batch.lines.is_empty() {
                empty_polls = 0;
            }
            if q.waiting_room > 0 {
                shared.room.notify_all();
            }
            q.shutdown && batch.lines.is_empty()
        };
        let mut start = 0;
        for &(end, category) in &batch.lines {
            sink.write_line(category, &batch.bytes[start..end]);
            start = end;
        }
        finished = batch.lines.len() as u64;
        batch.bytes.clear();
        batch.lines.clear();
        let dropped = shared.stats.dropped();
        if dropped > reported_drops {
            sink.write_line(
                LogCategory::System,
                &dropped_line(dropped - reported_drops, options),
            );
            reported_drops = dropped;
        }
        sink.flush();
        if stop {
            break;
        }
    }
    shared.lock().done += finished;
}

/// Marks the writer stopped however its thread ends (even by a panic in a
/// custom sink), so no caller waits for room or a flush that cannot come.
struct Stopped<'a>(&'a Shared);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.lock().shutdown = true;
        self.0.room.notify_all();
        self.0.flushed.notify_all();
    }
}

/// `{"timestamp":..,"level":"WARNING",..,"message":"dropped N lines","dropped":N}`
fn dropped_line(count: u64, options: &WriterOptions) -> Vec<u8> {
    let mut line = Vec::with_capacity(160);
    line.extend_from_slice(b"{\"timestamp\":\"");
    json::write_timestamp(&mut line, options.clock.now(), options.timestamp_offset);
    line.extend_from_slice(
        b"\",\"level\":\"WARNING\",\"category\":\"system\",\"logger\":\"keel_log\",\"message\":\"dropped ",
    );
    json::write_u64(&mut line, count);
    line.extend_from_slice(b" lines\",\"dropped\":");
    json::write_u64(&mut line, count);
    line.extend_from_slice(b"}\n");
    line
}

/// One event's output from a `tracing_subscriber::fmt` layer (the pretty
/// format), queued as one entry when dropped.
///
/// Under [`LoggingConfig`](crate::LoggingConfig)'s pretty format the entry
/// carries the event's `category` field, so `routes` send it to its
/// category's file as they do JSON lines; a `fmt` layer of your own
/// writing to a [`NonBlocking`] queues every event as `system`.
#[derive(Debug)]
pub struct EventWriter<'a> {
    writer: &'a NonBlocking,
    level: Level,
    category: LogCategory,
    buf: Vec<u8>,
}

impl Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.writer.write_line(self.level, self.category, &self.buf);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for NonBlocking {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            writer: self,
            level: Level::INFO,
            category: pretty::current_category(),
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        EventWriter {
            writer: self,
            level: *meta.level(),
            category: pretty::current_category(),
            buf: Vec::new(),
        }
    }
}
