//! Change announcements over LISTEN/NOTIFY. Triggers (migration 0007) send
//! a small JSON payload on [`CHANNEL`] when a row other processes may have
//! cached changes: `{"schema", "kind", "id", "tag"}`, the key of the row and
//! never a secret. PostgreSQL delivers it at commit to every session
//! listening in the database, whoever made the change (a replica, the CLI).
//!
//! The first [`StoreBase::changes`](crate::store::StoreBase::changes) call starts a
//! [`Feed`]: one task holding one connection of its own (outside the
//! store's pool; application name `oauth-sidecar listener <process id>` in
//! `pg_stat_activity`, its backend pid logged) that listens and
//! passes each change of this store's schema to every subscriber. Each time
//! it starts listening, the first time included, it announces
//! [`StoreChange::Everything`], since what changed while nobody listened
//! is unknown. A lost connection is logged and opened again: at once, then
//! after pauses of 1 second doubling up to 30 while it keeps failing (or
//! keeps being lost within a second); meanwhile the caches rely on their
//! periodic re-reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::store::{StoreChange, StoreChanges};

/// The channel the triggers notify.
pub const CHANNEL: &str = "oauth_sidecar_changes";

/// The listener connection's `application_name` (in `pg_stat_activity`),
/// followed by a space and the process id.
pub const APPLICATION_NAME: &str = "oauth-sidecar listener";

/// Changes kept for a subscriber that has not taken them yet; one that
/// falls further behind is told [`StoreChange::Everything`].
const CAPACITY: usize = 1024;

/// The first pause before connecting again after failures, and the longest.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A running listener and its subscribers' channel.
#[derive(Debug)]
pub(super) struct Feed {
    sender: broadcast::Sender<StoreChange>,
    /// The listening connection's backend pid; 0 while not listening.
    backend_pid: Arc<AtomicI32>,
    task: JoinHandle<()>,
    /// The listener's own pool (one connection), closed with the store.
    pool: PgPool,
}

impl Feed {
    /// Starts listening with the store's connection settings `store`;
    /// `None` outside a Tokio runtime.
    pub(super) fn start(store: &PgConnectOptions) -> Option<Feed> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let name = format!("{APPLICATION_NAME} {}", std::process::id());
        let options = store.clone().application_name(&name);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options);
        let (sender, _) = broadcast::channel(CAPACITY);
        let backend_pid = Arc::new(AtomicI32::new(0));
        let task = runtime.spawn(listen(pool.clone(), sender.clone(), backend_pid.clone()));
        Some(Feed { sender, backend_pid, task, pool })
    }

    /// The listening connection's backend pid, while listening.
    pub(super) fn backend_pid(&self) -> Option<i32> {
        Some(self.backend_pid.load(Ordering::Acquire)).filter(|&pid| pid != 0)
    }

    /// A new subscription; it sees the changes from now on.
    pub(super) fn subscribe(&self) -> StoreChanges {
        StoreChanges::from(self.sender.subscribe())
    }

    /// Stops listening and closes the listener's connection.
    pub(super) async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        self.pool.close().await;
    }
}

/// Listens until the pool is closed, connecting again after a loss.
async fn listen(pool: PgPool, sender: broadcast::Sender<StoreChange>, backend_pid: Arc<AtomicI32>) {
    // Failed attempts in a row; a connection lost within RETRY_MIN counts.
    let mut failures = 0;
    loop {
        let (mut listener, schema) = match subscribe(&pool, &backend_pid).await {
            Ok(subscribed) => subscribed,
            Err(e) => {
                if pool.is_closed() {
                    return;
                }
                failures += 1;
                let pause = backoff(failures);
                tracing::warn!(
                    error = %e,
                    retry_in_secs = pause.as_secs(),
                    "cannot listen for store changes; caches rely on their periodic re-reads meanwhile"
                );
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let since = Instant::now();
        // Whatever changed while nobody listened is unknown.
        let _ = sender.send(StoreChange::Everything);
        let reason = loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Some(change) = parse(notification.payload(), &schema) {
                        let _ = sender.send(change);
                    }
                }
                Ok(None) => break "the connection was lost".to_owned(),
                Err(e) => break e.to_string(),
            }
        };
        backend_pid.store(0, Ordering::Release);
        drop(listener);
        if pool.is_closed() {
            return;
        }
        tracing::warn!(
            reason = %reason,
            "stopped listening for store changes; listening again, caches rely on their periodic re-reads meanwhile"
        );
        failures = if since.elapsed() < RETRY_MIN { failures + 1 } else { 0 };
        // The first attempt after a loss is at once; a connection that
        // keeps dying at once is not retried in a tight loop.
        tokio::time::sleep(backoff(failures.saturating_sub(1))).await;
    }
}

/// The pause after `failures` failed attempts in a row: none, then 1 s
/// doubling up to [`RETRY_MAX`].
fn backoff(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => RETRY_MIN.saturating_mul(1 << (n - 1).min(5)).min(RETRY_MAX),
    }
}

/// A listening connection and the schema of this store's tables (the
/// triggers name theirs; another schema in the same database is another
/// store).
async fn subscribe(pool: &PgPool, pid: &AtomicI32) -> Result<(PgListener, String), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection is opened again here, so it is announced.
    listener.eager_reconnect(false);
    let schema: String = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.oid = 'signing_keys'::regclass",
    )
    .fetch_one(&mut listener)
    .await?;
    let backend_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut listener).await?;
    listener.listen(CHANNEL).await?;
    pid.store(backend_pid, Ordering::Release);
    tracing::info!(backend_pid, channel = CHANNEL, "listening for store changes");
    Ok((listener, schema))
}

#[derive(Deserialize)]
struct Payload {
    schema: String,
    kind: String,
    id: Option<String>,
    tag: Option<String>,
}

/// The change a trigger's payload names, if it is this store's and known.
fn parse(payload: &str, schema: &str) -> Option<StoreChange> {
    let Ok(p) = serde_json::from_str::<Payload>(payload) else {
        tracing::debug!(channel = CHANNEL, "a notification that is not a store change; ignored");
        return None;
    };
    if p.schema != schema {
        return None;
    }
    let change = match (p.kind.as_str(), p.id) {
        ("access_token_revoked", Some(jti)) => StoreChange::AccessTokenRevoked(jti),
        ("refresh_family_revoked", Some(family)) => StoreChange::RefreshFamilyRevoked(family),
        ("consumer", Some(client_id)) => StoreChange::Consumer(client_id),
        ("user", Some(username)) => StoreChange::User(username),
        ("signing_keys", _) => StoreChange::SigningKeys,
        ("client_registration", Some(name)) => StoreChange::ClientRegistration(name),
        ("provider_token", Some(client)) => {
            StoreChange::ProviderToken { client, tag: p.tag.unwrap_or_default() }
        }
        // A key too long for a notification.
        ("everything", _) => StoreChange::Everything,
        (kind, _) => {
            tracing::debug!(kind, "a store change of a kind this version does not know; ignored");
            return None;
        }
    };
    Some(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_of_this_schema_become_changes_others_are_ignored() {
        let p = |kind: &str, id: &str| format!(r#"{{"schema":"s1","kind":"{kind}","id":"{id}","tag":null}}"#);
        assert_eq!(
            parse(&p("access_token_revoked", "j1"), "s1"),
            Some(StoreChange::AccessTokenRevoked("j1".into()))
        );
        assert_eq!(parse(&p("consumer", "farm"), "s1"), Some(StoreChange::Consumer("farm".into())));
        assert_eq!(parse(&p("consumer", "farm"), "s2"), None, "another store in the same database");
        assert_eq!(
            parse(r#"{"schema":"s1","kind":"signing_keys","id":null,"tag":null}"#, "s1"),
            Some(StoreChange::SigningKeys)
        );
        assert_eq!(
            parse(r#"{"schema":"s1","kind":"provider_token","id":"mail","tag":"a:b"}"#, "s1"),
            Some(StoreChange::ProviderToken { client: "mail".into(), tag: "a:b".into() })
        );
        assert_eq!(parse(r#"{"schema":"s1","kind":"everything"}"#, "s1"), Some(StoreChange::Everything));
        assert_eq!(parse(&p("something_new", "x"), "s1"), None);
        assert_eq!(parse("not json", "s1"), None);
    }

    #[test]
    fn retries_pause_longer_while_they_keep_failing() {
        let secs: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
