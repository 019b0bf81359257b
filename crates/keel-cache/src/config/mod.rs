//! [`CacheConfig`]: the `[cache]` section of the configuration file.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::time::Duration;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

pub use keel_core::InvalidField;

use crate::cache::{CacheBuilder, LocalCache};
use crate::policy::CachePolicy;

mod settings;

pub use settings::{BloomSettings, CacheSettings, LockSettings};

/// The `[cache]` section: options for every cache, the optional Redis
/// tier, and the named caches, each with options of its own.
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
/// url = "redis://127.0.0.1:6379"   # or "redis+cluster://host:port,host:port"
/// pool_size = 4
/// command_timeout = "1s"  # a command slower than this counts as failed
/// failure_threshold = 3   # failures in a row that make the tier bypassed
/// probe_interval = "500ms"
///
/// [cache.caches.users]    # a named cache: any option above, overriding
/// capacity = 50000
/// ttl = "10m"
/// bloom = { expected_items = 1000000, false_positive_rate = 0.01 }
/// schema = "users"        # what its Redis entries are tagged with (the name)
/// schema_version = 1      # raise when the value type changes
/// ```
///
/// `[cache]` and each `[cache.caches.<name>]` are the same type,
/// [`CacheOptions`]: a cache's [`CacheSettings`] are the built-in defaults,
/// overridden by what `[cache]` sets, overridden by what its own section
/// sets ([`CacheConfig::settings`]). A cache named `default` always exists
/// (it backs the string-keyed API and `#[cached]` without a `cache = ...`).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The options `[cache]` sets for every cache.
    pub defaults: CacheOptions,
    /// The Redis tier (`None`: local caches only).
    pub redis: Option<RedisConfig>,
    /// Named caches, each overriding the defaults.
    pub caches: BTreeMap<String, CacheOptions>,
}

/// The options of a cache as one layer of the configuration sets them:
/// `[cache]` for every cache, `[cache.caches.<name>]` for one. A field
/// left out takes the value of the layer below (see [`CacheConfig`]); the
/// meaning of each is on [`CacheSettings`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheOptions {
    /// Eviction policy of the local tier (default S3-FIFO).
    pub policy: Option<CachePolicy>,
    /// Capacity of the local tier, in entries (default 10,000).
    pub capacity: Option<u64>,
    /// Freshness (default: none, entries do not expire by age).
    #[serde(with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// Freshness of local copies in a tiered cache (default `ttl`).
    #[serde(with = "humantime_serde")]
    pub local_ttl: Option<Duration>,
    /// Time-to-idle of local copies (default: none).
    #[serde(with = "humantime_serde")]
    pub tti: Option<Duration>,
    /// Random share (0 to 1) by which each TTL is shortened (default 0).
    #[serde(deserialize_with = "optional_fraction")]
    pub ttl_jitter: Option<f64>,
    /// How long "not found" is cached (default: not cached).
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Option<Duration>,
    /// Refresh-ahead age (default: off).
    #[serde(with = "humantime_serde")]
    pub refresh_after: Option<Duration>,
    /// Stale-if-error window (default: off).
    #[serde(with = "humantime_serde")]
    pub max_stale: Option<Duration>,
    /// How often expired entries of a quiet cache are reclaimed in the
    /// background; at least 10ms (default 1s).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Option<Duration>,
    /// Use the Redis tier when `[cache.redis]` is set (default true).
    pub tiered: Option<bool>,
    /// The distributed load lock (default: off).
    pub lock: Option<LockSettings>,
    /// A Bloom filter of existing keys (default: none).
    pub bloom: Option<BloomSettings>,
    /// The schema name Redis entries are tagged with (default: the
    /// cache's name).
    pub schema: Option<String>,
    /// The schema's version (default 1): raise it when the value type
    /// changes, and entries written before read as misses.
    pub schema_version: Option<u32>,
}

impl CacheOptions {
    /// Sets on `settings` what this layer sets.
    fn apply(&self, s: &mut CacheSettings) {
        fn set<T: Clone>(to: &mut T, from: &Option<T>) {
            if let Some(v) = from {
                to.clone_from(v);
            }
        }
        fn set_some<T: Clone>(to: &mut Option<T>, from: &Option<T>) {
            if from.is_some() {
                to.clone_from(from);
            }
        }
        set(&mut s.policy, &self.policy);
        set(&mut s.capacity, &self.capacity);
        set_some(&mut s.ttl, &self.ttl);
        set_some(&mut s.local_ttl, &self.local_ttl);
        set_some(&mut s.tti, &self.tti);
        set(&mut s.ttl_jitter, &self.ttl_jitter);
        set_some(&mut s.negative_ttl, &self.negative_ttl);
        set_some(&mut s.refresh_after, &self.refresh_after);
        set_some(&mut s.max_stale, &self.max_stale);
        set(&mut s.sweep_interval, &self.sweep_interval);
        set(&mut s.tiered, &self.tiered);
        set_some(&mut s.lock, &self.lock);
        set_some(&mut s.bloom, &self.bloom);
        set_some(&mut s.schema, &self.schema);
        set(&mut s.schema_version, &self.schema_version);
    }
}

/// `[cache.redis]`: where the L2 tier lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Where Redis is: one server, `redis://host:port/db` (or `rediss://`,
    /// `unix:///path`), or a Redis Cluster,
    /// `redis+cluster://host:port,host:port` (seed nodes: the others are
    /// found from them; a password before the first host applies to all),
    /// or a primary found through Redis Sentinel,
    /// `redis+sentinel://[:password@]host:port,host:port/service[/db]`.
    /// Default `redis://127.0.0.1:6379`.
    pub url: String,
    /// A Redis Cluster's seed nodes, `host:port` or `redis://host:port`
    /// each: when not empty, used instead of `url`. Default empty.
    pub nodes: Vec<String>,
    /// Redis Sentinels (`host:port` each) watching the primary named
    /// `service_name`: when not empty, used instead of `url`. Default empty.
    pub sentinels: Vec<String>,
    /// The name the Sentinels know the primary by (their
    /// `sentinel monitor <name>`). Default empty.
    pub service_name: String,
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
            nodes: Vec::new(),
            sentinels: Vec::new(),
            service_name: String::new(),
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
    /// A builder of a local cache with the settings every cache gets from
    /// `[cache]`, for further options (weigher, listener, clock).
    pub fn builder<K, V>(&self) -> CacheBuilder<K, V>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let s = self.default_settings();
        let mut b = LocalCache::builder(s.capacity)
            .policy(s.policy)
            .ttl_jitter(s.ttl_jitter)
            .default_sweep(s.sweep_interval);
        if let Some(ttl) = s.ttl {
            b = b.time_to_live(ttl);
        }
        if let Some(tti) = s.tti {
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

    /// The resolved settings of cache `name`: the defaults, `[cache]`,
    /// then its own section. `None` when no such cache is configured
    /// (`default` always is).
    pub fn settings(&self, name: &str) -> Option<CacheSettings> {
        match self.caches.get(name) {
            Some(named) => Some(self.resolve(Some(named))),
            None if name == "default" => Some(self.default_settings()),
            None => None,
        }
    }

    /// The settings of a cache with no section of its own.
    pub fn default_settings(&self) -> CacheSettings {
        self.resolve(None)
    }

    fn resolve(&self, named: Option<&CacheOptions>) -> CacheSettings {
        let mut settings = CacheSettings::default();
        self.defaults.apply(&mut settings);
        if let Some(named) = named {
            named.apply(&mut settings);
        }
        settings
    }

    /// Checks what the field types cannot, every problem as an
    /// [`InvalidField`]: capacities of at least 1, TTLs longer than zero, each
    /// cache's `local_ttl` at most its `ttl` and `refresh_after` below it,
    /// a usable Redis section. A problem is reported where the field is
    /// written: the named section when it sets it, `[cache]` otherwise.
    pub fn validate(&self) -> Result<(), Vec<InvalidField>> {
        let mut problems: Vec<InvalidField> = Vec::new();
        let mut check = |path: &str, named: Option<&CacheOptions>| {
            let s = self.resolve(named);
            let set_here = |field: fn(&CacheOptions) -> bool| named.is_some_and(field);
            let at = |field: &str, set_here: bool| {
                if set_here {
                    format!("{path}.{field}")
                } else {
                    format!("cache.{field}")
                }
            };
            if s.capacity == 0 {
                problems.push(InvalidField::new(
                    at("capacity", set_here(|o| o.capacity.is_some())),
                    "must be at least 1",
                ));
            }
            for (field, value, set) in [
                ("ttl", s.ttl, set_here(|o| o.ttl.is_some())),
                ("tti", s.tti, set_here(|o| o.tti.is_some())),
                (
                    "local_ttl",
                    s.local_ttl,
                    set_here(|o| o.local_ttl.is_some()),
                ),
                (
                    "negative_ttl",
                    s.negative_ttl,
                    set_here(|o| o.negative_ttl.is_some()),
                ),
            ] {
                if value == Some(Duration::ZERO) {
                    problems.push(InvalidField::new(
                        at(field, set),
                        "must be longer than 0s (leave it out for no expiry)",
                    ));
                }
            }
            if s.sweep_interval < MIN_SWEEP_INTERVAL {
                problems.push(InvalidField::new(
                    at("sweep_interval", set_here(|o| o.sweep_interval.is_some())),
                    "must be at least 10ms",
                ));
            }
            if let (Some(local), Some(ttl)) = (s.local_ttl, s.ttl)
                && local > ttl
            {
                problems.push(InvalidField::new(
                    at("local_ttl", set_here(|o| o.local_ttl.is_some())),
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
                problems.push(InvalidField::new(
                    at("refresh_after", set_here(|o| o.refresh_after.is_some())),
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
                problems.push(InvalidField::new(
                    at("schema", set_here(|o| o.schema.is_some())),
                    "must not be empty",
                ));
            }
        };
        check("cache", None);
        for (name, named) in &self.caches {
            check(&format!("cache.caches.{name}"), Some(named));
        }
        if let Some(redis) = &self.redis {
            #[cfg(feature = "redis")]
            if let Err(e) = keel_core::topology::Topology::from_fields(
                &redis.url,
                &redis.nodes,
                &redis.sentinels,
                &redis.service_name,
            ) {
                problems.push(InvalidField::new(
                    format!("cache.redis.{}", e.field),
                    e.reason,
                ));
            }
            if redis.key_prefix.is_empty() {
                problems.push(InvalidField::new(
                    "cache.redis.key_prefix",
                    "must not be empty",
                ));
            }
            if redis.pool_size == 0 {
                problems.push(InvalidField::new(
                    "cache.redis.pool_size",
                    "must be at least 1",
                ));
            }
            if redis.failure_threshold == 0 {
                problems.push(InvalidField::new(
                    "cache.redis.failure_threshold",
                    "must be at least 1",
                ));
            }
            if redis.max_pending_keys == 0 {
                problems.push(InvalidField::new(
                    "cache.redis.max_pending_keys",
                    "must be at least 1",
                ));
            }
            for (field, value) in [
                ("command_timeout", redis.command_timeout),
                ("connect_timeout", redis.connect_timeout),
                ("probe_interval", redis.probe_interval),
            ] {
                if value.is_zero() {
                    problems.push(InvalidField::new(
                        format!("cache.redis.{field}"),
                        "must be longer than 0s",
                    ));
                }
            }
        }
        problems.sort_by(|a, b| (&a.field, &a.reason).cmp(&(&b.field, &b.reason)));
        problems.dedup();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// The finest `sweep_interval` the sweeper keeps.
const MIN_SWEEP_INTERVAL: Duration = Duration::from_millis(10);

/// `[cache]` is one table holding [`CacheOptions`] fields next to `redis`
/// and `caches`. The options are read by `CacheOptions`'s own derived
/// code, from the table with those two keys taken out on the way, so its
/// unknown-field check still applies and every error (unknown field or
/// bad value) still happens while the key is read through the caller's
/// deserializer, which is what names the field in the error.
impl<'de> Deserialize<'de> for CacheConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Section;
        impl<'de> Visitor<'de> for Section {
            type Value = CacheConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the [cache] table")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CacheConfig, A::Error> {
                let mut routed = Routed {
                    map,
                    redis: None,
                    caches: BTreeMap::new(),
                };
                let defaults = CacheOptions::deserialize(MapAccessDeserializer::new(&mut routed))?;
                Ok(CacheConfig {
                    defaults,
                    redis: routed.redis,
                    caches: routed.caches,
                })
            }
        }
        deserializer.deserialize_map(Section)
    }
}

/// The `[cache]` table as [`CacheOptions`] sees it: `redis` and `caches`
/// are read into their own fields as they go by.
struct Routed<A> {
    map: A,
    redis: Option<RedisConfig>,
    caches: BTreeMap<String, CacheOptions>,
}

/// A key of `[cache]`: one of the two it keeps, or an option's.
enum Key<T> {
    Redis,
    Caches,
    Option(T),
}

/// Reads a key, handing it to the options' field seed unless it is
/// `redis` or `caches` (the seed is kept for the next key then).
struct RouteKey<'a, S>(&'a mut Option<S>);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for RouteKey<'_, S> {
    type Value = Key<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for RouteKey<'_, S> {
    type Value = Key<S::Value>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        match key {
            "redis" => Ok(Key::Redis),
            "caches" => Ok(Key::Caches),
            _ => {
                let seed = self
                    .0
                    .take()
                    .ok_or_else(|| E::custom("a key was read twice"))?;
                seed.deserialize(IntoDeserializer::<E>::into_deserializer(key))
                    .map(Key::Option)
            }
        }
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for &mut Routed<A> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let mut seed = Some(seed);
        loop {
            match self.map.next_key_seed(RouteKey(&mut seed))? {
                None => return Ok(None),
                Some(Key::Option(key)) => return Ok(Some(key)),
                Some(Key::Redis) => self.redis = Some(self.map.next_value()?),
                Some(Key::Caches) => self.caches = self.map.next_value()?,
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.map.next_value_seed(seed)
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
            .insert("users".into(), CacheOptions::default());
        let users = config.settings("users").unwrap();
        assert_eq!((users.schema, users.schema_version), (None, 1));

        let named = config.caches.get_mut("users").unwrap();
        named.schema = Some(" ".into());
        named.schema_version = Some(3);
        assert_eq!(config.settings("users").unwrap().schema_version, 3);
        let problems = config.validate().unwrap_err();
        assert_eq!(
            problems,
            [InvalidField::new(
                "cache.caches.users.schema",
                "must not be empty"
            )]
        );
    }
}
