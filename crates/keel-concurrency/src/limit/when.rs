//! What a limiting layer does with a request over its limit.

/// How a limiting layer treats a request over its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhenLimited {
    /// Hold the request until the limit allows it (backpressure).
    #[default]
    Wait,
    /// Fail the request at once with the limiter's error (load shedding).
    Reject,
}
