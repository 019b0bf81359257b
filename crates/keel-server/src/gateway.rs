//! The configured routes: SQL queries through a database pool and requests
//! forwarded through an HTTP pool, both cached through the tiered cache.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, RawPathParams, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use keel::cache::{CacheManager, Keep, Loaded, Served, TieredCache};
use keel::concurrency::{
    CircuitBreaker, CircuitBreakerConfig, ConcurrencyLimiter, KeyedRateLimiter, Quota,
};
use keel::pool::{DatabaseConnectionPool, HttpConnectionPool, PoolError};
use keel::{Keel, RouteConfig, RouteKind, Rows};
use serde::{Deserialize, Serialize};

/// An answer as the cache keeps it: shared, so that a hit clones a
/// pointer, and serialized as its [`Answer`] for the Redis tier.
#[derive(Debug, Clone)]
pub(crate) struct Cached(Arc<Answer>);

/// What an answer holds; on the wire to Redis, all but `prepared`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    /// Shared by every hit; on the wire as the byte sequence it was
    /// before it became `Bytes`.
    #[serde(with = "byte_seq")]
    body: Bytes,
    /// When it was produced, milliseconds since the Unix epoch (for `Age`).
    at_ms: u64,
    /// The response parts, built on the first hit and reused by the next.
    #[serde(skip)]
    prepared: OnceLock<Prepared>,
}

#[derive(Debug)]
struct Prepared {
    status: StatusCode,
    headers: HeaderMap,
}

/// `Bytes` (de)serialized as a `Vec<u8>` is.
mod byte_seq {
    use axum::body::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(body: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        body.as_ref().serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Bytes, D::Error> {
        Vec::<u8>::deserialize(deserializer).map(Bytes::from)
    }
}

impl Cached {
    fn new(status: u16, headers: Vec<(String, String)>, body: impl Into<Bytes>) -> Cached {
        Cached(Arc::new(Answer {
            status,
            headers,
            body: body.into(),
            at_ms: now_ms(),
            prepared: OnceLock::new(),
        }))
    }

    /// The status and headers (invalid ones dropped) to answer with.
    fn prepared(&self) -> &Prepared {
        self.0.prepared.get_or_init(|| {
            let answer = &*self.0;
            let mut headers = HeaderMap::with_capacity(answer.headers.len() + 2);
            for (name, value) in &answer.headers {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.append(name, value);
                }
            }
            Prepared {
                status: StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY),
                headers,
            }
        })
    }
}

impl Serialize for Cached {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Cached {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Answer::deserialize(deserializer).map(|answer| Cached(Arc::new(answer)))
    }
}

struct RouteState {
    config: RouteConfig,
    target: Target,
    cache: Option<TieredCache<String, Cached>>,
    limiter: Option<ConcurrencyLimiter>,
    rate: Option<KeyedRateLimiter<IpAddr>>,
}

impl RouteState {
    /// Publishes the route's breaker, concurrency limit and rate limit
    /// (labelled `route <path>`) through the `metrics` facade.
    fn publish_metrics(&self) {
        let name = format!("route {}", self.config.path);
        if let Target::Proxy { breaker, .. } = &self.target {
            breaker.publish_metrics();
        }
        if let Some(limiter) = &self.limiter {
            limiter.publish_metrics(&name);
        }
        if let Some(rate) = &self.rate {
            rate.publish_metrics(&name);
        }
    }
}

enum Target {
    Sql {
        pool: DatabaseConnectionPool,
        sql: String,
        params: Vec<String>,
        rows: Rows,
    },
    Proxy {
        pool: HttpConnectionPool,
        breaker: CircuitBreaker,
        wildcard: Option<String>,
    },
}

/// What a load found that is not an answer: the route's backend failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Pool(#[from] PoolError),
    #[error("upstream circuit is open")]
    Open,
    #[error("{0}")]
    Bad(String),
}

/// The name of route `index`'s cache (for `/admin/caches`).
pub(crate) fn cache_name(index: usize) -> String {
    format!("route-{index}")
}

/// A router serving every `[[routes]]` entry of `keel`'s configuration.
pub(crate) fn router(keel: &Keel) -> anyhow::Result<Router> {
    let mut router = Router::new();
    for (index, config) in keel.config().routes.iter().enumerate() {
        let state = Arc::new(route_state(keel, index, config)?);
        let published = Arc::clone(&state);
        keel.monitoring()
            .add_collector(move || published.publish_metrics());
        let handler = match state.config.kind() {
            Some(RouteKind::Sql) => get(sql_route),
            _ => any(proxy_route),
        };
        if config.warm.is_some() && state.cache.is_some() {
            tokio::spawn(warm(Arc::clone(&state)));
        }
        router = router.route(&config.path, handler.with_state(state));
        tracing::info!(path = %config.path, "route ready");
    }
    Ok(router)
}

fn route_state(keel: &Keel, index: usize, config: &RouteConfig) -> anyhow::Result<RouteState> {
    let at = || format!("routes[{index}] ({})", config.path);
    let target = match config.kind() {
        Some(RouteKind::Sql) => Target::Sql {
            pool: keel
                .pools()
                .db(config.pool.as_deref().unwrap_or_default())
                .with_context(at)?,
            sql: config.sql.clone().unwrap_or_default(),
            params: config.bound_params(),
            rows: config.rows_mode(),
        },
        _ => Target::Proxy {
            pool: keel
                .pools()
                .http(config.upstream.as_deref().unwrap_or_default())
                .with_context(at)?,
            breaker: CircuitBreaker::new(
                &format!("route {}", config.path),
                CircuitBreakerConfig {
                    minimum_calls: 5,
                    window: keel::concurrency::SlidingWindow::Count(20),
                    open_duration: Duration::from_secs(5),
                    ..CircuitBreakerConfig::default()
                },
            )
            .with_context(at)?,
            wildcard: config
                .path
                .split('/')
                .find_map(|s| s.strip_prefix("{*"))
                .and_then(|s| s.strip_suffix('}'))
                .map(str::to_owned),
        },
    };
    let cache = match config.ttl {
        Some(ttl) => Some(route_cache(keel.caches(), index, config, ttl).with_context(at)?),
        None => None,
    };
    let limiter = config
        .max_concurrency
        .map(|n| ConcurrencyLimiter::new(n as usize))
        .transpose()
        .with_context(at)?;
    let rate = match config.rate_limit {
        Some(limit) => {
            let quota = Quota::per_second(limit.per_second)
                .and_then(|q| q.burst(limit.burst.unwrap_or(limit.per_second)))
                .with_context(at)?;
            Some(KeyedRateLimiter::new(quota))
        }
        None => None,
    };
    Ok(RouteState {
        config: config.clone(),
        target,
        cache,
        limiter,
        rate,
    })
}

fn route_cache(
    caches: &CacheManager,
    index: usize,
    config: &RouteConfig,
    ttl: Duration,
) -> Result<TieredCache<String, Cached>, keel::cache::CacheError> {
    let mut settings = caches.config().default_settings();
    settings.ttl = Some(ttl);
    settings.negative_ttl = config.negative_ttl;
    settings.max_stale = config.max_stale;
    settings.refresh_after = None;
    if settings.local_ttl.is_some_and(|l| l > ttl) {
        settings.local_ttl = None;
    }
    caches.cache_with(&cache_name(index), settings)
}

/// Why a request was turned away before reaching the backend.
enum Refused {
    /// Over the client's rate: retry after this many seconds.
    Rate(u64),
    /// Too many requests in flight on the route.
    Busy,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Rate(wait) => {
                let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(wait));
                response
            }
            Refused::Busy => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests in flight on this route",
            ),
        }
    }
}

/// Refuses a request over the route's rate or concurrency limit.
fn admit(
    state: &RouteState,
    client: IpAddr,
) -> Result<Option<keel::concurrency::ConcurrencyPermit>, Refused> {
    if let Some(rate) = &state.rate
        && let Err(limited) = rate.check_key(&client)
    {
        let wait = limited.wait_time().as_secs_f64().ceil().max(1.0) as u64;
        return Err(Refused::Rate(wait));
    }
    match &state.limiter {
        Some(limiter) => match limiter.try_acquire() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => Err(Refused::Busy),
        },
        None => Ok(None),
    }
}

async fn sql_route(
    State(state): State<Arc<RouteState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: RawPathParams,
    Query(query): Query<HashMap<String, String>>,
    uri: Uri,
) -> Response {
    let _permit = match admit(&state, peer.ip()) {
        Ok(permit) => permit,
        Err(refused) => return refused.into_response(),
    };
    let path: HashMap<&str, &str> = path.iter().collect();
    let Target::Sql { params, .. } = &state.target else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "not a SQL route");
    };
    let mut bound = Vec::with_capacity(params.len());
    for name in params {
        match path
            .get(name.as_str())
            .copied()
            .or_else(|| query.get(name).map(String::as_str))
        {
            Some(value) => bound.push(serde_json::Value::String(value.to_owned())),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("missing parameter {name:?}"),
                );
            }
        }
    }
    let key = cache_key(&uri);
    let run = {
        let state = Arc::clone(&state);
        move || async move { run_sql(&state, &bound).await }
    };
    answer(&state, key, &Method::GET, run).await
}

async fn run_sql(
    state: &RouteState,
    bound: &[serde_json::Value],
) -> Result<Loaded<Cached>, Failure> {
    let Target::Sql {
        pool, sql, rows, ..
    } = &state.target
    else {
        return Err(Failure::Bad("not a SQL route".into()));
    };
    let (status, body) = match rows {
        Rows::One => match pool.fetch_optional(sql, bound).await? {
            Some(row) => (StatusCode::OK, serde_json::to_vec(&row)),
            None => (
                StatusCode::NOT_FOUND,
                serde_json::to_vec(&serde_json::json!({"error": "not found"})),
            ),
        },
        Rows::All => (
            StatusCode::OK,
            serde_json::to_vec(&pool.fetch_all(sql, bound).await?),
        ),
    };
    let body = body.map_err(|e| Failure::Bad(e.to_string()))?;
    let keep = if status.is_success() {
        Keep::Default
    } else {
        match state.config.negative_ttl {
            Some(ttl) => Keep::For(ttl),
            None => Keep::Never,
        }
    };
    let cached = Cached::new(
        status.as_u16(),
        vec![("content-type".into(), "application/json".into())],
        body,
    );
    Ok(Loaded::keep(Some(cached), keep))
}

async fn proxy_route(
    State(state): State<Arc<RouteState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: RawPathParams,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _permit = match admit(&state, peer.ip()) {
        Ok(permit) => permit,
        Err(refused) => return refused.into_response(),
    };
    let Target::Proxy { wildcard, .. } = &state.target else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "not a proxy route");
    };
    let rest = wildcard
        .as_deref()
        .and_then(|w| path.iter().find(|(name, _)| *name == w).map(|(_, v)| v));
    let mut target = match rest {
        Some(rest) => format!("/{}", rest.trim_start_matches('/')),
        None => uri.path().to_owned(),
    };
    if let Some(query) = uri.query() {
        target.push('?');
        target.push_str(query);
    }
    let cacheable = method == Method::GET;
    let run = {
        let state = Arc::clone(&state);
        let method = method.clone();
        // The headers to forward are read only on a miss: a hit needs none.
        move || async move {
            let forward: Vec<(String, String)> = headers
                .iter()
                .filter(|(name, _)| !hop_by_hop(name) && *name != header::HOST)
                .filter_map(|(name, value)| {
                    Some((name.to_string(), value.to_str().ok()?.to_owned()))
                })
                .collect();
            forward_request(&state, method, target, forward, body).await
        }
    };
    if !cacheable || state.cache.is_none() {
        return match run().await {
            Ok(loaded) => render(loaded.value, "BYPASS", &method),
            Err(failure) => failed(&failure),
        };
    }
    answer(&state, cache_key(&uri), &method, run).await
}

async fn forward_request(
    state: &RouteState,
    method: Method,
    target: String,
    headers: Vec<(String, String)>,
    body: Bytes,
) -> Result<Loaded<Cached>, Failure> {
    let Target::Proxy { pool, breaker, .. } = &state.target else {
        return Err(Failure::Bad("not a proxy route".into()));
    };
    let permit = breaker.try_acquire().map_err(|_| Failure::Open)?;
    let mut request = pool.request(method, target);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    if !body.is_empty() {
        request = request.body(body);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            permit.failure();
            return Err(e.into());
        }
    };
    if response.status.is_server_error() {
        permit.failure();
    } else {
        permit.success();
    }
    let keep = keep_for(
        response.status,
        &response.headers,
        state.config.negative_ttl,
    );
    let cached = Cached::new(
        response.status.as_u16(),
        response
            .headers
            .iter()
            .filter(|(name, _)| !hop_by_hop(name) && *name != header::CONTENT_LENGTH)
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect(),
        response.body,
    );
    Ok(Loaded::keep(Some(cached), keep))
}

/// Loads the route's `warm` paths (and the paths its `warm.sql` rows
/// name) into its cache; progress goes to the log.
async fn warm(state: Arc<RouteState>) {
    let (Some(warm), Some(cache)) = (state.config.warm.clone(), state.cache.clone()) else {
        return;
    };
    let mut paths = warm.paths.clone();
    if let (Some(sql), Target::Sql { pool, .. }) = (&warm.sql, &state.target) {
        match pool.fetch_all(sql, &[]).await {
            Ok(rows) => {
                for row in rows {
                    let values: HashMap<String, String> = row
                        .iter()
                        .map(|(name, value)| {
                            let text = match value {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            (name.clone(), text)
                        })
                        .collect();
                    match state.config.fill_path(&values) {
                        Some(path) => paths.push(path),
                        None => tracing::warn!(
                            route = %state.config.path,
                            "a warm.sql row does not name every path parameter"
                        ),
                    }
                }
            }
            Err(error) => {
                tracing::warn!(route = %state.config.path, %error, "warm.sql failed; warming the listed paths only");
            }
        }
    }
    let concurrency = warm.concurrency.unwrap_or(8);
    let loader = |key: String| {
        let state = Arc::clone(&state);
        async move {
            let loaded = load_path(&state, &key).await?;
            // Only answers the route would keep: a 404 or a `no-store` is
            // not warmed.
            Ok::<_, Failure>(loaded.value.filter(|c| {
                loaded.keep != Keep::Never
                    && StatusCode::from_u16(c.0.status).is_ok_and(|s| s.is_success())
            }))
        }
    };
    let summary = cache.warm(paths, loader, concurrency).await;
    tracing::info!(
        route = %state.config.path,
        loaded = summary.loaded,
        skipped = summary.absent,
        failed = summary.failed,
        "route cache warmed"
    );
}

/// What a GET of `path` on this route answers (for warming).
async fn load_path(state: &RouteState, path: &str) -> Result<Loaded<Cached>, Failure> {
    let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
    let values = match_path(&state.config.path, path_only)
        .ok_or_else(|| Failure::Bad(format!("{path:?} does not match the route")))?;
    match &state.target {
        Target::Sql { params, .. } => {
            let query: HashMap<String, String> = query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let mut bound = Vec::with_capacity(params.len());
            for name in params {
                let value = values
                    .get(name)
                    .or_else(|| query.get(name))
                    .ok_or_else(|| Failure::Bad(format!("{path:?} has no parameter {name:?}")))?;
                bound.push(serde_json::Value::String(value.clone()));
            }
            run_sql(state, &bound).await
        }
        Target::Proxy { wildcard, .. } => {
            let mut target = match wildcard.as_ref().and_then(|w| values.get(w)) {
                Some(rest) => format!("/{}", rest.trim_start_matches('/')),
                None => path_only.to_owned(),
            };
            if !query.is_empty() {
                target.push('?');
                target.push_str(query);
            }
            forward_request(state, Method::GET, target, Vec::new(), Bytes::new()).await
        }
    }
}

/// The parameters of `path` under the route pattern `pattern` (`{name}`
/// matches one segment, `{*name}` the rest); `None` when it does not match.
fn match_path(pattern: &str, path: &str) -> Option<HashMap<String, String>> {
    let mut values = HashMap::new();
    let mut segments = path.trim_start_matches('/').split('/');
    for part in pattern.trim_start_matches('/').split('/') {
        if let Some(name) = part.strip_prefix("{*").and_then(|p| p.strip_suffix('}')) {
            let rest: Vec<&str> = segments.by_ref().collect();
            values.insert(name.to_owned(), rest.join("/"));
            return Some(values);
        }
        let segment = segments.next()?;
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => {
                values.insert(name.to_owned(), segment.to_owned());
            }
            None if part == segment => {}
            None => return None,
        }
    }
    segments.next().is_none().then_some(values)
}

/// How long an upstream's answer may be kept: 2xx for the route's `ttl`
/// (shortened by `max-age`), others for `negative_ttl`; never with
/// `no-store` or `private`.
fn keep_for(status: StatusCode, headers: &HeaderMap, negative_ttl: Option<Duration>) -> Keep {
    let control = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .collect::<Vec<_>>();
    if control
        .iter()
        .any(|d| d == "no-store" || d == "private" || d == "no-cache")
    {
        return Keep::Never;
    }
    let max_age = control.iter().find_map(|d| {
        d.strip_prefix("max-age=")
            .and_then(|n| n.trim_matches('"').parse::<u64>().ok())
    });
    if !status.is_success() {
        return match negative_ttl {
            Some(ttl) => Keep::For(max_age.map_or(ttl, |a| ttl.min(Duration::from_secs(a)))),
            None => Keep::Never,
        };
    }
    match max_age {
        Some(0) => Keep::Never,
        Some(age) => Keep::ForAtMost(Duration::from_secs(age)),
        None => Keep::Default,
    }
}

/// Serves a cacheable request: from the route's cache, or by `run`.
async fn answer<F, Fut>(state: &RouteState, key: String, method: &Method, run: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Loaded<Cached>, Failure>> + Send + 'static,
{
    let Some(cache) = &state.cache else {
        return match run().await {
            Ok(loaded) => render(loaded.value, "BYPASS", method),
            Err(failure) => failed(&failure),
        };
    };
    match cache.try_get_or_load_with(key, run).await {
        Ok(lookup) => {
            let tag = match lookup.served {
                Served::Cached => "HIT",
                Served::Loaded => "MISS",
                Served::Stale => "STALE",
            };
            render(lookup.value, tag, method)
        }
        Err(keel::cache::LoadError::Loader(failure)) => failed(&failure),
        Err(other) => error(StatusCode::INTERNAL_SERVER_ERROR, &other.to_string()),
    }
}

fn render(cached: Option<Cached>, tag: &'static str, method: &Method) -> Response {
    let Some(cached) = cached else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let prepared = cached.prepared();
    let mut headers = prepared.headers.clone();
    headers.insert("x-cache", HeaderValue::from_static(tag));
    let age = now_ms().saturating_sub(cached.0.at_ms) / 1000;
    headers.insert(header::AGE, HeaderValue::from(age));
    let body = if *method == Method::HEAD {
        Bytes::new()
    } else {
        cached.0.body.clone()
    };
    (prepared.status, headers, body).into_response()
}

fn failed(failure: &Failure) -> Response {
    match failure {
        Failure::Open => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream is failing; its circuit is open",
        ),
        Failure::Pool(e) if e.is_timeout() => error(StatusCode::GATEWAY_TIMEOUT, &e.to_string()),
        Failure::Pool(e) => error(StatusCode::BAD_GATEWAY, &e.to_string()),
        Failure::Bad(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// The cache key of a request: its path and query.
fn cache_key(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_answer_keeps_its_wire_form() {
        // The form answers had in Redis before the body became `Bytes`.
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Before {
            status: u16,
            headers: Vec<(String, String)>,
            body: Vec<u8>,
            at_ms: u64,
        }
        let cached = Cached::new(200, vec![("a".into(), "b".into())], b"body".to_vec());
        let wire = serde_json::to_vec(&cached).unwrap();
        let before: Before = serde_json::from_slice(&wire).unwrap();
        assert_eq!(before.body, b"body");
        let back: Cached = serde_json::from_slice(&serde_json::to_vec(&before).unwrap()).unwrap();
        assert_eq!(back.0.body, Bytes::from_static(b"body"));
        assert_eq!(back.0.headers, before.headers);
    }

    fn control(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn request_paths_match_route_patterns() {
        let m = match_path("/api/stocks/{symbol}", "/api/stocks/AAPL").unwrap();
        assert_eq!(m["symbol"], "AAPL");
        assert!(match_path("/api/stocks/{symbol}", "/api/stocks").is_none());
        assert!(match_path("/api/stocks/{symbol}", "/api/stocks/A/B").is_none());
        assert!(match_path("/api/stocks", "/api/bonds").is_none());
        let m = match_path("/proxy/{*rest}", "/proxy/a/b/c").unwrap();
        assert_eq!(m["rest"], "a/b/c");
    }

    #[test]
    fn cache_control_decides_how_long_an_answer_is_kept() {
        let ok = StatusCode::OK;
        assert_eq!(keep_for(ok, &HeaderMap::new(), None), Keep::Default);
        assert_eq!(keep_for(ok, &control("no-store"), None), Keep::Never);
        assert_eq!(keep_for(ok, &control("public, private"), None), Keep::Never);
        assert_eq!(
            keep_for(ok, &control("public, max-age=5"), None),
            Keep::ForAtMost(Duration::from_secs(5))
        );
        assert_eq!(keep_for(ok, &control("max-age=0"), None), Keep::Never);
        let bad = StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(keep_for(bad, &HeaderMap::new(), None), Keep::Never);
        assert_eq!(
            keep_for(bad, &HeaderMap::new(), Some(Duration::from_secs(3))),
            Keep::For(Duration::from_secs(3))
        );
    }
}
