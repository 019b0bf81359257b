//! [`CacheSettings`]: everything one named cache is built from.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::policy::CachePolicy;

/// The resolved settings of one cache: its local tier and its protections.
/// [`CacheConfig::settings`](crate::CacheConfig::settings) resolves them:
/// these defaults, then what `[cache]` sets, then what the cache's
/// `[cache.caches.<name>]` section sets (both [`CacheOptions`](crate::CacheOptions)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CacheSettings {
    /// Eviction policy of the local tier.
    pub policy: CachePolicy,
    /// Capacity of the local tier, in entries.
    pub capacity: u64,
    /// How long a value stays fresh (in Redis too); `None` = until evicted.
    pub ttl: Option<Duration>,
    /// A shorter freshness for the local copy, bounding how stale an
    /// instance can be if an invalidation is lost; `None` = `ttl`.
    pub local_ttl: Option<Duration>,
    /// Time-to-idle of the local tier.
    pub tti: Option<Duration>,
    /// Share (0 to 1) by which each TTL is randomly shortened, so entries
    /// written together do not expire together.
    pub ttl_jitter: f64,
    /// Cache "not found" for this long (negative caching); `None` = off.
    pub negative_ttl: Option<Duration>,
    /// Refresh-ahead: a hit on a value older than this returns it and
    /// reloads it in the background, one reload at a time.
    pub refresh_after: Option<Duration>,
    /// Stale-if-error: when the loader fails, serve a value up to this long
    /// past its freshness.
    pub max_stale: Option<Duration>,
    /// How often a background thread reclaims expired local copies when
    /// nothing writes to the cache (not with a manual clock).
    pub sweep_interval: Duration,
    /// Use the Redis tier when one is configured.
    pub tiered: bool,
    /// On an L2 miss, take a distributed lock so one instance of the
    /// cluster loads the key while the others wait for L2.
    pub lock: Option<LockSettings>,
    /// A Bloom filter of existing keys that answers "absent" for any key
    /// never seen, without touching L2 or the loader.
    pub bloom: Option<BloomSettings>,
    /// The schema name the cache's Redis entries and warm snapshots are
    /// tagged with; `None` = the cache's name.
    pub schema: Option<String>,
    /// The schema's version: entries written under another one read as
    /// misses.
    pub schema_version: u32,
}

impl Default for CacheSettings {
    /// The built-in defaults, under every `[cache]` layer: S3-FIFO, 10,000
    /// entries, no expiry, no protections but one load per key, sweeps
    /// every second, tiered when Redis is configured, schema version 1.
    fn default() -> Self {
        Self {
            policy: CachePolicy::default(),
            capacity: 10_000,
            ttl: None,
            local_ttl: None,
            tti: None,
            ttl_jitter: 0.0,
            negative_ttl: None,
            refresh_after: None,
            max_stale: None,
            sweep_interval: Duration::from_secs(1),
            tiered: true,
            lock: None,
            bloom: None,
            schema: None,
            schema_version: 1,
        }
    }
}

/// The distributed load lock of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LockSettings {
    /// How long the lock is held at most (a crashed holder frees it after).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How long a waiter polls L2 for the holder's value before loading
    /// itself.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
}

impl Default for LockSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            wait: Duration::from_secs(2),
        }
    }
}

/// The Bloom filter of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BloomSettings {
    /// How many keys the filter is sized for.
    pub expected_items: usize,
    /// The share of absent keys it lets through (0 to 0.5).
    #[serde(deserialize_with = "rate")]
    pub false_positive_rate: f64,
}

impl Default for BloomSettings {
    fn default() -> Self {
        Self {
            expected_items: 100_000,
            false_positive_rate: 0.01,
        }
    }
}

fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v > 0.0 && v <= 0.5 {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "false_positive_rate must be above 0 and at most 0.5, got {v}"
        )))
    }
}
