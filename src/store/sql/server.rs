//! What the authorization server keeps: who it knows (consumers, users, its
//! signing keys) and what it hands out and takes back (authorization codes,
//! refresh tokens, the access-token revocation list).
//!
//! Single use is enforced by the database, not by the caller: a redemption
//! or rotation is a conditional `UPDATE ... RETURNING` in a writing
//! transaction. SQLite runs it on its one writer connection under
//! `BEGIN IMMEDIATE`; under PostgreSQL's default isolation (read committed)
//! a second `UPDATE` of the same row waits for the first transaction and
//! then re-checks its `WHERE` against the committed row. Either way, of
//! several concurrent callers, on one replica or many, exactly one sees the
//! row change.

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};

use super::rows::{self, ttl_to_db};
use super::{Dialect, SqlStore, encode_list, query_err};
use crate::store::{
    AuthCodeRecord, BackchannelLogoutRecord, CodeRedemption, ConsumerRecord, RefreshGrace, RefreshRotation,
    RefreshTokenRecord, ServerStore, SigningKeyRecord, StoreError, UserRecord,
};

/// Puts the recorded access tokens of consumer `$1` on the revocation list.
const REVOKE_CONSUMER_ACCESS: &str = "INSERT INTO revoked_access_tokens (jti, exp) \
     SELECT jti, exp FROM access_tokens WHERE client_id = $1 ON CONFLICT (jti) DO NOTHING";
/// Ends what user `$1` was granted: their access tokens on the revocation
/// list, their sessions gone (back-channel logouts queued), their refresh
/// families revoked (grace entries dropped). `delete_user` runs the first
/// six too.
const END_USER_GRANTS: [&str; 7] = [
    "INSERT INTO revoked_access_tokens (jti, exp) \
     SELECT jti, exp FROM access_tokens WHERE username = $1 ON CONFLICT (jti) DO NOTHING",
    "DELETE FROM access_tokens WHERE username = $1",
    super::logout::QUEUE_USER_LOGOUTS,
    super::logout::FORGET_USER_SESSION_CONSUMERS,
    "DELETE FROM login_sessions WHERE username = $1",
    "DELETE FROM refresh_grace WHERE token_hash IN \
     (SELECT token_hash FROM refresh_tokens WHERE username = $1)",
    "UPDATE refresh_tokens SET revoked = TRUE WHERE username = $1 AND NOT revoked",
];

const INSERT_SIGNING_KEY: &str =
    "INSERT INTO signing_keys (kid, alg, private_der, created_at) VALUES ($1, $2, $3, $4)";

impl<D: Dialect> SqlStore<D> {
    /// Runs `statements` in one transaction, each with `key` as `$1`; how
    /// many rows the last one changed.
    async fn run_each(&self, key: &str, statements: &[&'static str]) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let mut changed = 0;
        for &sql in statements {
            changed = sqlx::query(sql).bind(key).execute(&mut *tx).await.map_err(query_err)?.rows_affected();
        }
        tx.commit().await.map_err(query_err)?;
        Ok(changed)
    }

    /// Runs the `cleanup` statements, then `delete`, in one transaction, each
    /// with `key` as `$1`; true when `delete` removed a row.
    async fn delete_with(
        &self,
        key: &str,
        cleanup: &[&'static str],
        delete: &'static str,
    ) -> Result<bool, StoreError> {
        let statements: Vec<&'static str> = cleanup.iter().copied().chain([delete]).collect();
        Ok(self.run_each(key, &statements).await? > 0)
    }
}

#[async_trait]
impl<D: Dialect> ServerStore for SqlStore<D> {
    async fn put_consumer(&self, c: &ConsumerRecord) -> Result<(), StoreError> {
        // An upsert, not a replace: replacing would delete the row first.
        sqlx::query(
            "INSERT INTO consumers (client_id, label, secret_hash, confidential, user_id, redirect_uris, \
             allowed_origins, third_party, scopes, grant_types, access_token_ttl, refresh_token_ttl, \
             grant_user_access, limit_requested_access, limit_user_access, managed_by_config, \
             post_logout_redirect_uris, backchannel_logout_uri) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (client_id) DO UPDATE SET label = excluded.label, \
             secret_hash = excluded.secret_hash, confidential = excluded.confidential, \
             user_id = excluded.user_id, redirect_uris = excluded.redirect_uris, \
             allowed_origins = excluded.allowed_origins, third_party = excluded.third_party, \
             scopes = excluded.scopes, grant_types = excluded.grant_types, \
             access_token_ttl = excluded.access_token_ttl, refresh_token_ttl = excluded.refresh_token_ttl, \
             grant_user_access = excluded.grant_user_access, \
             limit_requested_access = excluded.limit_requested_access, \
             limit_user_access = excluded.limit_user_access, managed_by_config = excluded.managed_by_config, \
             post_logout_redirect_uris = excluded.post_logout_redirect_uris, \
             backchannel_logout_uri = excluded.backchannel_logout_uri",
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
        .bind(encode_list(&c.post_logout_redirect_uris)?)
        .bind(&c.backchannel_logout_uri)
        .execute(&self.writer)
        .await
        .map(drop)
        .map_err(query_err)
    }

    async fn consumer(&self, client_id: &str) -> Result<Option<ConsumerRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM consumers WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.readers)
            .await
            .map_err(query_err)?;
        row.as_ref().map(rows::consumer).transpose().map_err(query_err)
    }

    /// Deletes the consumer with its codes and refresh tokens, and revokes
    /// its access tokens, in one transaction.
    async fn delete_consumer(&self, client_id: &str) -> Result<bool, StoreError> {
        let cleanup = [
            REVOKE_CONSUMER_ACCESS,
            "DELETE FROM access_tokens WHERE client_id = $1",
            "DELETE FROM auth_codes WHERE client_id = $1",
            "DELETE FROM refresh_grace WHERE token_hash IN \
             (SELECT token_hash FROM refresh_tokens WHERE client_id = $1)",
            "DELETE FROM refresh_tokens WHERE client_id = $1",
        ];
        self.delete_with(client_id, &cleanup, "DELETE FROM consumers WHERE client_id = $1").await
    }

    async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        let [revoke, access, queue, forget, sessions, grace, _] = END_USER_GRANTS;
        let cleanup = [
            revoke,
            access,
            queue,
            forget,
            sessions,
            grace,
            "DELETE FROM auth_codes WHERE username = $1",
            "DELETE FROM refresh_tokens WHERE username = $1",
        ];
        self.delete_with(username, &cleanup, "DELETE FROM users WHERE username = $1").await
    }

    async fn put_user(&self, u: &UserRecord) -> Result<(), StoreError> {
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
        .execute(&self.writer)
        .await
        .map(drop)
        .map_err(query_err)
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT username, password_hash, roles, admin, permissions, disabled FROM users ORDER BY username",
        )
        .fetch_all(&self.readers)
        .await
        .map_err(query_err)?;
        rows.iter().map(rows::user).collect::<Result<_, _>>().map_err(query_err)
    }

    async fn add_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        insert_signing_key(&mut *self.writer.acquire().await.map_err(query_err)?, key).await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let rows = sqlx::query(D::SIGNING_KEYS).fetch_all(&self.readers).await.map_err(query_err)?;
        rows.iter().map(rows::signing_key).collect::<Result<_, _>>().map_err(query_err)
    }

    async fn add_first_signing_key(&self, key: &SigningKeyRecord) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // The check and the insert must not interleave with another
        // process's: SQLite's BEGIN IMMEDIATE takes the write lock first,
        // PostgreSQL's table lock (released at commit) queues first starts.
        if let Some(lock) = D::LOCK_SIGNING_KEYS {
            sqlx::query(lock).execute(&mut *tx).await.map_err(query_err)?;
        }
        let exists = sqlx::query("SELECT 1 FROM signing_keys WHERE alg = $1 LIMIT 1")
            .bind(&key.alg)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_err)?
            .is_some();
        if !exists {
            insert_signing_key(&mut tx, key).await?;
        }
        tx.commit().await.map_err(query_err)?;
        Ok(!exists)
    }

    async fn add_auth_code(&self, code: &AuthCodeRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO auth_codes (code_hash, client_id, username, redirect_uri, scope, code_challenge, \
             nonce, auth_time, expires_at, sid) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
        .bind(&code.sid)
        .execute(&self.writer)
        .await
        .map(drop)
        .map_err(query_err)
    }

    async fn redeem_auth_code(&self, code_hash: &str) -> Result<CodeRedemption, StoreError> {
        let mut tx = self.begin().await?;
        let fresh =
            sqlx::query("UPDATE auth_codes SET used = TRUE WHERE code_hash = $1 AND NOT used RETURNING *")
                .bind(code_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_err)?;
        let outcome = if let Some(row) = fresh {
            CodeRedemption::Fresh(rows::auth_code(&row).map_err(query_err)?)
        } else {
            let reused = sqlx::query(
                "UPDATE auth_codes SET reuse_seen = TRUE WHERE code_hash = $1 \
                 RETURNING issued_family_id, issued_access",
            )
            .bind(code_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_err)?;
            match reused {
                Some(row) => CodeRedemption::Reused {
                    family_id: row.try_get("issued_family_id").map_err(query_err)?,
                    access_jtis: rows::issued_access(&row).map_err(query_err)?,
                },
                None => CodeRedemption::Unknown,
            }
        };
        tx.commit().await.map_err(query_err)?;
        Ok(outcome)
    }

    /// Appends what the first redemption issued. When a reuse was already
    /// seen (it came between the redemption and this call, so its caller had
    /// nothing to revoke), revokes what is recorded here at once.
    async fn record_code_issue(
        &self,
        code_hash: &str,
        family_id: Option<&str>,
        access_jti: &str,
        access_exp: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(D::RECORD_CODE_ISSUE)
            .bind(family_id)
            .bind(access_jti)
            .bind(access_exp)
            .bind(code_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_err)?;
        let reuse_seen =
            row.as_ref().map(|row| rows::flag(row, "reuse_seen")).transpose().map_err(query_err)?;
        if reuse_seen == Some(true) {
            if let Some(family_id) = family_id {
                revoke_family(&mut tx, family_id).await?;
            }
            revoke_jti::<D>(&mut tx, access_jti, access_exp).await?;
        }
        tx.commit().await.map_err(query_err)
    }

    async fn add_refresh_token(&self, token: &RefreshTokenRecord) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await.map_err(query_err)?;
        insert_refresh_token(&mut conn, token, &token.family_id).await
    }

    /// Rotates the token if it is current, and stores `next` in the same
    /// family (the presented token's, whatever `next.family_id` says), with
    /// `grace` for a retry. `Rotated` carries the presented token's record.
    /// A token rotated before gets its grace entry back as `Retry` while
    /// that entry lives and its successor is current; otherwise its family
    /// is revoked.
    async fn rotate_refresh_token_with_grace(
        &self,
        token_hash: &str,
        next: &RefreshTokenRecord,
        grace: Option<&RefreshGrace>,
        now: i64,
    ) -> Result<RefreshRotation, StoreError> {
        let mut tx = self.begin().await?;
        // Grace entries live only for their window; this is where they go.
        sqlx::query("DELETE FROM refresh_grace WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(query_err)?;
        let current = sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = $1 \
             WHERE token_hash = $2 AND rotated_at IS NULL AND NOT revoked AND expires_at > $3 RETURNING *",
        )
        .bind(now)
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_err)?;
        let outcome = if let Some(row) = current {
            let presented = rows::refresh_token(&row).map_err(query_err)?;
            insert_refresh_token(&mut tx, next, &presented.family_id).await?;
            // The presented token's own predecessor can no longer be
            // retried: the pair a retry would get is rotated now.
            sqlx::query("DELETE FROM refresh_grace WHERE successor_hash = $1")
                .bind(token_hash)
                .execute(&mut *tx)
                .await
                .map_err(query_err)?;
            if let Some(grace) = grace {
                sqlx::query(
                    "INSERT INTO refresh_grace (token_hash, successor_hash, sealed, expires_at) \
                     VALUES ($1, $2, $3, $4)",
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
                sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = $1 AND rotated_at IS NOT NULL")
                    .bind(token_hash)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(query_err)?;
            match rotated {
                Some(row) => {
                    let presented = rows::refresh_token(&row).map_err(query_err)?;
                    let revoked = rows::flag(&row, "revoked").map_err(query_err)?;
                    // The entry counts only while the pair it holds is usable.
                    let sealed: Option<Vec<u8>> = sqlx::query_scalar(
                        "SELECT g.sealed FROM refresh_grace g JOIN refresh_tokens s \
                         ON s.token_hash = g.successor_hash \
                         WHERE g.token_hash = $1 AND g.expires_at > $2 \
                         AND s.rotated_at IS NULL AND NOT s.revoked AND s.expires_at > $3",
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

    async fn refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM refresh_tokens \
             WHERE token_hash = $1 AND rotated_at IS NULL AND NOT revoked AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.readers)
        .await
        .map_err(query_err)?;
        row.as_ref().map(rows::refresh_token).transpose().map_err(query_err)
    }

    async fn revoke_refresh_family(&self, family_id: &str) -> Result<(), StoreError> {
        revoke_family(&mut *self.writer.acquire().await.map_err(query_err)?, family_id).await
    }

    async fn record_access_token(
        &self,
        jti: &str,
        client_id: &str,
        username: Option<&str>,
        exp: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO access_tokens (jti, client_id, username, exp) VALUES ($1, $2, $3, $4)")
            .bind(jti)
            .bind(client_id)
            .bind(username)
            .bind(exp)
            .execute(&self.writer)
            .await
            .map(drop)
            .map_err(query_err)
    }

    /// Sessions deleted, families revoked (their grace entries dropped) and
    /// access tokens revoked, in one transaction.
    async fn end_user_grants(&self, username: &str) -> Result<(), StoreError> {
        self.run_each(username, &END_USER_GRANTS).await.map(drop)
    }

    async fn record_session_consumer(
        &self,
        sid: &str,
        client_id: &str,
        username: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.add_session_consumer(sid, client_id, username, expires_at).await
    }

    async fn end_session(&self, id_hash: &str, sid: &str) -> Result<(), StoreError> {
        self.end_one_session(id_hash, sid).await
    }

    async fn end_user_sessions(&self, username: &str) -> Result<(), StoreError> {
        self.run_each(username, &super::logout::END_USER_SESSIONS).await.map(drop)
    }

    async fn due_backchannel_logouts(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<BackchannelLogoutRecord>, StoreError> {
        self.due_logouts(now, limit).await
    }

    async fn claim_backchannel_logout(
        &self,
        logout: &BackchannelLogoutRecord,
        next_attempt: i64,
    ) -> Result<bool, StoreError> {
        self.claim_logout(logout, next_attempt).await
    }

    async fn delete_backchannel_logout(&self, sid: &str, client_id: &str) -> Result<(), StoreError> {
        self.delete_logout(sid, client_id).await
    }

    async fn revoke_access_token(&self, jti: &str, exp: i64) -> Result<(), StoreError> {
        revoke_jti::<D>(&mut *self.writer.acquire().await.map_err(query_err)?, jti, exp).await
    }

    /// Deletes what expired at or before `now`, in one transaction. Rotated
    /// and revoked refresh tokens stay until they expire, so a reuse is
    /// still recognised until then.
    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let mut purged = 0;
        for sql in [
            "DELETE FROM auth_codes WHERE expires_at <= $1",
            "DELETE FROM refresh_tokens WHERE expires_at <= $1",
            "DELETE FROM login_sessions WHERE expires_at <= $1",
            "DELETE FROM revoked_access_tokens WHERE exp <= $1",
            "DELETE FROM access_tokens WHERE exp <= $1",
            "DELETE FROM refresh_grace WHERE expires_at <= $1",
            "DELETE FROM session_consumers WHERE expires_at <= $1",
        ] {
            purged += sqlx::query(sql).bind(now).execute(&mut *tx).await.map_err(query_err)?.rows_affected();
        }
        tx.commit().await.map_err(query_err)?;
        Ok(purged)
    }
}

async fn insert_signing_key(conn: &mut AnyConnection, key: &SigningKeyRecord) -> Result<(), StoreError> {
    sqlx::query(INSERT_SIGNING_KEY)
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.private_der)
        .bind(key.created_at)
        .execute(conn)
        .await
        .map(drop)
        .map_err(query_err)
}

async fn insert_refresh_token(
    conn: &mut AnyConnection,
    token: &RefreshTokenRecord,
    family_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, client_id, username, scope, auth_time, \
         expires_at, access_jti, access_exp, sid) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
    .bind(&token.sid)
    .execute(conn)
    .await
    .map(drop)
    .map_err(query_err)
}

async fn revoke_family(conn: &mut AnyConnection, family_id: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE refresh_tokens SET revoked = TRUE WHERE family_id = $1")
        .bind(family_id)
        .execute(&mut *conn)
        .await
        .map_err(query_err)?;
    // The access tokens issued with the family's refresh tokens stop too.
    sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, exp) SELECT access_jti, access_exp FROM refresh_tokens \
         WHERE family_id = $1 AND access_jti IS NOT NULL AND access_exp IS NOT NULL ON CONFLICT (jti) DO NOTHING",
    )
    .bind(family_id)
    .execute(&mut *conn)
    .await
    .map_err(query_err)?;
    sqlx::query(
        "DELETE FROM refresh_grace WHERE token_hash IN \
         (SELECT token_hash FROM refresh_tokens WHERE family_id = $1)",
    )
    .bind(family_id)
    .execute(conn)
    .await
    .map(drop)
    .map_err(query_err)
}

/// Keeps the later `exp` when a jti is revoked twice.
async fn revoke_jti<D: Dialect>(conn: &mut AnyConnection, jti: &str, exp: i64) -> Result<(), StoreError> {
    sqlx::query(D::REVOKE_JTI).bind(jti).bind(exp).execute(conn).await.map(drop).map_err(query_err)
}
