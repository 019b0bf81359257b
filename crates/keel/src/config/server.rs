//! `[server]`: the gateway's listener and shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::de;

/// `[server]`: where the gateway listens and how it stops.
///
/// ```toml
/// [server]
/// listen = "127.0.0.1:8080"
/// admin_token = "change-me"
/// shutdown_timeout = "10s"
/// access_log = true         # a `business` line per request
/// slow_request = "1s"       # and a `performance` line past this
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Socket address to bind. Default `127.0.0.1:8080`.
    #[serde(deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    /// Bearer token required by `/admin/...`; when unset the admin API is
    /// open. Must not be empty when given.
    #[serde(deserialize_with = "de::non_empty_string")]
    pub admin_token: Option<String>,
    /// How long a graceful shutdown may take before in-flight requests are
    /// abandoned. Default `10s`, at most `1h`.
    #[serde(deserialize_with = "shutdown_timeout")]
    pub shutdown_timeout: Duration,
    /// Log one line per request (category `business`). Default true.
    pub access_log: bool,
    /// A request slower than this is also logged as a warning in the
    /// `performance` category. Default `1s`.
    #[serde(deserialize_with = "de::duration")]
    pub slow_request: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
            shutdown_timeout: Duration::from_secs(10),
            access_log: true,
            slow_request: Duration::from_secs(1),
        }
    }
}

fn shutdown_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    de::duration_at_most(d, Duration::from_secs(3600))
}
