//! Where a room's Redis lives (feature `redis`): one server, or a Redis
//! Cluster reached through seed nodes; and the connection both are used
//! through. The cache's L2 tier, the task queue and the WebSocket fan-out
//! all read their Redis address with [`Topology::new`], so one URL form
//! means the same everywhere:
//!
//! - `redis://host:port[/db]`, `rediss://...`, `unix:///path`: one server;
//! - `redis+cluster://[user:password@]host:port,host:port` (or
//!   `rediss+cluster://`), or a non-empty list of `host:port` seeds: a
//!   Cluster, whose slot map the client learns from whichever seed
//!   answers.
//!
//! ```
//! use keel_core::topology::Topology;
//!
//! let one = Topology::new("redis://127.0.0.1:6379", &[]).unwrap();
//! assert!(!one.is_cluster());
//! let cluster = Topology::new("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", &[]).unwrap();
//! assert!(cluster.is_cluster());
//! let wrong = Topology::new("http://127.0.0.1:6379", &[]).unwrap_err();
//! assert_eq!(wrong.field, "url");
//! ```

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::InvalidField;

/// The server or servers a Redis address names.
#[derive(Debug, Clone)]
pub enum Topology {
    /// One server (`redis://`, `rediss://`, `unix://`).
    Single(redis::Client),
    /// A Redis Cluster (`redis+cluster://host:port,host:port`, or a list
    /// of nodes), known by one client per seed node.
    Cluster(Vec<redis::Client>),
}

/// What an address must look like, for error messages.
pub const URL_FORMS: &str = "must be redis://host:port, rediss://host:port, unix:///path \
     or redis+cluster://host:port,host:port";

/// How a [`Topology::connect`] connection behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The most one connection attempt may take.
    pub connect_timeout: Duration,
    /// The most one command may wait for its reply; `None` for a
    /// connection that carries blocking reads the caller bounds itself.
    pub response_timeout: Option<Duration>,
}

impl Topology {
    /// The topology of the Cluster of `nodes` when that is not empty (each
    /// `host:port` or a `redis://` URL), else of what `url` names. The
    /// error's field is `url` or `nodes`, relative to the section the
    /// caller reads them from, and says what is wrong.
    pub fn new(url: &str, nodes: &[String]) -> Result<Topology, InvalidField> {
        if !nodes.is_empty() {
            let seeds = nodes.iter().map(|node| match node.trim() {
                "" => String::new(),
                node if node.contains("://") => node.to_owned(),
                node => format!("redis://{node}"),
            });
            return cluster(seeds).map_err(|e| InvalidField::new("nodes", e));
        }
        let cluster_url = url
            .strip_prefix("redis+cluster://")
            .map(|rest| ("redis", rest))
            .or_else(|| {
                url.strip_prefix("rediss+cluster://")
                    .map(|rest| ("rediss", rest))
            });
        if let Some((scheme, rest)) = cluster_url {
            // `user:password@` before the first host applies to every node.
            let (userinfo, hosts) = match rest.rsplit_once('@') {
                Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
                None => (String::new(), rest),
            };
            if hosts.contains(['/', '?']) {
                return Err(InvalidField::new(
                    "url",
                    format!(
                        "{url:?}: a cluster URL lists host:port pairs only (a cluster has one database)"
                    ),
                ));
            }
            let seeds = hosts.split(',').map(|host| host.trim()).map(|host| {
                if host.is_empty() {
                    String::new()
                } else {
                    format!("{scheme}://{userinfo}{host}")
                }
            });
            return cluster(seeds).map_err(|e| InvalidField::new("url", e));
        }
        let known = ["redis://", "rediss://", "redis+unix://", "unix://"];
        if !known.iter().any(|scheme| url.starts_with(scheme)) {
            return Err(InvalidField::new("url", format!("{url:?} {URL_FORMS}")));
        }
        redis::Client::open(url)
            .map(Topology::Single)
            .map_err(|e| InvalidField::new("url", format!("{url:?} is not a valid redis URL: {e}")))
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Topology::Cluster(_))
    }

    /// Clients of the servers a subscription may be made on, in the order
    /// to try them: the server, or every seed of a cluster (a `PUBLISH`
    /// anywhere in a cluster reaches subscribers on every node, so any
    /// seed serves).
    pub fn subscribers(&self) -> Vec<redis::Client> {
        match self {
            Topology::Single(client) => vec![client.clone()],
            Topology::Cluster(seeds) => seeds.clone(),
        }
    }

    /// Opens a connection that reconnects by itself. To one server, a
    /// [`ConnectionManager`]; to a cluster, a cluster connection that
    /// follows moved slots and retries a few times within a short wait
    /// and then fails, so that in an outage the caller's own policy (a
    /// breaker, a retry) takes over.
    pub async fn connect(&self, options: ConnectOptions) -> redis::RedisResult<Conn> {
        match self {
            Topology::Single(client) => {
                let manager = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(options.connect_timeout))
                    .set_response_timeout(options.response_timeout)
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                client
                    .get_connection_manager_with_config(manager)
                    .await
                    .map(Conn::Single)
            }
            Topology::Cluster(seeds) => {
                let mut builder =
                    ClusterClient::builder(seeds.iter().map(|c| c.get_connection_info().clone()))
                        .connection_timeout(options.connect_timeout)
                        .retries(3)
                        .min_retry_wait(10)
                        .max_retry_wait(200);
                if let Some(timeout) = options.response_timeout {
                    builder = builder.response_timeout(timeout);
                }
                builder
                    .build()?
                    .get_async_connection()
                    .await
                    .map(Conn::Cluster)
            }
        }
    }
}

/// The cluster of the seed URLs `seeds`.
fn cluster(seeds: impl Iterator<Item = String>) -> Result<Topology, String> {
    let mut clients = Vec::new();
    for seed in seeds {
        if seed.is_empty() {
            return Err("an empty node address".into());
        }
        let client = redis::Client::open(seed.as_str())
            .map_err(|e| format!("{seed:?} is not a valid node address: {e}"))?;
        clients.push(client);
    }
    if clients.is_empty() {
        return Err("a cluster needs at least one node".into());
    }
    Ok(Topology::Cluster(clients))
}

/// A connection of either topology: a multiplexed connection manager to
/// one server, or a cluster connection that routes each command to the
/// node owning its keys' slot. Cheap to clone.
#[derive(Clone)]
pub enum Conn {
    /// To one server.
    Single(ConnectionManager),
    /// To a Redis Cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::Single(_) => f.write_str("Conn::Single"),
            Conn::Cluster(_) => f.write_str("Conn::Cluster"),
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// The reachable primaries in a `CLUSTER NODES` reply, `(host, port)`
/// each. A line is `id host:port@bus[,hostname] flags primary-id ...`.
pub fn primaries(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let is_primary = flags.split(',').any(|f| f == "master");
            let unusable = flags
                .split(',')
                .any(|f| matches!(f, "fail" | "fail?" | "handshake" | "noaddr"));
            if !is_primary || unusable {
                return None;
            }
            let address = address.split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            let port = port.parse().ok()?;
            (!host.is_empty()).then(|| (host.to_owned(), port))
        })
        .collect()
}

/// The Cluster hash slot of `key`: CRC16 (XMODEM) of the key, or of the
/// part between the first `{` and the next `}` when that is not empty
/// (a hash tag), modulo 16384.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16_xmodem(hashed) % 16384
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_cluster_specification() {
        // The reference value the Redis Cluster specification gives.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        // Values `CLUSTER KEYSLOT` prints.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        // A hash tag hashes only what is inside the braces.
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"{user1000}.followers"), slot(b"user1000"));
        // Empty braces are no tag: the whole key is hashed.
        assert_eq!(slot(b"foo{}{bar}"), crc16_xmodem(b"foo{}{bar}") % 16384);
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn primaries_are_read_from_cluster_nodes() {
        let nodes = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(
            primaries(nodes),
            vec![
                ("127.0.0.1".to_owned(), 30002),
                ("127.0.0.1".to_owned(), 30001)
            ]
        );
    }

    fn parse(url: &str, nodes: &[&str]) -> Result<Topology, (String, String)> {
        let nodes: Vec<String> = nodes.iter().map(|n| (*n).to_owned()).collect();
        Topology::new(url, &nodes).map_err(|e| (e.field, e.reason))
    }

    #[test]
    fn a_url_chooses_the_topology() {
        assert!(!parse("redis://127.0.0.1:6379", &[]).unwrap().is_cluster());
        let cluster = parse("redis+cluster://127.0.0.1:7000, 127.0.0.1:7001", &[]).unwrap();
        assert!(cluster.is_cluster());
        assert_eq!(cluster.subscribers().len(), 2);
        let listed = parse(
            "redis://127.0.0.1:6379",
            &["127.0.0.1:7000", "redis://127.0.0.1:7001"],
        )
        .unwrap();
        assert!(listed.is_cluster());
        assert_eq!(listed.subscribers().len(), 2);
        let with_password =
            parse("redis+cluster://:secret@127.0.0.1:7000,127.0.0.1:7001", &[]).unwrap();
        assert!(
            with_password.subscribers().iter().all(|s| s
                .get_connection_info()
                .redis_settings()
                .password()
                == Some("secret")),
            "the password applies to every node"
        );
    }

    #[test]
    fn a_wrong_url_names_its_field_and_what_is_accepted() {
        let (field, error) = parse("http://127.0.0.1:6379", &[]).unwrap_err();
        assert_eq!(field, "url");
        assert!(error.contains("redis+cluster://"), "{error}");
        let (_, error) = parse("redis+cluster://127.0.0.1:7000/2", &[]).unwrap_err();
        assert!(error.contains("one database"), "{error}");
        let (_, error) = parse("redis+cluster://127.0.0.1:7000,,127.0.0.1:7001", &[]).unwrap_err();
        assert!(error.contains("empty node"), "{error}");
        let (field, error) = parse("redis://127.0.0.1", &[" "]).unwrap_err();
        assert_eq!(field, "nodes");
        assert!(error.contains("empty node"), "{error}");
    }
}
