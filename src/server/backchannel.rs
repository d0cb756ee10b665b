//! OpenID Connect back-channel logout 1.0: when a sign-in session ends (RP-
//! initiated logout, "sign out everywhere" on the admin Users page, a user
//! disabled, deleted or given a new password), each consumer with a
//! `backchannel_logout_uri` that got an ID token in that session is told,
//! server to server, with a logout token.
//!
//! The store queues the logouts in the transaction that ends the session
//! (`session_consumers` to `backchannel_logouts`), so they survive a restart
//! and a session ended by another process (the CLI, another replica) is
//! told too. A task of the authorization server delivers them: at once when
//! this process queued one, when a retry it scheduled is due, else every
//! [`POLL`].
//!
//! A logout token is a JWT signed like the ID tokens (`server.id_token_alg`,
//! the keys of the JWKS), header `typ: logout+jwt`, with `iss`, `aud` (the
//! consumer), `iat`, `exp` (two minutes on), `jti`, `sub`, `sid` (the ID
//! tokens' `sid`) and the `events` member the specification names. It is
//! POSTed as the form field `logout_token`; a 2xx answer is delivery.
//!
//! The bounds: each delivery waits [`TIMEOUT`] at most; a failed one is
//! tried again after 1, 2, 4 and 8 seconds (plus the timeout), so
//! [`MAX_ATTEMPTS`] attempts within about half a minute, then given up with
//! a warning; at most `MAX_PENDING_LOGOUTS` (10 000) wait in the queue,
//! and at most [`BATCH`] are sent at once. Retries of one logout keep its
//! `jti`, so a consumer can tell a repeat.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::jwt;
use super::{Inner, ServerStartError};
use crate::clock;
use crate::store::{BackchannelLogoutRecord, StoreError, token_hash};

/// Header `typ` of logout tokens (Back-Channel Logout 1.0 section 2.4).
pub const LOGOUT_TOKEN_TYP: &str = "logout+jwt";
/// The `events` member that makes a JWT a logout token.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Delivery attempts per logout before it is given up.
pub const MAX_ATTEMPTS: i64 = 5;
/// How long one delivery waits for the consumer's answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How often the queue is read when nothing woke the task.
pub const POLL: Duration = Duration::from_secs(5);
/// Deliveries sent at once, at most.
pub const BATCH: i64 = 32;
/// How long a logout token is valid.
const TOKEN_TTL: i64 = 120;

/// The claims of a logout token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutClaims {
    /// The issuer.
    pub iss: String,
    /// The consumer told.
    pub aud: String,
    /// Issued at.
    pub iat: i64,
    /// Expires at.
    pub exp: i64,
    /// The same for every attempt to deliver one logout.
    pub jti: String,
    /// The user whose session ended.
    pub sub: String,
    /// The ended session, as the ID tokens issued in it named it.
    pub sid: String,
    /// `{"http://schemas.openid.net/event/backchannel-logout": {}}`.
    pub events: Value,
}

/// Wakes the delivery task when this process queued a logout.
#[derive(Debug, Default)]
pub(crate) struct Wake(Notify);

impl Wake {
    /// Has the task read the queue now.
    pub(crate) fn wake(&self) {
        self.0.notify_one();
    }
}

/// The wait before attempt `n + 1` after attempt `n` failed: 1, 2, 4, 8 s.
fn backoff(n: i64) -> i64 {
    1_i64 << (n - 1).clamp(0, 5)
}

/// Starts the delivery task; it ends when the server is dropped.
pub(super) fn spawn_delivery(server: &Arc<Inner>) -> Result<(), ServerStartError> {
    let client = http_client().map_err(ServerStartError::Http)?;
    let weak: Weak<Inner> = Arc::downgrade(server);
    let wake = server.backchannel.clone();
    tokio::spawn(async move {
        // The earliest retry this task scheduled and has not reached yet.
        let mut retry: Option<Instant> = None;
        loop {
            let wait = retry.map_or(POLL, |at| at.saturating_duration_since(Instant::now()).min(POLL));
            tokio::select! {
                () = wake.0.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            let Some(server) = weak.upgrade() else { break };
            let scheduled = match deliver_due(&server, &client).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the back-channel logout queue");
                    None
                }
            };
            let now = Instant::now();
            // A second more: the queue counts whole seconds.
            let at = scheduled.map(|secs| now + Duration::from_secs(u64::try_from(secs).unwrap_or(0) + 1));
            retry = match (retry.filter(|r| *r > now), at) {
                (Some(r), Some(a)) => Some(r.min(a)),
                (r, a) => r.or(a),
            };
        }
    });
    Ok(())
}

/// The outbound client: rustls with the platform's trust store, no
/// redirects (a logout token is for the registered URI only).
fn http_client() -> Result<reqwest::Client, String> {
    crate::outbound::client_builder()?
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the back-channel logout client: {e}"))
}

/// Sends every due logout (a batch at a time); the seconds until the
/// earliest retry this scheduled, if any.
async fn deliver_due(server: &Inner, client: &reqwest::Client) -> Result<Option<i64>, StoreError> {
    let mut next: Option<i64> = None;
    loop {
        let now = clock::now();
        let due = server.store.due_backchannel_logouts(now, BATCH).await?;
        if due.is_empty() {
            return Ok(next);
        }
        let sent = futures_util::future::join_all(due.iter().map(|l| deliver(server, client, l))).await;
        for outcome in sent {
            if let Some(at) = outcome? {
                let wait = at.saturating_sub(clock::now());
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
        }
    }
}

/// One attempt at one logout; when it failed and will be tried again, the
/// time of the next attempt.
async fn deliver(
    server: &Inner,
    client: &reqwest::Client,
    logout: &BackchannelLogoutRecord,
) -> Result<Option<i64>, StoreError> {
    let attempt = logout.attempts.saturating_add(1);
    let retry_at = clock::now()
        .saturating_add(i64::try_from(TIMEOUT.as_secs()).unwrap_or(0))
        .saturating_add(backoff(attempt));
    if !server.store.claim_backchannel_logout(logout, retry_at).await? {
        return Ok(None);
    }
    let forget = || server.store.delete_backchannel_logout(&logout.sid, &logout.client_id);
    let uri = match server.store.consumer(&logout.client_id).await? {
        Some(c) => c.backchannel_logout_uri,
        None => None,
    };
    let Some(uri) = uri else {
        forget().await?;
        return Ok(None);
    };
    let token = match logout_token(server, logout) {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, client_id = %logout.client_id, "cannot sign a logout token");
            forget().await?;
            return Ok(None);
        }
    };
    let body: String =
        url::form_urlencoded::Serializer::new(String::new()).append_pair("logout_token", &token).finish();
    let sent = client
        .post(&uri)
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await;
    let failure = match sent {
        Ok(res) if res.status().is_success() => {
            tracing::info!(client_id = %logout.client_id, username = %logout.username, attempt, "back-channel logout delivered");
            forget().await?;
            return Ok(None);
        }
        Ok(res) => format!("answered {}", res.status()),
        Err(e) if e.is_timeout() => format!("no answer within {} s", TIMEOUT.as_secs()),
        Err(e) => format!("cannot be reached ({})", e.without_url()),
    };
    if attempt >= MAX_ATTEMPTS {
        tracing::warn!(client_id = %logout.client_id, username = %logout.username, attempt, failure, "back-channel logout given up");
        forget().await?;
        return Ok(None);
    }
    tracing::warn!(client_id = %logout.client_id, username = %logout.username, attempt, failure, "back-channel logout failed; tried again later");
    Ok(Some(retry_at))
}

/// Signs the logout token for `logout`.
fn logout_token(server: &Inner, logout: &BackchannelLogoutRecord) -> Result<String, jwt::JwtError> {
    let now = clock::now();
    let claims = LogoutClaims {
        iss: server.issuer.clone(),
        aud: logout.client_id.clone(),
        iat: now,
        exp: now.saturating_add(TOKEN_TTL),
        jti: token_hash(&format!("{} {}", logout.sid, logout.client_id)),
        sub: logout.username.clone(),
        sid: logout.sid.clone(),
        events: json!({ LOGOUT_EVENT: {} }),
    };
    jwt::sign(&server.keys.current(), server.id_alg, LOGOUT_TOKEN_TYP, &claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time() {
        assert_eq!((1..=5).map(backoff).collect::<Vec<_>>(), [1, 2, 4, 8, 16]);
    }
}
