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

    /// Publishes the counters through the `metrics` facade as the
    /// `keel_log_*` families, each set to its total so far. Lines are
    /// counted by the pipeline itself; nothing reaches the facade per line.
    pub fn publish_metrics(&self) {
        use metrics::{counter, describe_counter};
        describe_counter!(
            "keel_log_lines_total",
            "Log lines by outcome (written to a file, dropped by the shed policy, written to stderr as a fallback)."
        );
        describe_counter!(
            "keel_log_dropped_lines_total",
            "Log lines shed by the overflow policy or logged after shutdown."
        );
        describe_counter!("keel_log_rotations_total", "Log files rotated.");
        describe_counter!(
            "keel_log_files_total",
            "Rotated files by what maintenance did (compressed, deleted, failed)."
        );
        let s = self.snapshot();
        counter!("keel_log_lines_total", "outcome" => "written").absolute(s.written);
        counter!("keel_log_lines_total", "outcome" => "fallback").absolute(s.fallback);
        counter!("keel_log_dropped_lines_total").absolute(s.dropped);
        counter!("keel_log_rotations_total").absolute(s.rotations);
        counter!("keel_log_files_total", "action" => "compressed").absolute(s.compressed);
        counter!("keel_log_files_total", "action" => "deleted").absolute(s.deleted);
        counter!("keel_log_files_total", "action" => "failed").absolute(s.maintenance_errors);
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
