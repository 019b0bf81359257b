//! Warming a cache before traffic: bulk loads with progress, and snapshots
//! of the local tier that a restart restores.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::{CacheKey, CacheValue, NEVER, TieredCache};
use crate::codec;
use crate::error::CacheError;

/// What [`TieredCache::warm`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct WarmSummary {
    /// Keys whose value was loaded and stored.
    pub loaded: u64,
    /// Keys the loader reported absent.
    pub absent: u64,
    /// Keys whose load failed (not stored).
    pub failed: u64,
    /// How long it took.
    pub elapsed: Duration,
}

impl WarmSummary {
    /// Keys handled per second.
    pub fn rate(&self) -> f64 {
        let n = (self.loaded + self.absent + self.failed) as f64;
        n / self.elapsed.as_secs_f64().max(1e-9)
    }
}

const SNAPSHOT_MAGIC: &[u8; 8] = b"KEELSNAP";
const SNAPSHOT_VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct SnapshotEntry<V> {
    key: String,
    value: Option<V>,
    /// Wall-clock milliseconds since the epoch; 0 = never stale.
    fresh_until_ms: u64,
}

impl<K: CacheKey, V: CacheValue> TieredCache<K, V> {
    /// Loads `keys` with `loader`, at most `concurrency` at a time, into
    /// both tiers (and the Bloom filter). A key written or deleted while
    /// its load runs keeps that newer state. Progress (count, rate,
    /// failures) is logged through `tracing` every second and at the end.
    pub async fn warm<I, F, Fut, E>(&self, keys: I, loader: F, concurrency: usize) -> WarmSummary
    where
        I: IntoIterator<Item = K>,
        F: Fn(K) -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
        E: std::fmt::Display,
    {
        let started = Instant::now();
        let mut summary = WarmSummary::default();
        let mut last_report = started;
        let loader = &loader;
        let inner = &self.inner;
        let mut results = futures_util::stream::iter(keys)
            .map(|key| async move {
                // What Redis holds before the load: a write meanwhile wins.
                let seen = inner.observe(&key).await;
                let out = loader(key.clone()).await;
                (key, out, seen)
            })
            .buffer_unordered(concurrency.max(1));
        while let Some((key, out, seen)) = results.next().await {
            match out {
                Ok(Some(value)) => {
                    inner
                        .fill(key.clone(), Some(value), inner.settings.ttl, seen)
                        .await;
                    self.mark_exists(&key);
                    summary.loaded += 1;
                }
                Ok(None) => summary.absent += 1,
                Err(error) => {
                    summary.failed += 1;
                    tracing::debug!(cache = %self.inner.name, key = %key.to_key(), %error, "warming load failed");
                }
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                summary.elapsed = started.elapsed();
                tracing::info!(
                    cache = %self.inner.name,
                    done = summary.loaded + summary.absent + summary.failed,
                    rate = summary.rate(),
                    failures = summary.failed,
                    "warming"
                );
            }
        }
        summary.elapsed = started.elapsed();
        tracing::info!(
            cache = %self.inner.name,
            loaded = summary.loaded,
            absent = summary.absent,
            failed = summary.failed,
            rate = summary.rate(),
            "warming done"
        );
        summary
    }

    /// Writes the local tier's fresh entries to `path` (atomically: a
    /// temporary file renamed into place). Returns how many were written.
    pub fn snapshot(&self, path: &Path) -> Result<u64, CacheError> {
        let inner = &self.inner;
        let now = inner.clock.now_nanos();
        let entries: Vec<SnapshotEntry<V>> = inner
            .l1
            .iter()
            .filter(|(_, slot)| now < slot.fresh_until)
            .map(|(key, slot)| SnapshotEntry {
                key: key.to_key().into_owned(),
                fresh_until_ms: if slot.fresh_until == NEVER {
                    0
                } else {
                    millis(inner.wall(slot.fresh_until)).max(1)
                },
                value: slot.value,
            })
            .collect();
        let err = |reason: String| CacheError::Snapshot {
            path: path.to_owned(),
            reason,
        };
        let mut bytes = Vec::with_capacity(16 + entries.len() * 16);
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.push(SNAPSHOT_VERSION);
        bytes.extend(
            codec::encode(Some(&entries), None, inner.schema).map_err(|e| err(e.to_string()))?,
        );
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &bytes).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
        Ok(entries.len() as u64)
    }

    /// Loads the entries of a [`snapshot`](Self::snapshot) into the local
    /// tier, skipping those that went stale meanwhile. A file that is not a
    /// snapshot of this version is an error, and nothing is loaded.
    pub fn restore(&self, path: &Path) -> Result<u64, CacheError> {
        let err = |reason: String| CacheError::Snapshot {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let header = SNAPSHOT_MAGIC.len() + 1;
        if bytes.len() < header || &bytes[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
            return Err(err("not a keel cache snapshot".into()));
        }
        if bytes[SNAPSHOT_MAGIC.len()] != SNAPSHOT_VERSION {
            return Err(err(format!(
                "snapshot version {} is not supported",
                bytes[SNAPSHOT_MAGIC.len()]
            )));
        }
        let entries: Vec<SnapshotEntry<V>> = codec::decode(&bytes[header..], self.inner.schema)
            .map_err(|e| {
                err(format!(
                    "snapshot does not decode as this cache's schema and types: {e}"
                ))
            })?
            .value
            .unwrap_or_default();
        let inner = Arc::clone(&self.inner);
        let now = inner.clock.now_nanos();
        let wall_now = SystemTime::now();
        let mut restored = 0;
        for entry in entries {
            let Some(key) = K::from_key(&entry.key) else {
                continue;
            };
            let fresh_for = if entry.fresh_until_ms == 0 {
                None
            } else {
                let until = SystemTime::UNIX_EPOCH + Duration::from_millis(entry.fresh_until_ms);
                match until.duration_since(wall_now) {
                    Ok(left) if !left.is_zero() => Some(left),
                    _ => continue,
                }
            };
            if entry.value.is_some() {
                self.mark_exists(&key);
            }
            inner.put_local(key, entry.value, fresh_for, now, || true);
            restored += 1;
        }
        Ok(restored)
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
