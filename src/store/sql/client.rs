//! The OAuth client role's tables: client registrations, provider tokens
//! (ciphertext only) with their refresh leases, and pending authorizations.

use async_trait::async_trait;

use super::{Dialect, SqlStore, encode_list, query_err, rows};
use crate::store::{
    ClientRegistrationRecord, ClientStateRecord, ClientStore, ProviderTokenRecord, StoreError,
};

#[async_trait]
impl<D: Dialect> ClientStore for SqlStore<D> {
    async fn put_client_registration(&self, r: &ClientRegistrationRecord) -> Result<(), StoreError> {
        let scopes = r.scopes.as_deref().map(encode_list).transpose()?;
        sqlx::query(
            "INSERT INTO client_registrations (name, provider, label, client_id, client_secret, tenant, scopes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO UPDATE SET provider = excluded.provider, \
             label = excluded.label, client_id = excluded.client_id, client_secret = excluded.client_secret, \
             tenant = excluded.tenant, scopes = excluded.scopes",
        )
        .bind(&r.name)
        .bind(&r.provider)
        .bind(&r.label)
        .bind(&r.client_id)
        .bind(&r.client_secret)
        .bind(&r.tenant)
        .bind(scopes)
        .bind(r.created_at)
        .execute(&self.writer)
        .await
        .map(drop)
        .map_err(query_err)
    }

    async fn client_registrations(&self) -> Result<Vec<ClientRegistrationRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM client_registrations ORDER BY name")
            .fetch_all(&self.readers)
            .await
            .map_err(query_err)?;
        rows.iter().map(|row| rows::client_registration(row).map_err(query_err)).collect()
    }

    async fn delete_client_registration(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        for sql in
            ["DELETE FROM provider_tokens WHERE client = $1", "DELETE FROM client_states WHERE client = $1"]
        {
            sqlx::query(sql).bind(name).execute(&mut *tx).await.map_err(query_err)?;
        }
        let done = sqlx::query("DELETE FROM client_registrations WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(query_err)?;
        tx.commit().await.map_err(query_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn save_provider_token(&self, t: &ProviderTokenRecord) -> Result<i64, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO provider_tokens (client, tag, grant_type, scopes, token_type, access_token, refresh_token, \
             expires_at, owner_id, owner_name, owner_email, raw, status, last_error, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (client, tag) DO UPDATE SET grant_type = excluded.grant_type, scopes = excluded.scopes, \
             token_type = excluded.token_type, access_token = excluded.access_token, \
             refresh_token = excluded.refresh_token, expires_at = excluded.expires_at, \
             owner_id = excluded.owner_id, owner_name = excluded.owner_name, owner_email = excluded.owner_email, \
             raw = excluded.raw, status = excluded.status, last_error = excluded.last_error, \
             updated_at = excluded.updated_at RETURNING id",
        )
        .bind(&t.client)
        .bind(&t.tag)
        .bind(&t.grant_type)
        .bind(encode_list(&t.scopes)?)
        .bind(&t.token_type)
        .bind(&t.access_token)
        .bind(&t.refresh_token)
        .bind(t.expires_at)
        .bind(&t.owner_id)
        .bind(&t.owner_name)
        .bind(&t.owner_email)
        .bind(&t.raw)
        .bind(&t.status)
        .bind(&t.last_error)
        .bind(t.created_at)
        .bind(t.updated_at)
        .fetch_one(&self.writer)
        .await
        .map_err(query_err)?;
        Ok(id)
    }

    async fn provider_token(&self, id: i64) -> Result<Option<ProviderTokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM provider_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.readers)
            .await
            .map_err(query_err)?;
        row.as_ref().map(rows::provider_token).transpose().map_err(query_err)
    }

    async fn provider_token_by_tag(
        &self,
        client: &str,
        tag: &str,
    ) -> Result<Option<ProviderTokenRecord>, StoreError> {
        // From the writer: a refresh reads what the last refresh wrote.
        let row = sqlx::query("SELECT * FROM provider_tokens WHERE client = $1 AND tag = $2")
            .bind(client)
            .bind(tag)
            .fetch_optional(&self.writer)
            .await
            .map_err(query_err)?;
        row.as_ref().map(rows::provider_token).transpose().map_err(query_err)
    }

    async fn provider_tokens(&self) -> Result<Vec<ProviderTokenRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM provider_tokens ORDER BY id")
            .fetch_all(&self.readers)
            .await
            .map_err(query_err)?;
        rows.iter().map(|row| rows::provider_token(row).map_err(query_err)).collect()
    }

    async fn delete_provider_token(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM provider_tokens WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(query_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_provider_token_status(
        &self,
        id: i64,
        status: &str,
        last_error: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE provider_tokens SET status = $1, last_error = $2, updated_at = $3 WHERE id = $4")
            .bind(status)
            .bind(last_error)
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await
            .map(drop)
            .map_err(query_err)
    }

    /// One conditional update: of concurrent callers, one changes the row.
    async fn lease_provider_token(
        &self,
        id: i64,
        holder: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE provider_tokens SET lease_holder = $1, lease_until = $2 \
             WHERE id = $3 AND (lease_until IS NULL OR lease_until <= $4 OR lease_holder = $5)",
        )
        .bind(holder)
        .bind(until)
        .bind(id)
        .bind(now)
        .bind(holder)
        .execute(&self.writer)
        .await
        .map_err(query_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_provider_token(&self, id: i64, holder: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE provider_tokens SET lease_holder = NULL, lease_until = NULL WHERE id = $1 AND lease_holder = $2",
        )
        .bind(id)
        .bind(holder)
        .execute(&self.writer)
        .await
        .map(drop)
        .map_err(query_err)
    }

    async fn add_client_state(&self, s: &ClientStateRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO client_states (state_hash, client, browser_hash, verifier, nonce, tag, scopes, return_to, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&s.state_hash)
        .bind(&s.client)
        .bind(&s.browser_hash)
        .bind(&s.verifier)
        .bind(&s.nonce)
        .bind(&s.tag)
        .bind(encode_list(&s.scopes)?)
        .bind(&s.return_to)
        .bind(s.expires_at)
        .execute(&self.writer)
        .await
        .map(drop)
        .map_err(query_err)
    }

    async fn take_client_state(
        &self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<ClientStateRecord>, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("DELETE FROM client_states WHERE state_hash = $1 RETURNING *")
            .bind(state_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_err)?;
        // Long-expired states are dropped on the way (an hour past their end,
        // so a late return still learns that its state expired).
        sqlx::query("DELETE FROM client_states WHERE expires_at < $1")
            .bind(now - 3600)
            .execute(&mut *tx)
            .await
            .map_err(query_err)?;
        tx.commit().await.map_err(query_err)?;
        row.as_ref().map(rows::client_state).transpose().map_err(query_err)
    }
}
