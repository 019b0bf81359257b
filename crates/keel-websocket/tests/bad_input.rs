//! Malformed, oversized and arbitrary client input stays with its sender.

mod support;

use futures_util::SinkExt as _;
use keel_websocket::{MalformedPolicy, WebSocketConfig, WebSocketMessage};
use proptest::prelude::*;
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

/// A broadcast reaches `bystander`: bad input elsewhere did not touch it.
async fn bystander_still_receives(
    manager: &keel_websocket::WebSocketManager,
    bystander: &mut Client,
    n: i64,
) {
    manager
        .broadcast(&WebSocketMessage::new("check", json!(n)))
        .unwrap();
    loop {
        let message = next_json(bystander).await;
        if message.kind == "check" && message.data == json!(n) {
            return;
        }
    }
}

#[tokio::test]
async fn malformed_json_gets_an_error_message_and_the_connection_stays() {
    let (manager, addr) = start(WebSocketConfig::default()).await;
    let mut bad = connect(addr).await;
    let mut bystander = connect(addr).await;
    for text in ["not json", "{}", r#"{"type":"subscribe"}"#, "[1,2"] {
        send_text(&mut bad, text).await;
        let error = next_json(&mut bad).await;
        assert_eq!(error.kind, "error", "{text}");
        assert!(error.data["code"].is_string(), "{error:?}");
    }
    assert_eq!(manager.stats().malformed, 4);
    // Still connected.
    subscribe(&mut bad, "t").await;
    bystander_still_receives(&manager, &mut bystander, 1).await;
}

#[tokio::test]
async fn malformed_json_closes_with_1007_when_configured() {
    let mut config = WebSocketConfig::default();
    config.malformed = MalformedPolicy::Close;
    let (manager, addr) = start(config).await;
    let mut bad = connect(addr).await;
    let mut bystander = connect(addr).await;
    send_text(&mut bad, "{oops").await;
    assert_eq!(
        close_of(&mut bad).await,
        Some((1007, "malformed message".to_owned()))
    );
    eventually("bad client removed", || manager.count() == 1).await;
    bystander_still_receives(&manager, &mut bystander, 2).await;
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let mut config = WebSocketConfig::default();
    config.max_message_size = 1024;
    let (manager, addr) = start(config).await;
    let mut big = connect(addr).await;
    let mut bystander = connect(addr).await;
    // Just under the limit is fine...
    send_text(
        &mut big,
        &format!(r#"{{"type":"x","data":"{}"}}"#, "a".repeat(900)),
    )
    .await;
    // ...over it is not.
    send_text(&mut big, &"a".repeat(4096)).await;
    assert_eq!(close_of(&mut big).await.map(|c| c.0), Some(1009));
    assert_eq!(manager.stats().oversized, 1);
    eventually("removed", || manager.count() == 1).await;
    bystander_still_receives(&manager, &mut bystander, 3).await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let (manager, addr) = start(WebSocketConfig::default()).await;
    let mut bad = connect(addr).await;
    let mut bystander = connect(addr).await;
    bad.send(raw_frame(true, vec![0xff, 0xfe, 0x80]))
        .await
        .unwrap();
    assert_eq!(close_of(&mut bad).await.map(|c| c.0), Some(1007));
    eventually("removed", || manager.count() == 1).await;
    bystander_still_receives(&manager, &mut bystander, 4).await;
}

/// A single-frame message with any payload, text or binary, sent as is.
fn raw_frame(text: bool, payload: Vec<u8>) -> Message {
    let header = FrameHeader {
        opcode: OpCode::Data(if text { Data::Text } else { Data::Binary }),
        ..FrameHeader::default()
    };
    Message::Frame(Frame::from_payload(header, payload.into()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Arbitrary frames (text with any bytes, binary, JSON-ish text) from
    /// one client: the server never panics, and another client keeps
    /// receiving.
    #[test]
    fn arbitrary_frames_never_touch_another_client(
        frames in proptest::collection::vec(
            prop_oneof![
                (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..512)),
                r#"\{"type":"(subscribe|unsubscribe|ping|x)"(,"topic":".{0,20}")?(,"data":[0-9a-z\[\]{}:",]{0,40})?\}"#
                    .prop_map(|s| (true, s.into_bytes())),
            ],
            1..8,
        )
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (manager, addr) = start(WebSocketConfig::default()).await;
            let mut fuzzer = connect(addr).await;
            let mut bystander = connect(addr).await;
            subscribe(&mut bystander, "watch").await;
            for (text, payload) in frames {
                if fuzzer.send(raw_frame(text, payload)).await.is_err() {
                    break;
                }
            }
            manager
                .publish("watch", &WebSocketMessage::new("still-here", json!(null)))
                .unwrap();
            let message = next_json(&mut bystander).await;
            assert_eq!(message.kind, "still-here");
            assert_eq!(manager.topic_count("watch"), 1);
        });
    }
}
