//! Dependency health: the [`HealthCheck`] trait, checks run concurrently
//! under a timeout with cached results, and [`ServiceHealthStatus`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The future a [`HealthCheck`] returns.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = CheckOutcome> + Send + 'a>>;

/// A dependency's health check: a database ping, a Redis `PING`, an
/// upstream's `/health`.
///
/// Checks run concurrently, each under the service's `health_timeout`; a
/// check that does not answer in time counts as unhealthy.
pub trait HealthCheck: Send + Sync + 'static {
    /// Checks the dependency once.
    fn check(&self) -> CheckFuture<'_>;
}

/// A [`HealthCheck`] from an async closure: `check_fn(|| async { ... })`.
pub fn check_fn<F, Fut>(f: F) -> impl HealthCheck
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckOutcome> + Send + 'static,
{
    struct FnCheck<F>(F);
    impl<F, Fut> HealthCheck for FnCheck<F>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckOutcome> + Send + 'static,
    {
        fn check(&self) -> CheckFuture<'_> {
            Box::pin((self.0)())
        }
    }
    FnCheck(f)
}

/// Health of one dependency or of the whole service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Working.
    Healthy,
    /// Working with reduced service (a non-critical dependency is down, or
    /// a dependency says it limps).
    Degraded,
    /// Not serving (a critical dependency is down).
    Unhealthy,
}

/// What one run of a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The dependency's state.
    pub state: HealthState,
    /// Why, when not healthy (or anything worth showing).
    pub message: Option<String>,
}

impl CheckOutcome {
    /// The dependency works.
    pub fn healthy() -> Self {
        Self {
            state: HealthState::Healthy,
            message: None,
        }
    }

    /// The dependency works with reduced service.
    pub fn degraded(message: impl Into<String>) -> Self {
        Self {
            state: HealthState::Degraded,
            message: Some(message.into()),
        }
    }

    /// The dependency does not work.
    pub fn unhealthy(message: impl Into<String>) -> Self {
        Self {
            state: HealthState::Unhealthy,
            message: Some(message.into()),
        }
    }
}

/// One dependency in a [`ServiceHealthStatus`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DependencyHealth {
    /// Its state on the last check.
    pub status: HealthState,
    /// Whether its being down makes the service unhealthy (otherwise
    /// degraded).
    pub critical: bool,
    /// How long the last check took, milliseconds.
    pub latency_ms: f64,
    /// What the check said.
    pub message: Option<String>,
    /// When the check last succeeded (RFC 3339), if ever.
    pub last_success: Option<String>,
}

/// The service's health: overall and per dependency.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ServiceHealthStatus {
    /// `healthy` when every dependency is; `unhealthy` when a critical one
    /// is down; `degraded` otherwise.
    pub status: HealthState,
    /// Seconds since the service started.
    pub uptime_seconds: f64,
    /// Each registered dependency, by name.
    pub dependencies: BTreeMap<String, DependencyHealth>,
}

impl ServiceHealthStatus {
    /// The HTTP status a health endpoint answers: 503 when unhealthy, 200
    /// otherwise.
    pub fn http_status(&self) -> u16 {
        if self.status == HealthState::Unhealthy {
            503
        } else {
            200
        }
    }
}

struct Registered {
    name: String,
    critical: bool,
    check: Box<dyn HealthCheck>,
}

#[derive(Default)]
struct Cached {
    at: Option<Instant>,
    results: BTreeMap<String, DependencyHealth>,
    last_success: BTreeMap<String, SystemTime>,
}

/// The registered checks and their cached results.
pub(crate) struct HealthRegistry {
    checks: parking_lot::RwLock<Vec<Arc<Registered>>>,
    timeout: Duration,
    cache_for: Duration,
    cached: Mutex<Cached>,
    started: std::time::Instant,
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.checks.read().iter().map(|c| c.name.clone()).collect();
        f.debug_struct("HealthRegistry")
            .field("checks", &names)
            .field("timeout", &self.timeout)
            .field("cache_for", &self.cache_for)
            .finish_non_exhaustive()
    }
}

impl HealthRegistry {
    pub(crate) fn new(timeout: Duration, cache_for: Duration) -> Self {
        Self {
            checks: parking_lot::RwLock::new(Vec::new()),
            timeout,
            cache_for,
            cached: Mutex::new(Cached::default()),
            started: std::time::Instant::now(),
        }
    }

    /// Adds (or replaces) the check named `name`.
    pub(crate) fn register(&self, name: &str, critical: bool, check: Box<dyn HealthCheck>) {
        let mut checks = self.checks.write();
        checks.retain(|c| c.name != name);
        checks.push(Arc::new(Registered {
            name: name.to_owned(),
            critical,
            check,
        }));
    }

    /// Runs every check (or reuses results younger than the cache time).
    pub(crate) async fn status(&self) -> ServiceHealthStatus {
        // Holding the lock while checking makes concurrent callers share
        // one run instead of starting their own.
        let mut cached = self.cached.lock().await;
        let fresh = cached.at.is_some_and(|at| at.elapsed() < self.cache_for);
        if !fresh {
            let checks: Vec<Arc<Registered>> = self.checks.read().clone();
            let timeout = self.timeout;
            let runs = checks.iter().map(|c| async move {
                let started = Instant::now();
                let outcome = match tokio::time::timeout(timeout, c.check.check()).await {
                    Ok(outcome) => outcome,
                    Err(_) => CheckOutcome::unhealthy(format!(
                        "no answer within {}",
                        humantime::format_duration(timeout)
                    )),
                };
                (c, outcome, started.elapsed())
            });
            let results = futures_util::future::join_all(runs).await;
            let now = SystemTime::now();
            let mut fresh_results = BTreeMap::new();
            for (c, outcome, took) in results {
                if outcome.state != HealthState::Unhealthy {
                    cached.last_success.insert(c.name.clone(), now);
                }
                let last_success = cached
                    .last_success
                    .get(&c.name)
                    .map(|t| humantime::format_rfc3339_millis(*t).to_string());
                fresh_results.insert(
                    c.name.clone(),
                    DependencyHealth {
                        status: outcome.state,
                        critical: c.critical,
                        latency_ms: took.as_secs_f64() * 1e3,
                        message: outcome.message,
                        last_success,
                    },
                );
            }
            cached.results = fresh_results;
            cached.at = Some(Instant::now());
        }
        ServiceHealthStatus {
            status: overall(cached.results.values()),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            dependencies: cached.results.clone(),
        }
    }
}

/// Critical down → unhealthy; anything else not healthy → degraded.
fn overall<'a>(deps: impl Iterator<Item = &'a DependencyHealth>) -> HealthState {
    let mut state = HealthState::Healthy;
    for d in deps {
        let effect = match (d.status, d.critical) {
            (HealthState::Healthy, _) => HealthState::Healthy,
            (HealthState::Unhealthy, true) => HealthState::Unhealthy,
            _ => HealthState::Degraded,
        };
        state = state.max(effect);
    }
    state
}
