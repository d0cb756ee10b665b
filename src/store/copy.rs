//! `oauth-sidecar store copy`: moves a one-replica SQLite store into an
//! empty PostgreSQL store without loss, row by row and table by table, in
//! one PostgreSQL transaction (all or nothing).
//!
//! Both schemas have the same tables and columns (the migrations are kept
//! in step), so the copy is driven by the target's own column list: each
//! value is read from SQLite in the type the PostgreSQL column has. Secrets
//! stay as they are stored (hashes, ciphertext, the server's keys), which is
//! why every token, consumer secret and provider token still works after
//! the move: nothing is decrypted or re-hashed.

use std::path::Path;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Row};

use super::sql::rows::opt_flag;
use super::{PostgresOptions, PostgresStore, SqliteStore, StoreBase, StoreError};

/// Tables copied, in an order that keeps related rows together;
/// `sidecar_meta` (facts about the store itself) stays the target's own.
const TABLES: &[(&str, &str)] = &[
    ("sidecar_secrets", "key"),
    ("consumers", "client_id"),
    ("users", "username"),
    ("signing_keys", "created_at, rowid"),
    ("auth_codes", "code_hash"),
    ("refresh_tokens", "token_hash"),
    ("refresh_grace", "token_hash"),
    ("login_sessions", "id_hash"),
    ("revoked_access_tokens", "jti"),
    ("access_tokens", "jti"),
    ("session_consumers", "sid, client_id"),
    ("backchannel_logouts", "sid, client_id"),
    ("client_registrations", "name"),
    ("provider_tokens", "id"),
    ("client_states", "state_hash"),
    ("admin_tokens", "id"),
    ("federated_identities", "provider, subject"),
    ("login_states", "state_hash"),
];

/// How many rows a copy moved, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// `(table, rows)`, in the order copied.
    pub tables: Vec<(&'static str, u64)>,
}

/// Copies the SQLite store at `from` into the PostgreSQL store at `to`,
/// migrating both first. Refuses a target that holds any row already, so a
/// copy never merges two stores.
pub async fn sqlite_to_postgres(
    from: &Path,
    to: &str,
    options: PostgresOptions,
) -> Result<CopyReport, StoreError> {
    if !from.exists() {
        return Err(StoreError::Open { location: from.display().to_string(), reason: "no such file".into() });
    }
    let source = SqliteStore::open(from).await?;
    let target = PostgresStore::open(to, options).await?;
    let result = copy(&source, &target).await;
    source.close().await;
    target.close().await;
    result
}

async fn copy(source: &SqliteStore, target: &PostgresStore) -> Result<CopyReport, StoreError> {
    let err = |e: sqlx::Error| StoreError::Query(e.to_string());
    let pg = target.writer_pool();
    for (table, _) in TABLES {
        let any = sqlx::query(AssertSqlSafe(format!("SELECT 1 FROM {table} LIMIT 1")))
            .fetch_optional(pg)
            .await
            .map_err(err)?
            .is_some();
        if any {
            return Err(StoreError::Query(format!(
                "the target store is not empty (table {table} has rows); copy only into a new database"
            )));
        }
    }
    let mut report = CopyReport::default();
    let mut tx = pg.begin().await.map_err(err)?;
    for (table, order) in TABLES {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 AND column_name <> 'seq' \
             ORDER BY ordinal_position",
        )
        .bind(*table)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        let list = names.join(", ");
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {list} FROM {table} ORDER BY {order}")))
            .fetch_all(source.reader_pool())
            .await
            .map_err(err)?;
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let insert = format!("INSERT INTO {table} ({list}) VALUES ({})", placeholders.join(", "));
        for row in &rows {
            let mut query: Query<'_, Any, AnyArguments> = sqlx::query(AssertSqlSafe(insert.clone()));
            for (i, (name, kind)) in columns.iter().enumerate() {
                query = match kind.as_str() {
                    "bigint" | "integer" => query.bind(row.try_get::<Option<i64>, _>(i).map_err(err)?),
                    "boolean" => query.bind(opt_flag(row, name).map_err(err)?),
                    "bytea" => query.bind(row.try_get::<Option<Vec<u8>>, _>(i).map_err(err)?),
                    "text" => query.bind(row.try_get::<Option<String>, _>(i).map_err(err)?),
                    other => {
                        return Err(StoreError::Query(format!(
                            "cannot copy {table}.{name}: unexpected column type {other}"
                        )));
                    }
                };
            }
            query.execute(&mut *tx).await.map_err(err)?;
        }
        report.tables.push((table, rows.len() as u64));
    }
    // New provider tokens continue after the copied ids.
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('provider_tokens', 'id'), \
         COALESCE((SELECT max(id) FROM provider_tokens), 0) + 1, false)",
    )
    .execute(&mut *tx)
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(report)
}
