//! `[[routes]]`: the gateway's SQL and HTTP routes.

use std::time::Duration;

use serde::Deserialize;

use super::de;

/// One `[[routes]]` entry: a path answered by a fixed, parameterised,
/// read-only SQL query through a database pool, or forwarded to an
/// upstream through an HTTP pool; either way cached through the tiered
/// cache when it has a `ttl`.
///
/// ```toml
/// [[routes]]
/// path = "/api/stocks/{symbol}"
/// pool = "main"                      # a [pools.db.<name>]
/// sql = "SELECT * FROM stocks WHERE symbol = ?"
/// ttl = "30s"                        # cached; leave out to run every time
///
/// [[routes]]
/// path = "/proxy/{*rest}"
/// upstream = "backend"               # a [pools.http.<name>]
/// ttl = "10s"
/// max_concurrency = 100              # requests in flight on this route
/// rate_limit = { per_second = 50, burst = 100 }   # per client address
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteConfig {
    /// The path, with `{name}` parameters and an optional final `{*rest}`.
    pub path: String,
    /// SQL routes: the database pool.
    pub pool: Option<String>,
    /// SQL routes: the query, with `?` (or `$1`, ... on PostgreSQL) for
    /// parameters; read-only (`SELECT` or `WITH`), one statement.
    pub sql: Option<String>,
    /// SQL routes: the path or query parameters bound to the query's
    /// placeholders, in order. Default: the path's parameters in order.
    pub params: Option<Vec<String>>,
    /// SQL routes: `one` (the first row as an object, 404 when there is
    /// none) or `all` (an array). Default `one` when the path has a
    /// parameter, `all` otherwise.
    pub rows: Option<Rows>,
    /// HTTP routes: the HTTP pool requests are forwarded through.
    pub upstream: Option<String>,
    /// How long an answer stays cached (`None`: not cached). An upstream's
    /// `Cache-Control: max-age` shortens it, `no-store` and `private` turn
    /// it off.
    #[serde(deserialize_with = "optional_duration")]
    pub ttl: Option<Duration>,
    /// How long an answer that is not a success (a 404, an upstream's 5xx)
    /// stays cached (`None`: such answers are not cached).
    #[serde(deserialize_with = "optional_duration")]
    pub negative_ttl: Option<Duration>,
    /// How long past its `ttl` an answer may still be served when the
    /// database or upstream fails (`None`: never).
    #[serde(deserialize_with = "optional_duration")]
    pub max_stale: Option<Duration>,
    /// Requests in flight on this route at most; more get 503.
    pub max_concurrency: Option<u32>,
    /// Requests per client address; more get 429 with `Retry-After`.
    pub rate_limit: Option<RouteRateLimit>,
    /// Answers to load into the cache at start (needs `ttl`).
    pub warm: Option<RouteWarm>,
}

/// `warm` of a route: which answers to cache at start, in the background,
/// with progress in the log.
///
/// ```toml
/// warm = { paths = ["/api/stocks/AAPL", "/api/stocks/MSFT"] }
/// warm = { sql = "SELECT symbol FROM stocks ORDER BY volume DESC LIMIT 100" }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteWarm {
    /// Request paths to load.
    pub paths: Vec<String>,
    /// SQL routes: a read-only query on the route's pool whose rows name
    /// the path's parameters (a column per parameter, by name).
    pub sql: Option<String>,
    /// Loads at once. Default 8.
    pub concurrency: Option<usize>,
}

/// `rows` of a SQL route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rows {
    /// The first row as a JSON object; 404 when there is none.
    One,
    /// Every row, as a JSON array.
    All,
}

/// `rate_limit` of a route: a token bucket per client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed at once above the sustained rate. Default: `per_second`.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// A SQL query through a database pool.
    Sql,
    /// A request forwarded through an HTTP pool.
    Proxy,
}

impl RouteConfig {
    /// Whether this is a SQL or an HTTP route (`None` while invalid).
    pub fn kind(&self) -> Option<RouteKind> {
        match (&self.pool, &self.sql, &self.upstream) {
            (Some(_), Some(_), None) => Some(RouteKind::Sql),
            (None, None, Some(_)) => Some(RouteKind::Proxy),
            _ => None,
        }
    }

    /// The names of the path's parameters, in order (`{*rest}` included
    /// as `rest`).
    pub fn path_params(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = self.path.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            let name = &rest[open + 1..open + close];
            names.push(name.trim_start_matches('*').to_owned());
            rest = &rest[open + close + 1..];
        }
        names
    }

    /// The request path with `values` in place of the path's parameters
    /// (`None` when one is missing).
    pub fn fill_path(&self, values: &std::collections::HashMap<String, String>) -> Option<String> {
        let mut out = String::with_capacity(self.path.len());
        let mut rest = self.path.as_str();
        while let Some(open) = rest.find('{') {
            let close = open + rest[open..].find('}')?;
            out.push_str(&rest[..open]);
            let name = rest[open + 1..close].trim_start_matches('*');
            out.push_str(values.get(name)?);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// The parameters bound to the query, in order.
    pub fn bound_params(&self) -> Vec<String> {
        self.params.clone().unwrap_or_else(|| self.path_params())
    }

    /// `rows`, or its default.
    pub fn rows_mode(&self) -> Rows {
        self.rows.unwrap_or(if self.path_params().is_empty() {
            Rows::All
        } else {
            Rows::One
        })
    }

    /// Every problem of route `index`, as `(field path, reason)`;
    /// `db_pools` and `http_pools` are the configured pool names.
    pub fn problems(
        &self,
        index: usize,
        db_pools: &[String],
        http_pools: &[String],
    ) -> Vec<(String, String)> {
        let at = |field: &str| format!("routes[{index}].{field}");
        let mut out = Vec::new();
        if !self.path.starts_with('/') {
            out.push((at("path"), format!("{:?} must start with '/'", self.path)));
        }
        if self.path.matches('{').count() != self.path.matches('}').count() {
            out.push((at("path"), "has an unclosed '{' parameter".into()));
        }
        match self.kind() {
            None => out.push((
                at("upstream"),
                "a route needs either `pool` and `sql` (a SQL route) or `upstream` (an HTTP route), not both".into(),
            )),
            Some(RouteKind::Sql) => {
                if let Some(pool) = &self.pool
                    && !db_pools.contains(pool)
                {
                    out.push((
                        at("pool"),
                        format!("no database pool {pool:?} in [pools.db] (configured: {})", list(db_pools)),
                    ));
                }
                if let Some(sql) = &self.sql
                    && let Err(reason) = read_only(sql)
                {
                    out.push((at("sql"), reason));
                }
                for name in self.bound_params() {
                    if name.is_empty() {
                        out.push((at("params"), "parameter names must not be empty".into()));
                    }
                }
            }
            Some(RouteKind::Proxy) => {
                if let Some(upstream) = &self.upstream
                    && !http_pools.contains(upstream)
                {
                    out.push((
                        at("upstream"),
                        format!("no HTTP pool {upstream:?} in [pools.http] (configured: {})", list(http_pools)),
                    ));
                }
                if self.params.is_some() || self.rows.is_some() {
                    out.push((at("params"), "`params` and `rows` are for SQL routes".into()));
                }
            }
        }
        for (field, value) in [("ttl", self.ttl), ("negative_ttl", self.negative_ttl)] {
            if value == Some(Duration::ZERO) {
                out.push((
                    at(field),
                    "must be longer than 0s (leave it out to not cache)".into(),
                ));
            }
        }
        if let Some(warm) = &self.warm {
            if self.ttl.is_none() {
                out.push((
                    at("warm"),
                    "needs `ttl`: an uncached route keeps nothing".into(),
                ));
            }
            if let Some(path) = warm.paths.iter().find(|p| !p.starts_with('/')) {
                out.push((at("warm.paths"), format!("{path:?} must start with '/'")));
            }
            if let Some(sql) = &warm.sql {
                if self.kind() != Some(RouteKind::Sql) {
                    out.push((at("warm.sql"), "is for SQL routes; use `paths`".into()));
                } else if let Err(reason) = read_only(sql) {
                    out.push((at("warm.sql"), reason));
                }
            }
            if warm.concurrency == Some(0) {
                out.push((at("warm.concurrency"), "must be at least 1".into()));
            }
        }
        if self.max_concurrency == Some(0) {
            out.push((at("max_concurrency"), "must be at least 1".into()));
        }
        if let Some(limit) = self.rate_limit
            && (limit.per_second == 0 || limit.burst == Some(0))
        {
            out.push((
                at("rate_limit"),
                "per_second and burst must be at least 1".into(),
            ));
        }
        out
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Accepts one `SELECT` or `WITH` statement (a trailing `;` allowed).
fn read_only(sql: &str) -> Result<(), String> {
    let body = sql.trim().trim_end_matches(';').trim();
    let first = body
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if first != "select" && first != "with" {
        return Err("must be a read-only query starting with SELECT or WITH".into());
    }
    if body.contains(';') {
        return Err("must be one statement (no ';' inside)".into());
    }
    Ok(())
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de::duration(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_found_in_order() {
        let route = RouteConfig {
            path: "/api/{market}/stocks/{symbol}/{*rest}".into(),
            ..RouteConfig::default()
        };
        assert_eq!(route.path_params(), ["market", "symbol", "rest"]);
        assert_eq!(route.rows_mode(), Rows::One);
    }

    #[test]
    fn only_one_read_only_statement_is_accepted() {
        assert!(read_only("SELECT * FROM t WHERE a = ?;").is_ok());
        assert!(read_only("  with x as (select 1) select * from x").is_ok());
        assert!(read_only("DELETE FROM t").is_err());
        assert!(read_only("SELECT 1; DROP TABLE t").is_err());
    }
}
