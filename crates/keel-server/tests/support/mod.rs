//! Running the built `keel` binary as a user would.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `keel` binary cargo built for these tests, run in a directory of
/// its own (the embedded demo writes `keel.db` where it runs).
pub fn keel() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
    cmd.env_remove("RUST_LOG")
        .env_remove("KEEL_CONFIG")
        .current_dir(scratch_dir());
    cmd
}

/// A new empty directory under the system's temporary directory.
pub fn scratch_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "keel-server-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Sends every line of `from` down `to`.
fn forward(from: impl std::io::Read, to: mpsc::Sender<String>) {
    for line in BufReader::new(from).lines().map_while(Result::ok) {
        if to.send(line).is_err() {
            break;
        }
    }
}

/// A running `keel serve` whose stdout and stderr lines are collected.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl Server {
    /// Starts `cmd` and waits until it logs the address it listens on
    /// (the log goes to stdout as JSON lines by default).
    pub fn start(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keel");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        let tx2 = tx.clone();
        std::thread::spawn(move || forward(stderr, tx));
        std::thread::spawn(move || forward(stdout, tx2));
        let mut server = Server {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            lines,
            log: Vec::new(),
        };
        let line = server
            .wait_for_line("listening on http://", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("keel never said where it listens: {:?}", server.log));
        let after = line.rsplit("http://").next().unwrap_or_default();
        let addr: String = after
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
            .collect();
        server.addr = addr
            .parse()
            .unwrap_or_else(|_| panic!("bad address in {line:?}"));
        server
    }

    /// Waits up to `timeout` for a stderr line containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a signal by name (`TERM`, `INT`) through `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `timeout` for the process to exit, then drains its log.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for keel") {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
                    self.log.push(line);
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("keel did not exit within {timeout:?}: {:?}", self.log);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
