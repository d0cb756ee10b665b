//! How schema migrations are applied, for both databases: each in one
//! transaction by sqlx's migrator, recorded in its `_sqlx_migrations`
//! table. On PostgreSQL the migrator holds a session advisory lock while it
//! applies them, so of several replicas starting together one migrates and
//! the others wait, then find nothing to do; SQLite's single writer needs
//! no lock.

use std::borrow::Cow;

use sqlx::AnyPool;
use sqlx::migrate::{MigrateError, Migration as SqlxMigration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::store::{Migration, StoreError};

/// The migrations in `migrations/<folder>/`, embedded in the binary, oldest
/// first. The two folders hold the same versions.
macro_rules! embedded {
    ($folder:literal) => {
        [
            (1, "init"),
            (2, "authorization server"),
            (3, "refresh grace"),
            (4, "oauth client"),
            (5, "refresh lease"),
            (6, "admin"),
            (7, "change announcements"),
            (8, "session kind"),
            (9, "access tokens"),
            (10, "federated sign-in"),
            (11, "logout"),
        ]
        .into_iter()
        .zip([
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $folder, "/0001_init.sql")),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $folder,
                "/0002_authorization_server.sql"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $folder,
                "/0003_refresh_grace.sql"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $folder,
                "/0004_oauth_client.sql"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $folder,
                "/0005_refresh_lease.sql"
            )),
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $folder, "/0006_admin.sql")),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $folder,
                "/0007_change_announcements.sql"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $folder,
                "/0008_session_kind.sql"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $folder,
                "/0009_access_tokens.sql"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $folder,
                "/0010_federated_sign_in.sql"
            )),
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $folder, "/0011_logout.sql")),
        ])
        .map(|((version, description), sql)| $crate::store::Migration {
            version,
            description,
            sql: std::borrow::Cow::Borrowed(sql),
        })
        .collect::<Vec<_>>()
    };
}
pub(super) use embedded;

/// Applies the migrations `pool` has not seen yet.
pub(super) async fn run(pool: &AnyPool, migrations: &[Migration]) -> Result<(), StoreError> {
    migrator(migrations).run(pool).await.map_err(|e| migrate_error(e, migrations))
}

/// sqlx's migrator for `migrations`.
fn migrator(migrations: &[Migration]) -> Migrator {
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
fn migrate_error(e: MigrateError, migrations: &[Migration]) -> StoreError {
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
