//! Loads: one per key per instance (single flight), the cluster-wide load
//! lock and the wait for its holder, refresh-ahead, stale-if-error, and
//! the fill that never overwrites a newer write.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{CacheKey, CacheValue, Found, Inner, Keep, Loaded, Lookup, Seen, Served, TieredCache};
use crate::error::LoadError;
use crate::flight::Failure;
#[cfg(feature = "redis")]
use crate::remote::redis::{Expect, Fetched};

impl<K: CacheKey, V: CacheValue> TieredCache<K, V> {
    /// The value of `key`, loading it with `loader` when no tier has it.
    /// `Ok(None)` from the loader means "does not exist" and is cached for
    /// `negative_ttl` when negative caching is on.
    ///
    /// One load per key runs at a time on this instance, as a task of its
    /// own: callers that arrive meanwhile wait for it, and a caller that is
    /// cancelled does not cancel it. A loader error reaches every waiter
    /// and is not cached; with `max_stale`, a stale value is served instead.
    /// A loaded value fills the tiers only if nothing changed its key
    /// since the read that missed (see "Consistency" above); the callers get
    /// it either way.
    pub async fn try_get_or_load<F, Fut, E>(
        &self,
        key: K,
        loader: F,
    ) -> Result<Option<V>, LoadError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let lookup = self
            .try_get_or_load_with(key, move || {
                let fut = loader();
                async move { fut.await.map(Loaded::new) }
            })
            .await?;
        Ok(lookup.value)
    }

    /// [`try_get_or_load`](Self::try_get_or_load) with a loader that also
    /// says how long its value may be kept ([`Keep`]: a response's
    /// `Cache-Control`, say), and an answer that says where the value came
    /// from ([`Served`]: a tier, a load, or a stale copy after a failed
    /// load).
    pub async fn try_get_or_load_with<F, Fut, E>(
        &self,
        key: K,
        loader: F,
    ) -> Result<Lookup<V>, LoadError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let inner = &self.inner;
        let (stale, seen) = match inner.lookup(&key).await {
            Found::Fresh { value, refresh } => {
                if refresh {
                    inner.refresh(&key, loader);
                }
                return Ok(Lookup {
                    value,
                    served: Served::Cached,
                });
            }
            Found::Stale {
                value,
                fresh_until,
                seen,
            } => (Some((value, fresh_until)), seen),
            Found::Miss(seen) => (None, seen),
        };
        let Some((done, _)) = inner.flights.join_or_start(&key, || {
            let this = Arc::clone(inner);
            let fut = loader();
            let key = key.clone();
            async move { this.load(key, fut, Some(seen)).await }
        }) else {
            return Err(LoadError::NoRuntime);
        };
        match done.await {
            Ok(value) => Ok(Lookup {
                value,
                served: Served::Loaded,
            }),
            Err(failure) => {
                if let Some((value, fresh_until)) = stale
                    && inner.within_max_stale(fresh_until)
                {
                    inner.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(cache = %inner.name, "loader failed; serving a stale value");
                    return Ok(Lookup {
                        value,
                        served: Served::Stale,
                    });
                }
                Err(match failure {
                    Failure::Loader(e) => e
                        .downcast::<E>()
                        .map_or(LoadError::Aborted, LoadError::Loader),
                    Failure::Panicked => LoadError::Panicked,
                    Failure::Aborted => LoadError::Aborted,
                })
            }
        }
    }

    /// [`try_get_or_load`](Self::try_get_or_load) with a loader that always
    /// finds a value. A key the Bloom filter has never seen (or whose
    /// absence is cached) is [`LoadError::NotFound`]: mark keys that exist
    /// before loading them through a cache with a Bloom filter.
    pub async fn get_or_load<F, Fut>(&self, key: K, loader: F) -> Result<V, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let loaded = self
            .try_get_or_load(key, move || {
                let fut = loader();
                async move { Ok(Some(fut.await)) }
            })
            .await?;
        loaded.ok_or(LoadError::NotFound)
    }
}

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    /// What a load that starts now must find when it is done: a ticket,
    /// and what Redis holds (one read, when the tier is up).
    pub(super) async fn observe(&self, key: &K) -> Seen {
        let ticket = self.versions.ticket(key);
        #[cfg(feature = "redis")]
        if let Some(remote) = self.remote_up() {
            let found = remote
                .redis
                .get_with::<V>(&remote.head, self.schema, |out| key.write_key(out))
                .await;
            return match found {
                Ok(fetched) => Seen {
                    ticket,
                    redis: Some(fetched.raw.map_or(Expect::Absent, Expect::Bytes)),
                },
                Err(error) => {
                    self.remote_failed(&error);
                    Seen {
                        ticket,
                        redis: None,
                    }
                }
            };
        }
        Seen {
            ticket,
            redis: None,
        }
    }

    /// Runs a load (on the flight's task) and stores what it found. `seen`
    /// is what the read that missed saw (`None`: a refresh, which reads
    /// Redis itself before calling the loader).
    pub(super) async fn load<E: Send + Sync + 'static>(
        self: Arc<Self>,
        key: K,
        fut: impl Future<Output = Result<Loaded<V>, E>>,
        seen: Option<Seen>,
    ) -> Result<Option<V>, Failure> {
        #[cfg(feature = "redis")]
        let mut lock = None;
        #[cfg(feature = "redis")]
        if let (Some(settings), Some(remote)) = (self.settings.lock, self.remote_up()) {
            match remote
                .redis
                .try_lock(&self.name, &key.to_key(), settings.ttl)
                .await
            {
                Ok(Some(token)) => lock = Some(token),
                Ok(None) => {
                    self.counters.lock_waits.fetch_add(1, Ordering::Relaxed);
                    if let Some(value) = self.wait_for_holder(&key, settings.wait).await {
                        return Ok(value);
                    }
                }
                Err(error) => self.remote_failed(&error),
            }
        }
        let seen = match seen {
            Some(seen) => seen,
            None => self.observe(&key).await,
        };
        self.counters.loads.fetch_add(1, Ordering::Relaxed);
        let outcome = fut.await;
        let result = match outcome {
            Ok(Loaded { value, keep }) => {
                let ttl = match (&value, keep) {
                    (_, Keep::For(ttl)) => Some(ttl),
                    (_, Keep::ForAtMost(ttl)) => {
                        Some(self.settings.ttl.map_or(ttl, |own| own.min(ttl)))
                    }
                    (Some(_), _) => self.settings.ttl,
                    (None, _) => self.settings.negative_ttl,
                };
                let cacheable = value.is_some()
                    || self.settings.negative_ttl.is_some()
                    || matches!(keep, Keep::For(_) | Keep::ForAtMost(_));
                if keep != Keep::Never && cacheable {
                    self.fill(key.clone(), value.clone(), ttl, seen).await;
                }
                if value.is_some()
                    && let Some(bloom) = &self.bloom
                {
                    bloom.insert(key.to_key().as_ref());
                }
                Ok(value)
            }
            Err(e) => {
                self.counters.load_failures.fetch_add(1, Ordering::Relaxed);
                Err(Failure::Loader(Arc::new(e)))
            }
        };
        #[cfg(feature = "redis")]
        if let (Some(token), Some(remote)) = (lock, &self.remote)
            && let Err(error) = remote.redis.unlock(&token).await
        {
            tracing::debug!(cache = %self.name, %error, "cannot release a load lock; it expires by itself");
        }
        result
    }

    /// Another instance holds the load lock: poll Redis for its value.
    #[cfg(feature = "redis")]
    pub(super) async fn wait_for_holder(&self, key: &K, wait: Duration) -> Option<Option<V>> {
        let remote = self.remote.as_ref()?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            let now = self.clock.now_nanos();
            let ticket = self.versions.ticket(key);
            let found = remote
                .redis
                .get_with::<V>(&remote.head, self.schema, |out| key.write_key(out))
                .await;
            if let Ok(Fetched {
                entry: Some(entry), ..
            }) = found
            {
                let until = self.clock_time(entry.fresh_until_ms);
                if now < until {
                    return Some(self.backfill(key, entry.value, until, now, ticket));
                }
            }
        }
        None
    }

    /// Stores a loaded value in both tiers, only if nothing changed the key
    /// since `seen` was taken: locally (a write, delete, invalidation or
    /// flush moved the key's ticket) or in Redis (it no longer holds what
    /// the read saw; a delete leaves a unique marker, so it counts). No
    /// invalidation: nothing changed that other instances could hold.
    pub(super) async fn fill(&self, key: K, value: Option<V>, ttl: Option<Duration>, seen: Seen) {
        let refused = || {
            self.counters.fills_refused.fetch_add(1, Ordering::Relaxed);
        };
        if !self.versions.still(seen.ticket) {
            return refused();
        }
        let ttl = ttl.map(|t| self.jitter(t));
        let now = self.clock.now_nanos();
        #[cfg(feature = "redis")]
        if let (Some(remote), Some(expect)) = (self.remote_up(), &seen.redis) {
            let keep = ttl.map(|t| t + self.settings.max_stale.unwrap_or_default());
            let full = format!("{}{}", remote.head, key.to_key());
            let filled = remote
                .redis
                .fill(&full, value.as_ref(), self.schema, ttl, keep, expect)
                .await;
            match filled {
                Ok(true) => {}
                Ok(false) => return refused(),
                // Redis is out of reach: keep the value locally only.
                Err(error) => self.remote_failed(&error),
            }
        }
        let local = self.local_ttl(ttl);
        if !self.put_local(key, value, local, now, || self.versions.still(seen.ticket)) {
            refused();
        }
    }

    /// Starts a background reload of `key` unless one is running.
    pub(super) fn refresh<F, Fut, E>(self: &Arc<Self>, key: &K, loader: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        if self.flights.is_running(key) {
            return;
        }
        let started = self.flights.join_or_start(key, || {
            let this = Arc::clone(self);
            let fut = loader();
            let key = key.clone();
            async move { this.load(key, fut, None).await }
        });
        if let Some((_, true)) = started {
            self.counters.refreshes.fetch_add(1, Ordering::Relaxed);
        }
    }
}
