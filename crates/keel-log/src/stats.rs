//! Counters the pipeline keeps and callers read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of a logging pipeline; clones share them.
///
/// The writer, the rotation manager and the compressor all count into the
/// same `LogStats`; read it at any time with [`LogStats::snapshot`].
#[derive(Debug, Clone, Default)]
pub struct LogStats {
    cells: Arc<Cells>,
}

#[derive(Debug, Default)]
struct Cells {
    written: AtomicU64,
    dropped: AtomicU64,
    fallback: AtomicU64,
    rotations: AtomicU64,
    compressed: AtomicU64,
    deleted: AtomicU64,
    maintenance_errors: AtomicU64,
}

/// A reading of [`LogStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStatsSnapshot {
    /// Lines that reached a log file (counted when flushed; stdout is not counted).
    pub written: u64,
    /// Lines shed by the overflow policy, or logged after shutdown.
    pub dropped: u64,
    /// Lines written to stderr because their file could not be written.
    pub fallback: u64,
    /// Files rotated.
    pub rotations: u64,
    /// Rotated files gzip-compressed.
    pub compressed: u64,
    /// Rotated files deleted by retention.
    pub deleted: u64,
    /// Compression or retention steps that failed (the file is left as it was).
    pub maintenance_errors: u64,
}

impl LogStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> LogStatsSnapshot {
        let c = &self.cells;
        LogStatsSnapshot {
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            fallback: c.fallback.load(Ordering::Relaxed),
            rotations: c.rotations.load(Ordering::Relaxed),
            compressed: c.compressed.load(Ordering::Relaxed),
            deleted: c.deleted.load(Ordering::Relaxed),
            maintenance_errors: c.maintenance_errors.load(Ordering::Relaxed),
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.cells.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn add_written(&self, n: u64) {
        self.cells.written.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_dropped(&self) {
        self.cells.dropped.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_fallback(&self, n: u64) {
        self.cells.fallback.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_rotation(&self) {
        self.cells.rotations.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_compressed(&self) {
        self.cells.compressed.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_deleted(&self) {
        self.cells.deleted.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_maintenance_error(&self) {
        self.cells
            .maintenance_errors
            .fetch_add(1, Ordering::Relaxed);
    }
}
