//! A primary, a replica and three Sentinels of the test's own, on free
//! loopback ports.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::own_cluster::{answers, cli, free_port, wait_until, with_retries};
use crate::services_required;

/// The name the Sentinels know the primary by.
pub const SENTINEL_SERVICE: &str = "keel";

/// A private Sentinel deployment: one primary, one replica of it and three
/// Sentinels watching it under [`SENTINEL_SERVICE`] with a quorum of two.
/// A primary that stops answering for one second is failed over to the
/// replica. Killed on drop; keeps nothing once gone.
#[derive(Debug)]
pub struct OwnSentinel {
    primary: Server,
    replica: Server,
    sentinels: Vec<Server>,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Server {
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl OwnSentinel {
    /// Starts the servers and waits until the replica is in sync and every
    /// Sentinel names the primary, or returns `None` (after
    /// printing `skipped: ...`) when `redis-server` cannot run and services
    /// are not required.
    ///
    /// # Panics
    ///
    /// When services are required and the deployment cannot be built.
    pub fn start() -> Option<OwnSentinel> {
        match with_retries(Self::build) {
            Ok(sentinel) => Some(sentinel),
            Err(reason) if services_required() => {
                panic!("cannot start a private redis sentinel deployment: {reason}")
            }
            Err(reason) => {
                println!("skipped: redis sentinel not runnable ({reason})");
                None
            }
        }
    }

    fn build() -> Result<OwnSentinel, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot make a directory: {e}"))?;
        // No wait before a full sync: the replica is the only one coming.
        let primary = server(dir.path(), &["--repl-diskless-sync-delay", "0"])?;
        let replica_of = primary.port.to_string();
        let replica = server(dir.path(), &["--replicaof", "127.0.0.1", &replica_of])?;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port()?;
            // A Sentinel rewrites its config file: one per Sentinel, in the
            // temporary directory.
            let conf = dir.path().join(format!("sentinel-{port}.conf"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
                 sentinel failover-timeout {SENTINEL_SERVICE} 5000\n",
                dir = dir.path().display(),
                primary = primary.port,
            );
            std::fs::write(&conf, text).map_err(|e| format!("cannot write {conf:?}: {e}"))?;
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot run redis-server --sentinel: {e}"))?;
            sentinels.push(Server {
                port,
                child: Some(child),
            });
        }
        let deployment = OwnSentinel {
            primary,
            replica,
            sentinels,
            _dir: dir,
        };
        for server in deployment.servers() {
            wait_until(Duration::from_secs(10), || answers(server.port))
                .map_err(|_| format!("redis-server did not listen on port {}", server.port))?;
        }
        wait_until(Duration::from_secs(30), || {
            cli(deployment.replica.port, &["INFO", "replication"]).contains("master_link_status:up")
        })
        .map_err(|_| "the replica did not sync within 30 s".to_owned())?;
        let primary = deployment.primary.port;
        wait_until(Duration::from_secs(30), || {
            deployment.sentinels.iter().all(|s| {
                cli(
                    s.port,
                    &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE],
                )
                .lines()
                .nth(1)
                .is_some_and(|port| port.trim() == primary.to_string())
            })
        })
        .map_err(|_| "the sentinels did not name the primary within 30 s".to_owned())?;
        Ok(deployment)
    }

    /// Waits until the Sentinels have found each other and the replica
    /// through the primary (hello messages every 2 s): until then a
    /// failover could not be authorised.
    fn wait_quorum(&self) -> Result<(), String> {
        wait_until(Duration::from_secs(30), || {
            self.sentinels.iter().all(|s| {
                cli(s.port, &["SENTINEL", "CKQUORUM", SENTINEL_SERVICE]).contains("OK 3 usable")
                    && cli(s.port, &["SENTINEL", "REPLICAS", SENTINEL_SERVICE])
                        .contains(&self.replica.port.to_string())
            })
        })
        .map_err(|_| "the sentinels did not find each other within 30 s".to_owned())
    }

    fn servers(&self) -> impl Iterator<Item = &Server> {
        [&self.primary, &self.replica]
            .into_iter()
            .chain(self.sentinels.iter())
    }

    /// `redis+sentinel://127.0.0.1:<port>,.../keel`: every Sentinel, and
    /// the service name.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://{}/{SENTINEL_SERVICE}",
            self.sentinel_addresses().join(",")
        )
    }

    /// `127.0.0.1:<port>` of every Sentinel.
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// The port of the server started as the primary.
    pub fn primary_port(&self) -> u16 {
        self.primary.port
    }

    /// The port of the server started as the replica.
    pub fn replica_port(&self) -> u16 {
        self.replica.port
    }

    /// The port the Sentinels give as the primary's now (0 when none
    /// answers).
    pub fn current_primary(&self) -> u16 {
        for sentinel in self.sentinels.iter().filter(|s| s.child.is_some()) {
            let out = cli(
                sentinel.port,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE],
            );
            if let Some(port) = out.lines().nth(1).and_then(|p| p.trim().parse().ok()) {
                return port;
            }
        }
        0
    }

    /// Waits until a failover could be authorised, then kills the primary
    /// (SIGKILL) and waits until its port refuses.
    ///
    /// # Panics
    ///
    /// When the Sentinels do not find each other within 30 s.
    pub fn kill_primary(&mut self) {
        if let Err(reason) = self.wait_quorum() {
            panic!("{reason}");
        }
        self.primary.kill();
        let _ = wait_until(Duration::from_secs(10), || !answers(self.primary.port));
    }

    /// Waits until the Sentinels have promoted the replica and it accepts
    /// writes.
    ///
    /// # Panics
    ///
    /// When the failover does not finish within `timeout`.
    pub fn wait_promoted(&self, timeout: Duration) {
        let replica = self.replica.port;
        if wait_until(timeout, || {
            self.current_primary() == replica && cli(replica, &["ROLE"]).starts_with("master")
        })
        .is_err()
        {
            panic!("the sentinels did not promote the replica within {timeout:?}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-server` on a free port keeping its files in `dir`.
fn server(dir: &Path, args: &[&str]) -> Result<Server, String> {
    let port = free_port()?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run redis-server: {e}"))?;
    Ok(Server {
        port,
        child: Some(child),
    })
}
