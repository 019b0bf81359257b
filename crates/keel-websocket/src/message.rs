//! [`WebSocketMessage`], the JSON envelope; [`Frame`], a serialized message
//! shared by every recipient; and the parser of client messages.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::error::{MessageError, WebSocketError};

/// Longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// The JSON message exchanged with clients:
/// `{"type": ..., "data": ..., "topic": ..., "id": ..., "timestamp": ...}`.
///
/// Only `type` is required; `data` is any JSON value, `timestamp` is
/// milliseconds since the Unix epoch. Absent fields are left out when
/// serializing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WebSocketMessage {
    /// The message's type (JSON `type`): `subscribe`, `unsubscribe` and
    /// `ping` from clients are handled by the manager; anything else is the
    /// application's.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// The topic it was published to, or the topic a `subscribe` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// An id chosen by the sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When it was made, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

impl WebSocketMessage {
    /// A message of type `kind` carrying `data`, stamped with the current
    /// time.
    pub fn new(kind: impl Into<String>, data: Value) -> Self {
        Self {
            kind: kind.into(),
            data,
            topic: None,
            id: None,
            timestamp: Some(now_millis()),
        }
    }

    /// Sets the topic.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Serializes the message once into a [`Frame`] that can be sent to any
    /// number of clients.
    pub fn to_frame(&self) -> Result<Frame, WebSocketError> {
        let text = serde_json::to_string(self).map_err(WebSocketError::Encode)?;
        Ok(Frame::text(text))
    }

    /// Parses a client's text message. Never panics, whatever the input.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        serde_json::from_str(text).map_err(|e| MessageError::Malformed(e.to_string()))
    }
}

/// A serialized message: the bytes are made once and every recipient's
/// queue holds a reference to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(pub(crate) Message);

impl Frame {
    /// A text frame.
    pub fn text(text: impl Into<String>) -> Self {
        Frame(Message::Text(Utf8Bytes::from(text.into())))
    }

    /// A text frame from a static string.
    pub fn from_static(text: &'static str) -> Self {
        Frame(Message::Text(Utf8Bytes::from_static(text)))
    }

    /// A binary frame; its bytes pass through untouched.
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Frame(Message::Binary(bytes.into()))
    }

    /// Whether it is a binary frame.
    pub fn is_binary(&self) -> bool {
        matches!(self.0, Message::Binary(_))
    }

    /// The payload's bytes.
    pub fn payload(&self) -> &[u8] {
        match &self.0 {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
            _ => &[],
        }
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.payload().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(feature = "redis")]
    /// Rebuilds a frame from received bytes: text when they are UTF-8 and
    /// `binary` is false, `None` when text was promised and they are not.
    pub(crate) fn from_parts(binary: bool, bytes: Bytes) -> Option<Self> {
        if binary {
            Some(Frame(Message::Binary(bytes)))
        } else {
            Utf8Bytes::try_from(bytes)
                .ok()
                .map(|t| Frame(Message::Text(t)))
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn into_bytes(self) -> (bool, Bytes) {
        match self.0 {
            Message::Text(t) => (false, Bytes::from(t)),
            Message::Binary(b) => (true, b),
            _ => (true, Bytes::new()),
        }
    }
}

/// A client's text message, parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ClientMessage {
    /// `{"type":"subscribe","topic":"..."}`
    Subscribe(String),
    /// `{"type":"unsubscribe","topic":"..."}`
    Unsubscribe(String),
    /// `{"type":"ping"}`: answered with `{"type":"pong"}`.
    Ping,
    /// Anything else well-formed: the application's.
    Other(WebSocketMessage),
}

/// Parses a client's text message. Never panics, whatever the input.
pub(crate) fn parse_client_message(text: &str) -> Result<ClientMessage, MessageError> {
    let message = WebSocketMessage::parse(text)?;
    match message.kind.as_str() {
        "subscribe" | "unsubscribe" => {
            let what = if message.kind == "subscribe" {
                "subscribe"
            } else {
                "unsubscribe"
            };
            let topic = message.topic.ok_or(MessageError::MissingTopic(what))?;
            check_topic(&topic).map_err(MessageError::InvalidTopic)?;
            Ok(if what == "subscribe" {
                ClientMessage::Subscribe(topic)
            } else {
                ClientMessage::Unsubscribe(topic)
            })
        }
        "ping" => Ok(ClientMessage::Ping),
        _ => Ok(ClientMessage::Other(message)),
    }
}

/// A topic is 1 to [`MAX_TOPIC_LEN`] bytes with no control characters.
pub(crate) fn check_topic(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() {
        Err("empty")
    } else if topic.len() > MAX_TOPIC_LEN {
        Err("longer than 256 bytes")
    } else if topic.chars().any(char::is_control) {
        Err("contains a control character")
    } else {
        Ok(())
    }
}

/// `{"type":"error","data":{"code":...,"message":...}}` for a client.
pub(crate) fn error_frame(error: &MessageError) -> Frame {
    let message = WebSocketMessage {
        kind: "error".into(),
        data: serde_json::json!({"code": error.code(), "message": error.to_string()}),
        topic: None,
        id: None,
        timestamp: Some(now_millis()),
    };
    message
        .to_frame()
        .unwrap_or_else(|_| Frame::from_static(r#"{"type":"error"}"#))
}

/// `{"type":"<kind>","topic":"<topic>"}`: the answer to a (un)subscribe.
pub(crate) fn ack_frame(kind: &str, topic: &str) -> Frame {
    let message = WebSocketMessage {
        kind: kind.into(),
        data: Value::Null,
        topic: Some(topic.to_owned()),
        id: None,
        timestamp: None,
    };
    message
        .to_frame()
        .unwrap_or_else(|_| Frame::from_static(r#"{"type":"error"}"#))
}

pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands_are_recognised() {
        assert_eq!(
            parse_client_message(r#"{"type":"subscribe","topic":"prices"}"#),
            Ok(ClientMessage::Subscribe("prices".into()))
        );
        assert_eq!(
            parse_client_message(r#"{"type":"unsubscribe","topic":"prices"}"#),
            Ok(ClientMessage::Unsubscribe("prices".into()))
        );
        assert_eq!(
            parse_client_message(r#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping)
        );
        assert!(matches!(
            parse_client_message(r#"{"type":"chat","data":{"text":"hi"},"id":"7"}"#),
            Ok(ClientMessage::Other(m)) if m.kind == "chat" && m.id.as_deref() == Some("7")
        ));
    }

    #[test]
    fn malformed_messages_are_errors() {
        for text in [
            "",
            "not json",
            "[]",
            "{}",
            r#"{"type":5}"#,
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","topic":""}"#,
            r#"{"type":"subscribe","topic":7}"#,
            r#"{"type":"x","timestamp":-1}"#,
        ] {
            assert!(parse_client_message(text).is_err(), "{text:?} was accepted");
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_client_message(&deep).is_err());
        let long = format!(r#"{{"type":"subscribe","topic":"{}"}}"#, "t".repeat(257));
        assert_eq!(
            parse_client_message(&long),
            Err(MessageError::InvalidTopic("longer than 256 bytes"))
        );
    }

    #[test]
    fn a_message_round_trips_and_leaves_out_absent_fields() {
        let message = WebSocketMessage {
            kind: "tick".into(),
            data: serde_json::json!({"price": 1.5}),
            topic: Some("prices".into()),
            id: None,
            timestamp: Some(1),
        };
        let frame = message.to_frame().unwrap();
        let text = std::str::from_utf8(frame.payload()).unwrap();
        assert_eq!(
            text,
            r#"{"type":"tick","data":{"price":1.5},"topic":"prices","timestamp":1}"#
        );
        assert_eq!(WebSocketMessage::parse(text).unwrap(), message);
    }

    #[test]
    fn frames_share_their_bytes() {
        let frame = Frame::text("x".repeat(1000));
        let copy = frame.clone();
        assert_eq!(frame.payload().as_ptr(), copy.payload().as_ptr());
    }

    proptest! {
        #[test]
        fn the_parser_never_panics_on_any_text(text in ".{0,300}") {
            let _ = parse_client_message(&text);
        }

        #[test]
        fn the_parser_never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_client_message(&text);
        }

        #[test]
        fn the_parser_never_panics_on_json_shapes(
            kind in prop_oneof![Just("subscribe".to_owned()), Just("unsubscribe".to_owned()), Just("ping".to_owned()), ".{0,10}"],
            topic in proptest::option::of(".{0,300}"),
            data in proptest::option::of(any::<i64>()),
            extra in proptest::option::of("[a-z]{1,5}"),
        ) {
            let mut object = serde_json::Map::new();
            object.insert("type".into(), Value::String(kind.clone()));
            if let Some(topic) = &topic {
                object.insert("topic".into(), Value::String(topic.clone()));
            }
            if let Some(data) = data {
                object.insert("data".into(), Value::from(data));
            }
            // Unknown keys are ignored (a known key of the wrong type is
            // malformed, which the other properties cover).
            if let Some(extra) = extra {
                object.insert(format!("x_{extra}"), Value::Bool(true));
            }
            let text = Value::Object(object).to_string();
            match parse_client_message(&text) {
                Ok(ClientMessage::Subscribe(t)) | Ok(ClientMessage::Unsubscribe(t)) => {
                    prop_assert!(check_topic(&t).is_ok());
                    prop_assert_eq!(Some(t), topic);
                }
                Ok(ClientMessage::Ping) => prop_assert_eq!(kind, "ping"),
                Ok(ClientMessage::Other(m)) => prop_assert_eq!(m.kind, kind),
                Err(_) => prop_assert!(kind == "subscribe" || kind == "unsubscribe"),
            }
        }
    }
}
