//! [`Keel`]: every room built from one [`KeelConfig`], and stopped in order.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use keel_cache::CacheManager;
use keel_concurrency::{Executor, Priority, ProcessHandle, TaskQueue};
use keel_monitor::{CheckOutcome, DataMonitoringService, check_fn};
use keel_pool::ConnectionPoolManager;
use keel_websocket::WebSocketManager;

use crate::KeelConfig;

/// The rooms of a service, built from one [`KeelConfig`]: the named caches
/// (and their Redis tier), the database and HTTP pools, the WebSocket hub,
/// the executor for blocking work, and a queue of background jobs worked
/// by `task_queue.batch_size` tasks, and the [`DataMonitoringService`] that
/// watches them: before every scrape, alert evaluation and report it has
/// every room publish its `keel_*` metrics, and its health checks are the
/// caches (degraded while Redis fails), the WebSocket fan-out (degraded
/// while lost) and each pool (a database pool critical, an HTTP pool
/// not). Installing its registry as the `metrics` recorder and starting
/// it are the binary's.
///
/// [`Keel::shutdown`] stops them in dependency order: the job queue drains
/// (jobs still queued are dropped and counted in the log), WebSocket
/// clients get a close frame, the pools close, the executor finishes its
/// work. The server in front stops accepting before calling it, and the
/// log is flushed by the logging guard the binary holds last.
///
/// ```no_run
/// # async fn example() -> Result<(), keel::KeelError> {
/// let keel = keel::Keel::from_config(keel::KeelConfig::default()).await?;
/// let users = keel.caches().cache::<u64, String>("default");
/// keel.shutdown(std::time::Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
pub struct Keel {
    config: KeelConfig,
    caches: CacheManager,
    pools: ConnectionPoolManager,
    websocket: WebSocketManager,
    executor: Executor,
    jobs: ProcessHandle<Job>,
    monitoring: DataMonitoringService,
}

/// A background job for [`Keel::spawn_job`]: named, retried by the task
/// queue on error.
#[derive(Clone)]
pub struct Job {
    name: Arc<str>,
    run: Arc<dyn Fn() -> JobFuture + Send + Sync>,
}

type JobFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

impl Job {
    /// A job named `name` running `run` (once per attempt).
    pub fn new<F, Fut>(name: impl Into<Arc<str>>, run: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name: name.into(),
            run: Arc::new(move || Box::pin(run())),
        }
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job").field("name", &self.name).finish()
    }
}

/// Building [`Keel`] failed: which room, and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeelError {
    /// The caches could not be built.
    #[error("cannot start the caches")]
    Cache(#[source] keel_cache::CacheError),
    /// A pool could not be opened.
    #[error("cannot open the pools")]
    Pool(#[source] keel_pool::PoolError),
    /// The WebSocket hub could not be built.
    #[error("cannot start the websocket hub")]
    WebSocket(#[source] keel_websocket::WebSocketError),
    /// The executor or the job queue could not be built.
    #[error("cannot start the executor or the job queue")]
    Concurrency(#[source] keel_core::InvalidField),
    /// The monitoring service could not be built.
    #[error("cannot start monitoring")]
    Monitor(#[source] keel_monitor::MonitorError),
}

impl fmt::Debug for Keel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keel")
            .field("caches", &self.caches)
            .field("pools", &self.pools)
            .finish_non_exhaustive()
    }
}

impl Keel {
    /// Builds every room from `config`. Must run inside a tokio runtime
    /// (the pools open their minimum connections, the Redis tier and the
    /// job workers start tasks).
    pub async fn from_config(config: KeelConfig) -> Result<Self, KeelError> {
        let caches = CacheManager::new(config.cache.clone()).map_err(KeelError::Cache)?;
        let pools = ConnectionPoolManager::from_config(&config.pools)
            .await
            .map_err(KeelError::Pool)?;
        let websocket =
            WebSocketManager::new(config.websocket.clone()).map_err(KeelError::WebSocket)?;
        let executor = Executor::new(config.thread_pool.clone()).map_err(KeelError::Concurrency)?;
        let queue = TaskQueue::new(config.task_queue.clone()).map_err(KeelError::Concurrency)?;
        let workers = config.task_queue.batch_size.clamp(1, 16);
        let jobs = queue.process(workers, |job: Job| {
            let run = Arc::clone(&job.run);
            async move {
                let result = run().await;
                if let Err(error) = &result {
                    tracing::warn!(job = %job.name, %error, "background job failed");
                }
                result
            }
        });
        let monitoring =
            DataMonitoringService::new(config.monitoring.clone()).map_err(KeelError::Monitor)?;
        watch(
            &monitoring,
            &caches,
            &pools,
            &websocket,
            &executor,
            jobs.queue(),
        );
        Ok(Self {
            config,
            caches,
            pools,
            websocket,
            executor,
            jobs,
            monitoring,
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &KeelConfig {
        &self.config
    }

    /// The named caches.
    pub fn caches(&self) -> &CacheManager {
        &self.caches
    }

    /// The database and HTTP pools.
    pub fn pools(&self) -> &ConnectionPoolManager {
        &self.pools
    }

    /// The WebSocket hub.
    pub fn websocket(&self) -> &WebSocketManager {
        &self.websocket
    }

    /// The executor for blocking and CPU-heavy work.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The monitoring service watching the rooms.
    pub fn monitoring(&self) -> &DataMonitoringService {
        &self.monitoring
    }

    /// The queue of background jobs.
    pub fn jobs(&self) -> &TaskQueue<Job> {
        self.jobs.queue()
    }

    /// Queues a background job without waiting; false (and a log line)
    /// when the queue is full or closed.
    pub fn spawn_job(&self, job: Job) -> bool {
        let name = job.name.clone();
        match self.jobs.queue().try_put(job, Priority::Normal) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(job = %name, %error, "background job not queued");
                false
            }
        }
    }

    /// Stops every room in order, each within `timeout`: the monitoring
    /// task, jobs, WebSocket clients, pools, executor.
    pub async fn shutdown(self, timeout: Duration) {
        self.monitoring.stop();
        let left = match tokio::time::timeout(timeout, self.jobs.shutdown()).await {
            Ok(left) => left.len(),
            Err(_) => {
                tracing::warn!(?timeout, "background jobs did not finish in time");
                0
            }
        };
        if left > 0 {
            tracing::warn!(jobs = left, "background jobs dropped at shutdown");
        }
        if !self.websocket.shutdown(timeout).await {
            tracing::warn!(?timeout, "websocket clients did not all close in time");
        }
        if tokio::time::timeout(timeout, self.pools.close())
            .await
            .is_err()
        {
            tracing::warn!(?timeout, "pools did not close in time");
        }
        if let Err(error) = self.executor.shutdown(timeout).await {
            tracing::warn!(%error, "executor did not stop cleanly");
        }
    }
}

/// Has every room publish its metrics before each scrape, alert evaluation
/// and report, and registers the rooms' health checks.
fn watch(
    monitoring: &DataMonitoringService,
    caches: &CacheManager,
    pools: &ConnectionPoolManager,
    websocket: &WebSocketManager,
    executor: &Executor,
    jobs: &TaskQueue<Job>,
) {
    let (c, p, w, e, j) = (
        caches.clone(),
        pools.clone(),
        websocket.clone(),
        executor.clone(),
        jobs.clone(),
    );
    monitoring.add_collector(move || {
        c.publish_metrics();
        p.publish_metrics();
        w.publish_metrics();
        e.publish_metrics("default");
        j.publish_metrics("jobs");
    });
    let c = caches.clone();
    monitoring.register_health_check(
        "cache",
        false,
        check_fn(move || {
            let c = c.clone();
            async move {
                if c.probe().await {
                    CheckOutcome::healthy()
                } else {
                    CheckOutcome::degraded("the redis tier is failing; serving from the local tier")
                }
            }
        }),
    );
    let w = websocket.clone();
    monitoring.register_health_check(
        "websocket",
        false,
        check_fn(move || {
            let ok = w.config().redis.is_none() || w.fanout_connected();
            async move {
                if ok {
                    CheckOutcome::healthy()
                } else {
                    CheckOutcome::degraded(
                        "the redis fan-out is lost; clients of this instance are still served",
                    )
                }
            }
        }),
    );
    // A database pool down makes the service unhealthy; an HTTP upstream
    // down, degraded (the other routes still answer).
    for key in pools.health().into_keys() {
        let critical = key.starts_with("db.");
        let p = pools.clone();
        let name = key.clone();
        monitoring.register_health_check(
            &key,
            critical,
            check_fn(move || {
                use keel_pool::ConnectionStatus;
                let status = p.health().get(&name).copied();
                async move {
                    match status {
                        Some(ConnectionStatus::Healthy) => CheckOutcome::healthy(),
                        Some(ConnectionStatus::Degraded) => CheckOutcome::degraded(
                            "a connection, statement or request failed recently",
                        ),
                        Some(ConnectionStatus::Unhealthy) => {
                            CheckOutcome::unhealthy("the last health check failed")
                        }
                        _ => CheckOutcome::unhealthy("the pool is closed"),
                    }
                }
            }),
        );
    }
}
