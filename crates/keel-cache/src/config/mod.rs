//! [`CacheConfig`]: the `[cache]` section of the configuration file.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::cache::{CacheBuilder, LocalCache};
use crate::policy::CachePolicy;
mod settings;

pub use settings::{BloomSettings, CacheSettings, LockSettings};

/// The `[cache]` section: defaults for every named cache, the optional
/// Redis tier, and the named caches.
///
/// ```toml
/// [cache]
/// policy = "s3_fifo"      # lru | lfu | fifo | ttl | s3_fifo
/// capacity = 100000       # entries, per cache
/// ttl = "5m"              # optional: freshness (also in Redis)
/// local_ttl = "30s"       # optional: shorter freshness for local copies
/// tti = "1m"              # optional: time-to-idle of local copies
/// ttl_jitter = 0.1        # 0 to 1
/// negative_ttl = "30s"    # optional: cache "not found"
/// refresh_after = "4m"    # optional: refresh-ahead
/// max_stale = "1h"        # optional: stale-if-error
/// sweep_interval = "1s"   # how often expired entries of quiet caches are reclaimed
///
/// [cache.lock]            # optional: one loader per key across instances
/// ttl = "10s"
/// wait = "2s"
///
/// [cache.redis]           # optional: the shared L2 tier
/// url = "redis://127.0.0.1:6379"
/// pool_size = 4
/// command_timeout = "1s"  # a command slower than this counts as failed
/// failure_threshold = 3   # failures in a row that make the tier bypassed
/// probe_interval = "500ms"
///
/// [cache.caches.users]    # a named cache: any field above, overriding
/// capacity = 50000
/// ttl = "10m"
/// bloom = { expected_items = 1000000, false_positive_rate = 0.01 }
/// schema = "users"        # what its Redis entries are tagged with (the name)
/// schema_version = 1      # raise when the value type changes
/// ```
///
/// A cache named `default` always exists (it backs the string-keyed API
/// and `#[cached]` without a `cache = ...`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Eviction policy.
    pub policy: CachePolicy,
    /// Capacity in entries.
    pub capacity: u64,
    /// Default time-to-live (`None`: entries do not expire by age).
    #[serde(with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// Freshness of local copies in a tiered cache (`None`: `ttl`).
    #[serde(with = "humantime_serde")]
    pub local_ttl: Option<Duration>,
    /// Time-to-idle (`None`: reads do not matter for expiry).
    #[serde(with = "humantime_serde")]
    pub tti: Option<Duration>,
    /// Random share (0 to 1) by which each time-to-live is shortened.
    #[serde(deserialize_with = "fraction")]
    pub ttl_jitter: f64,
    /// How long "not found" is cached (`None`: not cached).
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Option<Duration>,
    /// Refresh-ahead age (`None`: off).
    #[serde(with = "humantime_serde")]
    pub refresh_after: Option<Duration>,
    /// Stale-if-error window (`None`: off).
    #[serde(with = "humantime_serde")]
    pub max_stale: Option<Duration>,
    /// How often a background thread reclaims the expired entries of every
    /// cache (writes reclaim their shard's anyway; this is for caches that
    /// go quiet). At least 10ms. Default 1s.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// The distributed load lock (`None`: off).
    pub lock: Option<LockSettings>,
    /// The Redis tier (`None`: local caches only).
    pub redis: Option<RedisConfig>,
    /// Named caches, each overriding the defaults above.
    pub caches: BTreeMap<String, NamedCacheConfig>,
}

impl Default for CacheConfig {
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
            lock: None,
            redis: None,
            caches: BTreeMap::new(),
        }
    }
}

/// `[cache.caches.<name>]`: a named cache; unset fields take the `[cache]`
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NamedCacheConfig {
    /// Eviction policy.
    pub policy: Option<CachePolicy>,
    /// Capacity in entries.
    pub capacity: Option<u64>,
    /// Freshness.
    #[serde(with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// Freshness of local copies.
    #[serde(with = "humantime_serde")]
    pub local_ttl: Option<Duration>,
    /// Time-to-idle of local copies.
    #[serde(with = "humantime_serde")]
    pub tti: Option<Duration>,
    /// TTL jitter, 0 to 1.
    #[serde(deserialize_with = "optional_fraction")]
    pub ttl_jitter: Option<f64>,
    /// Negative caching.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Option<Duration>,
    /// Refresh-ahead.
    #[serde(with = "humantime_serde")]
    pub refresh_after: Option<Duration>,
    /// Stale-if-error.
    #[serde(with = "humantime_serde")]
    pub max_stale: Option<Duration>,
    /// Use the Redis tier (default true when `[cache.redis]` is set).
    pub tiered: Option<bool>,
    /// The distributed load lock.
    pub lock: Option<LockSettings>,
    /// A Bloom filter of existing keys.
    pub bloom: Option<BloomSettings>,
    /// The schema name its Redis entries are tagged with (default: the
    /// cache's name).
    pub schema: Option<String>,
    /// The schema's version (default 1): raise it when the value type
    /// changes, and entries written before read as misses.
    pub schema_version: Option<u32>,
}

/// `[cache.redis]`: where the L2 tier lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://host:port/db`. Default `redis://127.0.0.1:6379`.
    pub url: String,
    /// Number of multiplexed connections commands are spread over. Default 4.
    pub pool_size: usize,
    /// First segment of every key: `{key_prefix}:{cache}:{key}`. Default `keel`.
    pub key_prefix: String,
    /// How long a command may take before it counts as failed. Default 1s.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// How long connecting may take. Default 1s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Consecutive failed commands (timeouts, lost connections) after which
    /// the tier is bypassed at once and probed in the background. Default 3.
    pub failure_threshold: u32,
    /// How often a bypassed tier is probed (`PING`). Default 500ms.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// Keys remembered per outage: writes and deletes that could not reach
    /// Redis, deleted there and invalidated on every instance once it is
    /// back. Past this many, the caches concerned are cleared in Redis
    /// instead. Default 100000.
    pub max_pending_keys: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            pool_size: 4,
            key_prefix: "keel".into(),
            command_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            failure_threshold: 3,
            probe_interval: Duration::from_millis(500),
            max_pending_keys: 100_000,
        }
    }
}

impl RedisConfig {
    /// A config for `url` with every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Sets [`RedisConfig::key_prefix`].
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets [`RedisConfig::pool_size`] (at least 1).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }
}

impl CacheConfig {
    /// A builder set up from this configuration, for further options
    /// (weigher, listener, clock).
    pub fn builder<K, V>(&self) -> CacheBuilder<K, V>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let mut b = LocalCache::builder(self.capacity)
            .policy(self.policy)
            .ttl_jitter(self.ttl_jitter)
            .sweep_every(Some(self.sweep_interval));
        if let Some(ttl) = self.ttl {
            b = b.time_to_live(ttl);
        }
        if let Some(tti) = self.tti {
            b = b.time_to_idle(tti);
        }
        b
    }

    /// The names of the configured caches, `default` included.
    pub fn cache_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.caches.keys().cloned().collect();
        if !self.caches.contains_key("default") {
            names.insert(0, "default".into());
        }
        names
    }

    /// The resolved settings of cache `name`: its section over the
    /// defaults. `None` when no such cache is configured (`default` always
    /// is).
    pub fn settings(&self, name: &str) -> Option<CacheSettings> {
        let named = match self.caches.get(name) {
            Some(named) => named.clone(),
            None if name == "default" => NamedCacheConfig::default(),
            None => return None,
        };
        Some(self.resolve(&named))
    }

    /// The settings of a cache with no section of its own.
    pub fn default_settings(&self) -> CacheSettings {
        self.resolve(&NamedCacheConfig::default())
    }

    fn resolve(&self, n: &NamedCacheConfig) -> CacheSettings {
        CacheSettings {
            policy: n.policy.unwrap_or(self.policy),
            capacity: n.capacity.unwrap_or(self.capacity),
            ttl: n.ttl.or(self.ttl),
            local_ttl: n.local_ttl.or(self.local_ttl),
            tti: n.tti.or(self.tti),
            ttl_jitter: n.ttl_jitter.unwrap_or(self.ttl_jitter),
            negative_ttl: n.negative_ttl.or(self.negative_ttl),
            refresh_after: n.refresh_after.or(self.refresh_after),
            max_stale: n.max_stale.or(self.max_stale),
            sweep_interval: self.sweep_interval,
            tiered: n.tiered.unwrap_or(true),
            lock: n.lock.or(self.lock),
            bloom: n.bloom,
            schema: n.schema.clone(),
            schema_version: n.schema_version.unwrap_or(1),
        }
    }

    /// Checks what the field types cannot, every problem as `(field path,
    /// reason)`: capacities of at least 1, TTLs longer than zero, each
    /// cache's `local_ttl` at most its `ttl` and `refresh_after` below it,
    /// a usable Redis section.
    pub fn validate(&self) -> Result<(), Vec<(String, String)>> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut check = |path: &str, s: &CacheSettings, named: Option<&NamedCacheConfig>| {
            // Report a field where it is written: the named section when it
            // sets it, `[cache]` otherwise.
            let at = |field: &str, set_here: bool| {
                if set_here {
                    format!("{path}.{field}")
                } else {
                    format!("cache.{field}")
                }
            };
            let n = named.cloned().unwrap_or_default();
            if s.capacity == 0 {
                problems.push((
                    at("capacity", n.capacity.is_some()),
                    "must be at least 1".into(),
                ));
            }
            for (field, value, set) in [
                ("ttl", s.ttl, n.ttl.is_some()),
                ("tti", s.tti, n.tti.is_some()),
                ("local_ttl", s.local_ttl, n.local_ttl.is_some()),
                ("negative_ttl", s.negative_ttl, n.negative_ttl.is_some()),
            ] {
                if value == Some(Duration::ZERO) {
                    problems.push((
                        at(field, set),
                        "must be longer than 0s (leave it out for no expiry)".into(),
                    ));
                }
            }
            if let (Some(local), Some(ttl)) = (s.local_ttl, s.ttl)
                && local > ttl
            {
                problems.push((
                    at("local_ttl", n.local_ttl.is_some()),
                    format!(
                        "{} must not exceed ttl {}",
                        humantime::format_duration(local),
                        humantime::format_duration(ttl)
                    ),
                ));
            }
            if let (Some(refresh), Some(ttl)) = (s.refresh_after, s.ttl)
                && refresh >= ttl
            {
                problems.push((
                    at("refresh_after", n.refresh_after.is_some()),
                    format!(
                        "{} must be below ttl {}",
                        humantime::format_duration(refresh),
                        humantime::format_duration(ttl)
                    ),
                ));
            }
            if s.schema
                .as_deref()
                .is_some_and(|name| name.trim().is_empty())
            {
                problems.push((format!("{path}.schema"), "must not be empty".into()));
            }
        };
        check("cache", &self.default_settings(), None);
        for (name, named) in &self.caches {
            check(
                &format!("cache.caches.{name}"),
                &self.resolve(named),
                Some(named),
            );
        }
        if self.sweep_interval < Duration::from_millis(10) {
            problems.push((
                "cache.sweep_interval".into(),
                "must be at least 10ms".into(),
            ));
        }
        if let Some(redis) = &self.redis {
            if redis.key_prefix.is_empty() {
                problems.push(("cache.redis.key_prefix".into(), "must not be empty".into()));
            }
            if redis.pool_size == 0 {
                problems.push(("cache.redis.pool_size".into(), "must be at least 1".into()));
            }
            if redis.failure_threshold == 0 {
                problems.push((
                    "cache.redis.failure_threshold".into(),
                    "must be at least 1".into(),
                ));
            }
            if redis.max_pending_keys == 0 {
                problems.push((
                    "cache.redis.max_pending_keys".into(),
                    "must be at least 1".into(),
                ));
            }
            for (field, value) in [
                ("command_timeout", redis.command_timeout),
                ("connect_timeout", redis.connect_timeout),
                ("probe_interval", redis.probe_interval),
            ] {
                if value.is_zero() {
                    problems.push((
                        format!("cache.redis.{field}"),
                        "must be longer than 0s".into(),
                    ));
                }
            }
        }
        problems.sort();
        problems.dedup();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "ttl_jitter must be a fraction from 0 to 1, got {v}"
        )))
    }
}

fn optional_fraction<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    fraction(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caches_schema_defaults_to_version_1_and_an_empty_name_is_refused() {
        let mut config = CacheConfig::default();
        config
            .caches
            .insert("users".into(), NamedCacheConfig::default());
        let users = config.settings("users").unwrap();
        assert_eq!((users.schema, users.schema_version), (None, 1));

        let named = config.caches.get_mut("users").unwrap();
        named.schema = Some(" ".into());
        named.schema_version = Some(3);
        assert_eq!(config.settings("users").unwrap().schema_version, 3);
        let problems = config.validate().unwrap_err();
        assert_eq!(
            problems,
            [(
                "cache.caches.users.schema".to_owned(),
                "must not be empty".to_owned()
            )]
        );
    }
}
