//! The store's typed errors. Display texts never contain SQL or stored values, so they are
//! safe to log; the HTTP layer maps each to a stable error code.

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule would be broken; the text says which, in user terms.
    #[error("{0}")]
    Conflict(&'static str),
    /// A reference points at a row that does not exist in this workspace.
    #[error("a referenced object does not exist")]
    BadReference,
    /// A platform object named by the operator does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The database could not be reached or timed out.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database URL could not be parsed.
    #[error("the database URL is not valid")]
    BadUrl,
    /// PostgreSQL role that would bypass row-level security.
    #[error(
        "refusing to serve as PostgreSQL role `{0}`: it is a superuser or has BYPASSRLS, which skips row-level security; connect as a restricted application role (see README)"
    )]
    PrivilegedRole(String),
    /// A stored value could not be read back (e.g. an id without its prefix).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A migration already applied has different text than the one compiled in.
    #[error("migration {0} was changed after it was applied; refusing to continue")]
    MigrationChanged(i64),
    /// The database is newer than this binary.
    #[error("the database has migration {0}, which this binary does not know; upgrade rampart")]
    MigrationUnknown(i64),
    /// The keyring file could not be prepared.
    #[error("keyring: {0}")]
    Keyring(String),
    /// The write was to commit together with others (SQLite's group commit) and that commit
    /// failed: none of them was stored.
    #[error("the database could not commit the write")]
    BatchFailed,
    /// Any other database error.
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    pub(crate) fn unavailable(e: sqlx::Error) -> Self {
        Self::Unavailable(e)
    }

    /// Maps a sqlx error, classifying unique and foreign-key violations.
    pub(crate) fn from_sqlx(e: sqlx::Error) -> Self {
        Self::classify(e, "the object already exists")
    }

    /// Maps a sqlx error; a unique violation becomes `Conflict(conflict)`.
    pub(crate) fn classify(e: sqlx::Error, conflict: &'static str) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(conflict),
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => Self::BadReference,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable(e)
            }
            _ => Self::Database(e),
        }
    }

    /// Whether retrying later might help (the database was unreachable or busy).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::BatchFailed)
    }
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}
