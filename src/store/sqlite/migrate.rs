//! The SQLite schema migrations embedded in the binary, and how they are
//! applied: each in one transaction, recorded in sqlx's `_sqlx_migrations`.

use std::borrow::Cow;

use sqlx::sqlite::SqlitePool;

use crate::store::StoreError;
use crate::store::migration::{Migration, migrate_error, migrator};

/// The SQLite migrations embedded in this binary, oldest first.
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
        Migration {
            version: 5,
            description: "refresh lease",
            sql: Cow::Borrowed(include_str!("../../../migrations/sqlite/0005_refresh_lease.sql")),
        },
        Migration {
            version: 6,
            description: "admin",
            sql: Cow::Borrowed(include_str!("../../../migrations/sqlite/0006_admin.sql")),
        },
        Migration {
            version: 7,
            description: "change announcements",
            sql: Cow::Borrowed(include_str!("../../../migrations/sqlite/0007_change_announcements.sql")),
        },
    ]
}

/// Applies the migrations `pool` has not seen yet.
pub(super) async fn run(pool: &SqlitePool, migrations: &[Migration]) -> Result<(), StoreError> {
    migrator(migrations).run(pool).await.map_err(|e| migrate_error(e, migrations))
}
