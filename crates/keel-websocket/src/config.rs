//! [`WebSocketConfig`]: the `[websocket]` section of the configuration file.

use std::time::Duration;

use keel_core::InvalidField;
use serde::Deserialize;

/// The `[websocket]` section: where the hub listens, heartbeats, the
/// per-client queue, limits, origins, auth and the Redis fan-out.
///
/// ```toml
/// [websocket]
/// path = "/ws"
/// ping_interval = "30s"          # a ping to every client this often
/// pong_timeout = "10s"           # no answer by then: closed and removed
/// queue_size = 1024              # outbound messages held per client
/// slow_client = "drop_oldest"    # or "disconnect" (close 1008)
/// max_message_size = 65536       # bytes; larger client messages: close 1009
/// max_connections = 10000
/// max_connections_per_ip = 100   # optional
/// max_topics_per_client = 100
/// malformed = "error"            # or "close" (close 1007)
/// allowed_origins = ["https://app.example.com"]   # empty: any
///
/// [websocket.auth]               # optional: a token before the upgrade
/// tokens = ["change-me"]
/// header = "authorization"       # "Bearer <token>" or the bare token
/// query = "token"                # or ?token=<token>
///
/// [websocket.redis]              # optional: fan-out across instances
/// url = "redis://127.0.0.1:6379" # or "redis+cluster://h1:7000,h2:7001"
/// channel_prefix = "keel:ws"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WebSocketConfig {
    /// The route the hub answers on. Default `/ws`.
    pub path: String,
    /// How often every client is pinged. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// How long a client has to answer a ping (any frame counts) before it
    /// is closed and removed. Default 10 s. Also bounds how long one write
    /// to a client may take.
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// Outbound messages queued per client before [`Self::slow_client`]
    /// applies. Default 1024.
    pub queue_size: usize,
    /// What happens when a client's queue is full.
    pub slow_client: SlowClientPolicy,
    /// Largest message (and frame) a client may send, in bytes; a larger
    /// one closes that client with code 1009. Default 64 KiB.
    pub max_message_size: usize,
    /// Clients connected at once; more are refused with 503. Default 10000.
    pub max_connections: usize,
    /// Clients connected at once from one IP address; more are refused with
    /// 429. Default: no limit.
    pub max_connections_per_ip: Option<usize>,
    /// Topics one client may be subscribed to. Default 100.
    pub max_topics_per_client: usize,
    /// What a client's malformed text message gets.
    pub malformed: MalformedPolicy,
    /// `Origin` values allowed to connect, compared without regard to case;
    /// `"*"` allows any. Empty (the default): any origin. A request without
    /// an `Origin` header (not from a browser) is not checked.
    pub allowed_origins: Vec<String>,
    /// A token required before the upgrade (`None`: open).
    pub auth: Option<AuthConfig>,
    /// Fan-out across instances through Redis (`None`: this instance only).
    /// Needs the `redis` feature.
    pub redis: Option<FanoutConfig>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            path: "/ws".into(),
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(10),
            queue_size: 1024,
            slow_client: SlowClientPolicy::DropOldest,
            max_message_size: 64 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: None,
            max_topics_per_client: 100,
            malformed: MalformedPolicy::Error,
            allowed_origins: Vec::new(),
            auth: None,
            redis: None,
        }
    }
}

/// What happens to a client whose outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SlowClientPolicy {
    /// The oldest queued message is dropped to make room (counted in the
    /// client's `dropped`).
    #[default]
    DropOldest,
    /// The client is closed with code 1008 and reason `outbound queue full`.
    Disconnect,
}

/// What a client's malformed text message (not JSON, no `type`, a
/// `subscribe` without a topic) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MalformedPolicy {
    /// An `error` message back to that client; the connection stays open.
    #[default]
    Error,
    /// That client is closed with code 1007.
    Close,
}

/// `[websocket.auth]`: a token checked before the upgrade; a missing or
/// unknown token is answered 401. An auth hook set in code
/// ([`WebSocketManagerBuilder::auth`](crate::WebSocketManagerBuilder::auth))
/// takes the place of `tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Tokens accepted.
    pub tokens: Vec<String>,
    /// Header carrying the token, as `Bearer <token>` or the bare token.
    /// Default `authorization`.
    pub header: String,
    /// Query parameter carrying the token (browsers cannot set headers on
    /// a WebSocket). Default `token`.
    pub query: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            header: "authorization".into(),
            query: "token".into(),
        }
    }
}

impl AuthConfig {
    /// Accepts these tokens, from the default header and query parameter.
    pub fn with_tokens<I, T>(tokens: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self {
            tokens: tokens.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// `[websocket.redis]`: fan-out of broadcasts and topic publishes to every
/// instance sharing the Redis and the channel prefix.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FanoutConfig {
    /// The Redis URL: `redis://host:port` (one server, default
    /// `redis://127.0.0.1:6379`), `rediss://`, `unix:///path`,
    /// `redis+cluster://host:port,host:port` for a Redis Cluster (a
    /// `PUBLISH` on any node of a cluster reaches subscribers on every
    /// node), or `redis+sentinel://host:port,host:port/service` for the
    /// primary Redis Sentinels name.
    pub url: String,
    /// The seed nodes of a Redis Cluster (`host:port` each); when not
    /// empty, `url` is not used. Default empty.
    pub nodes: Vec<String>,
    /// Redis Sentinels (`host:port` each) watching the primary named
    /// `service_name`; when not empty, `url` is not used. Default empty.
    pub sentinels: Vec<String>,
    /// The name the Sentinels know the primary by. Default empty.
    pub service_name: String,
    /// Channels are `<channel_prefix>:all` and `<channel_prefix>:topic:<topic>`.
    /// Default `keel:ws`.
    pub channel_prefix: String,
    /// Messages waiting to be published to Redis; past it they reach this
    /// instance only (counted). Default 10000.
    pub publish_queue: usize,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            nodes: Vec::new(),
            sentinels: Vec::new(),
            service_name: String::new(),
            channel_prefix: "keel:ws".into(),
            publish_queue: 10_000,
        }
    }
}

impl FanoutConfig {
    /// A fan-out over the Redis at `url` with the default prefix.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Sets [`Self::channel_prefix`].
    pub fn channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.channel_prefix = prefix.into();
        self
    }
}

impl WebSocketConfig {
    /// Checks the fields against each other and their bounds; every
    /// problem's field path starts with `websocket.`.
    pub fn validate(&self) -> Result<(), Vec<InvalidField>> {
        let mut problems: Vec<InvalidField> = Vec::new();
        let mut bad = |field: &str, reason: &str| {
            problems.push(InvalidField::new(format!("websocket.{field}"), reason));
        };
        if !self.path.starts_with('/') {
            bad("path", "must start with `/`");
        }
        if self.ping_interval.is_zero() {
            bad("ping_interval", "must be longer than 0s");
        }
        if self.pong_timeout.is_zero() {
            bad("pong_timeout", "must be longer than 0s");
        }
        if self.queue_size == 0 {
            bad("queue_size", "must be at least 1");
        }
        if self.max_message_size == 0 {
            bad("max_message_size", "must be at least 1");
        }
        if self.max_connections == 0 {
            bad("max_connections", "must be at least 1");
        }
        if self.max_connections_per_ip == Some(0) {
            bad(
                "max_connections_per_ip",
                "must be at least 1 (leave it out for no limit)",
            );
        }
        if self.allowed_origins.iter().any(|o| o.trim().is_empty()) {
            bad("allowed_origins", "must not contain an empty origin");
        }
        if let Some(auth) = &self.auth {
            if auth.tokens.iter().any(String::is_empty) {
                bad("auth.tokens", "must not contain an empty token");
            }
            if auth.header.is_empty() && auth.query.is_empty() {
                bad(
                    "auth.header",
                    "header and query cannot both be empty: the token could not be sent",
                );
            }
        }
        if let Some(redis) = &self.redis {
            #[cfg(feature = "redis")]
            if let Err(e) = keel_core::topology::Topology::from_fields(
                &redis.url,
                &redis.nodes,
                &redis.sentinels,
                &redis.service_name,
            ) {
                bad(&format!("redis.{}", e.field), &e.reason);
            }
            // Without the feature the address is only looked at (a manager
            // refuses to start with a fan-out it cannot run).
            #[cfg(not(feature = "redis"))]
            if redis.nodes.is_empty()
                && redis.sentinels.is_empty()
                && ![
                    "redis://",
                    "rediss://",
                    "redis+unix://",
                    "unix://",
                    "redis+cluster://",
                    "rediss+cluster://",
                    "redis+sentinel://",
                ]
                .iter()
                .any(|scheme| redis.url.starts_with(scheme))
            {
                bad(
                    "redis.url",
                    "must be a redis://, rediss://, unix://, redis+cluster:// or redis+sentinel:// URL",
                );
            }
            if redis.channel_prefix.is_empty() {
                bad("redis.channel_prefix", "must not be empty");
            }
            if redis.publish_queue == 0 {
                bad("redis.publish_queue", "must be at least 1");
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid() {
        assert_eq!(WebSocketConfig::default().validate(), Ok(()));
    }

    #[test]
    fn every_bad_field_is_named() {
        let config = WebSocketConfig {
            path: "ws".into(),
            ping_interval: Duration::ZERO,
            queue_size: 0,
            max_connections_per_ip: Some(0),
            auth: Some(AuthConfig {
                tokens: vec![String::new()],
                ..AuthConfig::default()
            }),
            redis: Some(FanoutConfig::new("http://x").channel_prefix("")),
            ..WebSocketConfig::default()
        };
        let fields: Vec<String> = config
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "websocket.path",
                "websocket.ping_interval",
                "websocket.queue_size",
                "websocket.max_connections_per_ip",
                "websocket.auth.tokens",
                "websocket.redis.url",
                "websocket.redis.channel_prefix",
            ]
        );
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_cluster_address_is_accepted_and_a_wrong_one_named() {
        let cluster = WebSocketConfig {
            redis: Some(FanoutConfig::new(
                "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
            )),
            ..WebSocketConfig::default()
        };
        assert_eq!(cluster.validate(), Ok(()));
        let mut listed = FanoutConfig::new("redis://unused");
        listed.nodes = vec!["127.0.0.1:7000".into(), String::new()];
        let wrong = [
            FanoutConfig::new("redis+cluster://127.0.0.1:7000/2"),
            listed,
        ];
        let fields: Vec<String> = wrong
            .into_iter()
            .flat_map(|redis| {
                let config = WebSocketConfig {
                    redis: Some(redis),
                    ..WebSocketConfig::default()
                };
                config.validate().unwrap_err()
            })
            .map(|p| p.field)
            .collect();
        assert_eq!(fields, ["websocket.redis.url", "websocket.redis.nodes"]);
    }
}
