//! Writes by the application (insert, remove, clear) and invalidations
//! from the other instances.

use std::time::Duration;

#[cfg(feature = "redis")]
use super::Remote;
#[cfg(feature = "redis")]
use super::versions::Versions;
use super::{CacheKey, CacheValue, Inner, TieredCache};
#[cfg(feature = "redis")]
use crate::remote::bus::{Invalidation, InvalidationHandler};

impl<K: CacheKey, V: CacheValue> TieredCache<K, V> {
    /// Caches "`key` does not exist" for `negative_ttl`; false (and
    /// nothing stored) when negative caching is off.
    pub(crate) async fn insert_absent(&self, key: K) -> bool {
        let Some(ttl) = self.inner.settings.negative_ttl else {
            return false;
        };
        self.inner.write(key, None, Some(ttl)).await;
        true
    }

    /// Writes `value` to both tiers with the cache's TTL and tells the
    /// other instances to drop their copies. A Redis failure degrades to
    /// the local tier and is not returned: the key is remembered, and once
    /// Redis is back it is deleted there and invalidated on every instance.
    pub async fn insert(&self, key: K, value: V) {
        let ttl = self.inner.settings.ttl;
        self.inner.write(key, Some(value), ttl).await;
    }

    /// [`insert`](Self::insert) for many entries: one Redis pipeline and
    /// one invalidation message for the batch, each entry's TTL jittered
    /// on its own (so a batch does not expire at one moment).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use keel_cache::{CacheSettings, TieredCache};
    ///
    /// let prices: TieredCache<String, u64> =
    ///     TieredCache::builder("prices", CacheSettings::default()).build().unwrap();
    /// prices
    ///     .insert_many([("AAPL".to_owned(), 190), ("MSFT".to_owned(), 410)])
    ///     .await;
    /// assert_eq!(prices.get(&"MSFT".to_owned()).await, Some(410));
    /// # }
    /// ```
    pub async fn insert_many(&self, entries: impl IntoIterator<Item = (K, V)>) {
        let ttl = self.inner.settings.ttl;
        self.insert_many_for(entries, ttl).await;
    }

    /// [`insert_many`](Self::insert_many) with `ttl` (`None`: the cache's).
    pub(crate) async fn insert_many_for(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
        ttl: Option<Duration>,
    ) {
        let ttl = ttl.or(self.inner.settings.ttl);
        let entries = entries
            .into_iter()
            .map(|(key, value)| (key, Some(value), ttl));
        self.inner.write_many(entries).await;
    }

    /// [`insert`](Self::insert) with a TTL of its own.
    pub async fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.inner.write(key, Some(value), Some(ttl)).await;
    }

    /// Removes `key` from both tiers and from the other instances. With
    /// Redis failing, the key is remembered and deleted there once it is
    /// back.
    pub async fn remove(&self, key: &K) {
        let inner = &self.inner;
        inner.l1.remove(key);
        #[cfg(feature = "redis")]
        if let Some(remote) = &inner.remote {
            let name = key.to_key();
            let result = remote.redis.delete(&inner.name, &[name.as_ref()]).await;
            // After Redis, before the local tier: see `versions.rs`.
            inner.versions.bump(key);
            inner.l1.remove(key);
            match result {
                Ok(_) => inner.publish(remote, vec![name.into_owned()]).await,
                Err(error) => {
                    inner.remote_failed(&error);
                    remote.redis.remember(&inner.name, [name.into_owned()]);
                }
            }
            return;
        }
        inner.versions.bump(key);
        inner.l1.remove(key);
    }

    /// Removes every entry of this cache, in both tiers and on the other
    /// instances.
    pub async fn clear(&self) {
        let inner = &self.inner;
        inner.l1.invalidate_all();
        #[cfg(feature = "redis")]
        if let Some(remote) = &inner.remote {
            let result = remote.redis.clear(&inner.name).await;
            inner.versions.bump_all();
            inner.l1.invalidate_all();
            if let Err(error) = result {
                inner.remote_failed(&error);
                remote.redis.remember_clear(&inner.name);
                return;
            }
            if let Some(bus) = &remote.bus
                && let Err(error) = bus.publish_clear(&inner.name).await
            {
                tracing::warn!(cache = %inner.name, %error, "cannot publish a clear; it is sent again once redis is back");
                remote.redis.remember_clear(&inner.name);
            }
            return;
        }
        inner.versions.bump_all();
        inner.l1.invalidate_all();
    }
}

impl<K: CacheKey, V: CacheValue> Inner<K, V> {
    /// A write by the application: Redis, the local tier, then the other
    /// instances.
    pub(super) async fn write(&self, key: K, value: Option<V>, ttl: Option<Duration>) {
        self.write_many(std::iter::once((key, value, ttl))).await;
    }

    /// Writes by the application: one Redis pipeline, the local tier, then
    /// one message to the other instances. Each key's version moves before
    /// and after the Redis write; if anything else moved it in between (a
    /// concurrent write, an invalidation of the same key, or another key of
    /// the batch sharing its counter), the order of the two in Redis is not
    /// known, so the local copy is dropped instead of written and the next
    /// read asks Redis. Each TTL is jittered on its own.
    pub(super) async fn write_many(
        &self,
        entries: impl IntoIterator<Item = (K, Option<V>, Option<Duration>)>,
    ) {
        let entries = entries.into_iter().map(|(key, value, ttl)| {
            if value.is_some()
                && let Some(bloom) = &self.bloom
            {
                bloom.insert(key.to_key().as_ref());
            }
            (key, value, ttl.map(|t| self.jitter(t)))
        });
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.remote {
            let stale = self.settings.max_stale.unwrap_or_default();
            let entries: Vec<_> = entries
                .map(|(key, value, ttl)| {
                    let before = self.versions.bump(&key);
                    (key.to_key().into_owned(), key, value, ttl, before)
                })
                .collect();
            if entries.is_empty() {
                return;
            }
            let result = remote
                .redis
                .set_many_tagged(
                    &self.name,
                    entries.iter().map(|(name, _, value, ttl, _)| {
                        (name, value.as_ref(), *ttl, ttl.map(|t| t + stale))
                    }),
                    self.schema,
                )
                .await;
            let mut names = Vec::with_capacity(entries.len());
            for (name, key, value, ttl, before) in entries {
                let after = self.versions.bump(&key);
                let now = self.clock.now_nanos();
                let local = self.local_ttl(ttl);
                if result.is_ok() {
                    let alone = Versions::consecutive(before, after);
                    if !(alone
                        && self.put_local(key.clone(), value, local, now, || {
                            self.versions.still(after)
                        }))
                    {
                        self.l1.remove(&key);
                    }
                } else {
                    // Redis holds an older value (or will not say): this
                    // instance serves the new one, and once Redis is back
                    // the key is deleted there and on every instance.
                    self.put_local(key, value, local, now, || true);
                }
                names.push(name);
            }
            match result {
                Ok(()) => self.publish(remote, names).await,
                Err(error) => {
                    self.remote_failed(&error);
                    remote.redis.remember(&self.name, names);
                }
            }
            return;
        }
        for (key, value, ttl) in entries {
            self.versions.bump(&key);
            let now = self.clock.now_nanos();
            self.put_local(key, value, self.local_ttl(ttl), now, || true);
        }
    }

    /// Tells the other instances that `keys` changed. If that fails, the
    /// keys are remembered and invalidated (and deleted in Redis) once
    /// Redis is back.
    #[cfg(feature = "redis")]
    pub(super) async fn publish(&self, remote: &Remote, keys: Vec<String>) {
        if let Some(bus) = &remote.bus
            && let Err(error) = bus.publish_keys(&self.name, keys.clone()).await
        {
            tracing::debug!(cache = %self.name, %error, "cannot publish an invalidation");
            remote.redis.remember(&self.name, keys);
        }
    }
}

#[cfg(feature = "redis")]
impl<K: CacheKey, V: CacheValue> InvalidationHandler for Inner<K, V> {
    fn on_invalidation(&self, invalidation: &Invalidation) {
        match invalidation {
            Invalidation::Keys { keys, .. } => {
                for key in keys {
                    if let Some(key) = K::from_key(key) {
                        self.versions.bump(&key);
                        self.l1.remove(&key);
                    }
                }
            }
            Invalidation::Clear { .. } | Invalidation::Resync => {
                self.versions.bump_all();
                self.l1.invalidate_all();
            }
        }
    }
}
