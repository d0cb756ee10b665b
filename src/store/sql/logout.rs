//! What OpenID Connect logout keeps: which consumer got an ID token in which
//! sign-in session (`session_consumers`), and the back-channel logout tokens
//! still to deliver (`backchannel_logouts`).
//!
//! Ending a session moves its `session_consumers` rows whose consumer has a
//! `backchannel_logout_uri` into `backchannel_logouts`, in the transaction
//! that deletes the session, so a logout is queued exactly when a session
//! ends, whichever process ends it (the server, the admin pages, the CLI).
//! The queue holds at most [`MAX_PENDING_LOGOUTS`] rows: a session ending
//! while it is full is still ended, its back-channel logouts are dropped
//! (and the queue's size is checked once per statement, so one user's
//! sessions may overshoot it by their own count).

use super::{Dialect, SqlStore, query_err, rows};
use crate::store::{BackchannelLogoutRecord, StoreError};

/// The most back-channel logouts kept waiting for delivery (written out in
/// [`QUEUE_USER_LOGOUTS`], which takes one parameter only).
pub(crate) const MAX_PENDING_LOGOUTS: i64 = 10_000;

/// Queues a logout for each consumer with a `backchannel_logout_uri` that
/// got an ID token in a session of user `$1`.
pub(super) const QUEUE_USER_LOGOUTS: &str = "INSERT INTO backchannel_logouts \
     (sid, client_id, username, attempts, next_attempt) \
     SELECT s.sid, s.client_id, s.username, 0, 0 FROM session_consumers s \
     JOIN consumers c ON c.client_id = s.client_id \
     WHERE s.username = $1 AND c.backchannel_logout_uri IS NOT NULL \
     AND (SELECT COUNT(*) FROM backchannel_logouts) < 10000 \
     ON CONFLICT (sid, client_id) DO NOTHING";

/// Forgets which consumers got ID tokens in the sessions of user `$1`.
pub(super) const FORGET_USER_SESSION_CONSUMERS: &str = "DELETE FROM session_consumers WHERE username = $1";

/// The refresh token families whose grants `$which` names, without
/// `offline_access`: they end with their session (Back-Channel Logout 1.0,
/// 2.7), while an `offline_access` grant outlives it.
macro_rules! session_families {
    ($which:literal) => {
        concat!(
            "SELECT family_id FROM refresh_tokens WHERE ",
            $which,
            " AND ' ' || scope || ' ' NOT LIKE '% offline_access %'"
        )
    };
}

/// Ends those families: the access tokens issued with their refresh tokens
/// are revoked, their grace entries dropped and the families revoked.
macro_rules! end_session_grants {
    ($which:literal) => {
        [
            concat!(
                "INSERT INTO revoked_access_tokens (jti, exp) SELECT access_jti, access_exp FROM refresh_tokens \
                 WHERE access_jti IS NOT NULL AND access_exp IS NOT NULL AND family_id IN (",
                session_families!($which),
                ") ON CONFLICT (jti) DO NOTHING"
            ),
            concat!(
                "DELETE FROM refresh_grace WHERE token_hash IN \
                 (SELECT token_hash FROM refresh_tokens WHERE family_id IN (",
                session_families!($which),
                "))"
            ),
            concat!(
                "UPDATE refresh_tokens SET revoked = TRUE WHERE NOT revoked AND family_id IN (",
                session_families!($which),
                ")"
            ),
        ]
    };
}

/// The grants made in the session `$1` (its `sid`).
const END_SESSION_GRANTS: [&str; 3] = end_session_grants!("sid = $1");

/// Ends every sign-in session of user `$1` ("sign out everywhere"): the
/// grants made in them, as [`end_one_session`](SqlStore::end_one_session)
/// ends one session's, and their back-channel logouts queued.
pub(super) const END_USER_SESSIONS: [&str; 6] = {
    let [access, grace, families] = end_session_grants!("username = $1 AND sid IS NOT NULL");
    [
        access,
        grace,
        families,
        QUEUE_USER_LOGOUTS,
        FORGET_USER_SESSION_CONSUMERS,
        "DELETE FROM login_sessions WHERE username = $1",
    ]
};

impl<D: Dialect> SqlStore<D> {
    pub(super) async fn add_session_consumer(
        &self,
        sid: &str,
        client_id: &str,
        username: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO session_consumers (sid, client_id, username, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sid, client_id) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(sid)
        .bind(client_id)
        .bind(username)
        .bind(expires_at)
        .execute(&self.writer)
        .await
        .map(drop)
        .map_err(query_err)
    }

    pub(super) async fn end_one_session(&self, id_hash: &str, sid: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO backchannel_logouts (sid, client_id, username, attempts, next_attempt) \
             SELECT s.sid, s.client_id, s.username, 0, 0 FROM session_consumers s \
             JOIN consumers c ON c.client_id = s.client_id \
             WHERE s.sid = $1 AND c.backchannel_logout_uri IS NOT NULL \
             AND (SELECT COUNT(*) FROM backchannel_logouts) < $2 \
             ON CONFLICT (sid, client_id) DO NOTHING",
        )
        .bind(sid)
        .bind(MAX_PENDING_LOGOUTS)
        .execute(&mut *tx)
        .await
        .map_err(query_err)?;
        let [access, grace, families] = END_SESSION_GRANTS;
        for (sql, key) in [
            (access, sid),
            (grace, sid),
            (families, sid),
            ("DELETE FROM session_consumers WHERE sid = $1", sid),
            ("DELETE FROM login_sessions WHERE id_hash = $1", id_hash),
        ] {
            sqlx::query(sql).bind(key).execute(&mut *tx).await.map_err(query_err)?;
        }
        tx.commit().await.map_err(query_err)
    }

    pub(super) async fn due_logouts(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<BackchannelLogoutRecord>, StoreError> {
        let found = sqlx::query(
            "SELECT * FROM backchannel_logouts WHERE next_attempt <= $1 ORDER BY next_attempt LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.writer)
        .await
        .map_err(query_err)?;
        found.iter().map(rows::backchannel_logout).collect::<Result<_, _>>().map_err(query_err)
    }

    pub(super) async fn claim_logout(
        &self,
        logout: &BackchannelLogoutRecord,
        next_attempt: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE backchannel_logouts SET attempts = attempts + 1, next_attempt = $1 \
             WHERE sid = $2 AND client_id = $3 AND next_attempt = $4",
        )
        .bind(next_attempt)
        .bind(&logout.sid)
        .bind(&logout.client_id)
        .bind(logout.next_attempt)
        .execute(&self.writer)
        .await
        .map_err(query_err)?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn delete_logout(&self, sid: &str, client_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM backchannel_logouts WHERE sid = $1 AND client_id = $2")
            .bind(sid)
            .bind(client_id)
            .execute(&self.writer)
            .await
            .map(drop)
            .map_err(query_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_insert_has_the_same_bound() {
        assert!(QUEUE_USER_LOGOUTS.contains(&format!("< {MAX_PENDING_LOGOUTS} ")));
    }
}
