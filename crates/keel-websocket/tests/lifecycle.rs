//! Clients come and go: heartbeats reap silent ones, closed ones leave the
//! registry at once, the registry returns to zero, shutdown closes all.

mod support;

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use keel_websocket::{WebSocketConfig, WebSocketMessage};
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_reaped_after_the_pong_timeout() {
    let mut config = WebSocketConfig::default();
    config.ping_interval = Duration::from_millis(200);
    // Generous: a loaded machine must not make the live client miss it.
    config.pong_timeout = Duration::from_secs(1);
    let (manager, addr) = start(config).await;
    // Never polled, so it never answers a ping.
    let silent = connect(addr).await;
    // Polled all along: tungstenite answers pings while reading.
    let mut alive = connect(addr).await;
    eventually("both connected", || manager.count() == 2).await;
    let reader = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(Ok(message)) = alive.next().await {
            if message.is_ping() {
                pings += 1;
            }
            if pings == 4 {
                return alive;
            }
        }
        panic!("the live client was closed");
    });
    eventually("the silent client reaped", || {
        manager.stats().pong_timeouts == 1 && manager.count() == 1
    })
    .await;
    // The live client answered four pings and is still registered.
    let _alive = reader.await.unwrap();
    assert_eq!(manager.count(), 1);
    assert_eq!(manager.stats().pong_timeouts, 1);
    drop(silent);
}

#[tokio::test]
async fn a_closed_client_leaves_the_registry_and_its_topics() {
    let (manager, addr) = start(WebSocketConfig::default()).await;
    let mut client = connect(addr).await;
    subscribe(&mut client, "room").await;
    assert_eq!((manager.count(), manager.topic_count("room")), (1, 1));
    client.close(None).await.unwrap();
    eventually("gone", || manager.count() == 0).await;
    assert_eq!(manager.topic_count("room"), 0);
    assert_eq!(manager.stats().topics, 0);

    // A connection dropped without a close frame leaves too.
    let client = connect(addr).await;
    eventually("connected", || manager.count() == 1).await;
    drop(client);
    eventually("gone after a drop", || manager.count() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_is_back_to_zero_after_ten_thousand_cycles() {
    raise_fd_limit();
    let (manager, addr) = start(WebSocketConfig::default()).await;
    let workers: Vec<_> = (0..20)
        .map(|w| {
            tokio::spawn(async move {
                for i in 0..500 {
                    let mut client = connect(addr).await;
                    // Half close politely, half just vanish.
                    if (w + i) % 2 == 0 {
                        client.close(None).await.unwrap();
                        while let Some(Ok(_)) = client.next().await {}
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    eventually("registry empty", || manager.count() == 0).await;
    let stats = manager.stats();
    assert_eq!(stats.accepted, 10_000);
    eventually("every connection ended", || {
        manager.stats().disconnected == 10_000
    })
    .await;
}

#[tokio::test]
async fn close_sends_the_reason_and_removes_the_client() {
    let (manager, addr) = start(WebSocketConfig::default()).await;
    let mut client = connect(addr).await;
    eventually("connected", || manager.count() == 1).await;
    let id = manager.clients()[0].id;
    manager.close(id, "kicked").unwrap();
    assert_eq!(
        close_of(&mut client).await,
        Some((1000, "kicked".to_owned()))
    );
    eventually("removed", || manager.count() == 0).await;
    assert!(manager.close(id, "again").is_err());
    assert!(
        manager
            .send_to(id, &WebSocketMessage::new("x", json!(null)))
            .is_err()
    );
}

#[tokio::test]
async fn shutdown_sends_close_frames_and_refuses_new_clients() {
    let (manager, addr) = start(WebSocketConfig::default()).await;
    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    eventually("connected", || manager.count() == 2).await;
    let waiting = {
        let manager = manager.clone();
        tokio::spawn(async move { manager.shutdown(Duration::from_secs(10)).await })
    };
    for client in [&mut a, &mut b] {
        assert_eq!(
            close_of(client).await,
            Some((1001, "server shutting down".to_owned()))
        );
    }
    assert!(waiting.await.unwrap(), "connections did not end");
    assert_eq!(manager.count(), 0);
    assert_eq!(connect_status(&url(addr), &[]).await, 503);
    assert!(
        manager
            .broadcast(&WebSocketMessage::new("late", json!(null)))
            .is_err()
    );
}

#[tokio::test]
async fn dropping_the_manager_closes_its_clients() {
    let manager = keel_websocket::WebSocketManager::new(WebSocketConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Only the connections' own tasks remain once the manager is dropped.
    let app: axum::Router = manager.router();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut client = connect(addr).await;
    eventually("connected", || manager.count() == 1).await;
    server.abort();
    let _ = server.await;
    drop(manager);
    assert_eq!(
        close_of(&mut client).await,
        Some((1001, "server shutting down".to_owned()))
    );
    // The socket is closed after the close frame.
    let _ = client.send(Message::text("x")).await;
    assert!(matches!(client.next().await, None | Some(Err(_))));
}
