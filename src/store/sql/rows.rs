//! Rows into records, the same for both databases: the `Any` driver hands
//! over SQLite's integers as integers and PostgreSQL's booleans as booleans,
//! so [`flag`] reads either.

use sqlx::any::{AnyRow, AnyTypeInfoKind};
use sqlx::{Row, ValueRef as _};

use crate::store::{
    AdminTokenRecord, AuthCodeRecord, BackchannelLogoutRecord, ClientRegistrationRecord, ClientStateRecord,
    ConsumerRecord, ProviderTokenRecord, RefreshTokenRecord, SessionRecord, SigningKeyRecord, StoreError,
    UserRecord,
};

/// A boolean column: `BOOLEAN` in PostgreSQL, `INTEGER` 0/1 in SQLite.
pub(super) fn flag(row: &AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    Ok(opt_flag(row, column)?.unwrap_or(false))
}

/// A boolean column that may be null.
pub(in crate::store) fn opt_flag(row: &AnyRow, column: &str) -> Result<Option<bool>, sqlx::Error> {
    let raw = row.try_get_raw(column)?;
    if raw.is_null() {
        return Ok(None);
    }
    if raw.type_info().kind() == AnyTypeInfoKind::Bool {
        row.try_get(column)
    } else {
        Ok(Some(row.try_get::<i64, _>(column)? != 0))
    }
}

/// A list of strings, stored as a JSON array.
pub(super) fn list(row: &AnyRow, column: &str) -> Result<Vec<String>, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text)
        .map_err(|e| sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(e) })
}

/// Integers are signed in both databases: a lifetime past `i64::MAX`
/// seconds is refused.
pub(super) fn ttl_to_db(ttl: Option<u64>, column: &str) -> Result<Option<i64>, StoreError> {
    ttl.map(i64::try_from)
        .transpose()
        .map_err(|_| StoreError::Query(format!("{column} is too large to store")))
}

fn ttl(row: &AnyRow, column: &str) -> Result<Option<u64>, sqlx::Error> {
    let stored: Option<i64> = row.try_get(column)?;
    stored
        .map(u64::try_from)
        .transpose()
        .map_err(|e| sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(e) })
}

pub(super) fn consumer(row: &AnyRow) -> Result<ConsumerRecord, sqlx::Error> {
    Ok(ConsumerRecord {
        client_id: row.try_get("client_id")?,
        label: row.try_get("label")?,
        secret_hash: row.try_get("secret_hash")?,
        confidential: flag(row, "confidential")?,
        user_id: row.try_get("user_id")?,
        redirect_uris: list(row, "redirect_uris")?,
        allowed_origins: list(row, "allowed_origins")?,
        third_party: flag(row, "third_party")?,
        scopes: list(row, "scopes")?,
        grant_types: list(row, "grant_types")?,
        access_token_ttl: ttl(row, "access_token_ttl")?,
        refresh_token_ttl: ttl(row, "refresh_token_ttl")?,
        grant_user_access: flag(row, "grant_user_access")?,
        limit_requested_access: flag(row, "limit_requested_access")?,
        limit_user_access: flag(row, "limit_user_access")?,
        managed_by_config: flag(row, "managed_by_config")?,
        post_logout_redirect_uris: list(row, "post_logout_redirect_uris")?,
        backchannel_logout_uri: row.try_get("backchannel_logout_uri")?,
    })
}

pub(super) fn user(row: &AnyRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        roles: list(row, "roles")?,
        admin: flag(row, "admin")?,
        permissions: list(row, "permissions")?,
        disabled: flag(row, "disabled")?,
    })
}

pub(super) fn signing_key(row: &AnyRow) -> Result<SigningKeyRecord, sqlx::Error> {
    Ok(SigningKeyRecord {
        kid: row.try_get("kid")?,
        alg: row.try_get("alg")?,
        private_der: row.try_get("private_der")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn auth_code(row: &AnyRow) -> Result<AuthCodeRecord, sqlx::Error> {
    Ok(AuthCodeRecord {
        code_hash: row.try_get("code_hash")?,
        client_id: row.try_get("client_id")?,
        username: row.try_get("username")?,
        redirect_uri: row.try_get("redirect_uri")?,
        scope: row.try_get("scope")?,
        code_challenge: row.try_get("code_challenge")?,
        nonce: row.try_get("nonce")?,
        auth_time: row.try_get("auth_time")?,
        expires_at: row.try_get("expires_at")?,
        sid: row.try_get("sid")?,
    })
}

/// The `issued_access` column: a JSON array of `[jti, exp]` pairs.
pub(super) fn issued_access(row: &AnyRow) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let text: String = row.try_get("issued_access")?;
    serde_json::from_str(&text)
        .map_err(|e| sqlx::Error::ColumnDecode { index: "issued_access".into(), source: Box::new(e) })
}

pub(super) fn refresh_token(row: &AnyRow) -> Result<RefreshTokenRecord, sqlx::Error> {
    Ok(RefreshTokenRecord {
        token_hash: row.try_get("token_hash")?,
        family_id: row.try_get("family_id")?,
        client_id: row.try_get("client_id")?,
        username: row.try_get("username")?,
        scope: row.try_get("scope")?,
        auth_time: row.try_get("auth_time")?,
        expires_at: row.try_get("expires_at")?,
        access: match (row.try_get::<Option<String>, _>("access_jti")?, row.try_get("access_exp")?) {
            (Some(jti), Some(exp)) => Some((jti, exp)),
            _ => None,
        },
        sid: row.try_get("sid")?,
    })
}

pub(super) fn session(row: &AnyRow) -> Result<SessionRecord, sqlx::Error> {
    Ok(SessionRecord {
        id_hash: row.try_get("id_hash")?,
        kind: row.try_get("kind")?,
        username: row.try_get("username")?,
        auth_time: row.try_get("auth_time")?,
        expires_at: row.try_get("expires_at")?,
    })
}

pub(super) fn admin_token(row: &AnyRow) -> Result<AdminTokenRecord, sqlx::Error> {
    Ok(AdminTokenRecord {
        id: row.try_get("id")?,
        label: row.try_get("label")?,
        token_hash: row.try_get("token_hash")?,
        permissions: list(row, "permissions")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn client_registration(row: &AnyRow) -> Result<ClientRegistrationRecord, sqlx::Error> {
    let scopes: Option<String> = row.try_get("scopes")?;
    Ok(ClientRegistrationRecord {
        name: row.try_get("name")?,
        provider: row.try_get("provider")?,
        label: row.try_get("label")?,
        client_id: row.try_get("client_id")?,
        client_secret: row.try_get("client_secret")?,
        tenant: row.try_get("tenant")?,
        scopes: match scopes {
            Some(_) => Some(list(row, "scopes")?),
            None => None,
        },
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn provider_token(row: &AnyRow) -> Result<ProviderTokenRecord, sqlx::Error> {
    Ok(ProviderTokenRecord {
        id: row.try_get("id")?,
        client: row.try_get("client")?,
        tag: row.try_get("tag")?,
        grant_type: row.try_get("grant_type")?,
        scopes: list(row, "scopes")?,
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

pub(super) fn client_state(row: &AnyRow) -> Result<ClientStateRecord, sqlx::Error> {
    Ok(ClientStateRecord {
        state_hash: row.try_get("state_hash")?,
        client: row.try_get("client")?,
        browser_hash: row.try_get("browser_hash")?,
        verifier: row.try_get("verifier")?,
        nonce: row.try_get("nonce")?,
        tag: row.try_get("tag")?,
        scopes: list(row, "scopes")?,
        return_to: row.try_get("return_to")?,
        expires_at: row.try_get("expires_at")?,
    })
}

pub(super) fn backchannel_logout(row: &AnyRow) -> Result<BackchannelLogoutRecord, sqlx::Error> {
    Ok(BackchannelLogoutRecord {
        sid: row.try_get("sid")?,
        client_id: row.try_get("client_id")?,
        username: row.try_get("username")?,
        attempts: row.try_get("attempts")?,
        next_attempt: row.try_get("next_attempt")?,
    })
}
