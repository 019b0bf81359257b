//! [`RedisCache`]: the shared L2 tier on Redis.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, OnceCell};

use crate::codec::{self, Envelope, Stored};
use crate::config::RedisConfig;
use crate::error::CacheError;

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
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    corrupt: AtomicU64,
    errors: AtomicU64,
    writes: AtomicU64,
}

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
    client: redis::Client,
    slots: Vec<Slot>,
    next: AtomicUsize,
    prefix: String,
    config: RedisConfig,
    counters: Counters,
    /// Whether the last command succeeded.
    healthy: AtomicBool,
}

#[derive(Debug, Default)]
struct Slot {
    conn: OnceCell<ConnectionManager>,
    /// When the last failed connection attempt ended.
    failed_at: Mutex<Option<Instant>>,
}

/// After a failed attempt, a slot waits this long before trying again.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);

impl RedisCache {
    /// A cache on the server `config.url`. Does not connect yet: the first
    /// command does, so a service can start while Redis is down.
    pub fn new(config: RedisConfig) -> Result<Self, CacheError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| CacheError::Config(format!("invalid redis url {:?}: {e}", config.url)))?;
        if config.key_prefix.is_empty() {
            return Err(CacheError::Config(
                "redis key_prefix must not be empty".into(),
            ));
        }
        let slots = (0..config.pool_size.max(1))
            .map(|_| Slot::default())
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                slots,
                next: AtomicUsize::new(0),
                prefix: config.key_prefix.clone(),
                config,
                counters: Counters::default(),
                healthy: AtomicBool::new(true),
            }),
        })
    }

    /// Like [`RedisCache::new`], then checks the server answers `PING`.
    pub async fn connect(config: RedisConfig) -> Result<Self, CacheError> {
        let cache = Self::new(config)?;
        cache.ping().await?;
        Ok(cache)
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
        RedisStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            corrupt: c.corrupt.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
        }
    }

    /// Whether the last command succeeded: `false` while Redis is down,
    /// `true` again after the first command that gets through.
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
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

    /// Round trip to the server.
    pub async fn ping(&self) -> Result<(), CacheError> {
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
    pub async fn get<V: DeserializeOwned>(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<RemoteEntry<V>>, CacheError> {
        let head = self.key_head(namespace, 0);
        let found = self.get_with(&head, |out| out.push_str(key)).await?;
        Ok(found.map(Envelope::from))
    }

    /// [`get`](Self::get) of the key `write_key` appends to a buffer (so a
    /// typed key needs no string of its own) after `head`, the namespace's
    /// [`key_head`](Self::key_head).
    pub(crate) async fn get_with<V: DeserializeOwned>(
        &self,
        head: &str,
        write_key: impl Fn(&mut String),
    ) -> Result<Option<Stored<V>>, CacheError> {
        let (cmd, keep) = get_command(head, write_key);
        let mut conn = self.conn().await?;
        let bytes: Option<Vec<u8>> = self.checked(cmd.query_async(&mut conn).await)?;
        let mut tally = Tally::default();
        let entry = decode(&mut tally, bytes, || key_arg(&cmd));
        tally.add_to(&self.inner.counters);
        if keep {
            recycle(cmd);
        }
        Ok(entry)
    }

    /// Reads many entries with one `MGET`; the result is in `keys` order.
    pub async fn get_many<V: DeserializeOwned, S: AsRef<str>>(
        &self,
        namespace: &str,
        keys: &[S],
    ) -> Result<Vec<Option<RemoteEntry<V>>>, CacheError> {
        let found = self
            .get_many_with(namespace, keys, |k, out| out.push_str(k.as_ref()))
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
        let mut conn = self.conn().await?;
        let reply: redis::Value = self.run(cmd.query_async(&mut conn)).await?;
        let found = values(reply, keys.len()).map_err(|e| self.failed(e))?;
        let mut tally = Tally::default();
        let entries = keys
            .iter()
            .zip(found)
            .map(|(key, bytes)| {
                decode(&mut tally, bytes, || {
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
        self.set_many(
            namespace,
            std::iter::once((key, value)),
            fresh_for,
            keep_for,
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
        let fresh_until = fresh_for.map(|d| SystemTime::now() + d);
        let keep_ms = keep_for
            .or(fresh_for)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1));
        let mut pipe = redis::pipe();
        let mut n = 0u64;
        for (key, value) in entries {
            let bytes = codec::encode(value, fresh_until).map_err(CacheError::Encode)?;
            let cmd = pipe
                .cmd("SET")
                .arg(self.key(namespace, key.as_ref()))
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
        let mut conn = self.conn().await?;
        self.run(pipe.query_async::<()>(&mut conn)).await?;
        self.inner.counters.writes.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes entries (`UNLINK`); returns how many existed.
    pub async fn delete<S: AsRef<str>>(
        &self,
        namespace: &str,
        keys: &[S],
    ) -> Result<u64, CacheError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let full: Vec<String> = keys
            .iter()
            .map(|k| self.key(namespace, k.as_ref()))
            .collect();
        let mut conn = self.conn().await?;
        self.run(redis::cmd("UNLINK").arg(&full).query_async(&mut conn))
            .await
    }

    /// Deletes every entry of `namespace` (`SCAN` + `UNLINK`, in batches).
    pub async fn clear(&self, namespace: &str) -> Result<u64, CacheError> {
        let pattern = format!("{}*", glob_escape(&self.key(namespace, "")));
        let mut conn = self.conn().await?;
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn),
                )
                .await?;
            if !keys.is_empty() {
                let n: u64 = self
                    .run(redis::cmd("UNLINK").arg(&keys).query_async(&mut conn))
                    .await?;
                removed += n;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
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
        let mut conn = self.conn().await?;
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(&lock_key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut conn),
            )
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
        let mut conn = self.conn().await?;
        let n: i64 = self
            .run(
                SCRIPT
                    .key(&token.key)
                    .arg(&token.token)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(n == 1)
    }

    /// A connection for the next command, made on first use.
    pub(crate) async fn conn(&self) -> Result<ConnectionManager, CacheError> {
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
    async fn connect_slot(&self, i: usize) -> Result<ConnectionManager, CacheError> {
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
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(inner.config.connect_timeout))
            .set_response_timeout(Some(inner.config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let result = slot
            .conn
            .get_or_try_init(|| inner.client.get_connection_manager_with_config(config))
            .await;
        match result {
            Ok(conn) => Ok(conn.clone()),
            Err(e) => {
                *slot.failed_at.lock().await = Some(Instant::now());
                inner.counters.errors.fetch_add(1, Ordering::Relaxed);
                let error = CacheError::Unavailable(e.to_string());
                self.mark(false, Some(&error));
                Err(error)
            }
        }
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
    bytes: Option<Vec<u8>>,
    key: impl FnOnce() -> String,
) -> Option<Stored<V>> {
    let Some(bytes) = bytes else {
        tally.misses += 1;
        return None;
    };
    match codec::decode_stored(&bytes) {
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
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(32);
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
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
