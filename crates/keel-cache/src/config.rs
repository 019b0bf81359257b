//! [`CacheConfig`]: the `[cache]` section of the configuration file.

use std::hash::Hash;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::cache::{CacheBuilder, LocalCache};
use crate::policy::CachePolicy;

/// Settings of a local cache, as written in the `[cache]` section:
///
/// ```toml
/// [cache]
/// policy = "s3_fifo"   # lru | lfu | fifo | ttl | s3_fifo
/// capacity = 100000    # entries
/// ttl = "5m"           # optional
/// tti = "1m"           # optional
/// ttl_jitter = 0.1     # 0 to 1
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Eviction policy.
    pub policy: CachePolicy,
    /// Capacity in entries.
    pub capacity: u64,
    /// Default time-to-live (`None`: entries do not expire by age).
    #[serde(with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// Time-to-idle (`None`: reads do not matter for expiry).
    #[serde(with = "humantime_serde")]
    pub tti: Option<Duration>,
    /// Random share (0 to 1) by which each time-to-live is shortened.
    #[serde(deserialize_with = "fraction")]
    pub ttl_jitter: f64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            policy: CachePolicy::default(),
            capacity: 10_000,
            ttl: None,
            tti: None,
            ttl_jitter: 0.0,
        }
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
            .ttl_jitter(self.ttl_jitter);
        if let Some(ttl) = self.ttl {
            b = b.time_to_live(ttl);
        }
        if let Some(tti) = self.tti {
            b = b.time_to_idle(tti);
        }
        b
    }
}

impl CacheConfig {
    /// Checks what the field types cannot: every problem as
    /// `(field path, reason)`.
    pub fn validate(&self) -> Result<(), Vec<(String, String)>> {
        let mut problems = Vec::new();
        if self.capacity == 0 {
            problems.push(("cache.capacity".to_owned(), "must be at least 1".to_owned()));
        }
        for (field, value) in [("cache.ttl", self.ttl), ("cache.tti", self.tti)] {
            if value == Some(Duration::ZERO) {
                problems.push((
                    field.to_owned(),
                    "must be longer than 0s (leave it out for no expiry)".to_owned(),
                ));
            }
        }
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
