//! The concurrency room's numbers on the `metrics` facade.
//!
//! Each piece keeps its own counters (the rate limiter's refusals in a
//! per-thread-striped counter, the queue's in atomics beside its rings),
//! so nothing here runs per task or per check: `publish_metrics` sets each
//! `keel_*` counter to the piece's total and each gauge to its value now.
//! A monitoring service calls it before every scrape; a service with its
//! own recorder calls it on a timer.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::{
    CircuitBreaker, CircuitState, ConcurrencyLimiter, Executor, KeyedConcurrencyLimiter,
    KeyedRateLimiter, RateLimiter, RateLimiterStats, TaskQueue,
};

impl<T> TaskQueue<T> {
    /// Publishes the `keel_queue_*` families labelled `queue = name`.
    pub fn publish_metrics(&self, name: &str) {
        describe_gauge!("keel_queue_depth", Unit::Count, "Tasks queued now.");
        describe_gauge!(
            "keel_queue_capacity",
            Unit::Count,
            "Most tasks the queue holds (max_size)."
        );
        describe_gauge!(
            "keel_queue_in_flight",
            Unit::Count,
            "Tasks a worker is handling now."
        );
        describe_counter!(
            "keel_queue_tasks_total",
            "Tasks by outcome (accepted, rejected, succeeded, dead_lettered, dead_dropped)."
        );
        describe_counter!(
            "keel_queue_attempts_failed_total",
            "Failed attempts, timeouts included."
        );
        describe_counter!(
            "keel_queue_attempts_timed_out_total",
            "Attempts that ran out of task_timeout."
        );
        describe_counter!("keel_queue_retries_total", "Retries scheduled.");
        let s = self.stats();
        let q = name.to_owned();
        gauge!("keel_queue_depth", "queue" => q.clone()).set(s.len as f64);
        gauge!("keel_queue_capacity", "queue" => q.clone()).set(self.config().max_size as f64);
        gauge!("keel_queue_in_flight", "queue" => q.clone()).set(s.in_flight as f64);
        for (outcome, n) in [
            ("accepted", s.accepted),
            ("rejected", s.rejected),
            ("succeeded", s.succeeded),
            ("dead_lettered", s.dead_lettered),
            ("dead_dropped", s.dead_dropped),
        ] {
            counter!("keel_queue_tasks_total", "queue" => q.clone(), "outcome" => outcome)
                .absolute(n);
        }
        counter!("keel_queue_attempts_failed_total", "queue" => q.clone())
            .absolute(s.failed_attempts);
        counter!("keel_queue_attempts_timed_out_total", "queue" => q.clone()).absolute(s.timed_out);
        counter!("keel_queue_retries_total", "queue" => q).absolute(s.retried);
    }
}

impl Executor {
    /// Publishes the `keel_executor_*` families labelled `executor = name`.
    pub fn publish_metrics(&self, name: &str) {
        describe_gauge!(
            "keel_executor_queued_jobs",
            Unit::Count,
            "Jobs waiting for a worker."
        );
        describe_gauge!(
            "keel_executor_queue_capacity",
            Unit::Count,
            "Most jobs that may wait (queue_size)."
        );
        describe_gauge!(
            "keel_executor_active_jobs",
            Unit::Count,
            "Jobs running now."
        );
        describe_gauge!(
            "keel_executor_workers",
            Unit::Count,
            "Worker threads alive now."
        );
        describe_counter!(
            "keel_executor_jobs_total",
            "Jobs by outcome (completed, rejected, panicked)."
        );
        let s = self.stats();
        let e = name.to_owned();
        gauge!("keel_executor_queued_jobs", "executor" => e.clone()).set(s.queued as f64);
        gauge!("keel_executor_queue_capacity", "executor" => e.clone())
            .set(self.config().queue_size as f64);
        gauge!("keel_executor_active_jobs", "executor" => e.clone()).set(s.active as f64);
        gauge!("keel_executor_workers", "executor" => e.clone()).set(s.workers as f64);
        for (outcome, n) in [
            ("completed", s.completed),
            ("rejected", s.rejected),
            ("panicked", s.panicked),
        ] {
            counter!("keel_executor_jobs_total", "executor" => e.clone(), "outcome" => outcome)
                .absolute(n);
        }
    }
}

impl CircuitBreaker {
    /// Publishes the `keel_breaker_*` families labelled with the breaker's
    /// name.
    pub fn publish_metrics(&self) {
        describe_gauge!(
            "keel_breaker_state",
            "1 for the breaker's current state (closed, open, half_open), 0 for the others."
        );
        describe_counter!(
            "keel_breaker_calls_total",
            "Calls by result (success, failure, rejected)."
        );
        describe_counter!("keel_breaker_opened_total", "Times the circuit opened.");
        let s = self.stats();
        let b = self.name().to_owned();
        for (state, is) in [
            ("closed", s.state == CircuitState::Closed),
            ("open", s.state == CircuitState::Open),
            ("half_open", s.state == CircuitState::HalfOpen),
        ] {
            gauge!("keel_breaker_state", "breaker" => b.clone(), "state" => state).set(if is {
                1.0
            } else {
                0.0
            });
        }
        for (result, n) in [
            ("success", s.successes),
            ("failure", s.failures),
            ("rejected", s.rejected),
        ] {
            counter!("keel_breaker_calls_total", "breaker" => b.clone(), "result" => result)
                .absolute(n);
        }
        counter!("keel_breaker_opened_total", "breaker" => b).absolute(s.opened);
    }
}

fn publish_rate(name: &str, s: RateLimiterStats) {
    describe_counter!("keel_rate_limiter_rejected_total", "Checks refused.");
    describe_counter!(
        "keel_rate_limiter_waited_total",
        "until_ready calls that had to wait."
    );
    counter!("keel_rate_limiter_rejected_total", "limiter" => name.to_owned()).absolute(s.rejected);
    counter!("keel_rate_limiter_waited_total", "limiter" => name.to_owned()).absolute(s.waited);
}

impl RateLimiter {
    /// Publishes the `keel_rate_limiter_*` families labelled `limiter = name`.
    pub fn publish_metrics(&self, name: &str) {
        publish_rate(name, self.stats());
    }
}

impl<K> KeyedRateLimiter<K>
where
    K: std::hash::Hash + Eq + Clone,
{
    /// Publishes the `keel_rate_limiter_*` families labelled `limiter = name`.
    pub fn publish_metrics(&self, name: &str) {
        publish_rate(name, self.stats());
    }
}

fn describe_concurrency() {
    describe_gauge!(
        "keel_concurrency_limit",
        Unit::Count,
        "Permits allowed at once (per key for a keyed limiter)."
    );
    describe_gauge!(
        "keel_concurrency_in_flight",
        Unit::Count,
        "Permits held now."
    );
    describe_counter!(
        "keel_concurrency_permits_total",
        "Permit requests by outcome (acquired, waited, rejected)."
    );
}

fn publish_concurrency(
    name: &str,
    limit: usize,
    in_flight: usize,
    outcomes: [(&'static str, u64); 3],
) {
    describe_concurrency();
    let l = name.to_owned();
    gauge!("keel_concurrency_limit", "limiter" => l.clone()).set(limit as f64);
    gauge!("keel_concurrency_in_flight", "limiter" => l.clone()).set(in_flight as f64);
    for (outcome, n) in outcomes {
        counter!("keel_concurrency_permits_total", "limiter" => l.clone(), "outcome" => outcome)
            .absolute(n);
    }
}

impl ConcurrencyLimiter {
    /// Publishes the `keel_concurrency_*` families labelled `limiter = name`.
    pub fn publish_metrics(&self, name: &str) {
        let s = self.stats();
        publish_concurrency(
            name,
            s.limit,
            s.in_flight,
            [
                ("acquired", s.acquired),
                ("waited", s.waited),
                ("rejected", s.rejected),
            ],
        );
    }
}

impl<K: std::hash::Hash + Eq + Clone> KeyedConcurrencyLimiter<K> {
    /// Publishes the `keel_concurrency_*` families labelled `limiter = name`.
    pub fn publish_metrics(&self, name: &str) {
        let s = self.stats();
        publish_concurrency(
            name,
            s.limit_per_key,
            s.in_flight,
            [
                ("acquired", s.acquired),
                ("waited", s.waited),
                ("rejected", s.rejected),
            ],
        );
    }
}
