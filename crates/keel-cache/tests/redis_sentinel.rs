//! The Redis tier behind Redis Sentinel, on a primary, a replica and three
//! Sentinels of the test's own: two instances share writes and
//! invalidations, and when the primary is killed mid-traffic the cache
//! serves from L1, reports degraded, follows the promoted replica and
//! recovers.
#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use support::{eventually, instance_on as instance, recovered_after_failover};

use keel_cache::{CacheConfig, RedisConfig};
use keel_test_support::{OwnSentinel, SENTINEL_SERVICE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_followed_to_the_promoted_replica() {
    let Some(mut sentinel) = OwnSentinel::start() else {
        return;
    };
    // One instance by URL, the other by the `sentinels` list.
    let mut by_url = RedisConfig::new(sentinel.url()).key_prefix("t");
    by_url.probe_interval = Duration::from_millis(50);
    let mut by_list = RedisConfig::new("redis://unused").key_prefix("t");
    by_list.sentinels = sentinel.sentinel_addresses();
    by_list.service_name = SENTINEL_SERVICE.to_owned();
    by_list.probe_interval = Duration::from_millis(50);
    let (a, a_bus) = instance(by_url).await;
    let (b, _b_bus) = instance(by_list).await;

    b.insert(1, "v1".into()).await;
    assert_eq!(a.get(&1).await.as_deref(), Some("v1"));
    b.insert(1, "v1b".into()).await;
    eventually("a sees b's write", Duration::from_secs(5), async || {
        a.get(&1).await.as_deref() == Some("v1b")
    })
    .await;

    sentinel.kill_primary();
    // Until the Sentinels promote the replica, writes fail against the
    // dead primary (to be reconciled later) and the instance says so;
    // reads of key 1 come from L1 meanwhile.
    eventually("b reports degraded", Duration::from_secs(10), async || {
        b.insert(2, "during".into()).await;
        assert_eq!(b.get(&1).await.as_deref(), Some("v1b"), "served from L1");
        b.is_degraded()
    })
    .await;
    tokio::task::block_in_place(|| sentinel.wait_promoted(Duration::from_secs(30)));
    assert_eq!(sentinel.current_primary(), sentinel.replica_port());

    // Both follow the promoted replica: writes land and cross again.
    recovered_after_failover(&a, &b, &a_bus).await;
}

#[test]
fn a_wrong_sentinel_setting_names_its_field() {
    let problem = |text: &str| {
        let config: CacheConfig = toml::from_str(text).unwrap();
        config.validate().unwrap_err().remove(0)
    };
    let missing_service = problem("[redis]\nsentinels = [\"127.0.0.1:26379\"]\n");
    assert_eq!(missing_service.field, "cache.redis.service_name");
    let both = problem(
        "[redis]\nsentinels = [\"127.0.0.1:26379\"]\nnodes = [\"127.0.0.1:7000\"]\nservice_name = \"m\"\n",
    );
    assert_eq!(both.field, "cache.redis.sentinels");
    let no_service = problem("[redis]\nurl = \"redis+sentinel://127.0.0.1:26379\"\n");
    assert_eq!(no_service.field, "cache.redis.url");
    assert!(no_service.reason.contains("service name"), "{no_service}");
}
