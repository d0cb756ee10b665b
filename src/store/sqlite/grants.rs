//! What the authorization server hands out and takes back: authorization
//! codes, refresh tokens, login sessions and the access-token revocation list.
//!
//! Single use is enforced by the database, not by the caller: a redemption or
//! rotation is a conditional `UPDATE ... RETURNING` inside a `BEGIN IMMEDIATE`
//! transaction on the one writer connection, so of several concurrent callers
//! exactly one sees the row change.

use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, SqliteConnection};

use super::query_err;
use crate::store::{
    AuthCodeRecord, CodeRedemption, RefreshGrace, RefreshRotation, RefreshTokenRecord, SessionRecord,
    StoreError,
};

// --- authorization codes ---

pub(super) async fn add_auth_code(writer: &SqlitePool, code: &AuthCodeRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO auth_codes (code_hash, client_id, username, redirect_uri, scope, code_challenge, \
         nonce, auth_time, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&code.code_hash)
    .bind(&code.client_id)
    .bind(&code.username)
    .bind(&code.redirect_uri)
    .bind(&code.scope)
    .bind(&code.code_challenge)
    .bind(&code.nonce)
    .bind(code.auth_time)
    .bind(code.expires_at)
    .execute(writer)
    .await
    .map(drop)
    .map_err(query_err)
}

pub(super) async fn redeem_auth_code(
    writer: &SqlitePool,
    code_hash: &str,
) -> Result<CodeRedemption, StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(query_err)?;
    let fresh = sqlx::query("UPDATE auth_codes SET used = 1 WHERE code_hash = ? AND used = 0 RETURNING *")
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_err)?;
    let outcome = if let Some(row) = fresh {
        CodeRedemption::Fresh(code_from_row(&row).map_err(query_err)?)
    } else {
        let reused = sqlx::query(
            "UPDATE auth_codes SET reuse_seen = 1 WHERE code_hash = ? \
             RETURNING issued_family_id, issued_access",
        )
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_err)?;
        match reused {
            Some(row) => CodeRedemption::Reused {
                family_id: row.try_get("issued_family_id").map_err(query_err)?,
                access_jtis: issued_access(&row).map_err(query_err)?,
            },
            None => CodeRedemption::Unknown,
        }
    };
    tx.commit().await.map_err(query_err)?;
    Ok(outcome)
}

/// Appends what the first redemption issued. When a reuse was already seen
/// (it came between the redemption and this call, so its caller had nothing
/// to revoke), revokes what is recorded here at once.
pub(super) async fn record_code_issue(
    writer: &SqlitePool,
    code_hash: &str,
    family_id: Option<&str>,
    access_jti: &str,
    access_exp: i64,
) -> Result<(), StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(query_err)?;
    let reuse_seen: Option<bool> = sqlx::query_scalar(
        "UPDATE auth_codes SET issued_family_id = COALESCE(?, issued_family_id), \
         issued_access = json_insert(issued_access, '$[#]', json_array(?, ?)) \
         WHERE code_hash = ? AND used = 1 RETURNING reuse_seen",
    )
    .bind(family_id)
    .bind(access_jti)
    .bind(access_exp)
    .bind(code_hash)
    .fetch_optional(&mut *tx)
    .await
    .map_err(query_err)?;
    if reuse_seen == Some(true) {
        if let Some(family_id) = family_id {
            revoke_family(&mut tx, family_id).await?;
        }
        revoke_jti(&mut tx, access_jti, access_exp).await?;
    }
    tx.commit().await.map_err(query_err)
}

fn code_from_row(row: &SqliteRow) -> Result<AuthCodeRecord, sqlx::Error> {
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
    })
}

/// The `issued_access` column: a JSON array of `[jti, exp]` pairs.
fn issued_access(row: &SqliteRow) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let text: String = row.try_get("issued_access")?;
    serde_json::from_str(&text)
        .map_err(|e| sqlx::Error::ColumnDecode { index: "issued_access".into(), source: Box::new(e) })
}

// --- refresh tokens ---

pub(super) async fn add_refresh_token(
    writer: &SqlitePool,
    token: &RefreshTokenRecord,
) -> Result<(), StoreError> {
    insert_refresh_token(&mut *writer.acquire().await.map_err(query_err)?, token, &token.family_id).await
}

/// Rotates the token if it is current, and stores `next` in the same family
/// (the presented token's, whatever `next.family_id` says), with `grace`
/// for a retry. `Rotated` carries the presented token's record. A token
/// rotated before gets its grace entry back as `Retry` while that entry
/// lives and its successor is current; otherwise its family is revoked.
pub(super) async fn rotate_refresh_token(
    writer: &SqlitePool,
    token_hash: &str,
    next: &RefreshTokenRecord,
    grace: Option<&RefreshGrace>,
    now: i64,
) -> Result<RefreshRotation, StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(query_err)?;
    // Grace entries live only for their window; this is where they go.
    sqlx::query("DELETE FROM refresh_grace WHERE expires_at <= ?")
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(query_err)?;
    let current = sqlx::query(
        "UPDATE refresh_tokens SET rotated_at = ? \
         WHERE token_hash = ? AND rotated_at IS NULL AND revoked = 0 AND expires_at > ? RETURNING *",
    )
    .bind(now)
    .bind(token_hash)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(query_err)?;
    let outcome = if let Some(row) = current {
        let presented = refresh_from_row(&row).map_err(query_err)?;
        insert_refresh_token(&mut tx, next, &presented.family_id).await?;
        // The presented token's own predecessor can no longer be retried:
        // the pair a retry would get is rotated now.
        sqlx::query("DELETE FROM refresh_grace WHERE successor_hash = ?")
            .bind(token_hash)
            .execute(&mut *tx)
            .await
            .map_err(query_err)?;
        if let Some(grace) = grace {
            sqlx::query(
                "INSERT INTO refresh_grace (token_hash, successor_hash, sealed, expires_at) VALUES (?, ?, ?, ?)",
            )
            .bind(token_hash)
            .bind(&next.token_hash)
            .bind(&grace.sealed)
            .bind(grace.expires_at)
            .execute(&mut *tx)
            .await
            .map_err(query_err)?;
        }
        RefreshRotation::Rotated(presented)
    } else {
        let rotated =
            sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = ? AND rotated_at IS NOT NULL")
                .bind(token_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_err)?;
        match rotated {
            Some(row) => {
                let presented = refresh_from_row(&row).map_err(query_err)?;
                let revoked: bool = row.try_get("revoked").map_err(query_err)?;
                // The entry counts only while the pair it holds is usable.
                let sealed: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT g.sealed FROM refresh_grace g JOIN refresh_tokens s \
                     ON s.token_hash = g.successor_hash \
                     WHERE g.token_hash = ? AND g.expires_at > ? \
                     AND s.rotated_at IS NULL AND s.revoked = 0 AND s.expires_at > ?",
                )
                .bind(token_hash)
                .bind(now)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_err)?;
                match sealed {
                    Some(sealed) if !revoked => RefreshRotation::Retry { presented, sealed },
                    _ => {
                        revoke_family(&mut tx, &presented.family_id).await?;
                        RefreshRotation::Reused
                    }
                }
            }
            None => RefreshRotation::Invalid,
        }
    };
    tx.commit().await.map_err(query_err)?;
    Ok(outcome)
}

pub(super) async fn refresh_token(
    readers: &SqlitePool,
    token_hash: &str,
    now: i64,
) -> Result<Option<RefreshTokenRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT * FROM refresh_tokens \
         WHERE token_hash = ? AND rotated_at IS NULL AND revoked = 0 AND expires_at > ?",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(readers)
    .await
    .map_err(query_err)?;
    row.as_ref().map(refresh_from_row).transpose().map_err(query_err)
}

pub(super) async fn revoke_refresh_family(writer: &SqlitePool, family_id: &str) -> Result<(), StoreError> {
    revoke_family(&mut *writer.acquire().await.map_err(query_err)?, family_id).await
}

async fn insert_refresh_token(
    conn: &mut SqliteConnection,
    token: &RefreshTokenRecord,
    family_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, client_id, username, scope, auth_time, \
         expires_at, access_jti, access_exp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&token.token_hash)
    .bind(family_id)
    .bind(&token.client_id)
    .bind(&token.username)
    .bind(&token.scope)
    .bind(token.auth_time)
    .bind(token.expires_at)
    .bind(token.access.as_ref().map(|(jti, _)| jti))
    .bind(token.access.as_ref().map(|(_, exp)| *exp))
    .execute(conn)
    .await
    .map(drop)
    .map_err(query_err)
}

async fn revoke_family(conn: &mut SqliteConnection, family_id: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE refresh_tokens SET revoked = 1 WHERE family_id = ?")
        .bind(family_id)
        .execute(&mut *conn)
        .await
        .map_err(query_err)?;
    // The access tokens issued with the family's refresh tokens stop too.
    sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, exp) SELECT access_jti, access_exp FROM refresh_tokens \
         WHERE family_id = ? AND access_jti IS NOT NULL AND access_exp IS NOT NULL ON CONFLICT (jti) DO NOTHING",
    )
    .bind(family_id)
    .execute(&mut *conn)
    .await
    .map_err(query_err)?;
    sqlx::query(
        "DELETE FROM refresh_grace WHERE token_hash IN \
         (SELECT token_hash FROM refresh_tokens WHERE family_id = ?)",
    )
    .bind(family_id)
    .execute(conn)
    .await
    .map(drop)
    .map_err(query_err)
}

pub(super) fn refresh_from_row(row: &SqliteRow) -> Result<RefreshTokenRecord, sqlx::Error> {
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
    })
}

// --- login sessions ---

pub(super) async fn add_session(writer: &SqlitePool, session: &SessionRecord) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO login_sessions (id_hash, username, auth_time, expires_at) VALUES (?, ?, ?, ?)")
        .bind(&session.id_hash)
        .bind(&session.username)
        .bind(session.auth_time)
        .bind(session.expires_at)
        .execute(writer)
        .await
        .map(drop)
        .map_err(query_err)
}

pub(super) async fn session(
    readers: &SqlitePool,
    id_hash: &str,
    now: i64,
) -> Result<Option<SessionRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT id_hash, username, auth_time, expires_at FROM login_sessions \
         WHERE id_hash = ? AND expires_at > ?",
    )
    .bind(id_hash)
    .bind(now)
    .fetch_optional(readers)
    .await
    .map_err(query_err)?;
    row.as_ref().map(session_from_row).transpose().map_err(query_err)
}

fn session_from_row(row: &SqliteRow) -> Result<SessionRecord, sqlx::Error> {
    Ok(SessionRecord {
        id_hash: row.try_get("id_hash")?,
        username: row.try_get("username")?,
        auth_time: row.try_get("auth_time")?,
        expires_at: row.try_get("expires_at")?,
    })
}

pub(super) async fn delete_session(writer: &SqlitePool, id_hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM login_sessions WHERE id_hash = ?")
        .bind(id_hash)
        .execute(writer)
        .await
        .map(drop)
        .map_err(query_err)
}

// --- access token revocation ---

pub(super) async fn revoke_access_token(writer: &SqlitePool, jti: &str, exp: i64) -> Result<(), StoreError> {
    revoke_jti(&mut *writer.acquire().await.map_err(query_err)?, jti, exp).await
}

pub(super) async fn is_access_token_revoked(readers: &SqlitePool, jti: &str) -> Result<bool, StoreError> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = ?)")
        .bind(jti)
        .fetch_one(readers)
        .await
        .map_err(query_err)
}

/// Keeps the later `exp` when a jti is revoked twice.
async fn revoke_jti(conn: &mut SqliteConnection, jti: &str, exp: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, exp) VALUES (?, ?) \
         ON CONFLICT (jti) DO UPDATE SET exp = max(exp, excluded.exp)",
    )
    .bind(jti)
    .bind(exp)
    .execute(conn)
    .await
    .map(drop)
    .map_err(query_err)
}

// --- expiry ---

/// Deletes what expired at or before `now`, in one transaction. Rotated and
/// revoked refresh tokens stay until they expire, so a reuse is still
/// recognised until then.
pub(super) async fn purge_expired(writer: &SqlitePool, now: i64) -> Result<u64, StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(query_err)?;
    let mut purged = 0;
    for sql in [
        "DELETE FROM auth_codes WHERE expires_at <= ?",
        "DELETE FROM refresh_tokens WHERE expires_at <= ?",
        "DELETE FROM login_sessions WHERE expires_at <= ?",
        "DELETE FROM revoked_access_tokens WHERE exp <= ?",
        "DELETE FROM refresh_grace WHERE expires_at <= ?",
    ] {
        purged += sqlx::query(sql).bind(now).execute(&mut *tx).await.map_err(query_err)?.rows_affected();
    }
    tx.commit().await.map_err(query_err)?;
    Ok(purged)
}
