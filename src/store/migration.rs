//! What a schema migration is, for every backend: a version, a description
//! and its SQL, applied by sqlx's migrator and recorded in its
//! `_sqlx_migrations` table. Each backend embeds its own list
//! (`migrations/sqlite/`, `migrations/postgres/`) with the same versions.

use std::borrow::Cow;

use sqlx::migrate::{MigrateError, Migration as SqlxMigration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

use super::StoreError;

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

/// sqlx's migrator for `migrations`.
pub(super) fn migrator(migrations: &[Migration]) -> Migrator {
    let known: Vec<SqlxMigration> = migrations
        .iter()
        .map(|m| {
            let sql = AssertSqlSafe(m.sql.clone().into_owned()).into_sql_str();
            SqlxMigration::new(m.version, Cow::Borrowed(m.description), MigrationType::Simple, sql, false)
        })
        .collect();
    Migrator::with_migrations(known)
}

/// The store's error for what sqlx's migrator reported.
pub(super) fn migrate_error(e: MigrateError, migrations: &[Migration]) -> StoreError {
    match e {
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
    }
}
