//! [`InvalidField`]: one field of a config section that cannot be used.

/// One field of a config section that cannot be used as written: its path
/// and what is allowed.
///
/// Every room's `validate()` reports its problems as these, one per bad
/// field (`Result<(), Vec<InvalidField>>`), or the first one where a check
/// stops at the first (`Result<(), InvalidField>`). `field` is the dotted
/// path of the field in the configuration file, such as
/// `pools.db.main.min_connections`; `reason` says what is allowed.
///
/// ```
/// use keel_core::InvalidField;
///
/// let e = InvalidField::new("thread_pool.queue_size", "must be at least 1, got 0");
/// assert_eq!(e.field, "thread_pool.queue_size");
/// assert_eq!(e.reason, "must be at least 1, got 0");
/// assert_eq!(e.to_string(), "thread_pool.queue_size: must be at least 1, got 0");
/// ```
///
/// Non-exhaustive: build one with [`InvalidField::new`]; fields may be
/// added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
#[non_exhaustive]
pub struct InvalidField {
    /// The dotted path of the offending field, e.g. `thread_pool.min_workers`.
    pub field: String,
    /// What is wrong and what is allowed, e.g. `must be at least 1, got 0`.
    pub reason: String,
}

impl InvalidField {
    /// The field at path `field` cannot be used, for `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
