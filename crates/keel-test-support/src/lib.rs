//! Helpers for Keel's tests: find the real services on loopback and give
//! each test its own corner of them.
//!
//! Tests talk to a real Redis, PostgreSQL and MariaDB/MySQL. Their addresses
//! come from `KEEL_TEST_REDIS_URL`, `KEEL_TEST_POSTGRES_URL` and
//! `KEEL_TEST_MYSQL_URL`, defaulting to the local services on their standard
//! ports. When a service does not answer:
//!
//! - with `KEEL_REQUIRE_SERVICES=1` (as `scripts/test.sh` sets it) the test
//!   fails, saying what to start;
//! - otherwise it prints `skipped: <service> not reachable at <url>` and the
//!   helper returns `None`, so the test returns early.
//!
//! Isolation: [`TestRedis`] hands out a unique key prefix, [`TestPostgres`]
//! a fresh schema and [`TestMysql`] a fresh database, each removed again
//! when dropped, so tests run in parallel without seeing each other.
//! [`OwnRedis`] runs a private `redis-server` on a free port that a test
//! can stop and restart to simulate an outage, [`OwnPostgres`] does the
//! same for PostgreSQL (with password logins), and [`Proxy`] sits between
//! a client and a server to hold one connection's replies, delay them, or
//! cut the link while the server keeps its data. [`OwnCluster`] and
//! [`OwnSentinel`] run a private Redis Cluster and a private primary
//! behind Sentinels, and [`on_every_topology!`] runs one test body on the
//! shared server and on both ([`TestTopology`]).
//!
//! ```no_run
//! # async fn example() {
//! let Some(pg) = keel_test_support::postgres().await else { return };
//! // pg.url() points at a schema no other test uses.
//! # }
//! ```

#![forbid(unsafe_code)]

mod isolate;
mod own_cluster;
mod own_postgres;
mod own_redis;
mod own_sentinel;
mod proxy;
pub mod recorder;
mod topology;

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub use isolate::{TestMysql, TestPostgres, TestRedis, mysql, postgres, redis, unique_name};
pub use own_cluster::OwnCluster;
pub use own_postgres::{OWN_POSTGRES_PASSWORD, OwnPostgres};
pub use own_redis::OwnRedis;
pub use own_sentinel::{OwnSentinel, SENTINEL_SERVICE};
pub use proxy::Proxy;
pub use topology::{TestTopology, topology_connection};

/// A real service that tests reach on loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Redis (L2 cache, invalidation bus, fan-out, durable queue).
    Redis,
    /// PostgreSQL.
    Postgres,
    /// MariaDB or MySQL.
    Mysql,
}

impl Service {
    /// Lowercase name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Service::Redis => "redis",
            Service::Postgres => "postgres",
            Service::Mysql => "mysql",
        }
    }

    /// The environment variable holding the service's URL.
    pub fn env_var(self) -> &'static str {
        match self {
            Service::Redis => "KEEL_TEST_REDIS_URL",
            Service::Postgres => "KEEL_TEST_POSTGRES_URL",
            Service::Mysql => "KEEL_TEST_MYSQL_URL",
        }
    }

    /// The URL used when the environment variable is unset.
    pub fn default_url(self) -> &'static str {
        match self {
            Service::Redis => "redis://127.0.0.1:6379",
            Service::Postgres => "postgres://postgres@127.0.0.1:5432/test",
            Service::Mysql => "mysql://root@127.0.0.1:3306/test",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Service::Redis => 6379,
            Service::Postgres => 5432,
            Service::Mysql => 3306,
        }
    }

    fn start_hint(self) -> &'static str {
        match self {
            Service::Redis => {
                "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no"
            }
            Service::Postgres => {
                "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
            }
            Service::Mysql => {
                "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"
            }
        }
    }

    /// The service's URL: its environment variable, or the default.
    pub fn url(self) -> String {
        std::env::var(self.env_var())
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.default_url().to_owned())
    }
}

/// The Redis URL tests use.
pub fn redis_url() -> String {
    Service::Redis.url()
}

/// The PostgreSQL URL tests use (a database the tests may create schemas in).
pub fn postgres_url() -> String {
    Service::Postgres.url()
}

/// The MariaDB/MySQL URL tests use (a user that may create databases).
pub fn mysql_url() -> String {
    Service::Mysql.url()
}

/// Whether `KEEL_REQUIRE_SERVICES=1` is set: an unreachable service fails
/// the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var("KEEL_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v == "true")
}

/// Whether a service answers, and what a test should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// The service accepts connections at this URL.
    Ready(String),
    /// Not reachable and not required: the test should print this and return.
    Skip(String),
    /// Not reachable but required: the test must fail with this message.
    Missing(String),
}

/// Checks whether `service` accepts TCP connections at `url`.
pub fn availability(service: Service, url: &str, required: bool) -> Availability {
    match connect(service, url) {
        Ok(()) => Availability::Ready(url.to_owned()),
        Err(reason) if required => Availability::Missing(format!(
            "{} not reachable at {url} ({reason}) and KEEL_REQUIRE_SERVICES=1: start it with `{}` \
             or run ./scripts/test.sh, which starts it",
            service.name(),
            service.start_hint()
        )),
        Err(_) => Availability::Skip(format!(
            "skipped: {} not reachable at {url}",
            service.name()
        )),
    }
}

/// The service's URL if it answers. Otherwise prints a `skipped:` line and
/// returns `None`, or panics when services are required.
pub fn require(service: Service) -> Option<String> {
    match availability(service, &service.url(), services_required()) {
        Availability::Ready(url) => Some(url),
        Availability::Skip(message) => {
            println!("{message}");
            None
        }
        Availability::Missing(message) => panic!("{message}"),
    }
}

fn connect(service: Service, url: &str) -> Result<(), String> {
    let authority = authority(url).ok_or_else(|| format!("cannot find a host in {url:?}"))?;
    let target = with_port(authority, service.default_port());
    let addrs = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {target}: {e}"))?;
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// `authority` with `default_port` appended when it names none.
fn with_port(authority: &str, default_port: u16) -> String {
    let has_port = authority.rsplit_once(':').is_some_and(|(host, port)| {
        !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && (!host.contains(':') || host.ends_with(']'))
    });
    if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    }
}

/// `host:port` of a URL such as `scheme://user:pw@host:port/path?query`.
fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_strips_user_and_path() {
        assert_eq!(
            authority("postgres://u:p@db:5433/test?x=1"),
            Some("db:5433")
        );
        assert_eq!(authority("redis://127.0.0.1"), Some("127.0.0.1"));
        assert_eq!(
            authority("mysql://root@[::1]:3306/test"),
            Some("[::1]:3306")
        );
        assert_eq!(authority("nonsense"), None);
    }

    #[test]
    fn an_unreachable_service_is_skipped_unless_required() {
        // Port 1 on loopback: nothing listens there.
        let url = "redis://127.0.0.1:1";
        assert_eq!(
            availability(Service::Redis, url, false),
            Availability::Skip("skipped: redis not reachable at redis://127.0.0.1:1".into())
        );
        let Availability::Missing(message) = availability(Service::Redis, url, true) else {
            panic!("a required service must not be skipped");
        };
        assert!(
            message.contains("redis-server --daemonize yes"),
            "{message}"
        );
    }

    #[test]
    fn a_default_port_is_used_when_the_url_has_none() {
        assert_eq!(with_port("127.0.0.1", 6379), "127.0.0.1:6379");
        assert_eq!(with_port("db:5433", 5432), "db:5433");
        assert_eq!(with_port("[::1]", 3306), "[::1]:3306");
        assert_eq!(with_port("[::1]:3307", 3306), "[::1]:3307");
    }

    #[test]
    fn a_listening_service_is_ready() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("redis://127.0.0.1:{port}");
        assert_eq!(
            availability(Service::Redis, &url, true),
            Availability::Ready(url.clone())
        );
    }
}
