//! The schema migrations embedded in the binary, and how they are applied:
//! each in one transaction, recorded in sqlx's `_sqlx_migrations` table.

use std::borrow::Cow;

use sqlx::migrate::{MigrateError, Migration as SqlxMigration, MigrationType, Migrator};
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::store::StoreError;

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
    vec![
        Migration {
            version: 1,
            description: "init",
            sql: Cow::Borrowed(include_str!("../../../migrations/sqlite/0001_init.sql")),
        },
        Migration {
            version: 2,
            description: "authorization server",
            sql: Cow::Borrowed(include_str!("../../../migrations/sqlite/0002_authorization_server.sql")),
        },
        Migration {
            version: 3,
            description: "refresh grace",
            sql: Cow::Borrowed(include_str!("../../../migrations/sqlite/0003_refresh_grace.sql")),
        },
        Migration {
            version: 4,
            description: "oauth client",
            sql: Cow::Borrowed(include_str!("../../../migrations/sqlite/0004_oauth_client.sql")),
        },
    ]
}

/// Applies the migrations `pool` has not seen yet.
pub(super) async fn run(pool: &SqlitePool, migrations: &[Migration]) -> Result<(), StoreError> {
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
