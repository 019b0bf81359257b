//! [`TestTopology`]: one test body run on one Redis server, a private
//! Redis Cluster and a private primary behind Sentinels.

use std::time::Duration;

use keel_core::topology::{Conn, ConnectOptions, Topology};

use crate::{OwnCluster, OwnSentinel, TestRedis, unique_name};

/// Where a Redis test runs: the shared Redis under a key prefix of the
/// test's own; a private 3-primary Cluster, where the prefix is a hash tag
/// (`{...}`) so that keys a command must keep in one slot can be made so;
/// or a private primary, replica and three Sentinels. The URL is one the
/// rooms accept (`redis://`, `redis+cluster://`, `redis+sentinel://`).
/// Run a body on all three with [`on_every_topology!`](crate::on_every_topology).
#[derive(Debug)]
pub enum TestTopology {
    /// The shared server.
    Single(TestRedis),
    /// A private cluster and the test's hash-tag prefix.
    Cluster(OwnCluster, String),
    /// A private Sentinel deployment and the test's prefix.
    Sentinel(OwnSentinel, String),
}

impl TestTopology {
    /// On the shared server, or `None` as [`redis`](crate::redis()).
    pub async fn single() -> Option<TestTopology> {
        crate::redis().await.map(TestTopology::Single)
    }

    /// On a private cluster, or `None` as [`OwnCluster::start`].
    pub fn cluster() -> Option<TestTopology> {
        let cluster = OwnCluster::start(3, 0)?;
        Some(TestTopology::Cluster(
            cluster,
            format!("{{{}}}", unique_name("keel_test")),
        ))
    }

    /// Behind private Sentinels, or `None` as [`OwnSentinel::start`].
    pub fn sentinel() -> Option<TestTopology> {
        let sentinel = OwnSentinel::start()?;
        Some(TestTopology::Sentinel(sentinel, unique_name("keel_test")))
    }

    /// The address of the deployment.
    pub fn url(&self) -> String {
        match self {
            TestTopology::Single(redis) => redis.url().to_owned(),
            TestTopology::Cluster(cluster, _) => cluster.url(),
            TestTopology::Sentinel(sentinel, _) => sentinel.url(),
        }
    }

    /// The prefix every key of this test should start with.
    pub fn prefix(&self) -> &str {
        match self {
            TestTopology::Single(redis) => redis.prefix(),
            TestTopology::Cluster(_, prefix) | TestTopology::Sentinel(_, prefix) => prefix,
        }
    }

    /// `key` under this test's prefix: `<prefix>:<key>`.
    pub fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix())
    }

    /// A connection of the deployment's topology, for the test's own
    /// commands (each routed to the node owning its key on a cluster).
    pub async fn connection(&self) -> redis::RedisResult<Conn> {
        topology_connection(&self.url()).await
    }
}

/// A connection of the topology `url` names, commands bounded by 5 s.
pub async fn topology_connection(url: &str) -> redis::RedisResult<Conn> {
    let topology = Topology::new(url, &[]).map_err(|e| {
        redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            e.to_string(),
        ))
    })?;
    topology
        .connect(ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Some(Duration::from_secs(5)),
        })
        .await
}

/// Runs the test body `$body`, an `async fn($body: TestTopology)`, as three
/// tests on a two-worker runtime: `$body::on_one_server`,
/// `$body::on_a_cluster` and `$body::behind_sentinels`. Each returns early
/// when its deployment is unavailable and not required.
#[macro_export]
macro_rules! on_every_topology {
    ($body:ident) => {
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_one_server() {
                if let Some(topology) = $crate::TestTopology::single().await {
                    super::$body(topology).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_a_cluster() {
                if let Some(topology) = $crate::TestTopology::cluster() {
                    super::$body(topology).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn behind_sentinels() {
                if let Some(topology) = $crate::TestTopology::sentinel() {
                    super::$body(topology).await;
                }
            }
        }
    };
}
