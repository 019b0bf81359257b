//! The bytes the Redis tier writes are a format other builds read: pinned
//! here by envelopes checked into `tests/data`, written from the layout in
//! `src/codec.rs` and not by the code under test.

use std::time::{Duration, UNIX_EPOCH};

use keel_cache::{DecodeError, Envelope, Schema};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    admin: bool,
    tags: Vec<String>,
}

fn ada() -> Profile {
    Profile {
        id: 300,
        name: "Ada".into(),
        admin: true,
        tags: vec!["math".into(), "eng".into()],
    }
}

/// The envelope named `name` in `tests/data/envelope-v2.txt`.
fn fixture(name: &str) -> Vec<u8> {
    let text = include_str!("data/envelope-v2.txt");
    let hex = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no fixture {name:?}"));
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

const PROFILES: &str = "profiles";

#[test]
fn envelopes_of_format_2_decode_as_written() {
    let value: Envelope<Profile> =
        Envelope::decode(&fixture("value"), Schema::new(PROFILES, 1)).unwrap();
    assert_eq!(value.value, Some(ada()));
    assert_eq!(value.fresh_until, None);

    let absent: Envelope<Profile> =
        Envelope::decode(&fixture("absent"), Schema::new(PROFILES, 1)).unwrap();
    assert_eq!(absent.value, None);
    assert_eq!(
        absent.fresh_until,
        Some(UNIX_EPOCH + Duration::from_millis(1_800_000_000_000))
    );
}

#[test]
fn another_schema_or_version_reads_the_bytes_as_a_miss() {
    for schema in [Schema::new(PROFILES, 2), Schema::new("people", 1)] {
        assert!(matches!(
            Envelope::<Profile>::decode(&fixture("value"), schema),
            Err(DecodeError::Schema)
        ));
    }
}

#[cfg(feature = "redis")]
mod on_redis {
    use keel_cache::{CacheConfig, CacheManager, CacheOptions, RedisConfig, TieredCache};

    use super::*;

    fn manager(redis: &keel_test_support::TestRedis, named: CacheOptions) -> CacheManager {
        let mut config = CacheConfig::default();
        config.defaults.ttl = None;
        config.redis = Some(RedisConfig::new(redis.url()).key_prefix(redis.prefix()));
        config.caches.insert(PROFILES.into(), named);
        CacheManager::new(config).unwrap()
    }

    #[tokio::test]
    async fn a_cache_writes_the_pinned_bytes_and_a_new_schema_version_leaves_them_behind() {
        let Some(redis) = keel_test_support::redis().await else {
            return;
        };
        let v1 = manager(&redis, CacheOptions::default());
        let profiles: TieredCache<String, Profile> = v1.cache(PROFILES).unwrap();
        profiles.insert("ada".into(), ada()).await;
        let mut conn = redis.connection().await.unwrap();
        let stored: Vec<u8> = redis::cmd("GET")
            .arg(format!("{}:{PROFILES}:ada", redis.prefix()))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(stored, fixture("value"), "the bytes format 2 pins");

        // Another instance of the same build reads them back from Redis.
        let other = manager(&redis, CacheOptions::default());
        let read: TieredCache<String, Profile> = other.cache(PROFILES).unwrap();
        assert_eq!(read.get(&"ada".to_owned()).await, Some(ada()));
        assert_eq!(read.stats().l2_hits, 1);

        // A deploy whose value type changed raises the version: the old
        // entry is a miss (counted as corrupt), and the loader runs.
        let mut named = CacheOptions::default();
        named.schema_version = Some(2);
        let v2 = manager(&redis, named);
        let upgraded: TieredCache<String, Profile> = v2.cache(PROFILES).unwrap();
        assert_eq!(upgraded.get(&"ada".to_owned()).await, None);
        assert_eq!(upgraded.stats().l2_hits, 0);
        let loaded = upgraded
            .get_or_load("ada".to_owned(), || async { Profile { id: 301, ..ada() } })
            .await
            .unwrap();
        assert_eq!(loaded.id, 301);
        // The new version's value replaced the old one in Redis.
        let reread: TieredCache<String, Profile> = manager(&redis, {
            let mut named = CacheOptions::default();
            named.schema_version = Some(2);
            named
        })
        .cache(PROFILES)
        .unwrap();
        assert_eq!(reread.get(&"ada".to_owned()).await.map(|p| p.id), Some(301));
    }
}
