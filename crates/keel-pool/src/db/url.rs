//! Database URLs: which backend, its connect options, and a printable form.

use std::str::FromStr as _;

use sqlx::sqlite::SqliteConnectOptions;

/// The database a [`DatabaseConnectionPool`](crate::DatabaseConnectionPool)
/// talks to, chosen by its URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite: a file path, `sqlite:path`, `sqlite://path` or `sqlite::memory:`.
    Sqlite,
    /// PostgreSQL: `postgres://` or `postgresql://` (feature `postgres`).
    Postgres,
    /// MySQL or MariaDB: `mysql://` or `mariadb://` (feature `mysql`).
    MySql,
}

impl Backend {
    /// `sqlite`, `postgres` or `mysql`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
        }
    }

    /// The backend a URL names, or why none.
    pub fn of_url(url: &str) -> Result<Backend, String> {
        let lower = url.trim().to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            return Ok(Backend::Sqlite);
        }
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(Backend::Postgres);
        }
        if lower.starts_with("mysql://") || lower.starts_with("mariadb://") {
            return Ok(Backend::MySql);
        }
        if let Some((scheme, _)) = lower.split_once("://") {
            return Err(format!(
                "unknown scheme {scheme:?}: expected a SQLite file path, sqlite:, postgres:// or mysql://"
            ));
        }
        Ok(Backend::Sqlite)
    }

    fn compiled_in(self) -> Result<(), String> {
        let feature = match self {
            Backend::Sqlite => return Ok(()),
            Backend::Postgres if cfg!(feature = "postgres") => return Ok(()),
            Backend::MySql if cfg!(feature = "mysql") => return Ok(()),
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
        };
        Err(format!(
            "{} support is not compiled in: enable the `{feature}` feature of keel-pool",
            self.as_str()
        ))
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `url` names a usable database: a known scheme, compiled in,
/// that the driver can parse.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let backend = Backend::of_url(url)?;
    backend.compiled_in()?;
    match backend {
        Backend::Sqlite => sqlite_options(url).map(|_| ()),
        #[cfg(feature = "postgres")]
        Backend::Postgres => sqlx::postgres::PgConnectOptions::from_str(url)
            .map(|_| ())
            .map_err(|e| format!("not a valid postgres url: {e}")),
        #[cfg(feature = "mysql")]
        Backend::MySql => sqlx::mysql::MySqlConnectOptions::from_str(&mysql_url(url))
            .map(|_| ())
            .map_err(|e| format!("not a valid mysql url: {e}")),
        #[allow(unreachable_patterns)]
        _ => Ok(()),
    }
}

/// SQLite connect options: files are created when missing.
pub(crate) fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, String> {
    let url = url.trim();
    let options = if url.to_ascii_lowercase().starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url).map_err(|e| format!("not a valid sqlite url: {e}"))?
    } else {
        SqliteConnectOptions::new().filename(url)
    };
    Ok(options.create_if_missing(true))
}

/// Whether a SQLite URL is an in-memory database (which lives only as long
/// as a connection to it).
pub(crate) fn is_memory(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.contains(":memory:") || lower.contains("mode=memory")
}

/// `mariadb://` spelled as the driver wants it.
#[cfg(feature = "mysql")]
pub(crate) fn mysql_url(url: &str) -> String {
    let url = url.trim();
    match url.get(..10) {
        Some(scheme) if scheme.eq_ignore_ascii_case("mariadb://") => {
            format!("mysql://{}", &url[10..])
        }
        _ => url.to_owned(),
    }
}

/// `url` with the password (if any) replaced by `***`, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_backend() {
        for (url, backend) in [
            ("keel.db", Backend::Sqlite),
            ("./data/app.sqlite", Backend::Sqlite),
            ("sqlite::memory:", Backend::Sqlite),
            ("sqlite://keel.db", Backend::Sqlite),
            ("postgres://u@h/db", Backend::Postgres),
            ("PostgreSQL://u@h/db", Backend::Postgres),
            ("mysql://root@h/db", Backend::MySql),
            ("mariadb://root@h/db", Backend::MySql),
        ] {
            assert_eq!(Backend::of_url(url), Ok(backend), "{url}");
        }
        let err = Backend::of_url("oracle://h/db").unwrap_err();
        assert!(err.contains("unknown scheme \"oracle\""), "{err}");
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x?sslmode=off"),
            "postgres://app:***@db:5432/x?sslmode=off"
        );
        assert_eq!(redact("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(redact("keel.db"), "keel.db");
    }

    #[test]
    fn memory_databases_are_recognised() {
        assert!(is_memory("sqlite::memory:"));
        assert!(is_memory("sqlite://file:x?mode=memory&cache=shared"));
        assert!(!is_memory("sqlite://keel.db"));
    }
}
