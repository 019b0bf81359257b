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
//!   answers;
//! - `redis+sentinel://[user:password@]host:port,host:port/service[/db]`,
//!   or a list of Sentinels and a service name ([`Topology::from_fields`]):
//!   the primary the Sentinels name, followed to its successor when it
//!   fails (the user and password are the primary's).
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

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
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
    /// A primary found through Redis Sentinel.
    Sentinel(Arc<Sentinels>),
}

/// Sentinels watching a primary: where to ask, and what to ask for.
#[derive(Debug, Clone)]
pub struct Sentinels {
    sentinels: Vec<redis::ConnectionInfo>,
    service_name: String,
    node: SentinelNodeConnectionInfo,
}

impl Sentinels {
    /// A client of the primary the Sentinels name now (checked to call
    /// itself a primary).
    async fn primary(&self) -> redis::RedisResult<redis::Client> {
        Sentinel::build(self.sentinels.clone())?
            .async_master_for(&self.service_name, Some(&self.node))
            .await
    }
}

/// What an address must look like, for error messages.
pub const URL_FORMS: &str = "must be redis://host:port, rediss://host:port, unix:///path, \
     redis+cluster://host:port,host:port or redis+sentinel://host:port,host:port/service";

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
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            return sentinel_url(url, rest).map_err(|e| InvalidField::new("url", e));
        }
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

    /// The topology of a config section with `url`, `nodes`, `sentinels`
    /// and `service_name` fields: the primary `service_name` names to the
    /// Sentinels (`host:port` each) when `sentinels` is not empty, else
    /// [`Topology::new`]. The error's field is relative to the section.
    pub fn from_fields(
        url: &str,
        nodes: &[String],
        sentinels: &[String],
        service_name: &str,
    ) -> Result<Topology, InvalidField> {
        if sentinels.is_empty() {
            return Topology::new(url, nodes);
        }
        if !nodes.is_empty() {
            return Err(InvalidField::new(
                "sentinels",
                "cannot be set together with nodes (a Cluster has no Sentinels)",
            ));
        }
        if service_name.trim().is_empty() {
            return Err(InvalidField::new(
                "service_name",
                "must name the primary the sentinels watch (their `sentinel monitor <name>`)",
            ));
        }
        let addresses = sentinels.iter().map(|s| s.trim().to_owned());
        sentinel(
            addresses,
            service_name,
            redis::RedisConnectionInfo::default(),
        )
        .map_err(|e| InvalidField::new("sentinels", e))
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Topology::Cluster(_))
    }

    /// A client of the server the `attempt`th subscription in a row
    /// should be made on: the server; a seed of a cluster, the next one
    /// each attempt (a `PUBLISH` anywhere in a cluster reaches subscribers
    /// on every node, so any seed serves); the primary the Sentinels name
    /// now.
    pub async fn subscriber(&self, attempt: usize) -> redis::RedisResult<redis::Client> {
        match self {
            Topology::Single(client) => Ok(client.clone()),
            Topology::Cluster(seeds) => Ok(seeds[attempt % seeds.len()].clone()),
            Topology::Sentinel(sentinels) => sentinels.primary().await,
        }
    }

    /// Opens a connection that reconnects by itself. To one server, a
    /// [`ConnectionManager`]; to a cluster, a cluster connection that
    /// follows moved slots and retries a few times within a short wait
    /// and then fails, so that in an outage the caller's own policy (a
    /// breaker, a retry) takes over.
    pub async fn connect(&self, options: ConnectOptions) -> redis::RedisResult<Conn> {
        match self {
            Topology::Single(client) => manager(client, options).await.map(Conn::Single),
            Topology::Sentinel(sentinels) => {
                let conn = connect_primary(sentinels, options).await?;
                Ok(Conn::Sentinel(SentinelConn(Arc::new(Followed {
                    sentinels: Arc::clone(sentinels),
                    options,
                    current: Mutex::new(Current {
                        generation: 0,
                        conn,
                        tried_at: None,
                    }),
                    following: tokio::sync::Mutex::new(()),
                }))))
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

/// A connection manager to `client`'s server with `options`.
async fn manager(
    client: &redis::Client,
    options: ConnectOptions,
) -> redis::RedisResult<ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(options.response_timeout)
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    client.get_connection_manager_with_config(config).await
}

/// A connection manager to the primary the Sentinels name now, within
/// `options.connect_timeout` for the lookup and the connection each.
async fn connect_primary(
    sentinels: &Sentinels,
    options: ConnectOptions,
) -> redis::RedisResult<ConnectionManager> {
    let timed_out = || {
        redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "asking the sentinels for the primary timed out",
        ))
    };
    let client = tokio::time::timeout(options.connect_timeout, sentinels.primary())
        .await
        .map_err(|_| timed_out())??;
    manager(&client, options).await
}

/// `redis+sentinel://[userinfo@]host:port,.../service[/db]`, `rest` being
/// what follows the scheme.
fn sentinel_url(url: &str, rest: &str) -> Result<Topology, String> {
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, rest),
    };
    let Some((hosts, path)) = rest.split_once('/') else {
        return Err(format!(
            "{url:?}: a sentinel URL ends with /<service name>, the name the sentinels watch"
        ));
    };
    let (service, db) = match path.split_once('/') {
        Some((service, db)) => (service, Some(db)),
        None => (path, None),
    };
    if service.is_empty() || service.contains('?') {
        return Err(format!(
            "{url:?}: the service name after the hosts is missing"
        ));
    }
    // The primary's settings, read as a URL of its own.
    let node_url = format!(
        "redis://{}localhost/{}",
        userinfo.map(|u| format!("{u}@")).unwrap_or_default(),
        db.unwrap_or("0")
    );
    let node = redis::Client::open(node_url.as_str())
        .map_err(|e| format!("{url:?}: the user, password or database is not valid: {e}"))?
        .get_connection_info()
        .redis_settings()
        .clone();
    let hosts = hosts.split(',').map(|h| h.trim().to_owned());
    sentinel(hosts, service, node)
}

/// The Sentinels at `addresses` (`host:port` each) watching `service`,
/// whose primary takes the settings `node`.
fn sentinel(
    addresses: impl Iterator<Item = String>,
    service: &str,
    node: redis::RedisConnectionInfo,
) -> Result<Topology, String> {
    let mut sentinels = Vec::new();
    for address in addresses {
        if address.is_empty() {
            return Err("an empty sentinel address".into());
        }
        let url = if address.contains("://") {
            address
        } else {
            format!("redis://{address}")
        };
        let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
            .map_err(|e| format!("{url:?} is not a valid sentinel address: {e}"))?;
        sentinels.push(info);
    }
    if sentinels.is_empty() {
        return Err("at least one sentinel is needed".into());
    }
    Ok(Topology::Sentinel(Arc::new(Sentinels {
        sentinels,
        service_name: service.to_owned(),
        node: SentinelNodeConnectionInfo::default().set_redis_connection_info(node),
    })))
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
    /// To the primary a set of Sentinels names, followed when it changes.
    Sentinel(SentinelConn),
}

/// A connection to the primary Sentinels name. A command that fails the
/// way a dead or demoted primary fails (connection refused, dropped or
/// timed out, or `READONLY`) makes it ask the Sentinels again and, once
/// they name a primary, move to it: that command fails, the next ones go
/// to the new primary. Lookups are one at a time, 100 ms apart at most
/// while they fail.
#[derive(Clone)]
pub struct SentinelConn(Arc<Followed>);

impl std::fmt::Debug for SentinelConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelConn")
            .field("service_name", &self.0.sentinels.service_name)
            .finish_non_exhaustive()
    }
}

struct Followed {
    sentinels: Arc<Sentinels>,
    options: ConnectOptions,
    current: Mutex<Current>,
    following: tokio::sync::Mutex<()>,
}

struct Current {
    /// Counts the moves, so that callers that saw one connection fail
    /// move once.
    generation: u64,
    conn: ConnectionManager,
    /// When the last lookup since the last move started.
    tried_at: Option<Instant>,
}

/// How soon a lookup that failed may be tried again.
const FOLLOW_BACKOFF: Duration = Duration::from_millis(100);

impl SentinelConn {
    fn current(&self) -> (u64, ConnectionManager) {
        let current = self
            .0
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (current.generation, current.conn.clone())
    }

    /// After a failure on connection `seen`: asks the Sentinels for the
    /// primary and moves to it, unless another caller already moved or
    /// tried within the backoff.
    async fn follow(&self, seen: u64) {
        let _one_at_a_time = self.0.following.lock().await;
        {
            let mut current = self
                .0
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let recently = current
                .tried_at
                .is_some_and(|t| t.elapsed() < FOLLOW_BACKOFF);
            if current.generation != seen || recently {
                return;
            }
            current.tried_at = Some(Instant::now());
        }
        if let Ok(conn) = connect_primary(&self.0.sentinels, self.0.options).await {
            let mut current = self
                .0
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            current.generation += 1;
            current.conn = conn;
            current.tried_at = None;
        }
    }

    async fn after(&self, seen: u64, error: &redis::RedisError) {
        let lost = error.is_io_error()
            || error.is_connection_refusal()
            || error.is_connection_dropped()
            || error.is_timeout()
            || error.code() == Some("READONLY");
        if lost {
            self.follow(seen).await;
        }
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (seen, mut conn) = self.current();
            let result = conn.req_packed_command(cmd).await;
            if let Err(error) = &result {
                self.after(seen, error).await;
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (seen, mut conn) = self.current();
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(error) = &result {
                self.after(seen, error).await;
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.current().1.get_db()
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::Single(_) => f.write_str("Conn::Single"),
            Conn::Cluster(_) => f.write_str("Conn::Cluster"),
            Conn::Sentinel(_) => f.write_str("Conn::Sentinel"),
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
            Conn::Sentinel(conn) => conn.req_packed_command(cmd),
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
            Conn::Sentinel(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
            Conn::Sentinel(conn) => conn.get_db(),
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
        assert!(matches!(&cluster, Topology::Cluster(seeds) if seeds.len() == 2));
        let listed = parse(
            "redis://127.0.0.1:6379",
            &["127.0.0.1:7000", "redis://127.0.0.1:7001"],
        )
        .unwrap();
        assert!(listed.is_cluster());
        assert!(matches!(&listed, Topology::Cluster(seeds) if seeds.len() == 2));
        let with_password =
            parse("redis+cluster://:secret@127.0.0.1:7000,127.0.0.1:7001", &[]).unwrap();
        assert!(
            matches!(&with_password, Topology::Cluster(seeds) if seeds.iter().all(|s| s
                .get_connection_info()
                .redis_settings()
                .password()
                == Some("secret"))),
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

    #[test]
    fn a_sentinel_url_names_the_sentinels_the_service_and_the_primary_settings() {
        let topology = parse(
            "redis+sentinel://:secret@127.0.0.1:26379, 127.0.0.1:26380/main/2",
            &[],
        )
        .unwrap();
        let Topology::Sentinel(sentinels) = &topology else {
            panic!("not a sentinel topology: {topology:?}");
        };
        assert_eq!(sentinels.sentinels.len(), 2);
        assert_eq!(sentinels.service_name, "main");
        assert!(!topology.is_cluster());
        let (field, error) = parse("redis+sentinel://127.0.0.1:26379", &[]).unwrap_err();
        assert_eq!(field, "url");
        assert!(error.contains("service name"), "{error}");
        let (_, error) = parse("redis+sentinel://127.0.0.1:26379,/main", &[]).unwrap_err();
        assert!(error.contains("empty sentinel"), "{error}");
    }

    #[test]
    fn sentinel_fields_need_a_service_and_no_nodes() {
        let sentinels = ["127.0.0.1:26379".to_owned()];
        let ok = Topology::from_fields("redis://unused", &[], &sentinels, "main").unwrap();
        assert!(matches!(ok, Topology::Sentinel(_)));
        let e = Topology::from_fields("redis://unused", &[], &sentinels, " ").unwrap_err();
        assert_eq!(e.field, "service_name");
        let nodes = ["127.0.0.1:7000".to_owned()];
        let e = Topology::from_fields("redis://unused", &nodes, &sentinels, "main").unwrap_err();
        assert_eq!(e.field, "sentinels");
        // Without sentinels, the url and nodes decide.
        let cluster = Topology::from_fields("redis://unused", &nodes, &[], "").unwrap();
        assert!(cluster.is_cluster());
    }
}
