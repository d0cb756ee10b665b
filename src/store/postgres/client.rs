//! The OAuth client role's tables: client registrations, provider tokens
//! (ciphertext only) and pending authorizations.

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

use super::{decode_list, encode_list, query_err};
use crate::store::{ClientRegistrationRecord, ClientStateRecord, ProviderTokenRecord, StoreError};

pub(super) async fn put_registration(pool: &PgPool, r: &ClientRegistrationRecord) -> Result<(), StoreError> {
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
    .execute(pool)
    .await
    .map(drop)
    .map_err(query_err)
}

fn registration(row: &PgRow) -> Result<ClientRegistrationRecord, sqlx::Error> {
    let scopes: Option<String> = row.try_get("scopes")?;
    Ok(ClientRegistrationRecord {
        name: row.try_get("name")?,
        provider: row.try_get("provider")?,
        label: row.try_get("label")?,
        client_id: row.try_get("client_id")?,
        client_secret: row.try_get("client_secret")?,
        tenant: row.try_get("tenant")?,
        scopes: match scopes {
            Some(_) => Some(decode_list(row, "scopes")?),
            None => None,
        },
        created_at: row.try_get("created_at")?,
    })
}

pub(super) async fn registrations(pool: &PgPool) -> Result<Vec<ClientRegistrationRecord>, StoreError> {
    let rows = sqlx::query("SELECT * FROM client_registrations ORDER BY name")
        .fetch_all(pool)
        .await
        .map_err(query_err)?;
    rows.iter().map(|row| registration(row).map_err(query_err)).collect()
}

pub(super) async fn delete_registration(pool: &PgPool, name: &str) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await.map_err(query_err)?;
    sqlx::query("DELETE FROM provider_tokens WHERE client = $1")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(query_err)?;
    sqlx::query("DELETE FROM client_states WHERE client = $1")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(query_err)?;
    let done = sqlx::query("DELETE FROM client_registrations WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(query_err)?;
    tx.commit().await.map_err(query_err)?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn save_token(pool: &PgPool, t: &ProviderTokenRecord) -> Result<i64, StoreError> {
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
    .fetch_one(pool)
    .await
    .map_err(query_err)?;
    Ok(id)
}

fn token(row: &PgRow) -> Result<ProviderTokenRecord, sqlx::Error> {
    Ok(ProviderTokenRecord {
        id: row.try_get("id")?,
        client: row.try_get("client")?,
        tag: row.try_get("tag")?,
        grant_type: row.try_get("grant_type")?,
        scopes: decode_list(row, "scopes")?,
        token_type: row.try_get("token_type")?,
        access_token: row.try_get("access_token")?,
        refresh_token: row.try_get("refresh_token")?,
        expires_at: row.try_get("expires_at")?,
        owner_id: row.try_get("owner_id")?,
        owner_name: row.try_get("owner_name")?,
        owner_email: row.try_get("owner_email")?,
        raw: row.try_get("raw")?,
        status: row.try_get("status")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) async fn token_by_id(pool: &PgPool, id: i64) -> Result<Option<ProviderTokenRecord>, StoreError> {
    let row = sqlx::query("SELECT * FROM provider_tokens WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(query_err)?;
    row.as_ref().map(token).transpose().map_err(query_err)
}

pub(super) async fn token_by_tag(
    pool: &PgPool,
    client: &str,
    tag: &str,
) -> Result<Option<ProviderTokenRecord>, StoreError> {
    let row = sqlx::query("SELECT * FROM provider_tokens WHERE client = $1 AND tag = $2")
        .bind(client)
        .bind(tag)
        .fetch_optional(pool)
        .await
        .map_err(query_err)?;
    row.as_ref().map(token).transpose().map_err(query_err)
}

pub(super) async fn tokens(pool: &PgPool) -> Result<Vec<ProviderTokenRecord>, StoreError> {
    let rows =
        sqlx::query("SELECT * FROM provider_tokens ORDER BY id").fetch_all(pool).await.map_err(query_err)?;
    rows.iter().map(|row| token(row).map_err(query_err)).collect()
}

pub(super) async fn delete_token(pool: &PgPool, id: i64) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM provider_tokens WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(query_err)?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn set_token_status(
    pool: &PgPool,
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
        .execute(pool)
        .await
        .map(drop)
        .map_err(query_err)
}

pub(super) async fn add_state(pool: &PgPool, s: &ClientStateRecord) -> Result<(), StoreError> {
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
    .execute(pool)
    .await
    .map(drop)
    .map_err(query_err)
}

pub(super) async fn take_state(
    pool: &PgPool,
    state_hash: &str,
    now: i64,
) -> Result<Option<ClientStateRecord>, StoreError> {
    let mut tx = pool.begin().await.map_err(query_err)?;
    let row = sqlx::query("DELETE FROM client_states WHERE state_hash = $1 RETURNING *")
        .bind(state_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_err)?;
    // Long-expired states are dropped on the way (an hour past their end, so
    // a late return still learns that its state expired).
    sqlx::query("DELETE FROM client_states WHERE expires_at < $1")
        .bind(now - 3600)
        .execute(&mut *tx)
        .await
        .map_err(query_err)?;
    tx.commit().await.map_err(query_err)?;
    let Some(row) = row else { return Ok(None) };
    let record = (|| {
        Ok::<_, sqlx::Error>(ClientStateRecord {
            state_hash: row.try_get("state_hash")?,
            client: row.try_get("client")?,
            browser_hash: row.try_get("browser_hash")?,
            verifier: row.try_get("verifier")?,
            nonce: row.try_get("nonce")?,
            tag: row.try_get("tag")?,
            scopes: decode_list(&row, "scopes")?,
            return_to: row.try_get("return_to")?,
            expires_at: row.try_get("expires_at")?,
        })
    })()
    .map_err(query_err)?;
    Ok(Some(record))
}

/// One conditional update: of concurrent callers, one changes the row.
pub(super) async fn lease_token(
    pool: &PgPool,
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
    .execute(pool)
    .await
    .map_err(query_err)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn release_token(pool: &PgPool, id: i64, holder: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE provider_tokens SET lease_holder = NULL, lease_until = NULL WHERE id = $1 AND lease_holder = $2",
    )
    .bind(id)
    .bind(holder)
    .execute(pool)
    .await
    .map(drop)
    .map_err(query_err)
}
