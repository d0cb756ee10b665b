//! Change announcements: what any process sharing the store changed, told
//! to the caches of every other one, so that they drop a stale copy at once
//! instead of at their next periodic re-read.
//!
//! A backend that can announce (PostgreSQL, with LISTEN/NOTIFY) hands out
//! subscriptions through [`StoreBase::changes`](super::StoreBase::changes); each is
//! a [`StoreChanges`], a queue of [`StoreChange`]s. The announcements are a
//! hint that makes caches quicker, never the only way they learn: every
//! cache keeps its periodic re-read as the fallback for announcements that
//! were lost (the listener's connection dropped) or never made (SQLite). An
//! announcement that may have been missed is reported as
//! [`StoreChange::Everything`].
//!
//! ```
//! use oauth_sidecar::store::{StoreChange, StoreChanges};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let (sender, receiver) = tokio::sync::broadcast::channel(16);
//! let mut changes = StoreChanges::from(receiver);
//! sender.send(StoreChange::Consumer("farm".into())).unwrap();
//! sender.send(StoreChange::SigningKeys).unwrap();
//! assert_eq!(
//!     changes.next_batch().await,
//!     Some(vec![StoreChange::Consumer("farm".into()), StoreChange::SigningKeys])
//! );
//! # });
//! ```

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

/// The most changes [`StoreChanges::next_batch`] returns at once.
const BATCH: usize = 1024;

/// One change that caches in other processes may hold a copy of. Keys name
/// rows (a `jti`, a `client_id`, a username); no secret or hash is ever
/// announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChange {
    /// An access token was revoked; its `jti`.
    AccessTokenRevoked(String),
    /// A refresh token family was revoked; its id.
    RefreshFamilyRevoked(String),
    /// A consumer was created, changed or deleted; its `client_id`.
    Consumer(String),
    /// A user was created, changed or deleted; the username.
    User(String),
    /// A signing key was added or removed.
    SigningKeys,
    /// A client registration was created, changed or deleted; its name.
    ClientRegistration(String),
    /// A provider token was stored, refreshed, marked or deleted.
    ProviderToken {
        /// The client registration it belongs to.
        client: String,
        /// Its tag.
        tag: String,
    },
    /// Announcements may have been missed (the listener connected, or
    /// connected again; this subscriber fell behind): any copy may be stale.
    Everything,
}

/// A subscription to a store's [`StoreChange`]s, oldest first.
#[derive(Debug)]
pub struct StoreChanges {
    receiver: broadcast::Receiver<StoreChange>,
}

impl From<broadcast::Receiver<StoreChange>> for StoreChanges {
    fn from(receiver: broadcast::Receiver<StoreChange>) -> Self {
        StoreChanges { receiver }
    }
}

impl StoreChanges {
    /// Waits for the next change; [`StoreChange::Everything`] when this
    /// subscriber fell so far behind that some were dropped; `None` once the
    /// store stopped announcing.
    pub async fn next(&mut self) -> Option<StoreChange> {
        match self.receiver.recv().await {
            Ok(change) => Some(change),
            Err(RecvError::Lagged(_)) => Some(StoreChange::Everything),
            Err(RecvError::Closed) => None,
        }
    }

    /// Waits for the next change, then takes those already waiting behind
    /// it (a burst is handled once); `None` once the store stopped
    /// announcing.
    pub async fn next_batch(&mut self) -> Option<Vec<StoreChange>> {
        let mut batch = vec![self.next().await?];
        while batch.len() < BATCH {
            match self.receiver.try_recv() {
                Ok(change) => batch.push(change),
                Err(TryRecvError::Lagged(_)) => batch.push(StoreChange::Everything),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        Some(batch)
    }
}

/// The next batch of `changes` ([`StoreChanges::next_batch`]); `None`
/// once, when they end (`changes` becomes `None`); never when there are
/// none. For a `select!` beside a periodic re-read, which then goes on
/// alone.
pub async fn next_batch(changes: &mut Option<StoreChanges>) -> Option<Vec<StoreChange>> {
    let Some(subscription) = changes else { return std::future::pending().await };
    let batch = subscription.next_batch().await;
    if batch.is_none() {
        *changes = None;
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subscriber_that_fell_behind_is_told_everything_may_have_changed() {
        let (sender, receiver) = broadcast::channel(2);
        let mut changes = StoreChanges::from(receiver);
        for jti in ["a", "b", "c"] {
            sender.send(StoreChange::AccessTokenRevoked(jti.into())).unwrap();
        }
        let batch = changes.next_batch().await.unwrap();
        assert_eq!(batch[0], StoreChange::Everything, "{batch:?}");
        drop(sender);
        assert_eq!(changes.next().await, None, "the announcements ended");
    }

    #[tokio::test]
    async fn without_announcements_the_batch_never_comes() {
        let mut none: Option<StoreChanges> = None;
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), next_batch(&mut none)).await;
        assert!(waited.is_err());
        let (sender, receiver) = broadcast::channel(2);
        let mut ended = Some(StoreChanges::from(receiver));
        drop(sender);
        assert_eq!(next_batch(&mut ended).await, None, "the end is told once");
        assert!(ended.is_none());
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), next_batch(&mut ended)).await;
        assert!(waited.is_err(), "then never again: ended announcements are not spun on");
    }
}
