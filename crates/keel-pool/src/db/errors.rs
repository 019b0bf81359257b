//! Sorting driver errors: give up at once, retry, or time out.

use sqlx::error::DatabaseError;

/// What an error from opening or checking out a connection calls for.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server refused the credentials: retrying cannot help.
    Authentication(sqlx::Error),
    /// The database does not exist: retrying cannot help.
    UnknownDatabase(sqlx::Error),
    /// Worth another try: the network, a server starting or shutting down,
    /// too many connections.
    Transient(sqlx::Error),
    /// The driver's own wait (`connection_timeout`) ran out.
    Timeout,
    /// The pool was closed.
    Closed,
    /// Anything else, reported as it is.
    Other(sqlx::Error),
}

pub(crate) fn classify(error: sqlx::Error) -> Failure {
    match &error {
        sqlx::Error::PoolTimedOut => Failure::Timeout,
        sqlx::Error::PoolClosed => Failure::Closed,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => Failure::Transient(error),
        sqlx::Error::Database(db) => match database_failure(db.as_ref()) {
            Kind::Authentication => Failure::Authentication(error),
            Kind::UnknownDatabase => Failure::UnknownDatabase(error),
            Kind::Transient => Failure::Transient(error),
            Kind::Other => Failure::Other(error),
        },
        _ => Failure::Other(error),
    }
}

/// Whether a statement failed because its connection is gone (so the
/// connection must not be reused and other old ones are suspect).
pub(crate) fn is_connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => matches!(database_failure(db.as_ref()), Kind::Transient),
        _ => false,
    }
}

enum Kind {
    Authentication,
    UnknownDatabase,
    Transient,
    Other,
}

fn database_failure(db: &dyn DatabaseError) -> Kind {
    #[cfg(feature = "mysql")]
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return match my.number() {
            // access denied (password; database for this user; auth plugin)
            1044 | 1045 | 1698 => Kind::Authentication,
            // unknown database
            1049 => Kind::UnknownDatabase,
            // too many connections, shutdown in progress, server gone,
            // lost connection, disconnected by the server
            1040 | 1053 | 2006 | 2013 | 4031 => Kind::Transient,
            _ => Kind::Other,
        };
    }
    let code = db.code();
    match code.as_deref() {
        // invalid_password, invalid_authorization_specification
        Some("28P01" | "28000") => Kind::Authentication,
        // invalid_catalog_name
        Some("3D000") => Kind::UnknownDatabase,
        // admin_shutdown, crash_shutdown, cannot_connect_now,
        // too_many_connections, and the connection exception class
        Some("57P01" | "57P02" | "57P03" | "53300") => Kind::Transient,
        Some(c) if c.starts_with("08") => Kind::Transient,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_errors_are_transient_and_pool_errors_are_not() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_connection_lost(&io));
        assert!(matches!(classify(io), Failure::Transient(_)));
        assert!(matches!(
            classify(sqlx::Error::PoolTimedOut),
            Failure::Timeout
        ));
        assert!(matches!(classify(sqlx::Error::PoolClosed), Failure::Closed));
        assert!(!is_connection_lost(&sqlx::Error::RowNotFound));
        assert!(matches!(
            classify(sqlx::Error::RowNotFound),
            Failure::Other(_)
        ));
    }
}
