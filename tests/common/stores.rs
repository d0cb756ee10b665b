//! The two store backends, for suites that run the same tests on both:
//! SQLite in a temporary folder, and PostgreSQL in a fresh schema of the
//! database named by `OAUTH_SIDECAR_TEST_POSTGRES` (which `scripts/test.sh`
//! starts and exports; a schema per test keeps tests apart and is much
//! quicker to make than a database). Without that variable the PostgreSQL tests fail and
//! say how to start a server; they never pass silently.

use std::sync::Arc;

use oauth_sidecar::store::{PostgresOptions, PostgresStore, SqliteStore, Store};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The variable naming the PostgreSQL server the tests use.
pub const POSTGRES_ENV: &str = "OAUTH_SIDECAR_TEST_POSTGRES";

/// A store backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary folder.
    Sqlite,
    /// A fresh schema in the test PostgreSQL database.
    Postgres,
}

/// Where a test store lives, so that it can be opened again; the SQLite
/// folder is removed when this is dropped.
pub enum Place {
    /// The SQLite file and its folder.
    Sqlite(tempfile::TempDir),
    /// The PostgreSQL URL, its `search_path` set to the test's schema.
    Postgres(String),
}

impl Place {
    /// The `store:` URL of this place, for a configuration file.
    pub fn url(&self) -> String {
        match self {
            Place::Sqlite(dir) => format!("sqlite://{}", dir.path().join("sidecar.db").display()),
            Place::Postgres(url) => url.clone(),
        }
    }

    /// Opens the store here again.
    pub async fn open(&self) -> Arc<dyn Store> {
        match self {
            Place::Sqlite(dir) => Arc::new(SqliteStore::open(&dir.path().join("sidecar.db")).await.unwrap()),
            Place::Postgres(url) => {
                Arc::new(PostgresStore::open(url, PostgresOptions::default()).await.expect("open PostgreSQL"))
            }
        }
    }
}

impl Backend {
    /// A new, empty store of this backend, migrated.
    pub async fn open(self) -> (Arc<dyn Store>, Place) {
        let place = self.place().await;
        (place.open().await, place)
    }

    /// A new, empty place for a store of this backend, not yet opened.
    pub async fn place(self) -> Place {
        match self {
            Backend::Sqlite => Place::Sqlite(tempfile::tempdir().unwrap()),
            Backend::Postgres => Place::Postgres(fresh_database().await),
        }
    }
}

/// The test PostgreSQL server's URL, or a failure saying how to get one.
pub fn postgres_url() -> String {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{POSTGRES_ENV} is not set, so the PostgreSQL store tests cannot run. \
             Run `bash scripts/test.sh`, which installs and starts PostgreSQL on loopback and sets it, \
             or start a server yourself and export the URL of a database its user may create schemas in, e.g. \
             {POSTGRES_ENV}=postgres://sidecar:sidecar-test@127.0.0.1:5432/sidecar"
        ),
    }
}

/// Creates a schema with a unique name in the test database; returns a URL
/// whose connections use it (`options=-c search_path=...`).
pub async fn fresh_database() -> String {
    let server = postgres_url();
    let name = format!("sidecar_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&server).await.unwrap_or_else(|e| {
        panic!("cannot connect to the PostgreSQL server in {POSTGRES_ENV}: {e}; is it running?")
    });
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
        .execute(&mut conn)
        .await
        .expect("CREATE SCHEMA (the test user needs the CREATE privilege on the database)");
    conn.close().await.unwrap();
    let mut url = url::Url::parse(&server).expect("a PostgreSQL URL");
    url.query_pairs_mut().append_pair("options", &format!("-c search_path={name}"));
    url.to_string()
}

/// Runs each named `async fn name(backend: Backend)` of the enclosing file
/// once per backend, as tests `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::stores::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::stores::Backend::Postgres).await
                }
            )*
        }
    };
}
