//! Broadcast, topics and direct sends reach exactly the clients they name.

mod support;

use std::collections::HashSet;

use futures_util::SinkExt as _;
use keel_websocket::{Frame, WebSocketConfig, WebSocketMessage};
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_all_receive_a_broadcast() {
    raise_fd_limit();
    let (manager, addr) = start(WebSocketConfig::default()).await;
    let mut clients = Vec::new();
    for _ in 0..1000 {
        clients.push(connect(addr).await);
    }
    eventually("1000 clients registered", || manager.count() == 1000).await;

    let delivered = manager
        .broadcast(&WebSocketMessage::new("news", json!({"n": 1})).with_id("m1"))
        .unwrap();
    assert_eq!(delivered, 1000);

    let receivers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let message = next_json(&mut client).await;
                (message.kind, message.id)
            })
        })
        .collect();
    for receiver in receivers {
        let (kind, id) = receiver.await.unwrap();
        assert_eq!((kind.as_str(), id.as_deref()), ("news", Some("m1")));
    }
    let stats = manager.stats();
    assert_eq!(stats.accepted, 1000);
    assert!(stats.sent >= 1000, "{stats:?}");
    // The receivers dropped their clients: every one leaves the registry.
    eventually("every client gone", || manager.count() == 0).await;
}

#[tokio::test]
async fn topics_do_not_leak() {
    let (manager, addr) = start(WebSocketConfig::default()).await;
    let mut prices = connect(addr).await;
    let mut news = connect(addr).await;
    let mut both = connect(addr).await;
    subscribe(&mut prices, "prices").await;
    subscribe(&mut news, "news").await;
    subscribe(&mut both, "prices").await;
    subscribe(&mut both, "news").await;
    assert_eq!(manager.topic_count("prices"), 2);
    assert_eq!(manager.topic_count("news"), 2);

    let n = manager
        .publish("prices", &WebSocketMessage::new("tick", json!(1)))
        .unwrap();
    assert_eq!(n, 2);
    manager
        .publish("news", &WebSocketMessage::new("story", json!(2)))
        .unwrap();
    manager
        .publish("nobody", &WebSocketMessage::new("lost", json!(3)))
        .unwrap();
    // A marker after the publishes: anything leaked would arrive before it.
    manager
        .broadcast(&WebSocketMessage::new("marker", json!(null)))
        .unwrap();

    let kinds = |messages: Vec<WebSocketMessage>| -> Vec<String> {
        messages.into_iter().map(|m| m.kind).collect()
    };
    let mut seen = Vec::new();
    for client in [&mut prices, &mut news, &mut both] {
        let mut got = Vec::new();
        loop {
            let message = next_json(client).await;
            let marker = message.kind == "marker";
            got.push(message);
            if marker {
                break;
            }
        }
        seen.push(kinds(got));
    }
    assert_eq!(seen[0], ["tick", "marker"]);
    assert_eq!(seen[1], ["story", "marker"]);
    assert_eq!(seen[2], ["tick", "story", "marker"]);

    // Published messages carry their topic.
    manager
        .publish("prices", &WebSocketMessage::new("tick", json!(4)))
        .unwrap();
    assert_eq!(
        next_json(&mut prices).await.topic.as_deref(),
        Some("prices")
    );

    // After unsubscribing, nothing more from that topic.
    send_text(&mut both, r#"{"type":"unsubscribe","topic":"prices"}"#).await;
    assert_eq!(next_json(&mut both).await.kind, "tick");
    assert_eq!(next_json(&mut both).await.kind, "unsubscribed");
    manager
        .publish("prices", &WebSocketMessage::new("tick", json!(5)))
        .unwrap();
    manager
        .broadcast(&WebSocketMessage::new("marker", json!(null)))
        .unwrap();
    assert_eq!(next_json(&mut both).await.kind, "marker");
    assert_eq!(manager.topic_count("prices"), 1);
}

#[tokio::test]
async fn server_side_subscriptions_direct_sends_and_the_registry() {
    let (manager, addr) = start(WebSocketConfig::default()).await;
    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    eventually("two clients", || manager.count() == 2).await;
    let clients = manager.clients();
    let (id_a, id_b) = (clients[0].id, clients[1].id);
    assert!(clients[0].remote_addr.ip().is_loopback());
    assert!(clients[0].connected_at <= std::time::SystemTime::now());

    assert!(manager.subscribe(id_a, "orders").unwrap());
    assert!(!manager.subscribe(id_a, "orders").unwrap());
    assert_eq!(manager.client(id_a).unwrap().topics, ["orders"]);

    // Which of a and b is which: ids are given in connection order, but the
    // two connections' handshakes may finish in either order.
    manager
        .send_to(id_b, &WebSocketMessage::new("direct", json!("to b")))
        .unwrap();
    manager
        .publish("orders", &WebSocketMessage::new("order", json!(1)))
        .unwrap();
    let (mut to_a, mut to_b) = (next_json(&mut a).await, next_json(&mut b).await);
    if to_a.kind == "direct" {
        std::mem::swap(&mut to_a, &mut to_b);
    }
    assert_eq!(to_a.kind, "order");
    assert_eq!(to_b.kind, "direct");

    assert!(manager.unsubscribe(id_a, "orders").unwrap());
    assert_eq!(manager.topic_count("orders"), 0);
    let after = manager.client(id_a).unwrap();
    assert!(after.sent >= 1, "{after:?}");
}

#[tokio::test]
async fn binary_messages_pass_through_both_ways() {
    let received = std::sync::Arc::new(std::sync::Mutex::new(None::<Vec<u8>>));
    let seen = std::sync::Arc::clone(&received);
    let manager = keel_websocket::WebSocketManager::builder(WebSocketConfig::default())
        .on_message(move |manager, id, incoming| {
            if let keel_websocket::Incoming::Binary(bytes) = incoming {
                *seen.lock().unwrap() = Some(bytes.to_vec());
                // Echo it back, reversed, as a direct send.
                let mut back = bytes.to_vec();
                back.reverse();
                let _ = manager.send_frame(id, Frame::binary(back));
            }
        })
        .build()
        .unwrap();
    let addr = serve(&manager).await;
    let mut client = connect(addr).await;
    client
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let echo = next_message(&mut client).await;
    assert_eq!(echo, Message::binary(vec![255u8, 2, 1, 0]));
    assert_eq!(*received.lock().unwrap(), Some(vec![0u8, 1, 2, 255]));

    manager
        .broadcast_frame(Frame::binary(vec![9u8; 3]))
        .unwrap();
    assert_eq!(
        next_message(&mut client).await,
        Message::binary(vec![9u8; 3])
    );
}

#[tokio::test]
async fn application_messages_reach_the_hook_with_their_sender() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let manager = keel_websocket::WebSocketManager::builder(WebSocketConfig::default())
        .on_message(move |_, id, incoming| {
            let _ = tx.send((id, incoming));
        })
        .build()
        .unwrap();
    let addr = serve(&manager).await;
    let mut client = connect(addr).await;
    send_text(
        &mut client,
        r#"{"type":"chat","data":{"text":"hi"},"id":"c1"}"#,
    )
    .await;
    let (id, incoming) = rx.recv().await.unwrap();
    let keel_websocket::Incoming::Message(message) = incoming else {
        panic!("expected a JSON message");
    };
    assert_eq!(message.kind, "chat");
    assert_eq!(message.data, json!({"text": "hi"}));
    assert_eq!(manager.client(id).unwrap().received, 1);

    // `ping` is answered by the manager, not the hook.
    send_text(&mut client, r#"{"type":"ping"}"#).await;
    assert_eq!(next_json(&mut client).await.kind, "pong");
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn every_client_gets_every_message_in_order() {
    let (manager, addr) = start(WebSocketConfig::default()).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(connect(addr).await);
    }
    eventually("10 clients", || manager.count() == 10).await;
    for i in 0..200 {
        manager
            .broadcast(&WebSocketMessage::new("n", json!(i)))
            .unwrap();
    }
    for client in &mut clients {
        let mut got = Vec::new();
        for _ in 0..200 {
            got.push(next_json(client).await.data.as_i64().unwrap());
        }
        assert_eq!(got, (0..200).collect::<Vec<i64>>());
    }
    let ids: HashSet<_> = manager.clients().iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 10);
}

#[tokio::test]
async fn a_socket_upgraded_elsewhere_is_served_like_any_client() {
    let manager = keel_websocket::WebSocketManager::new(WebSocketConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = manager.clone();
    tokio::spawn(async move {
        let (stream, remote) = listener.accept().await.unwrap();
        let socket =
            tokio_tungstenite::accept_async_with_config(stream, Some(serving.framing_config()))
                .await
                .unwrap();
        serving
            .serve_socket(
                socket,
                remote,
                keel_websocket::ClientMetadata::user("carol"),
            )
            .await
    });
    let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    eventually("registered", || manager.count() == 1).await;
    assert_eq!(
        manager.clients()[0].metadata.user_id.as_deref(),
        Some("carol")
    );
    subscribe(&mut client, "raw").await;
    manager
        .publish("raw", &WebSocketMessage::new("hello", json!(null)))
        .unwrap();
    assert_eq!(next_json(&mut client).await.kind, "hello");
    drop(client);
    eventually("gone", || manager.count() == 0).await;
}
