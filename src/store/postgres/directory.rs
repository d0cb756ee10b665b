//! Who the authorization server knows: consumers, users, its signing keys and
//! the server-wide values it creates once.

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

use super::{decode_list, encode_list, query_err};
use crate::store::{ConsumerRecord, SigningKeyRecord, StoreError, UserRecord};

pub(super) async fn meta_get_or_insert(
    pool: &PgPool,
    key: &str,
    value: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let mut tx = pool.begin().await.map_err(query_err)?;
    sqlx::query("INSERT INTO sidecar_secrets (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(query_err)?;
    let stored: Vec<u8> = sqlx::query_scalar("SELECT value FROM sidecar_secrets WHERE key = $1")
        .bind(key)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_err)?;
    tx.commit().await.map_err(query_err)?;
    Ok(stored)
}

// --- consumers ---

pub(super) async fn put_consumer(pool: &PgPool, c: &ConsumerRecord) -> Result<(), StoreError> {
    // An upsert, not INSERT OR REPLACE: replacing would delete the row first.
    sqlx::query(
        "INSERT INTO consumers (client_id, label, secret_hash, confidential, user_id, redirect_uris, \
         allowed_origins, third_party, scopes, grant_types, access_token_ttl, refresh_token_ttl, \
         grant_user_access, limit_requested_access, limit_user_access, managed_by_config) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (client_id) DO UPDATE SET label = excluded.label, \
         secret_hash = excluded.secret_hash, confidential = excluded.confidential, \
         user_id = excluded.user_id, redirect_uris = excluded.redirect_uris, \
         allowed_origins = excluded.allowed_origins, third_party = excluded.third_party, \
         scopes = excluded.scopes, grant_types = excluded.grant_types, \
         access_token_ttl = excluded.access_token_ttl, refresh_token_ttl = excluded.refresh_token_ttl, \
         grant_user_access = excluded.grant_user_access, \
         limit_requested_access = excluded.limit_requested_access, \
         limit_user_access = excluded.limit_user_access, managed_by_config = excluded.managed_by_config",
    )
    .bind(&c.client_id)
    .bind(&c.label)
    .bind(&c.secret_hash)
    .bind(c.confidential)
    .bind(&c.user_id)
    .bind(encode_list(&c.redirect_uris)?)
    .bind(encode_list(&c.allowed_origins)?)
    .bind(c.third_party)
    .bind(encode_list(&c.scopes)?)
    .bind(encode_list(&c.grant_types)?)
    .bind(ttl_to_db(c.access_token_ttl, "access_token_ttl")?)
    .bind(ttl_to_db(c.refresh_token_ttl, "refresh_token_ttl")?)
    .bind(c.grant_user_access)
    .bind(c.limit_requested_access)
    .bind(c.limit_user_access)
    .bind(c.managed_by_config)
    .execute(pool)
    .await
    .map(drop)
    .map_err(query_err)
}

pub(super) async fn consumer(pool: &PgPool, client_id: &str) -> Result<Option<ConsumerRecord>, StoreError> {
    let row = sqlx::query("SELECT * FROM consumers WHERE client_id = $1")
        .bind(client_id)
        .fetch_optional(pool)
        .await
        .map_err(query_err)?;
    row.as_ref().map(consumer_from_row).transpose().map_err(query_err)
}

pub(super) async fn consumers(pool: &PgPool) -> Result<Vec<ConsumerRecord>, StoreError> {
    let rows =
        sqlx::query("SELECT * FROM consumers ORDER BY client_id").fetch_all(pool).await.map_err(query_err)?;
    rows.iter().map(consumer_from_row).collect::<Result<_, _>>().map_err(query_err)
}

/// Deletes the consumer with its codes and refresh tokens, in one transaction.
pub(super) async fn delete_consumer(pool: &PgPool, client_id: &str) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await.map_err(query_err)?;
    for sql in [
        "DELETE FROM auth_codes WHERE client_id = $1",
        "DELETE FROM refresh_grace WHERE token_hash IN \
         (SELECT token_hash FROM refresh_tokens WHERE client_id = $1)",
        "DELETE FROM refresh_tokens WHERE client_id = $1",
    ] {
        sqlx::query(sql).bind(client_id).execute(&mut *tx).await.map_err(query_err)?;
    }
    let deleted = sqlx::query("DELETE FROM consumers WHERE client_id = $1")
        .bind(client_id)
        .execute(&mut *tx)
        .await
        .map_err(query_err)?
        .rows_affected();
    tx.commit().await.map_err(query_err)?;
    Ok(deleted > 0)
}

fn consumer_from_row(row: &PgRow) -> Result<ConsumerRecord, sqlx::Error> {
    Ok(ConsumerRecord {
        client_id: row.try_get("client_id")?,
        label: row.try_get("label")?,
        secret_hash: row.try_get("secret_hash")?,
        confidential: row.try_get("confidential")?,
        user_id: row.try_get("user_id")?,
        redirect_uris: decode_list(row, "redirect_uris")?,
        allowed_origins: decode_list(row, "allowed_origins")?,
        third_party: row.try_get("third_party")?,
        scopes: decode_list(row, "scopes")?,
        grant_types: decode_list(row, "grant_types")?,
        access_token_ttl: ttl_from_db(row, "access_token_ttl")?,
        refresh_token_ttl: ttl_from_db(row, "refresh_token_ttl")?,
        grant_user_access: row.try_get("grant_user_access")?,
        limit_requested_access: row.try_get("limit_requested_access")?,
        limit_user_access: row.try_get("limit_user_access")?,
        managed_by_config: row.try_get("managed_by_config")?,
    })
}

/// PostgreSQL integers are signed: a lifetime past `i64::MAX` seconds is refused.
fn ttl_to_db(ttl: Option<u64>, column: &str) -> Result<Option<i64>, StoreError> {
    ttl.map(i64::try_from)
        .transpose()
        .map_err(|_| StoreError::Query(format!("{column} is too large to store")))
}

fn ttl_from_db(row: &PgRow, column: &str) -> Result<Option<u64>, sqlx::Error> {
    let stored: Option<i64> = row.try_get(column)?;
    stored
        .map(u64::try_from)
        .transpose()
        .map_err(|e| sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(e) })
}

// --- users ---

pub(super) async fn put_user(pool: &PgPool, u: &UserRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO users (username, password_hash, roles, admin, permissions, disabled) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, \
         roles = excluded.roles, admin = excluded.admin, permissions = excluded.permissions, \
         disabled = excluded.disabled",
    )
    .bind(&u.username)
    .bind(&u.password_hash)
    .bind(encode_list(&u.roles)?)
    .bind(u.admin)
    .bind(encode_list(&u.permissions)?)
    .bind(u.disabled)
    .execute(pool)
    .await
    .map(drop)
    .map_err(query_err)
}

pub(super) async fn user(pool: &PgPool, username: &str) -> Result<Option<UserRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT username, password_hash, roles, admin, permissions, disabled FROM users WHERE username = $1",
    )
    .bind(username)
    .fetch_optional(pool)
    .await
    .map_err(query_err)?;
    row.as_ref().map(user_from_row).transpose().map_err(query_err)
}

pub(super) async fn users(pool: &PgPool) -> Result<Vec<UserRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT username, password_hash, roles, admin, permissions, disabled FROM users ORDER BY username",
    )
    .fetch_all(pool)
    .await
    .map_err(query_err)?;
    rows.iter().map(user_from_row).collect::<Result<_, _>>().map_err(query_err)
}

fn user_from_row(row: &PgRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        roles: decode_list(row, "roles")?,
        admin: row.try_get("admin")?,
        permissions: decode_list(row, "permissions")?,
        disabled: row.try_get("disabled")?,
    })
}

// --- signing keys ---

pub(super) async fn add_signing_key(pool: &PgPool, key: &SigningKeyRecord) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO signing_keys (kid, alg, private_der, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.private_der)
        .bind(key.created_at)
        .execute(pool)
        .await
        .map(drop)
        .map_err(query_err)
}

pub(super) async fn signing_keys(pool: &PgPool) -> Result<Vec<SigningKeyRecord>, StoreError> {
    let rows =
        sqlx::query("SELECT kid, alg, private_der, created_at FROM signing_keys ORDER BY created_at, seq")
            .fetch_all(pool)
            .await
            .map_err(query_err)?;
    rows.iter()
        .map(|row| {
            Ok(SigningKeyRecord {
                kid: row.try_get("kid")?,
                alg: row.try_get("alg")?,
                private_der: row.try_get("private_der")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(query_err)
}

pub(super) async fn add_first_signing_key(pool: &PgPool, key: &SigningKeyRecord) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await.map_err(query_err)?;
    // The check and the insert must not interleave with another replica's:
    // the table lock (released at commit) queues first starts one by one.
    sqlx::query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .map_err(query_err)?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM signing_keys WHERE alg = $1)")
        .bind(&key.alg)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_err)?;
    if !exists {
        sqlx::query("INSERT INTO signing_keys (kid, alg, private_der, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&key.kid)
            .bind(&key.alg)
            .bind(&key.private_der)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await
            .map_err(query_err)?;
    }
    tx.commit().await.map_err(query_err)?;
    Ok(!exists)
}
