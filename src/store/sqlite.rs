//! The embedded SQLite store: one file in WAL mode, one writer connection and
//! a few readers. sqlx runs each connection on its own thread, so queries never
//! block the async runtime.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{MigrateError, Migration as SqlxMigration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, SqlSafeStr};

use super::{Store, StoreError};

/// One schema change: a version number, a short description and its SQL.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Applied in ascending order; never reused.
    pub version: i64,
    /// A few words, shown in errors.
    pub description: &'static str,
    /// The SQL, run in one transaction.
    pub sql: Cow<'static, str>,
}

/// The migrations embedded in this binary, oldest first.
pub fn migrations() -> Vec<Migration> {
    vec![Migration {
        version: 1,
        description: "init",
        sql: Cow::Borrowed(include_str!("../../migrations/sqlite/0001_init.sql")),
    }]
}

/// The SQLite backend of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one connection that writes: SQLite allows one writer at a time.
    writer: SqlitePool,
    /// Connections for reads, which WAL lets run beside the writer.
    readers: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (or creates, with its folder) the store file and applies the
    /// embedded migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_migrations(path, migrations()).await
    }

    /// Opens the store with the given migrations: [`SqliteStore::open`] with
    /// [`migrations`]; other sets are for tests and tools.
    pub async fn open_with_migrations(path: &Path, migrations: Vec<Migration>) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open { location: path.display().to_string(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(format!("cannot create folder {}: {e}", dir.display())))?;
        }
        let existed = path.exists();
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let store = async {
            run_migrations(&writer, &migrations).await?;
            let readers = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.read_only(true))
                .await
                .map_err(|e| open_err(e.to_string()))?;
            Ok(SqliteStore { writer: writer.clone(), readers, path: path.to_path_buf() })
        }
        .await;
        if store.is_err() {
            writer.close().await;
            if !existed {
                // We created the file for nothing: leave the disk as it was.
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.as_os_str().to_owned();
                    p.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(p));
                }
            }
        }
        store
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

async fn run_migrations(pool: &SqlitePool, migrations: &[Migration]) -> Result<(), StoreError> {
    let known: Vec<SqlxMigration> = migrations
        .iter()
        .map(|m| {
            let sql = AssertSqlSafe(m.sql.clone().into_owned()).into_sql_str();
            SqlxMigration::new(m.version, Cow::Borrowed(m.description), MigrationType::Simple, sql, false)
        })
        .collect();
    let migrator = Migrator::with_migrations(known);
    migrator.run(pool).await.map_err(|e| match e {
        MigrateError::ExecuteMigration(err, version) => StoreError::Migration {
            version,
            description: migrations
                .iter()
                .find(|m| m.version == version)
                .map_or_else(String::new, |m| m.description.to_owned()),
            reason: err.to_string(),
        },
        MigrateError::VersionMissing(v) => StoreError::TooNew(v),
        other => StoreError::Query(other.to_string()),
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map(drop)
            .map_err(|e| StoreError::Query(e.to_string()))
    }

    async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.readers)
            .await
            .map_err(|e| StoreError::Query(e.to_string()))?;
        rows.iter().map(|r| r.try_get::<i64, _>(0).map_err(|e| StoreError::Query(e.to_string()))).collect()
    }

    async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}
