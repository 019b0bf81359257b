//! A PostgreSQL server of the test's own, for restart and password tests.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::services_required;

/// The password of the `postgres` user of an [`OwnPostgres`].
pub const OWN_POSTGRES_PASSWORD: &str = "keel-test";

/// A private PostgreSQL server (`initdb` into a temporary directory,
/// `pg_ctl` on a free loopback port) that a test can stop and restart
/// without touching the shared server. TCP logins need a password
/// (`scram-sha-256`), so wrong passwords can be tested. Stopped and
/// removed on drop.
///
/// When the test runs as root, the server runs as the `postgres` system
/// user (PostgreSQL refuses to run as root).
#[derive(Debug)]
pub struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
}

impl OwnPostgres {
    /// Creates and starts a server, or returns `None` (after printing
    /// `skipped: ...`) when PostgreSQL's server binaries are not installed
    /// and services are not required.
    ///
    /// # Panics
    ///
    /// When services are required and the server cannot be started.
    pub fn start() -> Option<OwnPostgres> {
        match Self::try_start() {
            Ok(server) => Some(server),
            Err(reason) if services_required() => {
                panic!("cannot start a private postgres: {reason}; install postgresql")
            }
            Err(reason) => {
                println!("skipped: private postgres not runnable ({reason})");
                None
            }
        }
    }

    /// `postgres://postgres:<password>@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:{OWN_POSTGRES_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (`pg_ctl stop -m fast`: sessions are ended, as in
    /// a normal restart) and waits until the port refuses connections.
    ///
    /// # Panics
    ///
    /// When `pg_ctl` cannot be run.
    pub fn stop(&self) {
        let status = self
            .pg_ctl(&["stop", "-m", "fast", "-w", "-t", "30"])
            .status();
        if let Err(e) = status {
            panic!("cannot run pg_ctl stop: {e}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.answers() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port and waits until it
    /// accepts connections.
    ///
    /// # Panics
    ///
    /// When it does not come back.
    pub fn start_again(&self) {
        if let Err(reason) = self.run_server() {
            panic!("private postgres did not start again: {reason}");
        }
    }

    fn try_start() -> Result<OwnPostgres, String> {
        let bin = server_bin().ok_or("no initdb under /usr/lib/postgresql/*/bin or on PATH")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("cannot find a free port: {e}"))?
            .port();
        let dir = tempfile::Builder::new()
            .prefix("keel-own-postgres-")
            .tempdir()
            .map_err(|e| format!("cannot create a directory: {e}"))?;
        let user = if is_root() {
            let ids = system_user("postgres").ok_or("running as root and no postgres user")?;
            std::os::unix::fs::chown(dir.path(), Some(ids.0), Some(ids.1))
                .map_err(|e| format!("cannot hand the directory to postgres: {e}"))?;
            Some(ids)
        } else {
            None
        };
        let server = OwnPostgres {
            dir,
            bin,
            port,
            user,
        };
        let pwfile = server.dir.path().join("pw");
        std::fs::write(&pwfile, OWN_POSTGRES_PASSWORD)
            .map_err(|e| format!("cannot write the password file: {e}"))?;
        if let Some((uid, gid)) = server.user {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))
                .map_err(|e| format!("cannot hand the password file to postgres: {e}"))?;
        }
        let output = server
            .command("initdb")
            .arg("-D")
            .arg(server.data())
            .args(["-U", "postgres", "--auth-host=scram-sha-256"])
            .args(["--auth-local=trust", "--no-sync", "-E", "UTF8"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        server.run_server()?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.stdin(Stdio::null()).stdout(Stdio::null());
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut command = self.command("pg_ctl");
        command.arg("-D").arg(self.data()).args(args);
        command.stderr(Stdio::null());
        command
    }

    fn run_server(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let status = self
            .pg_ctl(&["start", "-w", "-t", "60", "-o", &options])
            .arg("-l")
            .arg(&log)
            .status()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if !status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("pg_ctl start failed: {}", log.trim()));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.answers() {
            if Instant::now() > deadline {
                return Err(format!("postgres did not listen on port {}", self.port));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn answers(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]).status();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`, or the
/// directory of an `initdb` on `PATH`.
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).find(|dir| Path::new(dir).join("initdb").exists())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// (uid, gid) of a system user, from `/etc/passwd`.
fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}
