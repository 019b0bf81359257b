//! The retry backoff curve: exponential with "equal jitter".

use std::time::Duration;

use super::TaskQueueConfig;

/// The wait before retry number `retry` (1 for the first retry):
/// `d = min(backoff_max, backoff_base * 2^(retry-1))`, then a uniformly
/// random point in `[d/2, d]` chosen by `unit` (in `0.0..=1.0`).
///
/// Half of `d` is fixed so the waits keep growing with every retry; the
/// other half is random so workers that failed together do not retry
/// together.
pub(crate) fn backoff_delay(config: &TaskQueueConfig, retry: u32, unit: f64) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1));
    let full = config
        .backoff_base
        .saturating_mul(factor)
        .min(config.backoff_max);
    let half = full / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TaskQueueConfig {
        TaskQueueConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..TaskQueueConfig::default()
        }
    }

    #[test]
    fn doubles_per_retry_within_half_jitter() {
        let c = config();
        assert_eq!(backoff_delay(&c, 1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(&c, 1, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(&c, 2, 1.0), Duration::from_millis(200));
        assert_eq!(backoff_delay(&c, 3, 0.0), Duration::from_millis(200));
        assert_eq!(backoff_delay(&c, 4, 1.0), Duration::from_millis(800));
    }

    #[test]
    fn capped_at_max_even_for_huge_retry_counts() {
        let c = config();
        assert_eq!(backoff_delay(&c, 5, 1.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(&c, u32::MAX, 1.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(&c, u32::MAX, 0.0), Duration::from_millis(500));
    }

    #[test]
    fn out_of_range_jitter_is_clamped() {
        let c = config();
        assert_eq!(backoff_delay(&c, 1, 7.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(&c, 1, -1.0), Duration::from_millis(50));
    }
}
