//! What the admin pages and API keep: API tokens (hashes only) and the
//! listing of current grants.

use async_trait::async_trait;

use super::{Dialect, SqlStore, encode_list, query_err, rows};
use crate::store::{AdminStore, AdminTokenRecord, RefreshTokenRecord, StoreError};

#[async_trait]
impl<D: Dialect> AdminStore for SqlStore<D> {
    async fn add_admin_token(&self, t: &AdminTokenRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO admin_tokens (id, label, token_hash, permissions, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&t.id)
        .bind(&t.label)
        .bind(&t.token_hash)
        .bind(encode_list(&t.permissions)?)
        .bind(t.created_at)
        .execute(&self.writer)
        .await
        .map(drop)
        .map_err(query_err)
    }

    async fn admin_token(&self, token_hash: &str) -> Result<Option<AdminTokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM admin_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.readers)
            .await
            .map_err(query_err)?;
        row.as_ref().map(rows::admin_token).transpose().map_err(query_err)
    }

    async fn admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM admin_tokens ORDER BY created_at, id")
            .fetch_all(&self.readers)
            .await
            .map_err(query_err)?;
        rows.iter().map(rows::admin_token).collect::<Result<_, _>>().map_err(query_err)
    }

    async fn delete_admin_token(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM admin_tokens WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(query_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn current_refresh_tokens(&self, now: i64) -> Result<Vec<RefreshTokenRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM refresh_tokens WHERE rotated_at IS NULL AND NOT revoked AND expires_at > $1 \
             ORDER BY client_id, username, expires_at",
        )
        .bind(now)
        .fetch_all(&self.readers)
        .await
        .map_err(query_err)?;
        rows.iter().map(rows::refresh_token).collect::<Result<_, _>>().map_err(query_err)
    }
}
