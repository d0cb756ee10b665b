//! What the admin pages and API keep: API tokens (hashes only), sliding
//! admin sessions, and the listing of current grants.

use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

use super::grants::refresh_from_row;
use super::{decode_list, encode_list, query_err};
use crate::store::{AdminTokenRecord, RefreshTokenRecord, StoreError};

pub(super) async fn touch_session(
    pool: &SqlitePool,
    id_hash: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE login_sessions SET expires_at = ? WHERE id_hash = ?")
        .bind(expires_at)
        .bind(id_hash)
        .execute(pool)
        .await
        .map(drop)
        .map_err(query_err)
}

pub(super) async fn add_token(pool: &SqlitePool, t: &AdminTokenRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO admin_tokens (id, label, token_hash, permissions, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&t.id)
    .bind(&t.label)
    .bind(&t.token_hash)
    .bind(encode_list(&t.permissions)?)
    .bind(t.created_at)
    .execute(pool)
    .await
    .map(drop)
    .map_err(query_err)
}

pub(super) async fn token(
    pool: &SqlitePool,
    token_hash: &str,
) -> Result<Option<AdminTokenRecord>, StoreError> {
    let row = sqlx::query("SELECT * FROM admin_tokens WHERE token_hash = ?")
        .bind(token_hash)
        .fetch_optional(pool)
        .await
        .map_err(query_err)?;
    row.as_ref().map(token_from_row).transpose().map_err(query_err)
}

pub(super) async fn tokens(pool: &SqlitePool) -> Result<Vec<AdminTokenRecord>, StoreError> {
    let rows = sqlx::query("SELECT * FROM admin_tokens ORDER BY created_at, id")
        .fetch_all(pool)
        .await
        .map_err(query_err)?;
    rows.iter().map(token_from_row).collect::<Result<_, _>>().map_err(query_err)
}

pub(super) async fn delete_token(pool: &SqlitePool, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM admin_tokens WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await
        .map_err(query_err)?;
    Ok(done.rows_affected() > 0)
}

fn token_from_row(row: &SqliteRow) -> Result<AdminTokenRecord, sqlx::Error> {
    Ok(AdminTokenRecord {
        id: row.try_get("id")?,
        label: row.try_get("label")?,
        token_hash: row.try_get("token_hash")?,
        permissions: decode_list(row, "permissions")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) async fn current_refresh_tokens(
    pool: &SqlitePool,
    now: i64,
) -> Result<Vec<RefreshTokenRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM refresh_tokens WHERE rotated_at IS NULL AND revoked = ? AND expires_at > ? \
         ORDER BY client_id, username, expires_at",
    )
    .bind(false)
    .bind(now)
    .fetch_all(pool)
    .await
    .map_err(query_err)?;
    rows.iter().map(refresh_from_row).collect::<Result<_, _>>().map_err(query_err)
}
