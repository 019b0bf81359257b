//! Turning TOML text and environment overrides into a typed config while
//! collecting every error, not just the first.
//!
//! serde stops at the first bad field. To report them all, deserialization
//! is repeated: each failure is recorded with the path `serde_path_to_error`
//! gives, the offending node is removed from the document (so the field
//! falls back to its default) and the document is deserialized again, until
//! it succeeds or the document stops shrinking.

use std::collections::HashMap;
use std::ffi::OsString;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use toml::{Table, Value};

use crate::{ConfigError, FieldError};

const ENV_PREFIX: &str = "KEEL_";
const ENV_SEPARATOR: &str = "__";
/// The most keys one override may name. Real paths have at most six; a
/// name of thousands (`KEEL_A__A__...`) would build tables nested deeper
/// than deserializing, cloning and dropping them can recurse.
const MAX_OVERRIDE_KEYS: usize = 32;

/// Where an environment override put its value.
#[derive(Debug)]
struct EnvOrigin {
    var: String,
    raw: String,
    /// Whether `raw` was read as a TOML scalar rather than a string.
    coerced: bool,
}

pub(super) fn load<T: DeserializeOwned>(
    toml: Option<&str>,
    env: impl Iterator<Item = (OsString, OsString)>,
    validate: impl Fn(&T) -> Vec<FieldError>,
) -> Result<T, ConfigError> {
    let mut root = match toml {
        Some(text) => text.parse::<Table>().map_err(|e| ConfigError::Syntax {
            message: e.to_string().trim_end().to_owned(),
        })?,
        None => Table::new(),
    };
    let mut errors = Vec::new();
    let origins = apply_env(&mut root, env, &mut errors);
    let config = deserialize_collecting(root, &origins, &mut errors);
    // Checks across fields run on what did deserialize (bad fields fell
    // back to their defaults), so they are reported with the rest.
    if let Some(config) = &config {
        errors.extend(validate(config));
    }
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => Err(ConfigError::Invalid(errors)),
    }
}

/// Applies `KEEL_A__B=value` overrides to `root`, returning where each came from.
fn apply_env(
    root: &mut Table,
    env: impl Iterator<Item = (OsString, OsString)>,
    errors: &mut Vec<FieldError>,
) -> HashMap<String, EnvOrigin> {
    let mut vars: Vec<(String, OsString)> = env
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains(ENV_SEPARATOR))
        .collect();
    vars.sort();
    let mut origins = HashMap::new();
    for (var, raw) in vars {
        let segments: Vec<String> = var[ENV_PREFIX.len()..]
            .split(ENV_SEPARATOR)
            .map(str::to_ascii_lowercase)
            .collect();
        let mut path = String::new();
        for segment in segments.iter().take(MAX_OVERRIDE_KEYS) {
            push_key(&mut path, segment);
        }
        let env_error = |message: String| FieldError {
            path: path.clone(),
            value: None,
            env_var: Some(var.clone()),
            message,
        };
        if segments.len() > MAX_OVERRIDE_KEYS {
            errors.push(env_error(format!(
                "an override names at most {MAX_OVERRIDE_KEYS} keys, this one {}",
                segments.len()
            )));
            continue;
        }
        if segments.iter().any(String::is_empty) {
            errors.push(env_error(
                "an override needs a non-empty name between each `__`".into(),
            ));
            continue;
        }
        let Ok(raw) = raw.into_string() else {
            errors.push(env_error("the value is not valid UTF-8".into()));
            continue;
        };
        let (value, coerced) = match scalar(&raw) {
            Some(value) => (value, true),
            None => (Value::String(raw.clone()), false),
        };
        if let Err(parent) = insert(root, &segments, value) {
            errors.push(env_error(format!(
                "cannot override: `{parent}` is not a table"
            )));
            continue;
        }
        origins.insert(path, EnvOrigin { var, raw, coerced });
    }
    origins
}

/// Reads an environment value as a TOML scalar, if it is one.
fn scalar(raw: &str) -> Option<Value> {
    let mut table: Table = format!("v = {raw}").parse().ok()?;
    match table.remove("v")? {
        v @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Array(_)) => Some(v),
        _ => None,
    }
}

/// Sets `root[segments]`, creating tables on the way. On failure, returns the
/// path of the node that is in the way.
fn insert(root: &mut Table, segments: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = segments.split_last().expect("segments are non-empty");
    let mut table = root;
    for (i, segment) in parents.iter().enumerate() {
        let node = table
            .entry(segment.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        table = match node {
            Value::Table(t) => t,
            _ => return Err(segments[..=i].join(".")),
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

fn deserialize_collecting<T: DeserializeOwned>(
    mut root: Table,
    origins: &HashMap<String, EnvOrigin>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let mut retried_as_string: Vec<String> = Vec::new();
    loop {
        let mut ignored = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
        let document = Value::Table(root.clone());
        let result: Result<T, _> = serde_path_to_error::deserialize(
            serde_ignored::Deserializer::new(document, &mut record),
        );
        let error = match result {
            Ok(config) => {
                // Sections that forgot `deny_unknown_fields` still get their
                // unknown keys reported here.
                errors.extend(ignored.into_iter().map(|path| FieldError {
                    env_var: origins.get(&path).map(|o| o.var.clone()),
                    path,
                    value: None,
                    message: "unknown field".into(),
                }));
                return Some(config);
            }
            Err(error) => error,
        };
        let segments: Vec<Segment> = error.path().iter().cloned().collect();
        let path = render_path(&segments);
        let message = error.inner().message().trim_end().to_owned();

        // An override like `KEEL_SERVER__ADMIN_TOKEN=12345` was read as an
        // integer; a string field wants the text as written. Retry once.
        if let Some(origin) = origins.get(&path)
            && origin.coerced
            && !retried_as_string.contains(&path)
        {
            retried_as_string.push(path.clone());
            if set(&mut root, &segments, Value::String(origin.raw.clone())) {
                continue;
            }
        }

        let removed = remove(&mut root, &segments);
        let value = removed.as_ref().and_then(|(removed_path, value)| {
            (removed_path == &path && !value.is_table()).then(|| render_value(value))
        });
        errors.push(FieldError {
            env_var: origins.get(&path).map(|o| o.var.clone()),
            path,
            value,
            message,
        });
        // Nothing left to take away: the error is at the root or inside an
        // array whose indices must not shift. Stop here.
        removed?;
    }
}

fn render_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => push_key(&mut out, key),
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// Appends `key` to the dotted path `out` as TOML writes a key: bare when
/// it can be, quoted otherwise, so that an empty key or one holding a `.`
/// still names one field.
fn push_key(out: &mut String, key: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        out.push_str(key);
    } else {
        out.push_str(&Value::String(key.to_owned()).to_string());
    }
}

fn render_value(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        let short: String = text.chars().take(77).collect();
        format!("{short}...")
    } else {
        text
    }
}

/// The table holding the node at `segments`, walking map keys only.
fn parent_table<'a>(root: &'a mut Table, segments: &[Segment]) -> Option<&'a mut Table> {
    let mut table = root;
    for segment in segments {
        let Segment::Map { key } = segment else {
            return None;
        };
        table = table.get_mut(key)?.as_table_mut()?;
    }
    Some(table)
}

fn set(root: &mut Table, segments: &[Segment], value: Value) -> bool {
    let Some((Segment::Map { key }, parents)) = segments.split_last() else {
        return false;
    };
    match parent_table(root, parents) {
        Some(table) if table.contains_key(key) => {
            table.insert(key.clone(), value);
            true
        }
        _ => false,
    }
}

/// Removes the deepest existing node on `segments` (the node itself, or the
/// table a missing field belongs to). Returns its path and value.
fn remove(root: &mut Table, segments: &[Segment]) -> Option<(String, Value)> {
    for len in (1..=segments.len()).rev() {
        let (last, parents) = segments[..len].split_last()?;
        let Segment::Map { key } = last else {
            return None;
        };
        let Some(table) = parent_table(root, parents) else {
            continue;
        };
        if let Some(value) = table.remove(key) {
            return Some((render_path(&segments[..len]), value));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeelConfig;

    fn env(vars: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
        vars.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn load_plain(
        toml: Option<&str>,
        env: impl Iterator<Item = (OsString, OsString)>,
    ) -> Result<KeelConfig, ConfigError> {
        load(toml, env, |_: &KeelConfig| Vec::new())
    }

    fn paths(err: &ConfigError) -> Vec<&str> {
        err.field_errors().iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn no_input_gives_the_defaults() {
        let config: KeelConfig = load_plain(None, env(&[])).unwrap();
        assert_eq!(config, KeelConfig::default());
    }

    #[test]
    fn every_error_of_a_document_is_reported() {
        let err = load_plain(
            Some(
                r#"
                [server]
                listen = 8080
                shutdown_timeout = "5 parsecs"
                admin_token = ""

                [nonsense]
                x = 1
                "#,
            ),
            env(&[]),
        )
        .unwrap_err();
        assert_eq!(
            paths(&err),
            [
                "server.listen",
                "server.shutdown_timeout",
                "server.admin_token",
                "nonsense"
            ]
        );
        let listen = &err.field_errors()[0];
        assert_eq!(listen.value.as_deref(), Some("8080"));
        assert!(listen.message.contains("127.0.0.1:8080"), "{listen}");
        let timeout = &err.field_errors()[1];
        assert_eq!(timeout.value.as_deref(), Some("\"5 parsecs\""));
        assert!(timeout.message.contains("\"300ms\""), "{timeout}");
        let unknown = &err.field_errors()[3];
        assert!(unknown.message.contains("`server`"), "{unknown}");
        assert_eq!(unknown.value, None);
    }

    #[test]
    fn unknown_keys_name_the_allowed_ones() {
        let err = load_plain(Some("[server]\nlisten_addr = \"x\"\n"), env(&[])).unwrap_err();
        let e = &err.field_errors()[0];
        assert_eq!(e.path, "server.listen_addr");
        assert!(e.message.contains("`listen`"), "{e}");
        assert!(e.message.contains("`shutdown_timeout`"), "{e}");
    }

    #[test]
    fn env_overrides_the_file() {
        let config: KeelConfig = load_plain(
            Some("[server]\nlisten = \"127.0.0.1:1\"\nshutdown_timeout = \"1s\"\n"),
            env(&[
                ("KEEL_SERVER__LISTEN", "0.0.0.0:9000"),
                ("KEEL_SERVER__SHUTDOWN_TIMEOUT", "250ms"),
                ("KEEL_TEST_REDIS_URL", "not an override"),
                ("OTHER__THING", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.server.shutdown_timeout.as_millis(), 250);
    }

    #[test]
    fn a_numeric_env_value_can_fill_a_string_field() {
        let config: KeelConfig =
            load_plain(None, env(&[("KEEL_SERVER__ADMIN_TOKEN", "12345")])).unwrap();
        assert_eq!(config.server.admin_token.as_deref(), Some("12345"));
    }

    #[test]
    fn env_errors_name_the_variable() {
        let err = load_plain(
            None,
            env(&[
                ("KEEL_SERVER__LISTEN", "nowhere"),
                ("KEEL_SERVER__PORT", "1"),
                ("KEEL_SERVER____X", "1"),
            ]),
        )
        .unwrap_err();
        let shown: Vec<String> = err.field_errors().iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(
            shown[0].starts_with("server.\"\".x (from KEEL_SERVER____X)"),
            "{shown:?}"
        );
        assert!(
            shown[1].starts_with("server.listen = \"nowhere\" (from KEEL_SERVER__LISTEN)"),
            "{shown:?}"
        );
        assert!(
            shown[2].contains("(from KEEL_SERVER__PORT): unknown field `port`"),
            "{shown:?}"
        );
    }

    #[test]
    fn an_override_through_a_scalar_is_an_error() {
        let err = load_plain(
            Some("server = 3\n"),
            env(&[("KEEL_SERVER__LISTEN", "127.0.0.1:1")]),
        )
        .unwrap_err();
        assert!(
            err.field_errors()[0]
                .message
                .contains("`server` is not a table")
        );
    }

    #[test]
    fn an_empty_or_dotted_key_has_a_path_that_names_it() {
        let err = load_plain(
            Some("\"\" = 1\n\"a.b\" = 2\n[server]\n\"\" = 3\n"),
            env(&[("KEEL_SERVER__X.Y", "1")]),
        )
        .unwrap_err();
        assert_eq!(
            paths(&err),
            ["\"\"", "\"a.b\"", "server.\"\"", "server.\"x.y\""],
            "{err}"
        );
        assert_eq!(
            err.field_errors()[3].env_var.as_deref(),
            Some("KEEL_SERVER__X.Y")
        );
    }

    #[test]
    fn an_override_nested_thousands_deep_is_an_error_not_a_stack_overflow() {
        let var = format!("KEEL_SERVER{}", "__A".repeat(20_000));
        let err = load_plain(None, env(&[(var.as_str(), "1")])).unwrap_err();
        let e = &err.field_errors()[0];
        assert_eq!(err.field_errors().len(), 1, "{err}");
        assert!(e.path.starts_with("server.a.a."), "{e}");
        assert_eq!(e.env_var.as_deref(), Some(var.as_str()));
        assert!(e.message.contains("at most 32 keys"), "{e}");
    }

    #[test]
    fn syntax_errors_are_not_field_errors() {
        let err = load_plain(Some("[server\n"), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }
}
