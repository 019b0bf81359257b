//! Fan-out across instances through a real Redis: two managers share
//! broadcasts and publishes, each message once per client, on one server,
//! on a Redis Cluster with the two subscribed on different nodes, and
//! behind Sentinels; the link survives a Redis restart, a cluster node's
//! death and a Sentinel failover.

#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use keel_websocket::{FanoutConfig, WebSocketConfig, WebSocketManager, WebSocketMessage};
use serde_json::json;
use support::*;

fn config(url: &str, prefix: &str) -> WebSocketConfig {
    let mut config = WebSocketConfig::default();
    config.redis = Some(FanoutConfig::new(url).channel_prefix(prefix));
    config
}

/// A config on the cluster seeds `nodes`, subscribing on the first.
fn cluster_config(nodes: &[String], prefix: &str) -> WebSocketConfig {
    let mut fanout = FanoutConfig::new("redis://unused").channel_prefix(prefix);
    fanout.nodes = nodes.to_vec();
    let mut config = WebSocketConfig::default();
    config.redis = Some(fanout);
    config
}

/// `nodes` turned left by `by`: another instance's seed order.
fn rotated(nodes: &[String], by: usize) -> Vec<String> {
    let mut nodes = nodes.to_vec();
    nodes.rotate_left(by);
    nodes
}

async fn two_instances(url: &str, prefix: &str) -> [(WebSocketManager, std::net::SocketAddr); 2] {
    two_with(config(url, prefix), config(url, prefix)).await
}

async fn two_with(
    a: WebSocketConfig,
    b: WebSocketConfig,
) -> [(WebSocketManager, std::net::SocketAddr); 2] {
    let a = start(a).await;
    let b = start(b).await;
    for (manager, _) in [&a, &b] {
        assert!(
            manager.wait_fanout_connected(PATIENCE).await,
            "fan-out never subscribed"
        );
    }
    [a, b]
}

/// Clients of instances `a` and `b` subscribed to `news`, with a first
/// message from `from` seen by both.
async fn news_readers(
    addr_a: std::net::SocketAddr,
    addr_b: std::net::SocketAddr,
    from: &WebSocketManager,
) -> (Client, Client) {
    let mut on_a = connect(addr_a).await;
    let mut on_b = connect(addr_b).await;
    subscribe(&mut on_a, "news").await;
    subscribe(&mut on_b, "news").await;
    from.publish("news", &WebSocketMessage::new("before", json!(null)))
        .unwrap();
    assert_eq!(next_json(&mut on_a).await.kind, "before");
    assert_eq!(next_json(&mut on_b).await.kind, "before");
    (on_a, on_b)
}

/// Publishes `after` messages on `news` from `from` until one reaches
/// `client` (the link may still be coming back), within 20 s.
async fn publish_until_it_crosses(from: &WebSocketManager, client: &mut Client, what: &str) {
    for i in 0..200 {
        from.publish("news", &WebSocketMessage::new("after", json!(i)))
            .unwrap();
        let got = tokio::time::timeout(Duration::from_millis(100), next_json(client)).await;
        if let Ok(message) = got {
            assert_eq!(message.kind, "after");
            return;
        }
    }
    panic!("nothing crossed {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_on_one_redis_deliver_across_once_per_client() {
    let Some(redis) = keel_test_support::redis().await else {
        return;
    };
    let [a, b] = two_instances(redis.url(), redis.prefix()).await;
    deliver_across_once_per_client(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_on_a_cluster_deliver_across_once_per_client() {
    let Some(cluster) = keel_test_support::OwnCluster::start(3, 0) else {
        return;
    };
    let nodes = cluster.node_urls();
    // Subscribed on different nodes: a PUBLISH must cross the cluster.
    let [a, b] = two_with(
        cluster_config(&nodes, "across"),
        cluster_config(&rotated(&nodes, 1), "across"),
    )
    .await;
    deliver_across_once_per_client(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_behind_sentinels_deliver_across_once_per_client() {
    let Some(sentinel) = keel_test_support::OwnSentinel::start() else {
        return;
    };
    let [a, b] = two_instances(&sentinel.url(), "sentinel-once").await;
    deliver_across_once_per_client(a, b).await;
}

async fn deliver_across_once_per_client(
    (a, addr_a): (WebSocketManager, std::net::SocketAddr),
    (b, addr_b): (WebSocketManager, std::net::SocketAddr),
) {
    let mut on_a = connect(addr_a).await;
    let mut on_b = connect(addr_b).await;
    subscribe(&mut on_a, "prices").await;
    subscribe(&mut on_b, "prices").await;

    for i in 0..20 {
        a.publish("prices", &WebSocketMessage::new("tick", json!(i)))
            .unwrap();
        b.broadcast(&WebSocketMessage::new("all", json!(i)))
            .unwrap();
    }
    // Markers from both sides: whatever was duplicated would arrive before
    // the second marker each client sees.
    a.broadcast(&WebSocketMessage::new("marker", json!("a")))
        .unwrap();
    b.broadcast(&WebSocketMessage::new("marker", json!("b")))
        .unwrap();
    for client in [&mut on_a, &mut on_b] {
        let (mut ticks, mut alls, mut markers) = (Vec::new(), Vec::new(), 0);
        while markers < 2 {
            let message = next_json(client).await;
            match message.kind.as_str() {
                "tick" => ticks.push(message.data.as_i64().unwrap()),
                "all" => alls.push(message.data.as_i64().unwrap()),
                "marker" => markers += 1,
                other => panic!("unexpected {other}"),
            }
        }
        // Once each, in the order each instance sent them.
        assert_eq!(ticks, (0..20).collect::<Vec<i64>>());
        assert_eq!(alls, (0..20).collect::<Vec<i64>>());
    }
    // And nothing after the markers.
    a.broadcast(&WebSocketMessage::new("end", json!(null)))
        .unwrap();
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(next_json(client).await.kind, "end");
    }
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.fanout_received, 21, "{sa:?}");
    assert_eq!(sb.fanout_received, 22, "{sb:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_delivery_goes_on_while_redis_is_down_and_the_link_comes_back() {
    let Some(mut redis) = keel_test_support::OwnRedis::start() else {
        return;
    };
    let url = redis.url();
    let [(a, addr_a), (b, addr_b)] = two_instances(&url, "restart").await;
    let (mut on_a, mut on_b) = news_readers(addr_a, addr_b, &a).await;

    redis.stop();
    eventually("b notices the outage", || !b.fanout_connected()).await;
    a.publish("news", &WebSocketMessage::new("during", json!(null)))
        .unwrap();
    assert_eq!(next_json(&mut on_a).await.kind, "during");

    redis.restart();
    assert!(a.wait_fanout_connected(PATIENCE).await);
    assert!(b.wait_fanout_connected(PATIENCE).await);
    // The publisher reconnects on its own too; publish until one arrives.
    publish_until_it_crosses(&a, &mut on_b, "after the restart").await;
    assert!(a.stats().fanout_failed >= 1, "{:?}", a.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cluster_node_moves_the_subscription_and_messages_cross_again() {
    let Some(mut cluster) = keel_test_support::OwnCluster::start(3, 1) else {
        return;
    };
    let nodes = cluster.node_urls();
    // The first node is a primary; a subscribes on it, b on another.
    let [(a, addr_a), (b, addr_b)] = two_with(
        cluster_config(&nodes, "failover"),
        cluster_config(&rotated(&nodes, 1), "failover"),
    )
    .await;
    let (mut on_a, mut on_b) = news_readers(addr_a, addr_b, &b).await;

    let port: u16 = nodes[0]
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap();
    cluster.kill(port);
    // a's subscription was on the killed node: it moves to the next seed.
    cluster.wait_healthy(Duration::from_secs(20));
    assert!(a.wait_fanout_connected(PATIENCE).await);
    for (from, name, client) in [(&b, "b", &mut on_a), (&a, "a", &mut on_b)] {
        publish_until_it_crosses(from, client, &format!("from {name} after the kill")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_sentinels_messages_cross_before_and_after_a_failover() {
    let Some(mut sentinel) = keel_test_support::OwnSentinel::start() else {
        return;
    };
    let url = sentinel.url();
    let [(a, addr_a), (b, addr_b)] = two_instances(&url, "sentinel").await;
    let (mut on_a, mut on_b) = news_readers(addr_a, addr_b, &a).await;

    sentinel.kill_primary();
    eventually("b notices the outage", || !b.fanout_connected()).await;
    tokio::task::block_in_place(|| sentinel.wait_promoted(Duration::from_secs(30)));
    // Both subscribe again on the promoted replica and the publishers
    // follow it: messages cross both ways.
    assert!(a.wait_fanout_connected(PATIENCE).await);
    assert!(b.wait_fanout_connected(PATIENCE).await);
    for (from, name, client) in [(&a, "a", &mut on_b), (&b, "b", &mut on_a)] {
        publish_until_it_crosses(from, client, &format!("from {name} after the failover")).await;
    }
}
