//! The embedded SQLite store: one file in WAL mode, one writer connection and
//! a few read-only ones. sqlx runs each connection on its own thread, so
//! queries never block the async runtime.
//!
//! Every write, and every read that decides a write (redeeming a code,
//! rotating a refresh token), runs on the single writer connection, so those
//! are serialized; plain reads go to the read-only pool. The schema is in
//! `migrations/sqlite/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sqlx::Executor as _;
use sqlx::any::AnyPoolOptions;

use super::migrate::{self, embedded};
use super::{Dialect, SqlStore, connect};
use crate::store::{Migration, StoreError};

/// The SQLite backend of [`Store`](crate::store::Store).
pub type SqliteStore = SqlStore<SqliteDialect>;

/// How SQLite differs, and the file the store lives in.
#[derive(Debug, Clone)]
pub struct SqliteDialect {
    path: PathBuf,
}

impl Dialect for SqliteDialect {
    const NAME: &'static str = "sqlite";
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const SIGNING_KEYS: &'static str =
        "SELECT kid, alg, private_der, created_at FROM signing_keys ORDER BY created_at, rowid";
    const LOCK_SIGNING_KEYS: Option<&'static str> = None;
    const RECORD_CODE_ISSUE: &'static str = "UPDATE auth_codes SET issued_family_id = COALESCE($1, issued_family_id), \
         issued_access = json_insert(issued_access, '$[#]', json_array($2, $3)) \
         WHERE code_hash = $4 AND used RETURNING reuse_seen";
    const REVOKE_JTI: &'static str = "INSERT INTO revoked_access_tokens (jti, exp) VALUES ($1, $2) \
         ON CONFLICT (jti) DO UPDATE SET exp = max(exp, excluded.exp)";
}

/// The SQLite migrations embedded in this binary, oldest first.
pub fn migrations() -> Vec<Migration> {
    embedded!("sqlite")
}

/// Each connection's settings beyond sqlx's defaults (foreign keys on, a
/// busy timeout of 5 seconds): write-ahead logging, so readers run beside
/// the writer, and `synchronous = NORMAL`, which is durable with WAL.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;";

impl SqlStore<SqliteDialect> {
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
        let writer = connect(pool_options(1), &file_url(path, "rwc").map_err(open_err)?)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let store = async {
            migrate::run(&writer, &migrations).await?;
            let readers = connect(pool_options(4), &file_url(path, "ro").map_err(open_err)?)
                .await
                .map_err(|e| open_err(e.to_string()))?;
            Ok(SqlStore {
                writer: writer.clone(),
                readers,
                dialect: SqliteDialect { path: path.to_path_buf() },
            })
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
        &self.dialect.path
    }
}

/// A pool of at most `max` connections, each set up with [`PRAGMAS`].
fn pool_options(max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new().max_connections(max).after_connect(|conn, _| {
        Box::pin(async move { conn.execute(sqlx::raw_sql(PRAGMAS)).await.map(drop) })
    })
}

/// The `sqlite:` URL of `path` opened in `mode` (`rwc`: read, write and
/// create; `ro`: read only). Every byte but the unreserved ones is
/// percent-encoded, slashes included, so the path reaches SQLite as it is.
fn file_url(path: &Path, mode: &str) -> Result<url::Url, String> {
    let text = path.to_str().ok_or_else(|| "the path is not valid UTF-8".to_owned())?;
    let mut url = String::from("sqlite:");
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            let _ = write!(url, "%{byte:02X}");
        }
    }
    url.push_str("?mode=");
    url.push_str(mode);
    url::Url::parse(&url).map_err(|e| format!("cannot name the file in a URL: {e}"))
}

#[cfg(test)]
mod tests {
    use sqlx::{AnyPool, Row};

    use super::*;
    use crate::store::StoreBase;

    /// `journal_mode`, `synchronous`, `foreign_keys` and `busy_timeout` of a
    /// connection of `pool`.
    async fn settings(pool: &AnyPool) -> (String, i64, i64, i64) {
        let mut conn = pool.acquire().await.unwrap();
        let mut text = Vec::new();
        for pragma in ["journal_mode", "synchronous", "foreign_keys", "busy_timeout"] {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {pragma}")))
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            text.push(
                row.try_get::<String, _>(0)
                    .or_else(|_| row.try_get::<i64, _>(0).map(|n| n.to_string()))
                    .unwrap(),
            );
        }
        (text[0].clone(), text[1].parse().unwrap(), text[2].parse().unwrap(), text[3].parse().unwrap())
    }

    #[tokio::test]
    async fn writer_and_readers_run_in_wal_mode_with_foreign_keys_and_a_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        // synchronous 1 is NORMAL; the busy timeout is in milliseconds.
        let expected = ("wal".to_owned(), 1, 1, 5000);
        assert_eq!(settings(store.writer_pool()).await, expected);
        assert_eq!(settings(store.reader_pool()).await, expected);
        let refused = sqlx::query("CREATE TABLE t (x INTEGER)").execute(store.reader_pool()).await;
        assert!(refused.is_err(), "the readers are read-only");
        store.close().await;
    }

    #[tokio::test]
    async fn a_path_with_url_characters_names_that_very_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a dir?#%41").join("s:1 ü.db");
        let store = SqliteStore::open(&path).await.unwrap();
        store.close().await;
        assert!(path.exists(), "{}", path.display());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
