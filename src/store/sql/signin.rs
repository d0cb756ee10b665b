//! What signing in keeps: users by name and login sessions.

use async_trait::async_trait;

use super::{Dialect, SqlStore, query_err, rows};
use crate::store::{SessionRecord, SignInStore, StoreError, UserRecord};

#[async_trait]
impl<D: Dialect> SignInStore for SqlStore<D> {
    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT username, password_hash, roles, admin, permissions, disabled FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.readers)
        .await
        .map_err(query_err)?;
        row.as_ref().map(rows::user).transpose().map_err(query_err)
    }

    async fn add_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO login_sessions (id_hash, kind, username, auth_time, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.id_hash)
        .bind(&session.kind)
        .bind(&session.username)
        .bind(session.auth_time)
        .bind(session.expires_at)
        .execute(&self.writer)
        .await
        .map(drop)
        .map_err(query_err)
    }

    async fn session(
        &self,
        id_hash: &str,
        kind: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id_hash, kind, username, auth_time, expires_at FROM login_sessions \
             WHERE id_hash = $1 AND kind = $2 AND expires_at > $3",
        )
        .bind(id_hash)
        .bind(kind)
        .bind(now)
        .fetch_optional(&self.readers)
        .await
        .map_err(query_err)?;
        row.as_ref().map(rows::session).transpose().map_err(query_err)
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.writer)
            .await
            .map(drop)
            .map_err(query_err)
    }

    async fn touch_session(&self, id_hash: &str, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE login_sessions SET expires_at = $1 WHERE id_hash = $2")
            .bind(expires_at)
            .bind(id_hash)
            .execute(&self.writer)
            .await
            .map(drop)
            .map_err(query_err)
    }
}
