//! Errors of the WebSocket room.

use std::fmt;

/// Errors of [`WebSocketManager`](crate::WebSocketManager) calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebSocketError {
    /// The configuration cannot work; the message names the field.
    #[error("invalid websocket configuration: {0}")]
    Config(String),
    /// No client with this id is connected to this instance.
    #[error("no client {0} is connected")]
    UnknownClient(crate::ClientId),
    /// A topic name that is empty or too long.
    #[error("invalid topic name: {0}")]
    InvalidTopic(&'static str),
    /// The client already has as many topics as `max_topics_per_client`.
    #[error("client {client} already has {limit} topics")]
    TooManyTopics {
        /// The client.
        client: crate::ClientId,
        /// The configured limit.
        limit: usize,
    },
    /// The client is closing and takes no more messages.
    #[error("client {0} is closing")]
    Closing(crate::ClientId),
    /// The manager is shutting down.
    #[error("the websocket manager is shutting down")]
    ShuttingDown,
    /// A connection was refused (a limit, or shutdown).
    #[error("connection refused: {0}")]
    Rejected(Rejection),
    /// A message could not be serialized to JSON.
    #[error("cannot serialize the message")]
    Encode(#[source] serde_json::Error),
    /// The `redis` section is set but the crate was built without the
    /// `redis` feature.
    #[error("websocket.redis is set but keel-websocket was built without the redis feature")]
    RedisUnavailable,
}

/// Why a client's text message was refused. Sent back to the client in an
/// `error` message (or as the reason of a close with code 1007).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Not a JSON object of the message's shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A `subscribe` or `unsubscribe` without a topic.
    #[error("{0} needs a topic")]
    MissingTopic(&'static str),
    /// The topic is empty or too long.
    #[error("invalid topic name: {0}")]
    InvalidTopic(&'static str),
}

impl MessageError {
    /// A short machine-readable code: `malformed`, `missing_topic`,
    /// `invalid_topic`.
    pub fn code(&self) -> &'static str {
        match self {
            MessageError::Malformed(_) => "malformed",
            MessageError::MissingTopic(_) => "missing_topic",
            MessageError::InvalidTopic(_) => "invalid_topic",
        }
    }
}

/// Why an upgrade request was refused before the handshake; each maps to
/// an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// Not a WebSocket upgrade request (400).
    NotUpgrade,
    /// The `Origin` header is not in `allowed_origins` (403).
    Origin,
    /// No token, or a token the auth check refused (401).
    Unauthorized,
    /// `max_connections` clients are connected (503).
    TooManyConnections,
    /// `max_connections_per_ip` clients are connected from this address (429).
    TooManyFromAddress,
    /// The manager is shutting down (503).
    ShuttingDown,
}

impl Rejection {
    /// The HTTP status code the request is answered with.
    pub fn status(self) -> u16 {
        match self {
            Rejection::NotUpgrade => 400,
            Rejection::Origin => 403,
            Rejection::Unauthorized => 401,
            Rejection::TooManyConnections | Rejection::ShuttingDown => 503,
            Rejection::TooManyFromAddress => 429,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::NotUpgrade => "not a websocket upgrade request",
            Rejection::Origin => "origin not allowed",
            Rejection::Unauthorized => "missing or invalid token",
            Rejection::TooManyConnections => "too many websocket connections",
            Rejection::TooManyFromAddress => "too many websocket connections from this address",
            Rejection::ShuttingDown => "server shutting down",
        })
    }
}
