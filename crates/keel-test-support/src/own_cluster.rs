//! A Redis Cluster of the test's own, on free loopback ports.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::services_required;

/// A private Redis Cluster: `primaries` primaries with `replicas` replicas
/// each, every node a `redis-server` on free loopback ports, the slots
/// spread by `redis-cli --cluster create`. Nodes fail over after one
/// second without their primary. Killed on drop; keeps nothing once gone.
#[derive(Debug)]
pub struct OwnCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Node {
    port: u16,
    child: Option<Child>,
}

impl OwnCluster {
    /// Starts the cluster and waits until it serves every slot, or returns
    /// `None` (after printing `skipped: ...`) when `redis-server` or
    /// `redis-cli` cannot run and services are not required.
    ///
    /// # Panics
    ///
    /// When services are required and the cluster cannot be built.
    pub fn start(primaries: usize, replicas: usize) -> Option<OwnCluster> {
        match with_retries(|| Self::build(primaries, replicas)) {
            Ok(cluster) => Some(cluster),
            Err(reason) if services_required() => {
                panic!("cannot start a private redis cluster: {reason}")
            }
            Err(reason) => {
                println!("skipped: redis cluster not runnable ({reason})");
                None
            }
        }
    }

    fn build(primaries: usize, replicas: usize) -> Result<OwnCluster, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot make a directory: {e}"))?;
        let mut nodes = Vec::new();
        for _ in 0..primaries * (1 + replicas) {
            let (port, bus) = (free_port()?, free_port()?);
            let conf = dir.path().join(format!("nodes-{port}.conf"));
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--cluster-port", &bus.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                .args(["--repl-diskless-sync-delay", "0"])
                .arg("--cluster-config-file")
                .arg(&conf)
                // A replica's full sync writes an RDB file: into the
                // temporary directory, not the test's working directory.
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot run redis-server: {e}"))?;
            nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        let cluster = OwnCluster { nodes, _dir: dir };
        for node in &cluster.nodes {
            wait_until(Duration::from_secs(10), || answers(node.port))
                .map_err(|_| format!("redis-server did not listen on port {}", node.port))?;
        }
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port)),
            )
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run redis-cli: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        // Every node must see the whole cluster, and each replica must be
        // attached, before a test may kill a primary.
        let total = cluster.nodes.len();
        wait_until(Duration::from_secs(30), || {
            cluster.nodes.iter().all(|n| {
                let info = cli(n.port, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{total}"))
            }) && cluster.replicas_attached(replicas)
        })
        .map_err(|_| "the cluster did not settle within 30 s".to_owned())?;
        Ok(cluster)
    }

    fn replicas_attached(&self, replicas: usize) -> bool {
        if replicas == 0 {
            return true;
        }
        self.nodes.iter().all(|n| {
            let role = cli(n.port, &["ROLE"]);
            // A replica reports `slave` then its primary's state.
            !role.starts_with("slave") || role.contains("connected")
        })
    }

    /// `redis+cluster://127.0.0.1:<port>,...`: every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// `redis://127.0.0.1:<port>` of every node, running or not.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The port of the primary serving `key`'s slot now.
    ///
    /// # Panics
    ///
    /// When no running node answers.
    pub fn primary_of(&self, key: &str) -> u16 {
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let slot = cli(node.port, &["CLUSTER", "KEYSLOT", key]);
            let Ok(slot) = slot.trim().parse::<u16>() else {
                continue;
            };
            let nodes = cli(node.port, &["CLUSTER", "NODES"]);
            for line in nodes.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                    continue;
                }
                let serves = fields[8..].iter().any(|range| match range.split_once('-') {
                    Some((lo, hi)) => {
                        lo.parse::<u16>().is_ok_and(|lo| lo <= slot)
                            && hi.parse::<u16>().is_ok_and(|hi| slot <= hi)
                    }
                    None => range.parse::<u16>() == Ok(slot),
                });
                let port = fields[1]
                    .split(['@', ','])
                    .next()
                    .and_then(|a| a.rsplit_once(':'))
                    .and_then(|(_, p)| p.parse().ok());
                if let (true, Some(port)) = (serves, port) {
                    return port;
                }
            }
        }
        panic!("no running node of the cluster knows who serves {key:?}")
    }

    /// Kills the node on `port` (SIGKILL) and waits until the port refuses.
    pub fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.port == port);
        if let Some(mut child) = node.and_then(|n| n.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = wait_until(Duration::from_secs(10), || !answers(port));
    }

    /// Waits until the cluster serves every slot again (after a failover).
    ///
    /// # Panics
    ///
    /// When it does not within `timeout`.
    pub fn wait_healthy(&self, timeout: Duration) {
        let live: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect();
        if wait_until(timeout, || {
            live.iter()
                .all(|&port| cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        })
        .is_err()
        {
            panic!("the cluster did not serve every slot again within {timeout:?}");
        }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A port nothing listens on now, drawn at random below Linux's ephemeral
/// range (32768 and up), where the kernel's own picks for the tests'
/// thousands of client sockets cannot take it between this check and the
/// server's bind.
pub(crate) fn free_port() -> Result<u16, String> {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..100 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let port = 20_000 + (hasher.finish() % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("cannot find a free port in 20000-31999".into())
}

/// Runs `build` up to three times: two deployments started at once may
/// still draw one port.
pub(crate) fn with_retries<T>(mut build: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let mut last = String::new();
    for _ in 0..3 {
        match build() {
            Ok(built) => return Ok(built),
            Err(reason) => last = reason,
        }
    }
    Err(last)
}

pub(crate) fn answers(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// What `redis-cli -p port args...` prints ("" when it cannot run).
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

pub(crate) fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(())
}
