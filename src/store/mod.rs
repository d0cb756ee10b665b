//! The store: everything the sidecar keeps across restarts, behind
//! role-sized traits ([`roles`]: [`GateStore`], [`SignInStore`],
//! [`ServerStore`], [`ClientStore`], [`AdminStore`], and their union
//! [`Store`]) so that the OAuth roles do not care which database holds it,
//! and each takes only what it uses.
//!
//! One SQL implementation ([`SqlStore`], in `sql/`) serves both databases,
//! with a [`Dialect`] for what differs. SQLite ([`SqliteStore`]) is the
//! embedded default: one file, created with its folder on first start,
//! migrations embedded in the binary and applied at start. PostgreSQL
//! ([`PostgresStore`]) is for several replicas sharing one database. The
//! traits, the records and [`StoreError`] speak only in plain Rust types, so
//! no database type leaks through; the same test suite runs against both.
//!
//! Processes sharing a PostgreSQL store learn of each other's changes
//! through [`StoreBase::changes`] ([`change`]), so their caches stay close
//! to the store; SQLite has one process and no announcements.
//!
//! Everything that uses sqlx is under `sql/` (its `sqlite` and `postgres`
//! submodules hold what only one database has) and in `copy`.

pub mod change;
mod client_model;
#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub mod copy;
mod federated_model;
mod migration;
mod model;
pub mod roles;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Loaded, StoreUrl};

pub use crate::config::types::redacted_url;
pub use change::{StoreChange, StoreChanges};
pub use client_model::{ClientRegistrationRecord, ClientStateRecord, ProviderTokenRecord};
pub use federated_model::{FederatedIdentityRecord, LoginStateRecord, RoleSource};
pub use migration::Migration;
pub use model::{
    ADMINISTER_OAUTH, AdminTokenRecord, AuthCodeRecord, BackchannelLogoutRecord, CodeRedemption,
    ConsumerRecord, MANAGE_SECRETS, PERMISSIONS, RefreshGrace, RefreshRotation, RefreshTokenRecord,
    SessionRecord, SigningKeyRecord, UserRecord,
};
pub use roles::{AdminStore, ClientStore, GateStore, ServerStore, SignInStore, Store, StoreBase};
#[cfg(feature = "postgres")]
pub use sql::postgres::{
    CHANGES_CHANNEL, LISTENER_APPLICATION_NAME, PostgresDialect, PostgresStore,
    migrations as postgres_migrations,
};
#[cfg(feature = "sqlite")]
pub use sql::sqlite::{SqliteDialect, SqliteStore, migrations};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{Dialect, SqlStore};

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

/// The stored form of an opaque token (refresh token, code, session id,
/// admin API token, OAuth client state): SHA-256, base64url. Tokens are
/// random and long, so a plain digest is enough; only the digest is stored.
pub fn token_hash(token: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()))
}

/// How the PostgreSQL store connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Connections in the pool at most (`store_pool_size`).
    pub max_connections: u32,
    /// How long a query waits for a free connection, or for the server to
    /// answer a new connection, before it fails.
    pub acquire_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions { max_connections: 10, acquire_timeout: Duration::from_secs(10) }
    }
}

impl PostgresOptions {
    /// The options a loaded configuration gives: `store_pool_size`
    /// connections at most.
    pub fn from_config(loaded: &Loaded) -> Self {
        PostgresOptions { max_connections: loaded.config.store_pool_size.value, ..Default::default() }
    }
}

/// Opens the store a configuration names, applying pending migrations, with
/// the default pool size; see [`open_with`].
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, PostgresOptions::default()).await
}

/// Opens the store a loaded configuration names, with its pool size.
pub async fn open_for(loaded: &Loaded) -> Result<Arc<dyn Store>, StoreError> {
    open_with(&loaded.store, PostgresOptions::from_config(loaded)).await
}

/// Opens the store a configuration names, applying pending migrations; a
/// PostgreSQL store connects with `options` (SQLite ignores them). A
/// database this build was compiled without is refused with a clear error.
pub async fn open_with(url: &StoreUrl, options: PostgresOptions) -> Result<Arc<dyn Store>, StoreError> {
    let _ = &options;
    match url {
        #[cfg(feature = "sqlite")]
        StoreUrl::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path).await?)),
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres(secret) => Ok(Arc::new(PostgresStore::open(secret.expose(), options).await?)),
        #[allow(unreachable_patterns)]
        other => Err(StoreError::Open {
            location: other.to_string(),
            reason: "this build of oauth-sidecar has no support for this database (crate features `sqlite`, `postgres`)"
                .into(),
        }),
    }
}
