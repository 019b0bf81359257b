//! The cache room's numbers on the `metrics` facade: `keel_cache_*`
//! families, labelled by cache name.
//!
//! Hits are counted per thread without a shared write (see `ReadTally`),
//! so they are not sent to the facade one by one: `publish_metrics`
//! (on [`CacheManager`](crate::CacheManager) or a
//! [`LocalCache`](crate::LocalCache)) sets each counter to the total the
//! cache keeps, and each gauge to its value now. A monitoring service
//! calls it before every scrape; a service with its own recorder calls it
//! on a timer.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::CacheStats;
use crate::manager::CacheReport;

/// Sets the help text of every `keel_cache_*` family.
pub(crate) fn describe() {
    describe_counter!(
        "keel_cache_hits_total",
        "Local-tier lookups that found a live entry."
    );
    describe_counter!(
        "keel_cache_misses_total",
        "Local-tier lookups that found nothing or an expired entry."
    );
    describe_counter!(
        "keel_cache_inserts_total",
        "New keys written to the local tier."
    );
    describe_counter!(
        "keel_cache_updates_total",
        "Writes that replaced an existing key's value."
    );
    describe_counter!(
        "keel_cache_evictions_total",
        "Entries evicted to stay within capacity."
    );
    describe_counter!(
        "keel_cache_expirations_total",
        "Entries removed because they expired."
    );
    describe_counter!(
        "keel_cache_invalidations_total",
        "Entries removed explicitly."
    );
    describe_counter!(
        "keel_cache_loads_total",
        "Loader calls, by result (ok, error)."
    );
    describe_gauge!(
        "keel_cache_entries",
        Unit::Count,
        "Entries held in the local tier."
    );
    describe_gauge!(
        "keel_cache_capacity",
        Unit::Count,
        "Configured capacity of the local tier."
    );
    describe_counter!(
        "keel_cache_requests_total",
        "Tiered reads by outcome (l1_hit, l2_hit, miss, negative_hit, bloom_rejected)."
    );
    describe_counter!(
        "keel_cache_stale_served_total",
        "Stale values served because the loader failed."
    );
    describe_counter!(
        "keel_cache_refreshes_total",
        "Background refreshes started (refresh-ahead)."
    );
    describe_counter!(
        "keel_cache_lock_waits_total",
        "Loads that waited for another instance holding the lock."
    );
    describe_counter!(
        "keel_cache_remote_errors_total",
        "Redis operations that failed or were skipped while bypassed."
    );
    describe_counter!(
        "keel_cache_fills_refused_total",
        "Values kept out of a tier because a newer change of their key came first."
    );
    describe_gauge!(
        "keel_cache_degraded",
        "1 while the cache's Redis tier is failing, else 0."
    );
}

/// Publishes one local cache's counters under `cache`.
pub(crate) fn publish_local(cache: &str, stats: &CacheStats, capacity: u64) {
    let c = cache.to_owned();
    counter!("keel_cache_hits_total", "cache" => c.clone()).absolute(stats.hits);
    counter!("keel_cache_misses_total", "cache" => c.clone()).absolute(stats.misses);
    counter!("keel_cache_inserts_total", "cache" => c.clone()).absolute(stats.inserts);
    counter!("keel_cache_updates_total", "cache" => c.clone()).absolute(stats.updates);
    counter!("keel_cache_evictions_total", "cache" => c.clone()).absolute(stats.evictions_size);
    counter!("keel_cache_expirations_total", "cache" => c.clone()).absolute(stats.expirations);
    counter!("keel_cache_invalidations_total", "cache" => c.clone()).absolute(stats.invalidations);
    counter!("keel_cache_loads_total", "cache" => c.clone(), "result" => "ok")
        .absolute(stats.loads_ok);
    counter!("keel_cache_loads_total", "cache" => c.clone(), "result" => "error")
        .absolute(stats.loads_failed);
    gauge!("keel_cache_entries", "cache" => c.clone()).set(stats.entries as f64);
    gauge!("keel_cache_capacity", "cache" => c).set(capacity as f64);
}

/// Publishes one tiered cache of a manager.
pub(crate) fn publish_report(r: &CacheReport) {
    publish_local(&r.name, &r.local, r.capacity);
    let t = &r.tiered;
    let c = r.name.clone();
    for (outcome, n) in [
        ("l1_hit", t.l1_hits),
        ("l2_hit", t.l2_hits),
        ("miss", t.misses),
        ("negative_hit", t.negative_hits),
        ("bloom_rejected", t.bloom_rejections),
    ] {
        counter!("keel_cache_requests_total", "cache" => c.clone(), "outcome" => outcome)
            .absolute(n);
    }
    counter!("keel_cache_stale_served_total", "cache" => c.clone()).absolute(t.stale_served);
    counter!("keel_cache_refreshes_total", "cache" => c.clone()).absolute(t.refreshes);
    counter!("keel_cache_lock_waits_total", "cache" => c.clone()).absolute(t.lock_waits);
    counter!("keel_cache_remote_errors_total", "cache" => c.clone()).absolute(t.remote_errors);
    counter!("keel_cache_fills_refused_total", "cache" => c.clone()).absolute(t.fills_refused);
    gauge!("keel_cache_degraded", "cache" => c).set(if r.degraded { 1.0 } else { 0.0 });
}

/// Publishes the shared Redis tier's counters.
#[cfg(feature = "redis")]
pub(crate) fn publish_redis(s: &crate::RedisStats) {
    describe_counter!(
        "keel_cache_redis_reads_total",
        "Redis reads by result (hit, miss, corrupt)."
    );
    describe_counter!(
        "keel_cache_redis_errors_total",
        "Redis commands that failed."
    );
    describe_counter!("keel_cache_redis_writes_total", "Entries written to Redis.");
    describe_counter!(
        "keel_cache_redis_bypassed_total",
        "Redis calls not made while the tier was bypassed."
    );
    describe_counter!(
        "keel_cache_redis_breaker_opened_total",
        "Times failures in a row made the tier bypassed."
    );
    describe_gauge!(
        "keel_cache_redis_pending_keys",
        Unit::Count,
        "Keys waiting to be reconciled after an outage."
    );
    describe_counter!(
        "keel_cache_redis_reconciled_total",
        "Keys deleted and invalidated after an outage."
    );
    for (result, n) in [("hit", s.hits), ("miss", s.misses), ("corrupt", s.corrupt)] {
        counter!("keel_cache_redis_reads_total", "result" => result).absolute(n);
    }
    counter!("keel_cache_redis_errors_total").absolute(s.errors);
    counter!("keel_cache_redis_writes_total").absolute(s.writes);
    counter!("keel_cache_redis_bypassed_total").absolute(s.bypassed);
    counter!("keel_cache_redis_breaker_opened_total").absolute(s.breaker_opened);
    gauge!("keel_cache_redis_pending_keys").set(s.pending as f64);
    counter!("keel_cache_redis_reconciled_total").absolute(s.reconciled);
}
