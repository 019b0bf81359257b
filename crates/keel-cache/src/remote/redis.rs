//! [`RedisCache`]: the shared L2 tier on Redis.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use keel_concurrency::{
    BreakerPermit, CircuitBreaker, CircuitBreakerConfig, CircuitState, SlidingWindow,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, OnceCell};

use super::bus::{self, RECONCILER, WireOp};
use crate::codec::{self, Envelope, Schema, Stored};
use crate::config::RedisConfig;
use crate::error::CacheError;
use keel_core::topology::{self, Conn, ConnectOptions, Topology};

/// Counters of one [`RedisCache`], shared by its clones.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Reads that found a decodable entry.
    pub hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Reads that found bytes that did not decode (counted as misses too).
    pub corrupt: u64,
    /// Commands that failed (connection down, timeout, server error).
    pub errors: u64,
    /// Entries written.
    pub writes: u64,
    /// Calls not made because the tier was bypassed (the circuit breaker
    /// open, or reconciliation after an outage not finished).
    pub bypassed: u64,
    /// Times the breaker opened: failures in a row reached
    /// `failure_threshold`.
    pub breaker_opened: u64,
    /// Keys whose writes or deletes could not reach Redis, waiting to be
    /// deleted there and invalidated once it is back (a cache to clear
    /// whole counts as one).
    pub pending: u64,
    /// Keys deleted and invalidated after an outage (reconciled).
    pub reconciled: u64,
    /// Caches cleared after an outage because more keys were pending than
    /// `max_pending_keys`.
    pub overflowed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    corrupt: AtomicU64,
    errors: AtomicU64,
    writes: AtomicU64,
    bypassed: AtomicU64,
    reconciled: AtomicU64,
    overflowed: AtomicU64,
}

/// What a read found in Redis: the decoded entry (`None`: nothing, a
/// deletion, or bytes that do not decode) and the raw bytes, which a load
/// hands back to [`RedisCache::fill`] so that it fills only what it saw.
#[derive(Debug)]
pub(crate) struct Fetched<V> {
    pub(crate) entry: Option<Stored<V>>,
    pub(crate) raw: Option<Vec<u8>>,
}

/// What a [`RedisCache::fill`] must find under the key to write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Nothing.
    Absent,
    /// Exactly these bytes (a stale entry, a deletion, undecodable bytes).
    Bytes(Vec<u8>),
}

/// How long a deletion marker stays: a load that began before a delete and
/// ends within this finds the marker changed and does not fill the key.
pub(crate) const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

/// A value read from Redis with its freshness.
pub type RemoteEntry<V> = Envelope<V>;

/// The L2 tier: values in Redis under `{prefix}:{cache}:{key}`, written with
/// `SET PX`, read in batches with `MGET`, through a versioned codec.
///
/// Cheap to clone. Connections are made on first use and re-made after an
/// outage by themselves: while Redis is down every call fails fast with
/// [`CacheError::Unavailable`] (at most one connection attempt per
/// connection slot at a time), and the tier above keeps serving.
#[derive(Debug, Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    topology: Topology,
    slots: Vec<Slot>,
    next: AtomicUsize,
    prefix: String,
    config: RedisConfig,
    counters: Counters,
    /// Whether the last command succeeded.
    healthy: AtomicBool,
    /// Whether callers use the tier: false from the moment the breaker
    /// opens until Redis answers again and what failed meanwhile is
    /// reconciled.
    up: AtomicBool,
    /// Counts failures in a row; open, it turns callers away at once.
    breaker: CircuitBreaker,
    /// Failed calls since the last success (calls report to the breaker
    /// only while this is not 0).
    failing: AtomicU64,
    recovery: parking_lot::Mutex<Recovery>,
}

impl Inner {
    /// Connections of the tier: every command bounded by `command_timeout`.
    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            connect_timeout: self.config.connect_timeout,
            response_timeout: Some(self.config.command_timeout),
        }
    }
}

/// What failed to reach Redis and must be undone there once it is back.
#[derive(Debug, Default)]
struct Recovery {
    /// Keys by namespace whose write or delete did not reach Redis.
    keys: HashMap<String, HashSet<String>>,
    /// Namespaces to clear whole: a clear that failed, or more keys than
    /// `max_pending_keys`.
    cleared: HashSet<String>,
    /// Keys in `keys`.
    len: usize,
    /// Keys and namespaces taken out by a reconciliation in progress
    /// (still pending until it is done).
    in_flight: usize,
    /// Whether a prober task is running.
    prober: bool,
}

impl Recovery {
    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.cleared.is_empty() && self.in_flight == 0
    }
}

#[derive(Debug, Default)]
struct Slot {
    conn: OnceCell<Conn>,
    /// When the last failed connection attempt ended.
    failed_at: Mutex<Option<Instant>>,
}

/// After a failed attempt, a slot waits this long before trying again.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);

/// Leave for one Redis call (see `RedisCache::admit`).
enum Permit {
    /// No failure since the last success: nothing to report on success.
    Free,
    /// A permit of the breaker, reported either way.
    Breaker(BreakerPermit),
}

/// Keys deleted and invalidated per command when reconciling.
const RECONCILE_BATCH: usize = 500;

/// Probes a bypassed tier every `probe_interval` until Redis answers and
/// what failed meanwhile is reconciled; ends early when the tier is
/// dropped.
async fn probe_loop(tier: Weak<Inner>) {
    loop {
        let Some(interval) = tier.upgrade().map(|inner| inner.config.probe_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(inner) = tier.upgrade() else {
            return;
        };
        let cache = RedisCache { inner };
        if cache.probe_once().await && cache.reconcile().await {
            return;
        }
    }
}

impl RedisCache {
    /// A cache on the server `config.url`, or on the Redis Cluster of
    /// `config.nodes` or a `redis+cluster://` URL. Does not connect yet:
    /// the first command does, so a service can start while Redis is down.
    pub fn new(config: RedisConfig) -> Result<Self, CacheError> {
        let topology = Topology::from_fields(
            &config.url,
            &config.nodes,
            &config.sentinels,
            &config.service_name,
        )
        .map_err(|e| CacheError::Config(format!("invalid redis {}: {}", e.field, e.reason)))?;
        if config.key_prefix.is_empty() {
            return Err(CacheError::Config(
                "redis key_prefix must not be empty".into(),
            ));
        }
        let slots = (0..config.pool_size.max(1))
            .map(|_| Slot::default())
            .collect();
        let threshold = config.failure_threshold.max(1);
        let breaker = CircuitBreaker::new(
            "redis",
            CircuitBreakerConfig {
                failure_rate: 1.0,
                minimum_calls: threshold,
                window: SlidingWindow::Count(threshold),
                open_duration: config.probe_interval.max(Duration::from_millis(1)),
                half_open_probes: 1,
            },
        )
        .map_err(|e| CacheError::Config(format!("redis circuit breaker: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                topology,
                slots,
                next: AtomicUsize::new(0),
                prefix: config.key_prefix.clone(),
                config,
                counters: Counters::default(),
                healthy: AtomicBool::new(true),
                up: AtomicBool::new(true),
                breaker,
                failing: AtomicU64::new(0),
                recovery: parking_lot::Mutex::default(),
            }),
        })
    }

    /// Like [`RedisCache::new`], then checks the server answers `PING`.
    pub async fn connect(config: RedisConfig) -> Result<Self, CacheError> {
        let cache = Self::new(config)?;
        cache.ping().await?;
        Ok(cache)
    }

    /// The server or cluster the tier is on.
    pub(crate) fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// The configuration this cache was built with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The full Redis key of `key` in cache `namespace`.
    pub fn key(&self, namespace: &str, key: &str) -> String {
        let mut full = self.key_head(namespace, key.len());
        full.push_str(key);
        full
    }

    /// `{prefix}:{namespace}:`, with room for a key of `key_len` bytes.
    pub(crate) fn key_head(&self, namespace: &str, key_len: usize) -> String {
        let prefix = &self.inner.prefix;
        let mut head = String::with_capacity(prefix.len() + namespace.len() + 2 + key_len);
        head.push_str(prefix);
        head.push(':');
        head.push_str(namespace);
        head.push(':');
        head
    }

    /// The key prefix (from the config).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RedisStats {
        let c = &self.inner.counters;
        let pending = {
            let r = self.inner.recovery.lock();
            (r.len + r.cleared.len() + r.in_flight) as u64
        };
        RedisStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            corrupt: c.corrupt.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            bypassed: c.bypassed.load(Ordering::Relaxed),
            breaker_opened: self.inner.breaker.stats().opened,
            pending,
            reconciled: c.reconciled.load(Ordering::Relaxed),
            overflowed: c.overflowed.load(Ordering::Relaxed),
        }
    }

    /// Whether the tier is in use and whole: the last command succeeded,
    /// the tier is not bypassed, and nothing from an outage waits to be
    /// reconciled. `false` while Redis is down; `true` again once it
    /// answers and every write that failed meanwhile has been undone there.
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
            && self.inner.up.load(Ordering::Relaxed)
            && self.pending_is_empty()
    }

    /// Whether callers use the tier now (not bypassed).
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    fn pending_is_empty(&self) -> bool {
        self.inner.recovery.lock().is_empty()
    }

    fn mark(&self, ok: bool, error: Option<&CacheError>) {
        // Read first: the common case changes nothing and must not write
        // a line every connection's callers share.
        if self.inner.healthy.load(Ordering::Relaxed) == ok {
            return;
        }
        let was = self.inner.healthy.swap(ok, Ordering::Relaxed);
        if was && !ok {
            if let Some(error) = error {
                tracing::warn!(%error, "redis is failing; caches serve from their local tier");
            }
        } else if !was && ok {
            tracing::info!("redis is reachable again");
        }
    }

    /// Round trip to the server. While the tier is bypassed this fails at
    /// once; the background prober is what notices Redis is back.
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.guarded(self.ping_unguarded()).await
    }

    async fn ping_unguarded(&self) -> Result<(), CacheError> {
        let mut conn = self.conn().await?;
        let pong: String = self.run(redis::cmd("PING").query_async(&mut conn)).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(CacheError::Unavailable(format!(
                "unexpected PING reply {pong:?}"
            )))
        }
    }

    /// Reads one entry. Bytes that do not decode are a miss (counted in
    /// [`RedisStats::corrupt`] and logged), never an error.
    ///
    /// Like every method here that names a namespace, it reads and writes
    /// under the namespace's default [`Schema`], `Schema::new(namespace, 1)`:
    /// what a [`TieredCache`](crate::TieredCache) of that name writes unless
    /// its section sets `schema` or `schema_version`.
    pub async fn get<V: DeserializeOwned>(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<RemoteEntry<V>>, CacheError> {
        let head = self.key_head(namespace, 0);
        let schema = Schema::new(namespace, 1);
        let found = self
            .get_with(&head, schema, |out| out.push_str(key))
            .await?;
        Ok(found.entry.map(Envelope::from))
    }

    /// [`get`](Self::get) of the key `write_key` appends to a buffer (so a
    /// typed key needs no string of its own) after `head`, the namespace's
    /// [`key_head`](Self::key_head).
    pub(crate) async fn get_with<V: DeserializeOwned>(
        &self,
        head: &str,
        schema: Schema,
        write_key: impl Fn(&mut String),
    ) -> Result<Fetched<V>, CacheError> {
        let permit = self.admit()?;
        let (cmd, keep) = get_command(head, write_key);
        let result = async {
            let mut conn = self.conn().await?;
            self.checked(cmd.query_async::<Option<Vec<u8>>>(&mut conn).await)
        }
        .await;
        self.settle(permit, result.as_ref().err());
        let bytes = result?;
        let mut tally = Tally::default();
        let entry = decode(&mut tally, bytes.as_deref(), schema, || key_arg(&cmd));
        tally.add_to(&self.inner.counters);
        if keep {
            recycle(cmd);
        }
        Ok(Fetched { entry, raw: bytes })
    }

    /// Reads many entries with one `MGET`; the result is in `keys` order.
    pub async fn get_many<V: DeserializeOwned, S: AsRef<str>>(
        &self,
        namespace: &str,
        keys: &[S],
    ) -> Result<Vec<Option<RemoteEntry<V>>>, CacheError> {
        let schema = Schema::new(namespace, 1);
        let found = self
            .get_many_with(namespace, keys, schema, |k, out| out.push_str(k.as_ref()))
            .await?;
        Ok(found
            .into_iter()
            .map(|entry| entry.map(Envelope::from))
            .collect())
    }

    /// [`get_many`](Self::get_many) of the keys `write_key` appends, one
    /// item at a time, to a buffer: every key is written straight into
    /// the command, without a string of its own.
    pub(crate) async fn get_many_with<V: DeserializeOwned, T>(
        &self,
        namespace: &str,
        keys: &[T],
        schema: Schema,
        write_key: impl Fn(&T, &mut String),
    ) -> Result<Vec<Option<Stored<V>>>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut buf = self.key_head(namespace, 20);
        let head = buf.len();
        // A guess of the command's size: most keys are short.
        let mut cmd = redis::Cmd::with_capacity(keys.len() + 1, 4 + keys.len() * (head + 12));
        cmd.arg("MGET");
        for key in keys {
            buf.truncate(head);
            write_key(key, &mut buf);
            cmd.arg(buf.as_str());
        }
        let found = self
            .guarded(async {
                let mut conn = self.conn().await?;
                let reply: redis::Value = self.run(cmd.query_async(&mut conn)).await?;
                values(reply, keys.len()).map_err(|e| self.failed(e))
            })
            .await?;
        let mut tally = Tally::default();
        let entries = keys
            .iter()
            .zip(found)
            .map(|(key, bytes)| {
                decode(&mut tally, bytes.as_deref(), schema, || {
                    buf.truncate(head);
                    write_key(key, &mut buf);
                    buf.clone()
                })
            })
            .collect();
        tally.add_to(&self.inner.counters);
        Ok(entries)
    }

    /// Writes `value` (or, with `None`, a cached absence) fresh for
    /// `fresh_for`; Redis keeps it for `keep_for` (≥ `fresh_for`, longer when
    /// stale values are served on loader errors). `None` = no expiry.
    pub async fn set<V: Serialize>(
        &self,
        namespace: &str,
        key: &str,
        value: Option<&V>,
        fresh_for: Option<Duration>,
        keep_for: Option<Duration>,
    ) -> Result<(), CacheError> {
        self.set_many_tagged(
            namespace,
            std::iter::once((key, value, fresh_for, keep_for)),
            Schema::new(namespace, 1),
        )
        .await
    }

    /// Writes many entries in one pipeline, all with the same freshness.
    pub async fn set_many<'a, V: Serialize + 'a, K: AsRef<str>>(
        &self,
        namespace: &str,
        entries: impl IntoIterator<Item = (K, Option<&'a V>)>,
        fresh_for: Option<Duration>,
        keep_for: Option<Duration>,
    ) -> Result<(), CacheError> {
        let schema = Schema::new(namespace, 1);
        let entries = entries
            .into_iter()
            .map(|(key, value)| (key, value, fresh_for, keep_for));
        self.set_many_tagged(namespace, entries, schema).await
    }

    /// [`set_many`](Self::set_many) under `schema`, each entry with its
    /// own freshness and keep.
    pub(crate) async fn set_many_tagged<'a, V: Serialize + 'a, K: AsRef<str>>(
        &self,
        namespace: &str,
        entries: impl IntoIterator<Item = (K, Option<&'a V>, Option<Duration>, Option<Duration>)>,
        schema: Schema,
    ) -> Result<(), CacheError> {
        let now = SystemTime::now();
        // On a cluster, a pipeline must keep to one hash slot: one per slot,
        // sent concurrently.
        let mut pipes = Batches::new(self.inner.topology.is_cluster());
        let mut n = 0u64;
        for (key, value, fresh_for, keep_for) in entries {
            let fresh_until = fresh_for.map(|d| now + d);
            let keep_ms = keep_for
                .or(fresh_for)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1));
            let bytes = codec::encode(value, fresh_until, schema).map_err(CacheError::Encode)?;
            let full_key = self.key(namespace, key.as_ref());
            let cmd = pipes
                .get(&full_key, redis::pipe)
                .cmd("SET")
                .arg(full_key)
                .arg(bytes);
            if let Some(ms) = keep_ms {
                cmd.arg("PX").arg(ms);
            }
            cmd.ignore();
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        self.guarded(async {
            futures_util::future::try_join_all(pipes.into_iter().map(|pipe| async move {
                let mut conn = self.conn().await?;
                self.run(pipe.query_async::<()>(&mut conn)).await
            }))
            .await
        })
        .await?;
        self.inner.counters.writes.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Writes `value` under `full_key` (a [`key`](Self::key)) only if
    /// Redis still holds what a read found there (`expect`), in one script:
    /// a load fills the key it missed, unless a write or a delete (which
    /// leaves a unique deletion marker) changed it since the read. Returns
    /// whether it wrote.
    pub(crate) async fn fill<V: Serialize>(
        &self,
        full_key: &str,
        value: Option<&V>,
        schema: Schema,
        fresh_for: Option<Duration>,
        keep_for: Option<Duration>,
        expect: &Expect,
    ) -> Result<bool, CacheError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                r"local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if cur then return 0 end
elseif cur ~= ARGV[1] then
  return 0
end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1",
            )
        });
        let fresh_until = fresh_for.map(|d| SystemTime::now() + d);
        let keep_ms = keep_for.or(fresh_for).map_or(0, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        let bytes = codec::encode(value, fresh_until, schema).map_err(CacheError::Encode)?;
        let expected: &[u8] = match expect {
            Expect::Absent => &[],
            Expect::Bytes(bytes) => bytes,
        };
        let wrote: i64 = self
            .guarded(async {
                let mut conn = self.conn().await?;
                self.run(
                    SCRIPT
                        .key(full_key)
                        .arg(expected)
                        .arg(bytes)
                        .arg(keep_ms)
                        .invoke_async(&mut conn),
                )
                .await
            })
            .await?;
        if wrote == 1 {
            self.inner.counters.writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(wrote == 1)
    }

    /// Deletes entries; returns how many held a value. Each key is left
    /// with a deletion marker for a minute (read as a miss), so a load that
    /// read the key before the delete does not fill it again afterwards.
    pub async fn delete<S: AsRef<str>>(
        &self,
        namespace: &str,
        keys: &[S],
    ) -> Result<u64, CacheError> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.guarded(self.delete_unguarded(namespace, keys.iter().map(AsRef::as_ref)))
            .await
    }

    async fn delete_unguarded<'a>(
        &self,
        namespace: &str,
        keys: impl Iterator<Item = &'a str>,
    ) -> Result<u64, CacheError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                r"local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 and redis.call('GETRANGE', key, 2, 2) ~= '' then
    n = n + 1
  end
  redis.call('SET', key, ARGV[i], 'PX', ARGV[#ARGV])
end
return n",
            )
        });
        // On a cluster, a script's keys must share a hash slot: one
        // invocation per slot, run concurrently.
        let mut invocations = Batches::new(self.inner.topology.is_cluster());
        for key in keys {
            let full_key = self.key(namespace, key);
            invocations
                .get(&full_key, || SCRIPT.prepare_invoke())
                .key(full_key)
                .arg(codec::tombstone());
        }
        let ttl_ms = u64::try_from(TOMBSTONE_TTL.as_millis()).unwrap_or(u64::MAX);
        let deleted = futures_util::future::try_join_all(invocations.into_iter().map(
            |mut invocation| async move {
                invocation.arg(ttl_ms);
                let mut conn = self.conn().await?;
                self.run(invocation.invoke_async::<u64>(&mut conn)).await
            },
        ))
        .await?;
        Ok(deleted.into_iter().sum())
    }

    /// Deletes every entry of `namespace` (`SCAN` + `UNLINK`, in batches);
    /// returns how many keys it removed, deletion markers included.
    pub async fn clear(&self, namespace: &str) -> Result<u64, CacheError> {
        self.guarded(self.clear_unguarded(namespace)).await
    }

    async fn clear_unguarded(&self, namespace: &str) -> Result<u64, CacheError> {
        let pattern = format!("{}*", glob_escape(&self.key(namespace, "")));
        let mut conn = self.conn().await?;
        // A SCAN walks one server's keys: on a cluster, every primary's.
        let nodes = match &conn {
            Conn::Single(_) | Conn::Sentinel(_) => vec![None],
            Conn::Cluster(cluster) => self
                .primaries(cluster.clone())
                .await?
                .into_iter()
                .map(Some)
                .collect(),
        };
        let mut removed = 0;
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, keys): (u64, Vec<Vec<u8>>) = match (&node, &mut conn) {
                    (Some((host, port)), Conn::Cluster(cluster)) => {
                        let routing = redis::cluster_routing::RoutingInfo::SingleNode(
                            redis::cluster_routing::SingleNodeRoutingInfo::ByAddress {
                                host: host.clone(),
                                port: *port,
                            },
                        );
                        let reply = self.run(cluster.route_command(scan, routing)).await?;
                        self.checked(
                            redis::from_redis_value(reply).map_err(redis::RedisError::from),
                        )?
                    }
                    _ => self.run(scan.query_async(&mut conn)).await?,
                };
                if !keys.is_empty() {
                    // The cluster connection splits a multi-slot UNLINK by
                    // slot and adds up the counts.
                    let n: u64 = self
                        .run(redis::cmd("UNLINK").arg(&keys).query_async(&mut conn))
                        .await?;
                    removed += n;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(removed)
    }

    /// The primaries of a cluster, `(host, port)` each, from `CLUSTER NODES`.
    async fn primaries(
        &self,
        mut cluster: redis::cluster_async::ClusterConnection,
    ) -> Result<Vec<(String, u16)>, CacheError> {
        let nodes: String = self
            .run(redis::cmd("CLUSTER").arg("NODES").query_async(&mut cluster))
            .await?;
        let primaries = topology::primaries(&nodes);
        if primaries.is_empty() {
            return Err(CacheError::Unavailable(
                "redis cluster lists no reachable primary".into(),
            ));
        }
        Ok(primaries)
    }

    /// Takes the lock `key` in `namespace` for at most `ttl` if nobody holds
    /// it (`SET NX PX` with a random token). Returns the token to release
    /// it with, or `None` when another holder has it.
    pub async fn try_lock(
        &self,
        namespace: &str,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LockToken>, CacheError> {
        let lock_key = format!("{}:~lock:{namespace}:{key}", self.inner.prefix);
        let token = random_token();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = self
            .guarded(async {
                let mut conn = self.conn().await?;
                self.run(
                    redis::cmd("SET")
                        .arg(&lock_key)
                        .arg(&token)
                        .arg("NX")
                        .arg("PX")
                        .arg(ms)
                        .query_async(&mut conn),
                )
                .await
            })
            .await?;
        Ok(set.map(|_| LockToken {
            key: lock_key,
            token,
        }))
    }

    /// Releases a lock if `token` still holds it (check-and-delete in one
    /// script, so a lock that expired and was taken by another holder is
    /// left alone). Returns whether it was released.
    pub async fn unlock(&self, token: &LockToken) -> Result<bool, CacheError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
            )
        });
        let n: i64 = self
            .guarded(async {
                let mut conn = self.conn().await?;
                self.run(
                    SCRIPT
                        .key(&token.key)
                        .arg(&token.token)
                        .invoke_async(&mut conn),
                )
                .await
            })
            .await?;
        Ok(n == 1)
    }

    /// Publishes `payload` on `channel` (the invalidation bus's messages).
    pub(crate) async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), CacheError> {
        self.guarded(self.publish_unguarded(channel, payload)).await
    }

    async fn publish_unguarded(&self, channel: &str, payload: &[u8]) -> Result<(), CacheError> {
        let mut conn = self.conn().await?;
        self.run(
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<i64>(&mut conn),
        )
        .await
        .map(drop)
    }

    /// Runs `op` if the tier lets calls through, reporting how it went to
    /// the breaker; fails at once with [`CacheError::Bypassed`] otherwise.
    pub(crate) async fn guarded<T>(
        &self,
        op: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        let permit = self.admit()?;
        let result = op.await;
        self.settle(permit, result.as_ref().err());
        result
    }

    /// Leave for one call: while the tier is up and the breaker closed.
    ///
    /// While no call has failed since the last success (`failing` is 0),
    /// a call takes no breaker permit: the breaker opens only on
    /// `failure_threshold` failures in a row, so it needs to see only the
    /// failures and the success that ends a run of them. The common path
    /// is two loads of words nobody writes.
    fn admit(&self) -> Result<Permit, CacheError> {
        let inner = &*self.inner;
        if inner.up.load(Ordering::Acquire) {
            if inner.failing.load(Ordering::Relaxed) == 0 {
                return Ok(Permit::Free);
            }
            if let Ok(permit) = inner.breaker.try_acquire() {
                return Ok(Permit::Breaker(permit));
            }
            self.go_down();
        }
        inner.counters.bypassed.fetch_add(1, Ordering::Relaxed);
        Err(CacheError::Bypassed)
    }

    /// Reports a call's outcome: timeouts and lost or refused connections
    /// are failures; an error reply from a live server is not.
    fn settle(&self, permit: Permit, error: Option<&CacheError>) {
        let inner = &*self.inner;
        match (error, permit) {
            (Some(error), permit) if error.is_outage() => {
                inner.failing.fetch_add(1, Ordering::Relaxed);
                let permit = match permit {
                    Permit::Breaker(permit) => Some(permit),
                    Permit::Free => inner.breaker.try_acquire().ok(),
                };
                if let Some(permit) = permit {
                    permit.failure();
                }
                if inner.breaker.state() == CircuitState::Open {
                    self.go_down();
                }
            }
            (_, Permit::Breaker(permit)) => {
                permit.success();
                inner.failing.store(0, Ordering::Relaxed);
            }
            (_, Permit::Free) => {}
        }
    }

    /// Stops callers from using the tier and starts probing it.
    fn go_down(&self) {
        let inner = &*self.inner;
        if inner.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                failures = inner.config.failure_threshold,
                probe_interval = ?inner.config.probe_interval,
                "redis failed repeatedly; bypassing it and probing in the background"
            );
        }
        self.ensure_prober();
    }

    /// Remembers that writes or deletes of `keys` in `namespace` did not
    /// reach Redis: once it answers again they are deleted there and
    /// invalidated on every instance, before the tier is used again.
    pub(crate) fn remember<I>(&self, namespace: &str, keys: I)
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let max = self.inner.config.max_pending_keys.max(1);
        {
            let mut r = self.inner.recovery.lock();
            let Recovery {
                keys: pending,
                cleared,
                len,
                ..
            } = &mut *r;
            if !cleared.contains(namespace) {
                let set = pending.entry(namespace.to_owned()).or_default();
                for key in keys {
                    if set.insert(key.into()) {
                        *len += 1;
                    }
                }
                if *len > max {
                    let dropped = pending.remove(namespace).map_or(0, |s| s.len());
                    *len -= dropped;
                    cleared.insert(namespace.to_owned());
                    self.inner
                        .counters
                        .overflowed
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        cache = namespace,
                        max_pending_keys = max,
                        "too many writes missed redis; the cache will be cleared there when it is back"
                    );
                }
            }
        }
        self.ensure_prober();
    }

    /// Remembers that `namespace` must be cleared in Redis once it is back.
    pub(crate) fn remember_clear(&self, namespace: &str) {
        {
            let mut r = self.inner.recovery.lock();
            if let Some(set) = r.keys.remove(namespace) {
                r.len -= set.len();
            }
            r.cleared.insert(namespace.to_owned());
        }
        self.ensure_prober();
    }

    /// Starts the prober task unless one runs (or no runtime does).
    fn ensure_prober(&self) {
        let mut r = self.inner.recovery.lock();
        if r.prober {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            r.prober = true;
            runtime.spawn(probe_loop(Arc::downgrade(&self.inner)));
        }
    }

    /// One probe: whether the breaker is (now) closed.
    async fn probe_once(&self) -> bool {
        let breaker = &self.inner.breaker;
        if breaker.state() == CircuitState::Closed {
            return true;
        }
        let Ok(permit) = breaker.try_acquire() else {
            return false;
        };
        match self.ping_unguarded().await {
            Ok(()) => {
                permit.success();
                self.inner.failing.store(0, Ordering::Relaxed);
                breaker.state() == CircuitState::Closed
            }
            Err(_) => {
                permit.failure();
                false
            }
        }
    }

    /// Deletes and invalidates everything remembered, batch by batch, and
    /// lets callers back in when nothing is left. False if Redis failed
    /// meanwhile (what was taken is remembered again).
    async fn reconcile(&self) -> bool {
        loop {
            let (keys, cleared) = {
                let mut r = self.inner.recovery.lock();
                if r.is_empty() {
                    r.prober = false;
                    if !self.inner.up.swap(true, Ordering::AcqRel) {
                        tracing::info!("redis is back and reconciled; the tier is in use again");
                    }
                    return true;
                }
                r.in_flight = r.len + r.cleared.len();
                r.len = 0;
                (std::mem::take(&mut r.keys), std::mem::take(&mut r.cleared))
            };
            let mut failed = None;
            for namespace in &cleared {
                if failed.is_none() {
                    failed = self.reconcile_clear(namespace).await.err();
                }
                if failed.is_some() {
                    self.remember_clear(namespace);
                }
            }
            for (namespace, keys) in keys {
                let keys: Vec<String> = keys.into_iter().collect();
                for chunk in keys.chunks(RECONCILE_BATCH) {
                    if failed.is_none() {
                        failed = self.reconcile_keys(&namespace, chunk).await.err();
                    }
                    if failed.is_some() {
                        self.remember(&namespace, chunk.iter().cloned());
                    }
                }
            }
            self.inner.recovery.lock().in_flight = 0;
            if let Some(error) = failed {
                tracing::warn!(%error, "redis failed while reconciling; retrying");
                return false;
            }
        }
    }

    async fn reconcile_clear(&self, namespace: &str) -> Result<(), CacheError> {
        self.clear_unguarded(namespace).await?;
        let payload = bus::message(RECONCILER, WireOp::Clear)?;
        self.publish_unguarded(&bus::channel(self.prefix(), namespace), &payload)
            .await?;
        self.inner
            .counters
            .reconciled
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(cache = namespace, "cleared in redis after an outage");
        Ok(())
    }

    async fn reconcile_keys(&self, namespace: &str, keys: &[String]) -> Result<(), CacheError> {
        self.delete_unguarded(namespace, keys.iter().map(String::as_str))
            .await?;
        let payload = bus::message(RECONCILER, WireOp::Keys(keys.to_vec()))?;
        self.publish_unguarded(&bus::channel(self.prefix(), namespace), &payload)
            .await?;
        self.inner
            .counters
            .reconciled
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
        tracing::info!(
            cache = namespace,
            keys = keys.len(),
            "deleted and invalidated keys whose writes missed redis"
        );
        Ok(())
    }

    /// A connection for the next command, made on first use.
    pub(crate) async fn conn(&self) -> Result<Conn, CacheError> {
        let inner = &self.inner;
        let i = inner.next.fetch_add(1, Ordering::Relaxed) % inner.slots.len();
        if let Some(conn) = inner.slots[i].conn.get() {
            return Ok(conn.clone());
        }
        // Boxed: the connecting state is large and rare, and every read's
        // future would otherwise carry it.
        Box::pin(self.connect_slot(i)).await
    }

    /// Makes the connection of slot `i` (once; concurrent callers share
    /// the attempt), unless an attempt failed within the backoff.
    async fn connect_slot(&self, i: usize) -> Result<Conn, CacheError> {
        let inner = &self.inner;
        let slot = &inner.slots[i];
        {
            let failed_at = slot.failed_at.lock().await;
            if failed_at.is_some_and(|t| t.elapsed() < RECONNECT_BACKOFF) {
                inner.counters.errors.fetch_add(1, Ordering::Relaxed);
                let error = CacheError::Unavailable("redis is unreachable (retrying)".into());
                self.mark(false, Some(&error));
                return Err(error);
            }
        }
        // The whole attempt, handshake included, within `connect_timeout`:
        // a server that accepts but does not answer (stalled) must not
        // hold a caller longer than that.
        let result = tokio::time::timeout(
            inner.config.connect_timeout,
            slot.conn
                .get_or_try_init(|| inner.topology.connect(inner.connect_options())),
        )
        .await;
        match result {
            Ok(Ok(conn)) => Ok(conn.clone()),
            Ok(Err(e)) => Err(self.connect_failed(slot, e.to_string()).await),
            Err(_) => Err(self
                .connect_failed(
                    slot,
                    format!(
                        "connecting timed out after {:?}",
                        inner.config.connect_timeout
                    ),
                )
                .await),
        }
    }

    /// Counts a failed connection attempt of `slot` and starts its backoff.
    async fn connect_failed(&self, slot: &Slot, reason: String) -> CacheError {
        let inner = &self.inner;
        *slot.failed_at.lock().await = Some(Instant::now());
        inner.counters.errors.fetch_add(1, Ordering::Relaxed);
        // Which setting named the unreachable servers, for whoever reads
        // the error at start-up.
        let field = if !inner.config.sentinels.is_empty() {
            "sentinels"
        } else if !inner.config.nodes.is_empty() {
            "nodes"
        } else {
            "url"
        };
        let error = CacheError::Unavailable(format!(
            "cannot reach the redis of cache.redis.{field}: {reason}"
        ));
        self.mark(false, Some(&error));
        error
    }

    /// Awaits a command, counting failures.
    pub(crate) async fn run<T>(
        &self,
        command: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CacheError> {
        self.checked(command.await)
    }

    /// The result of a command, counting failures. The connection manager
    /// bounds each command by `command_timeout` (its response timeout), so
    /// no timer of our own is needed.
    fn checked<T>(&self, result: redis::RedisResult<T>) -> Result<T, CacheError> {
        match result {
            Ok(value) => {
                self.mark(true, None);
                Ok(value)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Counts a failed command and turns its error into a [`CacheError`].
    fn failed(&self, e: redis::RedisError) -> CacheError {
        let error = if e.is_timeout() {
            CacheError::Unavailable(format!(
                "redis command timed out after {:?}",
                self.inner.config.command_timeout
            ))
        } else {
            CacheError::Redis(e)
        };
        self.inner.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.mark(false, Some(&error));
        error
    }
}

/// Commands grouped for sending: all in one on a single server; on a
/// cluster, one group per hash slot of their keys.
struct Batches<T> {
    cluster: bool,
    groups: Vec<T>,
    /// Position in `groups` by slot (on a cluster).
    by_slot: HashMap<u16, usize>,
}

impl<T> Batches<T> {
    fn new(cluster: bool) -> Self {
        Self {
            cluster,
            groups: Vec::new(),
            by_slot: HashMap::new(),
        }
    }

    /// The group `key` belongs in, made with `new` if it is the first.
    fn get(&mut self, key: &str, new: impl FnOnce() -> T) -> &mut T {
        let i = if self.cluster {
            let next = self.groups.len();
            let i = *self
                .by_slot
                .entry(topology::slot(key.as_bytes()))
                .or_insert(next);
            if i == next {
                self.groups.push(new());
            }
            i
        } else {
            if self.groups.is_empty() {
                self.groups.push(new());
            }
            0
        };
        &mut self.groups[i]
    }

    fn into_iter(self) -> impl Iterator<Item = T> {
        self.groups.into_iter()
    }
}

/// What single-key reads reuse on a thread: the buffer a read builds its
/// key in, and the commands of finished reads, so that building a read's
/// command allocates nothing.
struct Scratch {
    key: String,
    commands: Vec<redis::Cmd>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            key: String::new(),
            commands: Vec::new(),
        })
    };
}

/// Commands kept per thread at most.
const SPARE_COMMANDS: usize = 128;
/// A command or key buffer longer than this is not kept.
const SPARE_BYTES: usize = 1024;

/// `GET` of the key `write_key` appends after `head`: a command this thread
/// kept, refilled, or a new one. With it, whether it is small enough to
/// [`recycle`] once done with.
fn get_command(head: &str, write_key: impl Fn(&mut String)) -> (redis::Cmd, bool) {
    let build = |key: &mut String, spare: Option<redis::Cmd>| {
        key.clear();
        key.push_str(head);
        write_key(key);
        let mut cmd = spare.unwrap_or_else(|| redis::Cmd::with_capacity(2, 3 + key.len()));
        cmd.arg("GET").arg(key.as_str());
        (cmd, key.len() <= SPARE_BYTES)
    };
    SCRATCH
        .try_with(|scratch| {
            let mut scratch = scratch.try_borrow_mut().ok()?;
            let Scratch { key, commands } = &mut *scratch;
            let built = build(key, commands.pop());
            if key.capacity() > SPARE_BYTES {
                *key = String::new();
            }
            Some(built)
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| build(&mut String::new(), None))
}

/// Keeps `cmd`, which is done with, for a later read on this thread.
fn recycle(mut cmd: redis::Cmd) {
    cmd.clear();
    let _ = SCRATCH.try_with(|scratch| {
        if let Ok(mut scratch) = scratch.try_borrow_mut()
            && scratch.commands.len() < SPARE_COMMANDS
        {
            scratch.commands.push(cmd);
        }
    });
}

/// The key of a single-key command (its second argument), for logs.
fn key_arg(cmd: &redis::Cmd) -> String {
    match cmd.args_iter().nth(1) {
        Some(redis::Arg::Simple(key)) => String::from_utf8_lossy(key).into_owned(),
        _ => String::new(),
    }
}

/// Read counters of one command, added to the shared ones once.
#[derive(Default)]
struct Tally {
    hits: u64,
    misses: u64,
    corrupt: u64,
}

impl Tally {
    fn add_to(&self, c: &Counters) {
        for (counter, n) in [
            (&c.hits, self.hits),
            (&c.misses, self.misses),
            (&c.corrupt, self.corrupt),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// Decodes what a read found. Bytes that do not decode are a miss, counted
/// as corrupt and logged with the key `key` builds.
fn decode<V: DeserializeOwned>(
    tally: &mut Tally,
    bytes: Option<&[u8]>,
    schema: Schema,
    key: impl FnOnce() -> String,
) -> Option<Stored<V>> {
    let Some(bytes) = bytes else {
        tally.misses += 1;
        return None;
    };
    if codec::is_tombstone(bytes) {
        tally.misses += 1;
        return None;
    }
    match codec::decode_stored(bytes, schema) {
        Ok(entry) => {
            tally.hits += 1;
            Some(entry)
        }
        Err(error) => {
            tally.corrupt += 1;
            tally.misses += 1;
            let key = key();
            tracing::warn!(key, %error, len = bytes.len(), "undecodable value in redis; treated as a miss");
            None
        }
    }
}

/// The values of an `MGET` reply for `n` keys: bulk strings and nils are
/// taken as they are; any other shape goes through the client's own
/// conversion, which rejects what is not a list of values.
fn values(reply: redis::Value, n: usize) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
    let found = match reply {
        redis::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                redis::Value::BulkString(bytes) => Ok(Some(bytes)),
                redis::Value::Nil => Ok(None),
                other => redis::from_redis_value(other).map_err(redis::RedisError::from),
            })
            .collect::<redis::RedisResult<Vec<_>>>()?,
        other => redis::from_redis_value(other).map_err(redis::RedisError::from)?,
    };
    if found.len() != n {
        return Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "MGET returned a different number of values than keys",
        )));
    }
    Ok(found)
}

/// Proof of holding a lock taken with [`RedisCache::try_lock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken {
    key: String,
    token: String,
}

fn random_token() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// Escapes Redis glob metacharacters so a literal prefix can be matched.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("keel:a*b?[c]\\:"), "keel:a\\*b\\?\\[c\\]\\\\:");
    }

    fn args(cmd: &redis::Cmd) -> Vec<Vec<u8>> {
        cmd.args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => bytes.to_vec(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn a_kept_command_is_refilled_with_only_the_new_key() {
        let spare = || SCRATCH.with_borrow(|s| s.commands.len());
        let (first, keep) = get_command("p:c:", |out| out.push_str("1234567"));
        assert!(keep);
        assert_eq!(args(&first), [b"GET".to_vec(), b"p:c:1234567".to_vec()]);
        let before = spare();
        recycle(first);
        assert_eq!(spare(), before + 1);
        let (second, _) = get_command("p:c:", |out| out.push('9'));
        assert_eq!(spare(), before);
        assert_eq!(args(&second), [b"GET".to_vec(), b"p:c:9".to_vec()]);
        assert_eq!(key_arg(&second), "p:c:9");
        recycle(second);
        // A command that took a long key is not to be kept.
        let long = "k".repeat(SPARE_BYTES * 2);
        let (third, keep) = get_command("p:c:", |out| out.push_str(&long));
        assert_eq!(key_arg(&third), format!("p:c:{long}"));
        assert!(!keep);
        assert_eq!(spare(), before);
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 32);
    }
}
