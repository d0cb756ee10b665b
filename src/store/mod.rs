//! The store: everything the sidecar keeps across restarts, behind one
//! [`Store`] trait so that the OAuth roles do not care which database holds it.
//!
//! SQLite ([`SqliteStore`]) is the embedded default: one file, created with its
//! folder on first start, migrations embedded in the binary and applied at
//! start. The trait speaks only in plain Rust types, so a second backend can
//! implement it without SQLite leaking through.

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::StoreUrl;

pub use sqlite::{Migration, SqliteStore, migrations};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened or created.
    #[error("cannot open the store at {location}: {reason}")]
    Open {
        /// Where the store was looked for (a file path, never a password).
        location: String,
        /// What went wrong.
        reason: String,
    },
    /// A migration failed; nothing of it was applied.
    #[error("migration {version} ({description}) failed: {reason}; the store was left as it was")]
    Migration {
        /// The migration's version number.
        version: i64,
        /// Its description (file name without the number).
        description: String,
        /// What the database said.
        reason: String,
    },
    /// The store holds migrations this binary does not know: it was written by
    /// a newer version.
    #[error(
        "the store was migrated by a newer oauth-sidecar (it has migration {0}, unknown to this version)"
    )]
    TooNew(i64),
    /// A query failed.
    #[error("store query failed: {0}")]
    Query(String),
}

/// What the sidecar keeps across restarts. The OAuth roles add their
/// operations here, each backend implements them.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name for logs and readiness output (`sqlite`).
    fn backend(&self) -> &'static str;

    /// Answers when the store can serve queries; used by `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Versions of the migrations applied to this store, oldest first.
    async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError>;

    /// Closes the connections cleanly (for SQLite, checkpoints the WAL).
    async fn close(&self);
}

/// Opens the store a configuration names, applying pending migrations.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        StoreUrl::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path).await?)),
        StoreUrl::Postgres(_) => Err(StoreError::Open {
            location: url.to_string(),
            reason: "PostgreSQL is not available in this version".into(),
        }),
    }
}
