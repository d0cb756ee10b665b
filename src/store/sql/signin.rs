//! What signing in keeps: users by name and login sessions.

use async_trait::async_trait;

use sqlx::Row;

use super::{Dialect, SqlStore, encode_list, query_err, rows};
use crate::store::{
    FederatedIdentityRecord, LoginStateRecord, RoleSource, SessionRecord, SignInStore, StoreError, UserRecord,
};

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

    async fn add_login_state(&self, state: &LoginStateRecord) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // Long-expired states are dropped on the way (an hour past their
        // end, so a late return still learns that its state expired).
        sqlx::query("DELETE FROM login_states WHERE expires_at < $1")
            .bind(crate::clock::now() - 3600)
            .execute(&mut *tx)
            .await
            .map_err(query_err)?;
        sqlx::query(
            "INSERT INTO login_states (state_hash, browser_hash, data, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&state.state_hash)
        .bind(&state.browser_hash)
        .bind(&state.data)
        .bind(state.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(query_err)?;
        tx.commit().await.map_err(query_err)
    }

    async fn take_login_state(
        &self,
        state_hash: &str,
        _now: i64,
    ) -> Result<Option<LoginStateRecord>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM login_states WHERE state_hash = $1 \
             RETURNING state_hash, browser_hash, data, expires_at",
        )
        .bind(state_hash)
        .fetch_optional(&self.writer)
        .await
        .map_err(query_err)?;
        row.map(|row| {
            Ok(LoginStateRecord {
                state_hash: row.try_get("state_hash")?,
                browser_hash: row.try_get("browser_hash")?,
                data: row.try_get("data")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
        .map_err(query_err)
    }

    async fn federated_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<FederatedIdentityRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT provider, subject, username, email, role_sources, last_sign_in \
             FROM federated_identities WHERE provider = $1 AND subject = $2",
        )
        .bind(provider)
        .bind(subject)
        .fetch_optional(&self.readers)
        .await
        .map_err(query_err)?;
        row.as_ref().map(federated_identity).transpose().map_err(query_err)
    }

    async fn save_federated_sign_in(
        &self,
        user: &UserRecord,
        create: bool,
        identity: &FederatedIdentityRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let roles = encode_list(&user.roles)?;
        let permissions = encode_list(&user.permissions)?;
        let saved = if create {
            sqlx::query(
                "INSERT INTO users (username, password_hash, roles, admin, permissions, disabled) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(roles)
            .bind(user.admin)
            .bind(permissions)
            .bind(user.disabled)
            .execute(&mut *tx)
            .await
        } else {
            sqlx::query("UPDATE users SET roles = $1, admin = $2, permissions = $3 WHERE username = $4")
                .bind(roles)
                .bind(user.admin)
                .bind(permissions)
                .bind(&user.username)
                .execute(&mut *tx)
                .await
        };
        saved.map_err(query_err)?;
        let sources = serde_json::to_string(&identity.role_sources)
            .map_err(|e| StoreError::Query(format!("cannot encode role sources: {e}")))?;
        sqlx::query(
            "INSERT INTO federated_identities \
             (provider, subject, username, email, role_sources, last_sign_in) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (provider, subject) DO UPDATE SET username = excluded.username, \
             email = excluded.email, role_sources = excluded.role_sources, \
             last_sign_in = excluded.last_sign_in",
        )
        .bind(&identity.provider)
        .bind(&identity.subject)
        .bind(&identity.username)
        .bind(&identity.email)
        .bind(sources)
        .bind(identity.last_sign_in)
        .execute(&mut *tx)
        .await
        .map_err(query_err)?;
        tx.commit().await.map_err(query_err)
    }

    async fn federated_identities(&self) -> Result<Vec<FederatedIdentityRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, subject, username, email, role_sources, last_sign_in \
             FROM federated_identities ORDER BY username, provider",
        )
        .fetch_all(&self.readers)
        .await
        .map_err(query_err)?;
        rows.iter().map(federated_identity).collect::<Result<_, _>>().map_err(query_err)
    }
}

fn federated_identity(row: &sqlx::any::AnyRow) -> Result<FederatedIdentityRecord, sqlx::Error> {
    let sources: String = row.try_get("role_sources")?;
    let role_sources: Vec<RoleSource> = serde_json::from_str(&sources)
        .map_err(|e| sqlx::Error::ColumnDecode { index: "role_sources".into(), source: Box::new(e) })?;
    Ok(FederatedIdentityRecord {
        provider: row.try_get("provider")?,
        subject: row.try_get("subject")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        role_sources,
        last_sign_in: row.try_get("last_sign_in")?,
    })
}
