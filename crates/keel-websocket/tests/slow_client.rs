//! A client that does not keep up loses messages (counted) or is
//! disconnected, and never holds the others back.

mod support;

use std::time::Duration;

use keel_websocket::{SlowClientPolicy, WebSocketConfig, WebSocketMessage};
use serde_json::json;
use support::*;

fn config(queue_size: usize, policy: SlowClientPolicy) -> WebSocketConfig {
    let mut config = WebSocketConfig::default();
    config.queue_size = queue_size;
    config.slow_client = policy;
    config
}

// On a current-thread runtime the connection tasks cannot run between
// these synchronous broadcasts, so the queue overflows deterministically.
#[tokio::test(flavor = "current_thread")]
async fn drop_oldest_keeps_the_newest_and_counts_the_rest() {
    let (manager, addr) = start(config(16, SlowClientPolicy::DropOldest)).await;
    let mut client = connect(addr).await;
    eventually("connected", || manager.count() == 1).await;
    for i in 0..100 {
        manager
            .broadcast(&WebSocketMessage::new("n", json!(i)))
            .unwrap();
    }
    let id = manager.clients()[0].id;
    assert_eq!(manager.client(id).unwrap().dropped, 84);
    assert_eq!(manager.stats().dropped, 84);
    let mut got = Vec::new();
    for _ in 0..16 {
        got.push(next_json(&mut client).await.data.as_i64().unwrap());
    }
    assert_eq!(got, (84..100).collect::<Vec<i64>>());
    // Still connected and receiving.
    manager
        .broadcast(&WebSocketMessage::new("n", json!(100)))
        .unwrap();
    assert_eq!(next_json(&mut client).await.data, json!(100));
}

#[tokio::test(flavor = "current_thread")]
async fn disconnect_closes_with_1008_saying_why() {
    let (manager, addr) = start(config(16, SlowClientPolicy::Disconnect)).await;
    let mut client = connect(addr).await;
    eventually("connected", || manager.count() == 1).await;
    for i in 0..100 {
        manager
            .broadcast(&WebSocketMessage::new("n", json!(i)))
            .unwrap();
    }
    assert_eq!(manager.stats().slow_disconnects, 1);
    assert_eq!(
        close_of(&mut client).await,
        Some((1008, "outbound queue full".to_owned()))
    );
    eventually("removed", || manager.count() == 0).await;
}

/// One client never reads; its small socket fills after a few messages.
/// The readers get every message, each within the patience window, while
/// the stuck one is dropped from or disconnected.
async fn others_keep_receiving(policy: SlowClientPolicy) -> keel_websocket::WebSocketStats {
    let mut config = config(8, policy);
    config.pong_timeout = Duration::from_secs(10);
    config.ping_interval = Duration::from_secs(1);
    let (manager, addr) = start(config).await;
    let stuck = connect_small_buffer(addr).await;
    let mut readers = Vec::new();
    for _ in 0..4 {
        readers.push(connect(addr).await);
    }
    eventually("connected", || manager.count() == 5).await;
    let payload = "x".repeat(16 * 1024);
    // 200 messages of 16 KiB: 3 MiB, far more than the stuck client's
    // socket buffers and its queue of 8 hold.
    for i in 0..200 {
        manager
            .broadcast(&WebSocketMessage::new("big", json!(payload)).with_id(i.to_string()))
            .unwrap();
        for reader in &mut readers {
            let message = next_json(reader).await;
            assert_eq!(message.id, Some(i.to_string()));
        }
    }
    let stats = manager.stats();
    drop(stuck);
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_hold_back_the_others_drop_oldest() {
    let stats = others_keep_receiving(SlowClientPolicy::DropOldest).await;
    assert!(
        stats.dropped > 0 || stats.pong_timeouts > 0,
        "the stuck client lost nothing: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_hold_back_the_others_disconnect() {
    let stats = others_keep_receiving(SlowClientPolicy::Disconnect).await;
    assert!(
        stats.slow_disconnects + stats.pong_timeouts >= 1,
        "the stuck client was not disconnected: {stats:?}"
    );
    assert_eq!(stats.connections, 4, "{stats:?}");
}
