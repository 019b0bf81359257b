//! A `redis-server` of the test's own, for outage tests.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::services_required;

/// A private `redis-server` on a free loopback port that a test can stop
/// and restart (on the same port) to simulate an outage. Killed on drop.
/// It keeps nothing on disk.
#[derive(Debug)]
pub struct OwnRedis {
    port: u16,
    child: Option<Child>,
    args: Vec<String>,
}

impl OwnRedis {
    /// Starts a server, or returns `None` (after printing `skipped: ...`)
    /// when `redis-server` is not installed and services are not required.
    ///
    /// # Panics
    ///
    /// When services are required and `redis-server` cannot be started.
    pub fn start() -> Option<OwnRedis> {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with more `redis-server` arguments, such as
    /// `["--enable-debug-command", "local"]` for `DEBUG SLEEP`.
    ///
    /// # Panics
    ///
    /// When services are required and `redis-server` cannot be started.
    pub fn start_with(args: &[&str]) -> Option<OwnRedis> {
        let port = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => addr.port(),
            Err(e) => panic!("cannot find a free port: {e}"),
        };
        let mut server = OwnRedis {
            port,
            child: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(reason) if services_required() => {
                panic!("cannot start a private redis-server: {reason}; install redis-server")
            }
            Err(reason) => {
                println!("skipped: redis-server not runnable ({reason})");
                None
            }
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server (SIGKILL) and waits until the port refuses.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.answers() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port.
    ///
    /// # Panics
    ///
    /// When it does not come back.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(reason) = self.spawn() {
            panic!("private redis-server did not restart: {reason}");
        }
    }

    fn answers(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.answers() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!(
            "redis-server did not listen on port {} within 10 s",
            self.port
        ))
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
