//! The Redis tier on a real Redis Cluster of the test's own: batches that
//! span hash slots, invalidations between instances connected to different
//! nodes, and a primary killed mid-traffic.
#![cfg(feature = "redis")]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::{eventually, instance_on, recovered_after_failover};

use keel_cache::{CacheConfig, InvalidationBus, RedisCache, RedisConfig, TieredCache};
use keel_test_support::OwnCluster;

const MINUTE: Option<Duration> = Some(Duration::from_secs(60));

/// A config whose seeds are `nodes` (the first is where the bus subscribes).
fn on_nodes(nodes: &[String]) -> RedisConfig {
    let mut config = RedisConfig::new("redis://unused").key_prefix("t");
    config.nodes = nodes.to_vec();
    config.probe_interval = Duration::from_millis(50);
    config
}

/// An instance: a `users` cache on the cluster through `nodes`, and its bus.
async fn instance_and_bus(nodes: &[String]) -> (TieredCache<u64, String>, InvalidationBus) {
    instance_on(on_nodes(nodes)).await
}

async fn instance(nodes: &[String]) -> TieredCache<u64, String> {
    instance_and_bus(nodes).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_locks_and_clears_span_every_slot_of_a_cluster() {
    let Some(cluster) = OwnCluster::start(3, 0) else {
        return;
    };
    let redis = RedisCache::connect(RedisConfig::new(cluster.url()).key_prefix("t"))
        .await
        .unwrap();
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    let primaries: HashSet<u16> = keys[..20]
        .iter()
        .map(|k| cluster.primary_of(&redis.key("users", k)))
        .collect();
    assert_eq!(primaries.len(), 3, "the keys live on every primary");

    let values: Vec<String> = keys.iter().map(|k| format!("v-{k}")).collect();
    redis
        .set_many(
            "users",
            keys.iter().zip(&values).map(|(k, v)| (k.as_str(), Some(v))),
            MINUTE,
            None,
        )
        .await
        .unwrap();
    redis
        .set("other", "k1", Some(&"kept".to_owned()), MINUTE, None)
        .await
        .unwrap();

    // One MGET over every slot, answered in the order asked.
    let mut asked = keys.clone();
    asked.reverse();
    asked.insert(7, "missing".into());
    let got = redis.get_many::<String, _>("users", &asked).await.unwrap();
    for (key, entry) in asked.iter().zip(&got) {
        let value = entry.as_ref().and_then(|e| e.value.clone());
        if key == "missing" {
            assert_eq!(value, None);
        } else {
            assert_eq!(value, Some(format!("v-{key}")), "{key}");
        }
    }

    // Deletes across slots count what held a value and leave misses.
    let deleted = redis.delete("users", &keys[..100]).await.unwrap();
    assert_eq!(deleted, 100);
    let got = redis
        .get_many::<String, _>("users", &keys[..110])
        .await
        .unwrap();
    assert!(got[..100].iter().all(Option::is_none), "deleted");
    assert!(got[100..].iter().all(Option::is_some), "kept");

    // A clear walks every primary's keys, and only this namespace.
    let removed = redis.clear("users").await.unwrap();
    assert_eq!(removed, 300, "200 entries and 100 deletion markers");
    let got = redis.get_many::<String, _>("users", &keys).await.unwrap();
    assert!(got.iter().all(Option::is_none));
    let other = redis.get::<String>("other", "k1").await.unwrap();
    assert_eq!(other.and_then(|e| e.value).as_deref(), Some("kept"));

    // The load lock holds across instances of the tier.
    let second = RedisCache::connect(RedisConfig::new(cluster.url()).key_prefix("t"))
        .await
        .unwrap();
    let token = redis
        .try_lock("users", "k1", Duration::from_secs(10))
        .await
        .unwrap()
        .expect("free");
    assert!(
        second
            .try_lock("users", "k1", Duration::from_secs(10))
            .await
            .unwrap()
            .is_none(),
        "held"
    );
    assert!(redis.unlock(&token).await.unwrap());
    assert!(redis.stats().errors == 0, "{:?}", redis.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_connected_to_different_nodes_see_each_others_writes() {
    let Some(cluster) = OwnCluster::start(3, 0) else {
        return;
    };
    let nodes = cluster.node_urls();
    let a = instance(&nodes[0..1]).await;
    let b = instance(&nodes[1..2]).await;

    b.insert(1, "v1".into()).await;
    assert_eq!(a.get(&1).await.as_deref(), Some("v1"), "from L2");
    b.insert(1, "v2".into()).await;
    eventually("a drops its copy", Duration::from_secs(5), async || {
        a.get(&1).await.as_deref() == Some("v2")
    })
    .await;

    b.insert_many((0..50u64).map(|k| (k, format!("w{k}"))))
        .await;
    let keys: Vec<u64> = (0..50).collect();
    eventually("a sees the batch", Duration::from_secs(5), async || {
        let got = a.get_many(&keys).await;
        got.iter()
            .enumerate()
            .all(|(k, v)| v.as_deref() == Some(format!("w{k}").as_str()))
    })
    .await;

    b.remove(&3).await;
    eventually("a drops key 3", Duration::from_secs(5), async || {
        a.get(&3).await.is_none()
    })
    .await;
    b.clear().await;
    eventually("a sees the clear", Duration::from_secs(5), async || {
        a.get(&4).await.is_none()
    })
    .await;
    assert!(!a.is_degraded() && !b.is_degraded());
}

#[test]
fn a_wrong_cluster_address_names_its_field() {
    let config: CacheConfig =
        toml::from_str("[redis]\nurl = \"redis+cluster://127.0.0.1:7000,,127.0.0.1:7001\"\n")
            .unwrap();
    let problems = config.validate().unwrap_err();
    assert_eq!(problems[0].field, "cache.redis.url", "{problems:?}");
    let config: CacheConfig = toml::from_str("[redis]\nurl = \"http://localhost\"\n").unwrap();
    let problems = config.validate().unwrap_err();
    assert!(
        problems[0].reason.contains("redis+cluster://"),
        "{problems:?}"
    );
    let config: CacheConfig = toml::from_str("[redis]\nnodes = [\"\"]\n").unwrap();
    let problems = config.validate().unwrap_err();
    assert_eq!(problems[0].field, "cache.redis.nodes", "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_fails_over_and_the_cache_serves_meanwhile() {
    let Some(mut cluster) = OwnCluster::start(3, 1) else {
        return;
    };
    let probe = RedisCache::new(RedisConfig::new(cluster.url()).key_prefix("t")).unwrap();
    // Key 1 lives on the primary that will be killed; instance `a`
    // subscribes there, `b` elsewhere.
    let doomed = cluster.primary_of(&probe.key("users", "1"));
    let mut first = vec![format!("redis://127.0.0.1:{doomed}")];
    first.extend(
        cluster
            .node_urls()
            .into_iter()
            .filter(|u| !u.ends_with(&format!(":{doomed}"))),
    );
    let mut others = first[1..].to_vec();
    others.push(first[0].clone());
    let (a, a_bus) = instance_and_bus(&first).await;
    let b = instance(&others).await;
    b.insert(1, "v1".into()).await;
    assert_eq!(a.get(&1).await.as_deref(), Some("v1"));

    cluster.kill(doomed);
    // Meanwhile the local tier answers on `b`, whose subscription is on a
    // live node. (`a` loses its subscription, resubscribes on another node
    // and drops its local copies, since it may have missed invalidations.)
    for _ in 0..20 {
        assert_eq!(b.get(&1).await.as_deref(), Some("v1"), "served from L1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cluster.wait_healthy(Duration::from_secs(30));
    // The replica took over key 1's slot: writes land again, and `a`,
    // resubscribed on another node, dropped its copies and sees them.
    recovered_after_failover(&a, &b, &a_bus).await;
}
