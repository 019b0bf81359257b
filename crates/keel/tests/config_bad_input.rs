//! Bad config input never panics: any text given as the TOML file, any
//! document with Keel's real sections and field names but values of any
//! type, and any `KEEL_A__B=value` environment (names and values not valid
//! UTF-8 included) loads as a config or as a `ConfigError`. When the error
//! is a list of bad fields, each one names where the problem is: a path
//! under one of Keel's sections, or the key or override the user wrote.
#![cfg(all(
    feature = "cache",
    feature = "concurrency",
    feature = "log",
    feature = "monitor",
    feature = "pool",
    feature = "websocket"
))]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use keel::{ConfigError, KeelConfig};
use proptest::prelude::*;
use toml::{Table, Value};

/// The sections of a Keel config file.
const SECTIONS: &[&str] = &[
    "server",
    "cache",
    "logging",
    "monitoring",
    "thread_pool",
    "task_queue",
    "pools",
    "websocket",
    "routes",
];

/// The shape of a part of the config: what the generator fills in.
#[derive(Debug, Clone, Copy)]
enum Node {
    /// A field that takes one value (which may itself be an array).
    Field,
    /// A table with these fields.
    Table(&'static [(&'static str, Node)]),
    /// A table of entries named by the user (`cache.caches`, `pools.db`).
    Named(&'static Node),
    /// An array of tables (`[[routes]]`, `[[monitoring.alerts]]`).
    List(&'static Node),
}

use Node::Field;

const SERVER: Node = Node::Table(&[
    ("listen", Field),
    ("admin_token", Field),
    ("shutdown_timeout", Field),
    ("access_log", Field),
    ("slow_request", Field),
]);
const LOCK: Node = Node::Table(&[("ttl", Field), ("wait", Field)]);
const BLOOM: Node = Node::Table(&[("expected_items", Field), ("false_positive_rate", Field)]);
const REDIS: Node = Node::Table(&[
    ("url", Field),
    ("pool_size", Field),
    ("key_prefix", Field),
    ("command_timeout", Field),
    ("connect_timeout", Field),
    ("failure_threshold", Field),
    ("probe_interval", Field),
    ("max_pending_keys", Field),
]);
/// The options `[cache]` and every `[cache.caches.<name>]` take (one type,
/// `CacheOptions`).
const CACHE_OPTIONS: [(&str, Node); 15] = [
    ("policy", Field),
    ("capacity", Field),
    ("ttl", Field),
    ("local_ttl", Field),
    ("tti", Field),
    ("ttl_jitter", Field),
    ("negative_ttl", Field),
    ("refresh_after", Field),
    ("max_stale", Field),
    ("sweep_interval", Field),
    ("tiered", Field),
    ("lock", LOCK),
    ("bloom", BLOOM),
    ("schema", Field),
    ("schema_version", Field),
];
const NAMED_CACHE: Node = Node::Table(&CACHE_OPTIONS);
/// `[cache]`: the options, then the Redis tier and the named caches.
const CACHE: Node = Node::Table(&{
    let mut fields = [("", Field); CACHE_OPTIONS.len() + 2];
    let mut i = 0;
    while i < CACHE_OPTIONS.len() {
        fields[i] = CACHE_OPTIONS[i];
        i += 1;
    }
    fields[i] = ("redis", REDIS);
    fields[i + 1] = ("caches", Node::Named(&NAMED_CACHE));
    fields
});
const LOGGING: Node = Node::Table(&[
    ("level", Field),
    ("format", Field),
    ("directory", Field),
    ("file_name", Field),
    ("rotation", Node::Table(&[("size", Field), ("time", Field)])),
    (
        "retention",
        Node::Table(&[("files", Field), ("total_size", Field)]),
    ),
    ("compression", Field),
    ("queue_size", Field),
    ("overflow", Field),
    ("flush_interval", Field),
    ("retry_interval", Field),
    (
        "routes",
        Node::Table(&[
            ("system", Field),
            ("business", Field),
            ("security", Field),
            ("performance", Field),
        ]),
    ),
    ("timestamp_offset", Field),
]);
const ALERT: Node = Node::Table(&[
    ("name", Field),
    ("metric", Field),
    ("labels", Node::Named(&Field)),
    ("quantile", Field),
    ("above", Field),
    ("below", Field),
    ("for", Field),
    ("severity", Field),
]);
const MONITORING: Node = Node::Table(&[
    ("enabled", Field),
    ("sample_rate", Field),
    ("report_interval", Field),
    ("max_series", Field),
    ("series_idle_timeout", Field),
    ("max_operations", Field),
    ("max_error_types", Field),
    ("recent_errors", Field),
    ("health_timeout", Field),
    ("health_cache", Field),
    ("alert_interval", Field),
    ("alerts", Node::List(&ALERT)),
    ("alert_webhook", Field),
]);
const THREAD_POOL: Node = Node::Table(&[
    ("min_workers", Field),
    ("max_workers", Field),
    ("queue_size", Field),
    ("keep_alive", Field),
]);
const TASK_QUEUE: Node = Node::Table(&[
    ("max_size", Field),
    ("batch_size", Field),
    ("retry_limit", Field),
    ("task_timeout", Field),
    ("backoff_base", Field),
    ("backoff_max", Field),
]);
const DB_POOL: Node = Node::Table(&[
    ("url", Field),
    ("max_connections", Field),
    ("min_connections", Field),
    ("connection_timeout", Field),
    ("idle_timeout", Field),
    ("max_lifetime", Field),
    ("max_retries", Field),
    ("health_check_interval", Field),
    ("leak_threshold", Field),
]);
const HTTP_POOL: Node = Node::Table(&[
    ("base_urls", Field),
    ("max_connections", Field),
    ("max_connections_per_host", Field),
    ("connection_timeout", Field),
    ("idle_timeout", Field),
    ("max_retries", Field),
    ("health_check_interval", Field),
    ("connect_timeout", Field),
    ("request_timeout", Field),
    ("retry_budget", Field),
    (
        "balance",
        Node::Table(&[
            ("strategy", Field),
            ("eject_after_failures", Field),
            ("ejection_cooldown", Field),
        ]),
    ),
]);
const POOLS: Node = Node::Table(&[
    ("db", Node::Named(&DB_POOL)),
    ("http", Node::Named(&HTTP_POOL)),
]);
const WEBSOCKET: Node = Node::Table(&[
    ("path", Field),
    ("ping_interval", Field),
    ("pong_timeout", Field),
    ("queue_size", Field),
    ("slow_client", Field),
    ("max_message_size", Field),
    ("max_connections", Field),
    ("max_connections_per_ip", Field),
    ("max_topics_per_client", Field),
    ("malformed", Field),
    ("allowed_origins", Field),
    (
        "auth",
        Node::Table(&[("tokens", Field), ("header", Field), ("query", Field)]),
    ),
    (
        "redis",
        Node::Table(&[
            ("url", Field),
            ("channel_prefix", Field),
            ("publish_queue", Field),
        ]),
    ),
]);
const ROUTE: Node = Node::Table(&[
    ("path", Field),
    ("pool", Field),
    ("sql", Field),
    ("params", Field),
    ("rows", Field),
    ("upstream", Field),
    ("ttl", Field),
    ("negative_ttl", Field),
    ("max_stale", Field),
    ("max_concurrency", Field),
    (
        "rate_limit",
        Node::Table(&[("per_second", Field), ("burst", Field)]),
    ),
    (
        "warm",
        Node::Table(&[("paths", Field), ("sql", Field), ("concurrency", Field)]),
    ),
]);
const ROOT: Node = Node::Table(&[
    ("server", SERVER),
    ("cache", CACHE),
    ("logging", LOGGING),
    ("monitoring", MONITORING),
    ("thread_pool", THREAD_POOL),
    ("task_queue", TASK_QUEUE),
    ("pools", POOLS),
    ("websocket", WEBSOCKET),
    ("routes", Node::List(&ROUTE)),
]);

/// Text a user might put in a field: values each field accepts, values
/// near their limits, and values no field accepts.
const WORDS: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "127.0.0.1:8080",
    "[::1]:0",
    "0.0.0.0:65536",
    "localhost",
    "300ms",
    "5s",
    "1h 30m",
    "0s",
    "18446744073709551615s",
    "99999999999999999999999999h",
    "5 parsecs",
    "1e9s",
    "lru",
    "LFU",
    "s3_fifo",
    "ttl",
    "info",
    "warn,my_app=debug",
    "trace,[span{field=\"x\"}]=debug",
    "[{",
    "json",
    "pretty",
    "block",
    "shed",
    "never",
    "hourly",
    "daily",
    "100MB",
    "512KiB",
    "18446744073709551615GB",
    "Z",
    "+05:30",
    "-23:59",
    "+24:00",
    "+é:00",
    "drop_oldest",
    "disconnect",
    "close",
    "round_robin",
    "power_of_two_choices",
    "one",
    "all",
    "redis://127.0.0.1:6379",
    "sqlite::memory:",
    "postgres://app@db/app",
    "http://127.0.0.1:9000",
    "ftp://x",
    "/api/{symbol}",
    "/{*rest}",
    "/{",
    "}{",
    "SELECT 1",
    "select * from t; drop table t",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "é",
    "\u{0}",
    "\u{10FFFF}",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(WORDS).prop_map(str::to_owned),
        2 => ".{0,24}",
        1 => "[0-9]{1,24}(ns|us|ms|s|m|h|d|w|M|y|B|KB|MiB|GB|x)?",
        1 => "[ -~]{0,12}",
    ]
}

fn integer() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => any::<i64>(),
        2 => -3i64..1_100,
        1 => proptest::sample::select(&[
            i64::MIN,
            i64::MAX,
            4_294_967_295,
            4_294_967_296,
            65_536,
            -2_147_483_649,
        ][..]),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        2 => any::<f64>(),
        2 => -1.0f64..2.0,
        1 => proptest::sample::select(&[
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            1e-300,
        ][..]),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => text().prop_map(Value::String),
        3 => integer().prop_map(Value::Integer),
        2 => float().prop_map(Value::Float),
        2 => any::<bool>().prop_map(Value::Boolean),
        1 => proptest::sample::select(&["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00"][..])
            .prop_map(|d| Value::Datetime(d.parse().expect("a TOML datetime"))),
    ]
}

/// Any TOML value: scalars, arrays and tables, nested a few levels.
fn any_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
}

/// A name a user gives a cache, pool or label.
fn entry_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(&["users", "main", "default", "api"][..])
            .prop_map(str::to_owned),
        1 => ".{0,10}",
    ]
}

/// A value for `node`: mostly of its shape, sometimes anything at all.
fn value_for(node: Node) -> BoxedStrategy<Value> {
    match node {
        Node::Field => prop_oneof![
            6 => scalar(),
            1 => any_value(),
            1 => proptest::collection::vec(scalar(), 0..4).prop_map(Value::Array),
        ]
        .boxed(),
        Node::Table(fields) => prop_oneof![
            12 => table_of(fields).prop_map(Value::Table),
            1 => any_value(),
        ]
        .boxed(),
        Node::Named(inner) => prop_oneof![
            12 => proptest::collection::btree_map(entry_name(), value_for(*inner), 0..3)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
            1 => any_value(),
        ]
        .boxed(),
        Node::List(inner) => prop_oneof![
            12 => proptest::collection::vec(value_for(*inner), 0..3).prop_map(Value::Array),
            1 => any_value(),
        ]
        .boxed(),
    }
}

/// A table with some of `fields`, now and then a misspelled or unknown key.
fn table_of(fields: &'static [(&'static str, Node)]) -> impl Strategy<Value = Table> {
    let known: Vec<_> = fields
        .iter()
        .map(|&(name, node)| {
            proptest::option::weighted(0.3, value_for(node).prop_map(move |v| (name.to_owned(), v)))
        })
        .collect();
    let stray = proptest::option::weighted(
        0.1,
        (
            prop_oneof![
                proptest::sample::select(fields).prop_map(|(name, _)| format!("{name}x")),
                "[a-z_]{1,10}",
                ".{0,8}",
            ],
            any_value(),
        ),
    );
    (known, stray).prop_map(|(known, stray)| known.into_iter().flatten().chain(stray).collect())
}

/// Every path a `KEEL_A__B` override could name, tables included, with
/// entries of named tables called `main`.
fn override_paths(node: Node, prefix: &str, out: &mut Vec<String>) {
    match node {
        Node::Field | Node::List(_) => {}
        Node::Table(fields) => {
            for (name, child) in fields {
                let path = if prefix.is_empty() {
                    (*name).to_owned()
                } else {
                    format!("{prefix}.{name}")
                };
                out.push(path.clone());
                override_paths(*child, &path, out);
            }
        }
        Node::Named(child) => {
            let path = format!("{prefix}.main");
            out.push(path.clone());
            override_paths(*child, &path, out);
        }
    }
}

fn known_overrides() -> Vec<String> {
    let mut out = Vec::new();
    override_paths(ROOT, "", &mut out);
    out
}

/// The variable that overrides `path` (`cache.ttl`: `KEEL_CACHE__TTL`).
fn var_for(path: &str) -> String {
    format!("KEEL_{}", path.to_ascii_uppercase().replace('.', "__"))
}

/// An environment variable's name: mostly overrides of real fields, and
/// names that are malformed, unknown, not overrides, or not UTF-8.
fn env_name() -> impl Strategy<Value = OsString> {
    prop_oneof![
        6 => proptest::sample::select(known_overrides()).prop_map(|p| OsString::from(var_for(&p))),
        2 => proptest::collection::vec("[A-Za-z0-9_.é]{0,8}", 1..5)
            .prop_map(|segments| OsString::from(format!("KEEL_{}", segments.join("__")))),
        1 => "KEEL_?_{0,4}".prop_map(OsString::from),
        1 => "[A-Z_]{0,12}".prop_map(OsString::from),
        // Nested far deeper than any real path.
        1 => (1usize..3_000).prop_map(|n| OsString::from(format!("KEEL_CACHE{}", "__A".repeat(n)))),
        1 => proptest::collection::vec(any::<u8>(), 0..12).prop_map(|bytes| {
            let mut name = b"KEEL_SERVER__".to_vec();
            name.extend(bytes);
            OsString::from_vec(name)
        }),
    ]
}

/// An environment variable's value: TOML scalars as text, text of any
/// kind, TOML-looking fragments, and bytes that are not UTF-8.
fn env_value() -> impl Strategy<Value = OsString> {
    prop_oneof![
        3 => scalar().prop_map(|v| OsString::from(v.to_string())),
        3 => text().prop_map(OsString::from),
        2 => proptest::sample::select(&[
            "[",
            "[1, \"a\"]",
            "[[1], [2.5]]",
            "{ a = 1 }",
            "1e999",
            "nan",
            "-inf",
            "0x7fffffffffffffff",
            "-9223372036854775809",
            "\"quoted\"",
            "1\n[server]\nlisten = 1",
            "true # comment",
        ][..])
        .prop_map(OsString::from),
        1 => proptest::collection::vec(any::<u8>(), 0..16).prop_map(OsString::from_vec),
        1 => (1usize..300).prop_map(|n| nested_array(n).into()),
    ]
}

/// `[[[...]]]`, `depth` arrays deep.
fn nested_array(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn environment() -> impl Strategy<Value = Vec<(OsString, OsString)>> {
    proptest::collection::vec((env_name(), env_value()), 0..6)
}

/// The property: `result` is a config or an error, and an error's fields
/// each name where the problem is. `top_keys` are the document's top-level
/// keys (`None` when it did not parse).
fn check(
    result: Result<KeelConfig, ConfigError>,
    top_keys: Option<&[String]>,
    env: &[(OsString, OsString)],
) -> Result<(), TestCaseError> {
    let error = match result {
        Ok(_) => return Ok(()),
        Err(error) => error,
    };
    // Showing the error does not panic either.
    let shown = error.to_string();
    match &error {
        ConfigError::Syntax { message } => {
            prop_assert!(top_keys.is_none(), "a document that parses: {shown}");
            prop_assert!(!message.is_empty());
        }
        ConfigError::Invalid(fields) => {
            prop_assert!(!fields.is_empty(), "invalid, but no field named");
            let vars: Vec<&str> = env.iter().filter_map(|(k, _)| k.to_str()).collect();
            // The first segment of each override: where it put a value.
            let overridden: Vec<String> = vars
                .iter()
                .filter_map(|v| v.strip_prefix("KEEL_"))
                .filter_map(|v| v.split("__").next())
                .map(str::to_ascii_lowercase)
                .collect();
            for field in fields {
                prop_assert!(!field.path.is_empty(), "no path: {field:?}");
                let under = |key: &str| {
                    field.path == key
                        || field
                            .path
                            .strip_prefix(key)
                            .is_some_and(|rest| rest.starts_with(['.', '[']))
                };
                let named = SECTIONS.iter().any(|s| under(s))
                    || top_keys.is_some_and(|keys| keys.iter().any(|k| under(&as_path(k))))
                    || overridden.iter().any(|k| under(&as_path(k)));
                prop_assert!(named, "{field} does not name a field: {field:?}");
                if let Some(var) = &field.env_var {
                    prop_assert!(vars.contains(&var.as_str()), "{field}: no such variable");
                }
            }
        }
        other => prop_assert!(false, "nothing was read from a file: {other}"),
    }
    Ok(())
}

/// A key as a config path writes it: bare, or quoted as in TOML when it
/// is empty or holds other characters than `A-Za-z0-9_-`.
fn as_path(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

fn top_keys(text: &str) -> Option<Vec<String>> {
    text.parse::<Table>()
        .ok()
        .map(|t| t.keys().cloned().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_as_the_file_is_a_config_or_an_error_never_a_panic(text in prop_oneof![
        3 => ".{0,200}",
        // Nearer TOML: brackets, quotes, `=` and newlines between words.
        2 => proptest::collection::vec(prop_oneof![
            Just("[".to_owned()), Just("]".to_owned()), Just("[[".to_owned()),
            Just("=".to_owned()), Just("\"".to_owned()), Just("\n".to_owned()),
            Just(".".to_owned()), Just("{".to_owned()), Just("}".to_owned()),
            Just(",".to_owned()),
            proptest::sample::select(SECTIONS).prop_map(str::to_owned),
            text(),
        ], 0..40).prop_map(|parts| parts.concat()),
        // Tables and arrays nested deeper than the parser goes.
        1 => (1usize..300)
            .prop_map(|n| format!("{} = {}", vec!["a"; n].join("."), nested_array(n))),
    ]) {
        let keys = top_keys(&text);
        check(KeelConfig::from_toml(&text), keys.as_deref(), &[])?;
    }

    #[test]
    fn any_value_in_any_real_field_is_a_config_or_an_error_naming_it(
        doc in table_of(match ROOT { Node::Table(fields) => fields, _ => &[] }),
        overrides in proptest::collection::vec(
            (proptest::sample::select(known_overrides()), scalar()),
            0..3,
        ),
    ) {
        let text = toml::to_string(&doc);
        prop_assume!(text.is_ok(), "toml cannot write {:?}", doc);
        let text = text.unwrap_or_default();
        let env: Vec<(OsString, OsString)> = overrides
            .iter()
            .map(|(path, value)| {
                let raw = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (OsString::from(var_for(path)), OsString::from(raw))
            })
            .collect();
        let keys = top_keys(&text);
        prop_assert!(keys.is_some(), "toml cannot read what it wrote:\n{text}");
        check(KeelConfig::from_toml(&text), keys.as_deref(), &[])?;
        check(KeelConfig::from_sources(Some(&text), env.clone()), keys.as_deref(), &env)?;
    }

    #[test]
    fn any_environment_is_a_config_or_an_error_naming_the_variable(env in environment()) {
        let result = KeelConfig::from_sources(None, env.clone());
        prop_assert!(
            !matches!(result, Err(ConfigError::Syntax { .. })),
            "there is no file to be malformed"
        );
        check(result, Some(&[]), &env)?;
    }
}
