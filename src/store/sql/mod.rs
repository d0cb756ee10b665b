//! The one SQL implementation of the store, for SQLite and PostgreSQL alike:
//! [`SqlStore`] runs every query through sqlx's `Any` driver, written once
//! with `$N` placeholders (which both databases accept), and asks its
//! [`Dialect`] for what really differs between them: how a writing
//! transaction begins, the few statements whose SQL differs, and what
//! happens around the connections (the SQLite writer and readers, the
//! PostgreSQL change announcements).
//!
//! Booleans are `INTEGER` 0/1 in SQLite and `BOOLEAN` in PostgreSQL: SQL
//! text uses `TRUE` and `NOT column`, which both read the same, and rows are
//! read with [`rows::flag`], which takes either. Lists of strings are JSON
//! arrays in `TEXT` columns in both.
//!
//! The queries live by role, as the traits do: `gate`, `signin`, `server`,
//! `client` and `admin`; `rows` turns rows into records.

mod admin;
mod client;
mod gate;
mod logout;
pub(super) mod migrate;
#[cfg(feature = "postgres")]
pub(super) mod postgres;
pub(super) mod rows;
mod server;
mod signin;
#[cfg(feature = "sqlite")]
pub(super) mod sqlite;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

use super::{StoreBase, StoreChanges, StoreError};

/// What differs between the databases [`SqlStore`] speaks to, and what a
/// backend keeps beside its pools (its file, its change listener).
#[async_trait]
pub trait Dialect: Send + Sync + 'static {
    /// The backend's name ([`StoreBase::backend`]).
    const NAME: &'static str;
    /// The statement that opens a transaction that writes: SQLite takes its
    /// write lock at once (`BEGIN IMMEDIATE`), so two writers never deadlock
    /// upgrading a read lock.
    const BEGIN: &'static str;
    /// Every signing key, oldest first; ties broken by insertion order
    /// (`rowid` in SQLite, a `seq` column in PostgreSQL).
    const SIGNING_KEYS: &'static str;
    /// A statement run before the check-and-insert of a first signing key
    /// where the transaction alone does not keep two apart (PostgreSQL's
    /// table lock); SQLite's `BEGIN IMMEDIATE` already does.
    const LOCK_SIGNING_KEYS: Option<&'static str>;
    /// Appends `[$2, $3]` to a redeemed code's `issued_access` JSON array and
    /// sets its family `$1` unless null, for code `$4`; returns `reuse_seen`.
    const RECORD_CODE_ISSUE: &'static str;
    /// Adds jti `$1` to the revocation list until `$2`, keeping the later
    /// expiry when it is there already.
    const REVOKE_JTI: &'static str;

    /// A subscription to the changes other processes announce, if the
    /// database announces them.
    fn changes(&self) -> Option<StoreChanges> {
        None
    }

    /// Stops what the backend runs beside its pools, before they close.
    async fn before_close(&self) {}
}

/// The store over SQL: a pool that writes, a pool that reads (the same
/// pool for PostgreSQL; one writer connection and read-only connections for
/// SQLite) and the dialect. See [`SqliteStore`](super::SqliteStore) and
/// [`PostgresStore`](super::PostgresStore).
#[derive(Debug, Clone)]
pub struct SqlStore<D> {
    /// Writes, and reads that decide a write.
    writer: AnyPool,
    /// Plain reads.
    readers: AnyPool,
    dialect: D,
}

impl<D: Dialect> SqlStore<D> {
    /// The pool for plain reads (for `store copy`).
    #[cfg(all(feature = "sqlite", feature = "postgres"))]
    pub(super) fn reader_pool(&self) -> &AnyPool {
        &self.readers
    }

    /// The pool for writes (for `store copy`).
    #[cfg(all(feature = "sqlite", feature = "postgres"))]
    pub(super) fn writer_pool(&self) -> &AnyPool {
        &self.writer
    }

    /// Opens a transaction that writes, as the dialect begins one.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        self.writer.begin_with(D::BEGIN).await.map_err(query_err)
    }
}

/// A pool of `options` to the database `url` names, through the `Any`
/// driver (installed on first use).
async fn connect(options: AnyPoolOptions, url: &url::Url) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    options.connect_with(<AnyConnectOptions as sqlx::ConnectOptions>::from_url(url)?).await
}

/// A failed query, as the store reports it. The databases' messages name
/// tables, columns and constraints, never the values bound to a query.
fn query_err(e: sqlx::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

/// Lists of strings are stored as JSON arrays.
fn encode_list(list: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(list).map_err(|e| StoreError::Query(format!("cannot encode a list: {e}")))
}

#[async_trait]
impl<D: Dialect> StoreBase for SqlStore<D> {
    fn backend(&self) -> &'static str {
        D::NAME
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await.map(drop).map_err(query_err)
    }

    async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.readers)
            .await
            .map_err(query_err)?;
        rows.iter().map(|r| r.try_get::<i64, _>(0).map_err(query_err)).collect()
    }

    async fn close(&self) {
        self.dialect.before_close().await;
        self.readers.close().await;
        self.writer.close().await;
    }

    fn changes(&self) -> Option<StoreChanges> {
        if self.writer.is_closed() {
            return None;
        }
        self.dialect.changes()
    }

    async fn meta_get_or_insert(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO sidecar_secrets (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(query_err)?;
        let stored: Vec<u8> = sqlx::query_scalar("SELECT value FROM sidecar_secrets WHERE key = $1")
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(query_err)?;
        tx.commit().await.map_err(query_err)?;
        Ok(stored)
    }
}
