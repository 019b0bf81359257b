//! [`HttpConnectionPool`]: reqwest with connection caps, retries of
//! idempotent requests, and endpoints balanced by `keel-concurrency`'s
//! [`LoadBalancer`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use keel_concurrency::{EndpointGuard, LoadBalancer};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::HttpPoolConfig;
use crate::retry::{RetryBudget, backoff};
use crate::stats::{ConnectionStats, ConnectionStatus, Counters, Health, PoolKind};
use crate::{PoolError, TimeoutKind};

/// A named HTTP client pool on reqwest. Cheap to clone; clones share it.
///
/// * At most `max_connections` requests are in flight, and at most
///   `max_connections_per_host` to one host; over HTTP/1.1 a request
///   holds one connection, so these cap the connections in use. A request
///   waits up to `connection_timeout` for a slot, then fails with
///   [`PoolError::Timeout`]. Idle connections are kept up to the per-host
///   cap, for `idle_timeout`.
/// * Relative paths go to one of `base_urls`, picked by a
///   [`LoadBalancer`] (pick → guard → report): an endpoint that fails
///   `eject_after_failures` times in a row (a connect error, 502, 503 or
///   504) is ejected for `ejection_cooldown`, then one request probes it
///   and its success brings it back. Absolute URLs are sent as they are.
/// * GET, HEAD, PUT, DELETE and OPTIONS are retried after a connect error
///   or a 502/503/504, on another pick, up to `max_retries` times with
///   jittered backoff, while the retry budget allows. POST and PATCH are
///   never retried.
/// * Responses are read whole before the slot is released, so a slot
///   always means a connection and nothing leaks.
#[derive(Debug, Clone)]
pub struct HttpConnectionPool {
    inner: Arc<Inner>,
}

/// A request to send through an [`HttpConnectionPool`]; from
/// [`HttpConnectionPool::request`].
#[derive(Debug)]
#[must_use = "a request does nothing until sent"]
pub struct HttpRequest<'a> {
    pool: &'a HttpConnectionPool,
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Option<Bytes>,
    error: Option<String>,
}

/// A response read whole.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
    /// The URL that answered (after the balancer's pick).
    pub url: String,
    /// Retries it took (0: the first attempt answered).
    pub retries: u32,
}

#[derive(Debug)]
struct Inner {
    name: String,
    client: reqwest::Client,
    config: HttpPoolConfig,
    balancer: Option<LoadBalancer<Endpoint>>,
    total: Arc<Semaphore>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    counters: Counters,
    health: Health,
    budget: RetryBudget,
}

#[derive(Debug)]
struct Endpoint {
    base: String,
    limit: Arc<Semaphore>,
}

/// Whether `url` can be a base URL: `http://host[:port][/path]`.
pub(crate) fn check_base_url(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("not a URL ({e}): {url:?}"))?;
    if parsed.scheme() != "http" {
        return Err(format!(
            "scheme {:?} is not supported: use http:// (this build has no TLS)",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} names no host"));
    }
    Ok(())
}

/// `host:port` of a URL, the key of its per-host cap.
fn authority(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(0)
    )
}

impl HttpConnectionPool {
    /// Builds the pool `name` from `config` (checked first, every problem
    /// named by its field).
    pub fn new(name: impl Into<String>, config: HttpPoolConfig) -> Result<Self, PoolError> {
        let name = name.into();
        if let Some(problem) = config.problems("").into_iter().next() {
            return Err(PoolError::Config {
                field: problem.field.trim_start_matches('.').to_owned(),
                reason: problem.reason,
            });
        }
        let per_host = config.per_host();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(per_host as usize)
            .pool_idle_timeout(config.idle_timeout)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| PoolError::Config {
                field: "http client".into(),
                reason: e.to_string(),
            })?;
        let mut hosts = HashMap::new();
        let mut endpoints = Vec::new();
        for base in &config.base_urls {
            let url = Url::parse(base).map_err(|e| PoolError::Config {
                field: "base_urls".into(),
                reason: e.to_string(),
            })?;
            let limit = Arc::clone(
                hosts
                    .entry(authority(&url))
                    .or_insert_with(|| Arc::new(Semaphore::new(per_host as usize))),
            );
            endpoints.push(Endpoint {
                base: base.trim_end_matches('/').to_owned(),
                limit,
            });
        }
        let balancer = if endpoints.is_empty() {
            None
        } else {
            Some(
                LoadBalancer::new(config.balance.clone(), endpoints).map_err(|e| {
                    PoolError::Config {
                        field: format!("balance.{}", e.field.trim_start_matches("load_balancer.")),
                        reason: e.reason,
                    }
                })?,
            )
        };
        let counters = Counters::new(format!("http.{name}"));
        Ok(Self {
            inner: Arc::new(Inner {
                name,
                client,
                total: Arc::new(Semaphore::new(config.max_connections as usize)),
                hosts: Mutex::new(hosts),
                counters,
                health: Health::new(config.health_check_interval),
                budget: RetryBudget::new(config.retry_budget),
                balancer,
                config,
            }),
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its settings.
    pub fn config(&self) -> &HttpPoolConfig {
        &self.inner.config
    }

    /// The reqwest client underneath (requests sent on it directly bypass
    /// the caps, retries and balancing).
    pub fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    /// A request: `target` is a path (`/users/1?x=2`) sent to one of the
    /// base URLs, or an absolute `http://` URL sent as it is.
    pub fn request(&self, method: Method, target: impl Into<String>) -> HttpRequest<'_> {
        HttpRequest {
            pool: self,
            method,
            target: target.into(),
            headers: HeaderMap::new(),
            body: None,
            error: None,
        }
    }

    /// `GET target`.
    pub async fn get(&self, target: impl Into<String>) -> Result<HttpResponse, PoolError> {
        self.request(Method::GET, target).send().await
    }

    /// `POST target` with `body` (never retried).
    pub async fn post(
        &self,
        target: impl Into<String>,
        body: impl Into<Bytes>,
    ) -> Result<HttpResponse, PoolError> {
        self.request(Method::POST, target).body(body).send().await
    }

    /// The pool's figures now: `in_use` counts requests in flight;
    /// reqwest does not show open or idle connections, so `total` and
    /// `idle` are `None`.
    pub fn stats(&self) -> ConnectionStats {
        let c = &self.inner.counters;
        let in_use = u32::try_from(c.in_use.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
        c.snapshot(&self.inner.name, PoolKind::Http, None, None, in_use)
    }

    /// Registers the pool's wait histogram with the current recorder.
    pub(crate) fn bind_metrics(&self) {
        self.inner.counters.bind_metrics();
    }

    /// Each base URL with its balancer figures (ejected or not, in flight,
    /// picks, latency average), in configuration order.
    pub fn endpoints(&self) -> Vec<(String, keel_concurrency::EndpointStats)> {
        let Some(balancer) = &self.inner.balancer else {
            return Vec::new();
        };
        balancer
            .stats()
            .into_iter()
            .filter_map(|s| balancer.endpoint(s.index).map(|e| (e.base.clone(), s)))
            .collect()
    }

    /// The pool's health: `unhealthy` when every base URL is ejected,
    /// `degraded` when one is or a request failed within the last
    /// `health_check_interval`.
    pub fn health(&self) -> ConnectionStatus {
        let inner = &self.inner;
        let status = inner.health.status();
        if status == ConnectionStatus::Closed {
            return status;
        }
        if let Some(balancer) = &inner.balancer {
            let ejected = balancer.stats().iter().filter(|s| s.ejected).count();
            if ejected == balancer.len() {
                return ConnectionStatus::Unhealthy;
            }
            if ejected > 0 {
                return status.max(ConnectionStatus::Degraded);
            }
        }
        status
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.health.is_closed()
    }

    /// Closes the pool: new requests fail with [`PoolError::Closed`]; this
    /// waits for the requests in flight to finish.
    pub async fn close(&self) {
        let inner = &self.inner;
        inner.health.close();
        let _drained = inner.total.acquire_many(inner.config.max_connections).await;
        inner.total.close();
    }

    fn host_limit(&self, url: &Url) -> Arc<Semaphore> {
        let per_host = self.inner.config.per_host() as usize;
        let mut hosts = self
            .inner
            .hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            hosts
                .entry(authority(url))
                .or_insert_with(|| Arc::new(Semaphore::new(per_host))),
        )
    }

    async fn send(&self, request: HttpRequest<'_>) -> Result<HttpResponse, PoolError> {
        let inner = &*self.inner;
        let name = &inner.name;
        if let Some(reason) = request.error {
            return Err(PoolError::InvalidRequest {
                pool: name.clone(),
                reason,
            });
        }
        if inner.health.is_closed() {
            return Err(PoolError::Closed { pool: name.clone() });
        }
        let absolute = request.target.contains("://");
        if !absolute && inner.balancer.is_none() {
            return Err(PoolError::InvalidRequest {
                pool: name.clone(),
                reason: format!(
                    "{:?} is a path but the pool has no base_urls",
                    request.target
                ),
            });
        }
        let idempotent = matches!(
            request.method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        inner.budget.deposit();
        let mut attempt = 0u32;
        loop {
            let Attempt { url, limit, guard } = self.target(&request.target)?;
            let permits = self.slot(limit).await?;
            let mut builder = inner
                .client
                .request(request.method.clone(), url.as_str())
                .headers(request.headers.clone());
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            let result = read(builder).await;
            drop(permits);
            let retryable = match &result {
                Ok(r) => matches!(r.status.as_u16(), 502..=504),
                Err(e) => e.is_connect(),
            };
            if let Some(guard) = guard {
                report(guard, &result);
            }
            if retryable
                && idempotent
                && attempt < inner.config.max_retries
                && inner.budget.withdraw()
            {
                attempt += 1;
                Counters::add(&inner.counters.retries);
                tracing::debug!(pool = %name, %url, attempt, "retrying an idempotent request");
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            return match result {
                Ok(mut response) => {
                    if retryable {
                        Counters::add(&inner.counters.errors);
                        inner.health.failure();
                    }
                    response.url = url;
                    response.retries = attempt;
                    Ok(response)
                }
                Err(source) => {
                    Counters::add(&inner.counters.errors);
                    inner.health.failure();
                    Err(PoolError::Http {
                        pool: name.clone(),
                        url,
                        source,
                    })
                }
            };
        }
    }

    /// Where this attempt goes.
    fn target(&self, target: &str) -> Result<Attempt, PoolError> {
        let inner = &*self.inner;
        if target.contains("://") {
            let url = Url::parse(target).map_err(|e| PoolError::InvalidRequest {
                pool: inner.name.clone(),
                reason: format!("{target:?} is not a URL: {e}"),
            })?;
            let limit = self.host_limit(&url);
            return Ok(Attempt {
                url: target.to_owned(),
                limit,
                guard: None,
            });
        }
        let Some(balancer) = &inner.balancer else {
            return Err(PoolError::InvalidRequest {
                pool: inner.name.clone(),
                reason: format!("{target:?} is a path but the pool has no base_urls"),
            });
        };
        let guard = balancer.pick().map_err(|_| PoolError::NoHealthyEndpoint {
            pool: inner.name.clone(),
            endpoints: balancer.len(),
        })?;
        let endpoint = guard.endpoint();
        let url = format!("{}/{}", endpoint.base, target.trim_start_matches('/'));
        let limit = Arc::clone(&endpoint.limit);
        Ok(Attempt {
            url,
            limit,
            guard: Some(guard),
        })
    }

    /// A slot in the total and per-host caps, within `connection_timeout`.
    async fn slot(&self, host: Arc<Semaphore>) -> Result<Slot, PoolError> {
        let inner = &*self.inner;
        let started = Instant::now();
        // Free slots need no timer. (A semaphore with waiters has no free
        // permit, so this never overtakes a queued caller.)
        if let Ok(total) = Arc::clone(&inner.total).try_acquire_owned()
            && let Ok(host) = Arc::clone(&host).try_acquire_owned()
        {
            inner.counters.record_wait(started.elapsed());
            Counters::add(&inner.counters.acquired);
            inner.counters.in_use.fetch_add(1, Ordering::Relaxed);
            return Ok(Slot {
                pool: Arc::clone(&self.inner),
                _total: total,
                _host: host,
            });
        }
        let waiting = inner.counters.waiting();
        let both = async {
            let total = Arc::clone(&inner.total).acquire_owned().await?;
            let host = host.acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>((total, host))
        };
        let acquired = tokio::time::timeout(inner.config.connection_timeout, both).await;
        drop(waiting);
        match acquired {
            Ok(Ok((total, host))) => {
                inner.counters.record_wait(started.elapsed());
                Counters::add(&inner.counters.acquired);
                inner.counters.in_use.fetch_add(1, Ordering::Relaxed);
                Ok(Slot {
                    pool: Arc::clone(&self.inner),
                    _total: total,
                    _host: host,
                })
            }
            Ok(Err(_closed)) => Err(PoolError::Closed {
                pool: inner.name.clone(),
            }),
            Err(_elapsed) => {
                Counters::add(&inner.counters.timed_out);
                inner.health.failure();
                Err(PoolError::Timeout {
                    pool: inner.name.clone(),
                    waited: crate::error::whole_millis(started.elapsed()),
                    kind: TimeoutKind::Exhausted {
                        max_connections: inner.config.max_connections,
                    },
                })
            }
        }
    }
}

/// One attempt's destination: the URL, its host's cap, and the balancer's
/// guard when a base URL was picked.
struct Attempt {
    url: String,
    limit: Arc<Semaphore>,
    guard: Option<EndpointGuard<Endpoint>>,
}

/// A request's hold on the caps; released (and counted out) on drop.
struct Slot {
    pool: Arc<Inner>,
    _total: OwnedSemaphorePermit,
    _host: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.counters.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sends and reads the whole body.
async fn read(builder: reqwest::RequestBuilder) -> Result<HttpResponse, reqwest::Error> {
    let mut response = builder.send().await?;
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let body = response.bytes().await?;
    Ok(HttpResponse {
        status,
        headers,
        body,
        url: String::new(),
        retries: 0,
    })
}

/// Tells the balancer how the call went: connect errors and 502/503/504
/// count against the endpoint.
fn report(guard: EndpointGuard<Endpoint>, result: &Result<HttpResponse, reqwest::Error>) {
    let failed = match result {
        Ok(r) => matches!(r.status.as_u16(), 502..=504),
        Err(e) => e.is_connect() || e.is_timeout(),
    };
    if failed {
        guard.failure();
    } else {
        guard.success();
    }
}

impl HttpRequest<'_> {
    /// Adds a header; an invalid name or value makes `send` fail with
    /// [`PoolError::InvalidRequest`].
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => {
                self.error
                    .get_or_insert_with(|| format!("invalid header {name:?}: {value:?}"));
            }
        }
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => {
                self.headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                self.body = Some(bytes.into());
            }
            Err(e) => {
                self.error
                    .get_or_insert_with(|| format!("body is not JSON: {e}"));
            }
        }
        self
    }

    /// Sends it: waits for a slot, picks an endpoint, retries as the pool
    /// allows, and reads the response whole.
    pub async fn send(self) -> Result<HttpResponse, PoolError> {
        let pool = self.pool;
        pool.send(self).await
    }
}

impl HttpResponse {
    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("pool", &self.pool.name)
            .finish()
    }
}
