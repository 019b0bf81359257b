//! [`ErrorStatistics`]: error totals, counts by type and the last errors.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;

/// The type under which errors past `max_error_types` distinct types are
/// counted.
pub const OTHER: &str = "other";

/// The longest message kept for a recent error, in bytes.
const MAX_MESSAGE: usize = 512;

/// Error counts by type and the most recent errors, bounded: at most
/// `max_types` distinct types (the rest count as [`OTHER`]) and
/// `recent` recent errors with messages cut at 512 bytes.
///
/// Cheap to clone; clones share the counts.
#[derive(Debug, Clone)]
pub struct ErrorStatistics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total: AtomicU64,
    max_types: usize,
    recent_cap: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    by_type: HashMap<String, u64>,
    recent: VecDeque<ErrorRecord>,
}

/// One recorded error.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ErrorRecord {
    /// When it was recorded (RFC 3339, UTC).
    pub time: String,
    /// The error's type (a Rust type name for `#[monitored]` functions).
    pub error_type: String,
    /// The operation that failed, when known.
    pub operation: Option<String>,
    /// The error's message.
    pub message: String,
}

/// A copy of the error counts at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ErrorSnapshot {
    /// Errors recorded since the start.
    pub total: u64,
    /// Counts by type (types past the bound under `other`).
    pub by_type: BTreeMap<String, u64>,
    /// The most recent errors, oldest first.
    pub recent: Vec<ErrorRecord>,
}

impl ErrorStatistics {
    /// Statistics keeping `max_types` types and `recent` recent errors.
    pub fn new(max_types: usize, recent: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                total: AtomicU64::new(0),
                max_types: max_types.max(1),
                recent_cap: recent,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Records one error of `error_type`, from `operation` when known.
    pub fn record(&self, operation: Option<&str>, error_type: &str, message: &str) {
        self.inner.total.fetch_add(1, Ordering::Relaxed);
        let mut state = self.inner.state.lock();
        let known = state.by_type.contains_key(error_type);
        // Room for `other` is kept inside the bound.
        let key = if known || state.by_type.len() + 1 < self.inner.max_types {
            error_type
        } else {
            OTHER
        };
        *state.by_type.entry(key.to_owned()).or_insert(0) += 1;
        if self.inner.recent_cap > 0 {
            if state.recent.len() == self.inner.recent_cap {
                state.recent.pop_front();
            }
            let mut message = message.to_owned();
            if message.len() > MAX_MESSAGE {
                let mut cut = MAX_MESSAGE;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
            }
            state.recent.push_back(ErrorRecord {
                time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                error_type: error_type.to_owned(),
                operation: operation.map(str::to_owned),
                message,
            });
        }
    }

    /// Errors recorded since the start.
    pub fn total(&self) -> u64 {
        self.inner.total.load(Ordering::Relaxed)
    }

    /// A copy of the counts and the recent errors.
    pub fn snapshot(&self) -> ErrorSnapshot {
        let state = self.inner.state.lock();
        ErrorSnapshot {
            total: self.total(),
            by_type: state.by_type.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            recent: state.recent.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_by_type_within_the_bound() {
        let errors = ErrorStatistics::new(3, 2);
        errors.record(Some("db"), "Timeout", "took too long");
        errors.record(Some("db"), "Timeout", "took too long again");
        errors.record(None, "Refused", "no");
        errors.record(None, "Parse", "bad");
        errors.record(None, "Io", "disk");
        let snap = errors.snapshot();
        assert_eq!(snap.total, 5);
        assert_eq!(snap.by_type["Timeout"], 2);
        assert_eq!(snap.by_type["Refused"], 1);
        assert_eq!(snap.by_type[OTHER], 2);
        assert_eq!(snap.by_type.len(), 3);
        assert_eq!(snap.recent.len(), 2);
        assert_eq!(snap.recent[1].message, "disk");
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let errors = ErrorStatistics::new(3, 1);
        errors.record(None, "E", &"é".repeat(400));
        let snap = errors.snapshot();
        assert!(snap.recent[0].message.len() <= MAX_MESSAGE);
    }
}
