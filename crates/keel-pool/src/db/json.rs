//! Rows as JSON objects and JSON values as bound parameters.
//!
//! Mapping: integers → numbers, floats → numbers (NaN and infinities →
//! strings), text → strings, booleans → booleans, NULL → null, JSON
//! columns → their value, timestamps → RFC 3339 strings (a timestamp
//! without a zone is taken as UTC), dates → `YYYY-MM-DD`, times →
//! `HH:MM:SS[.ffffff]`, UUIDs → strings, bytes → base64 strings, MySQL
//! DECIMAL → strings (exact). MySQL's protocol does not tell binary data
//! from text in a `_bin` collation (MariaDB's JSON columns are such text),
//! so its binary columns come back as strings when they hold UTF-8 and as
//! base64 otherwise. Anything else is
//! [`PoolError::UnsupportedColumn`]: cast it to text in the query.

use base64::Engine as _;
use serde_json::{Map, Number, Value};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use sqlx::types::time::{Date, Time};
use sqlx::types::time::{OffsetDateTime, PrimitiveDateTime};
use sqlx::{Column as _, Row as _, TypeInfo as _, ValueRef as _};

use crate::PoolError;

/// A row as a JSON object, column name → value.
pub type JsonRow = Map<String, Value>;

pub(crate) fn float(f: f64) -> Value {
    Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
}

pub(crate) fn bytes(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

pub(crate) fn timestamp(t: OffsetDateTime) -> Value {
    use time::format_description::well_known::Rfc3339;
    Value::String(t.format(&Rfc3339).unwrap_or_else(|_| t.to_string()))
}

pub(crate) fn naive_timestamp(t: PrimitiveDateTime) -> Value {
    timestamp(t.assume_utc())
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn date(d: Date) -> Value {
    Value::String(format!(
        "{:04}-{:02}-{:02}",
        d.year(),
        u8::from(d.month()),
        d.day()
    ))
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn time(t: Time) -> Value {
    let micros = t.microsecond();
    Value::String(if micros == 0 {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    } else {
        format!(
            "{:02}:{:02}:{:02}.{micros:06}",
            t.hour(),
            t.minute(),
            t.second()
        )
    })
}

fn unsupported(pool: &str, column: &str, type_name: &str) -> PoolError {
    PoolError::UnsupportedColumn {
        pool: pool.to_owned(),
        column: column.to_owned(),
        type_name: type_name.to_owned(),
    }
}

fn query_error(pool: &str, source: sqlx::Error) -> PoolError {
    PoolError::Query {
        pool: pool.to_owned(),
        source,
    }
}

/// A SQLite row: declared BOOLEAN and DATETIME columns by their declared
/// type, everything else by the storage class of the value.
pub(crate) fn sqlite_row(pool: &str, row: &sqlx::sqlite::SqliteRow) -> Result<JsonRow, PoolError> {
    let mut out = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| query_error(pool, e))?;
        if raw.is_null() {
            out.insert(column.name().to_owned(), Value::Null);
            continue;
        }
        let storage = raw.type_info().name().to_owned();
        let declared = column.type_info().name();
        let get_err = |e| query_error(pool, e);
        let value = match (declared, storage.as_str()) {
            ("BOOLEAN", "INTEGER") => {
                Value::Bool(row.try_get_unchecked::<bool, _>(i).map_err(get_err)?)
            }
            ("DATETIME", "TEXT") => {
                if let Ok(t) = row.try_get_unchecked::<OffsetDateTime, _>(i) {
                    timestamp(t)
                } else if let Ok(t) = row.try_get_unchecked::<PrimitiveDateTime, _>(i) {
                    naive_timestamp(t)
                } else {
                    Value::String(row.try_get_unchecked::<String, _>(i).map_err(get_err)?)
                }
            }
            (_, "INTEGER") => Value::from(row.try_get_unchecked::<i64, _>(i).map_err(get_err)?),
            (_, "REAL") => float(row.try_get_unchecked::<f64, _>(i).map_err(get_err)?),
            (_, "TEXT") => Value::String(row.try_get_unchecked::<String, _>(i).map_err(get_err)?),
            (_, "BLOB") => bytes(&row.try_get_unchecked::<Vec<u8>, _>(i).map_err(get_err)?),
            _ => return Err(unsupported(pool, column.name(), &storage)),
        };
        out.insert(column.name().to_owned(), value);
    }
    Ok(out)
}

/// A PostgreSQL row, by column type.
#[cfg(feature = "postgres")]
pub(crate) fn pg_row(pool: &str, row: &sqlx::postgres::PgRow) -> Result<JsonRow, PoolError> {
    let mut out = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| query_error(pool, e))?;
        let name = column.name().to_owned();
        if raw.is_null() {
            out.insert(name, Value::Null);
            continue;
        }
        let e = |e| query_error(pool, e);
        let value = match column.type_info().name() {
            "BOOL" => Value::Bool(row.try_get::<bool, _>(i).map_err(e)?),
            "INT2" => Value::from(row.try_get::<i16, _>(i).map_err(e)?),
            "INT4" => Value::from(row.try_get::<i32, _>(i).map_err(e)?),
            "INT8" => Value::from(row.try_get::<i64, _>(i).map_err(e)?),
            "OID" => Value::from(
                row.try_get::<sqlx::postgres::types::Oid, _>(i)
                    .map_err(e)?
                    .0,
            ),
            "FLOAT4" => float(f64::from(row.try_get::<f32, _>(i).map_err(e)?)),
            "FLOAT8" => float(row.try_get::<f64, _>(i).map_err(e)?),
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "\"CHAR\"" | "CITEXT" | "UNKNOWN" => {
                Value::String(row.try_get_unchecked::<String, _>(i).map_err(e)?)
            }
            "JSON" | "JSONB" => row.try_get::<Value, _>(i).map_err(e)?,
            "TIMESTAMPTZ" => timestamp(row.try_get::<OffsetDateTime, _>(i).map_err(e)?),
            "TIMESTAMP" => naive_timestamp(row.try_get::<PrimitiveDateTime, _>(i).map_err(e)?),
            "DATE" => date(row.try_get::<Date, _>(i).map_err(e)?),
            "TIME" => time(row.try_get::<Time, _>(i).map_err(e)?),
            "UUID" => Value::String(
                row.try_get::<sqlx::types::Uuid, _>(i)
                    .map_err(e)?
                    .to_string(),
            ),
            "BYTEA" => bytes(&row.try_get::<Vec<u8>, _>(i).map_err(e)?),
            "VOID" => Value::Null,
            other => return Err(unsupported(pool, column.name(), other)),
        };
        out.insert(name, value);
    }
    Ok(out)
}

/// A MySQL/MariaDB row, by column type.
#[cfg(feature = "mysql")]
pub(crate) fn mysql_row(pool: &str, row: &sqlx::mysql::MySqlRow) -> Result<JsonRow, PoolError> {
    let mut out = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| query_error(pool, e))?;
        let name = column.name().to_owned();
        if raw.is_null() {
            out.insert(name, Value::Null);
            continue;
        }
        let type_name = column.type_info().name();
        let e = |e| query_error(pool, e);
        let value = match type_name {
            "BOOLEAN" => Value::Bool(row.try_get_unchecked::<bool, _>(i).map_err(e)?),
            t if t.ends_with("INT UNSIGNED") => {
                Value::from(row.try_get_unchecked::<u64, _>(i).map_err(e)?)
            }
            t if t.ends_with("INT") => Value::from(row.try_get_unchecked::<i64, _>(i).map_err(e)?),
            "YEAR" => Value::from(row.try_get_unchecked::<u16, _>(i).map_err(e)?),
            "FLOAT" => float(f64::from(row.try_get_unchecked::<f32, _>(i).map_err(e)?)),
            "DOUBLE" => float(row.try_get_unchecked::<f64, _>(i).map_err(e)?),
            // DECIMAL travels as text in both protocols: kept exact.
            "DECIMAL" | "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT"
            | "ENUM" | "SET" => Value::String(row.try_get_unchecked::<String, _>(i).map_err(e)?),
            "JSON" => row.try_get::<Value, _>(i).map_err(e)?,
            "DATETIME" | "TIMESTAMP" => naive_timestamp(
                row.try_get_unchecked::<PrimitiveDateTime, _>(i)
                    .map_err(e)?,
            ),
            "DATE" => date(row.try_get_unchecked::<Date, _>(i).map_err(e)?),
            "TIME" => time(row.try_get_unchecked::<Time, _>(i).map_err(e)?),
            // The protocol marks `_bin` collations (MariaDB's JSON, say) as
            // binary too: text when it is UTF-8, base64 otherwise.
            "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BINARY" | "VARBINARY" => {
                match String::from_utf8(row.try_get_unchecked::<Vec<u8>, _>(i).map_err(e)?) {
                    Ok(text) => Value::String(text),
                    Err(raw) => bytes(raw.as_bytes()),
                }
            }
            "NULL" => Value::Null,
            other => return Err(unsupported(pool, column.name(), other)),
        };
        out.insert(name, value);
    }
    Ok(out)
}

/// Binds JSON parameters to a SQLite query: null, booleans, integers,
/// floats, strings as themselves; arrays and objects as JSON text.
pub(crate) fn bind_sqlite<'q>(
    sql: &'q str,
    params: &'q [Value],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    let mut query = sqlx::query(sql);
    for p in params {
        query = match p {
            Value::Null => query.bind(None::<String>),
            Value::Bool(b) => query.bind(*b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => query.bind(i),
                (None, Some(f)) => query.bind(f),
                (None, None) => query.bind(n.to_string()),
            },
            Value::String(s) => query.bind(s.as_str()),
            other => query.bind(other.to_string()),
        };
    }
    query
}

/// A NULL parameter of no declared type, so PostgreSQL infers it from
/// where it is used (a typed NULL would refuse to go into a column of
/// another type).
#[cfg(feature = "postgres")]
#[derive(Debug, Clone, Copy)]
struct UntypedNull;

#[cfg(feature = "postgres")]
impl sqlx::Type<sqlx::Postgres> for UntypedNull {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

#[cfg(feature = "postgres")]
impl sqlx::Encode<'_, sqlx::Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

/// Binds JSON parameters to a PostgreSQL query: integers as BIGINT, floats
/// as DOUBLE PRECISION, strings as TEXT, arrays and objects as JSONB, null
/// untyped. A query with a null is not kept prepared (the server infers
/// that parameter's type afresh each time).
#[cfg(feature = "postgres")]
pub(crate) fn bind_pg<'q>(
    sql: &'q str,
    params: &'q [Value],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut query = sqlx::query(sql);
    if params.iter().any(Value::is_null) {
        query = query.persistent(false);
    }
    for p in params {
        query = match p {
            Value::Null => query.bind(UntypedNull),
            Value::Bool(b) => query.bind(*b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => query.bind(i),
                (None, Some(f)) => query.bind(f),
                (None, None) => query.bind(n.to_string()),
            },
            Value::String(s) => query.bind(s.as_str()),
            other => query.bind(sqlx::types::Json(other)),
        };
    }
    query
}

/// Binds JSON parameters to a MySQL query (which converts loosely):
/// arrays and objects as JSON.
#[cfg(feature = "mysql")]
pub(crate) fn bind_mysql<'q>(
    sql: &'q str,
    params: &'q [Value],
) -> sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    let mut query = sqlx::query(sql);
    for p in params {
        query = match p {
            Value::Null => query.bind(None::<String>),
            Value::Bool(b) => query.bind(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => query.bind(i),
                (None, Some(u), _) => query.bind(u),
                (None, None, Some(f)) => query.bind(f),
                (None, None, None) => query.bind(n.to_string()),
            },
            Value::String(s) => query.bind(s.as_str()),
            other => query.bind(sqlx::types::Json(other)),
        };
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_map_to_json() {
        assert_eq!(float(1.5), Value::from(1.5));
        assert_eq!(float(f64::NAN), Value::String("NaN".into()));
        assert_eq!(bytes(b"hi"), Value::String("aGk=".into()));
        let t = OffsetDateTime::from_unix_timestamp(0).unwrap();
        assert_eq!(timestamp(t), Value::String("1970-01-01T00:00:00Z".into()));
    }

    #[cfg(any(feature = "postgres", feature = "mysql"))]
    #[test]
    fn dates_and_times_map_to_iso_strings() {
        let t = OffsetDateTime::from_unix_timestamp(0).unwrap();
        assert_eq!(
            time(Time::from_hms_micro(1, 2, 3, 40).unwrap()),
            Value::String("01:02:03.000040".into())
        );
        assert_eq!(date(t.date()), Value::String("1970-01-01".into()));
    }
}
