//! The store's one error type. Variants say *what* went wrong in terms a CLI user or the
//! gateway can act on (a name that does not exist, a name already taken, a bad key); raw
//! driver errors stay wrapped in `Db` and unique/foreign-key violations are translated before
//! they get there, so two concurrent creators see `Duplicate`, not a SQL message.

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL, the data directory or the master key is unusable.
    #[error("store configuration: {0}")]
    Config(String),
    #[error("no {kind} named {name:?}")]
    NotFound { kind: &'static str, name: String },
    #[error("a {kind} named {name:?} already exists")]
    Duplicate { kind: &'static str, name: String },
    /// The caller passed something the store refuses (a bad name, a malformed spec).
    #[error("{0}")]
    Invalid(String),
    /// A secret column could not be decrypted: wrong master key or tampered data.
    #[error("{0}")]
    Decrypt(String),
    /// A write was attempted in a read-only transaction (a bug in the caller).
    #[error("internal error: a write in a read-only transaction")]
    ReadOnly,
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The audit writer's own SQLite connection failed (see `audit::SqliteAppender`).
    #[error("audit log: {0}")]
    Audit(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            name: name.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<metamcp_core::NameError> for StoreError {
    fn from(e: metamcp_core::NameError) -> Self {
        StoreError::Invalid(e.to_string())
    }
}

/// Turns a unique-constraint violation into [`StoreError::Duplicate`]; other errors pass.
pub(crate) fn on_unique(kind: &'static str, name: &str) -> impl FnOnce(sqlx::Error) -> StoreError {
    let name = name.to_owned();
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Duplicate { kind, name }
        }
        _ => StoreError::Db(e),
    }
}

/// Turns a foreign-key violation into [`StoreError::NotFound`] (the referenced row vanished,
/// e.g. a server removed while the gateway was still writing its tools or logs).
pub(crate) fn on_foreign_key(
    kind: &'static str,
    name: &str,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    let name = name.to_owned();
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::NotFound { kind, name }
        }
        _ => StoreError::Db(e),
    }
}
