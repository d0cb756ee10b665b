//! A short-lived in-memory copy of the consumer and user records the token
//! endpoint reads on every request.
//!
//! Without it, every `client_credentials` request costs two store queries
//! (the consumer, then its acting user); with SQLite each one is a round trip
//! to the store's worker thread, which was the largest single cost of token
//! issuance (see `benches/README.md`).
//!
//! # Bounded staleness
//!
//! A record is kept for at most [`RECORD_TTL`] from the moment its store
//! read returned, and an expired record is never served. The CLI (or
//! another replica) changes the store from another process; the TTL is the
//! bound on how long this cache can miss that: a consumer deleted or
//! changed, or a user disabled, deleted or given other roles by
//! `oauth-sidecar consumer|user ...`, is seen by the token endpoint at most
//! [`RECORD_TTL`] (plus the duration of one store read, microseconds with
//! SQLite) after the change.
//!
//! A store that announces changes (PostgreSQL, see
//! [`crate::store::change`]) makes it quicker: [`DirectoryCache::following`]
//! drops a consumer or user as soon as its change is announced, and every
//! record on [`StoreChange::Everything`]. The TTL stays as the fallback for
//! a lost announcement and for a read that began before the change and
//! ended after it.
//!
//! Two things keep the bound from surprising anyone:
//!
//! - Only records that exist are kept: a consumer or user created by the CLI
//!   works at once, and unknown names (which anyone can send) do not fill
//!   the cache.
//! - The token endpoint reloads a consumer whose secret check failed (see
//!   `DirectoryCache::reload_consumer`), so a secret rotated by
//!   `consumer update --new-secret` works at once; the old secret keeps
//!   working for at most [`RECORD_TTL`].
//!
//! The cache holds no client secret: a consumer record carries only its
//! secret's hash, as in the store.

use std::sync::{Arc, Weak};
use std::time::Duration;

use moka::sync::Cache;

use crate::store::{ConsumerRecord, ServerStore, StoreChange, StoreChanges, StoreError, UserRecord};

/// How long a record read from the store is used before it is read again:
/// about the most a change made by the CLI can take to reach the token
/// endpoint (see the module docs).
pub const RECORD_TTL: Duration = Duration::from_secs(2);

/// How many consumers and how many users are kept at most.
const CAPACITY: u64 = 10_000;

/// Consumers by `client_id` and users by username (see the module docs).
pub(crate) struct DirectoryCache {
    records: Arc<Records>,
}

struct Records {
    consumers: Cache<String, ConsumerRecord>,
    users: Cache<String, UserRecord>,
}

impl Records {
    /// Drops what `changes` say was changed.
    fn apply(&self, changes: &[StoreChange]) {
        for change in changes {
            match change {
                StoreChange::Consumer(client_id) => self.consumers.invalidate(client_id),
                StoreChange::User(username) => self.users.invalidate(username),
                StoreChange::Everything => {
                    self.consumers.invalidate_all();
                    self.users.invalidate_all();
                }
                _ => {}
            }
        }
    }
}

impl DirectoryCache {
    /// An empty cache whose entries live [`RECORD_TTL`].
    pub(crate) fn new() -> Self {
        DirectoryCache { records: Arc::new(Records { consumers: bounded(), users: bounded() }) }
    }

    /// [`DirectoryCache::new`], following the store's announcements when
    /// it makes them. Needs a Tokio runtime.
    pub(crate) fn following(store: &dyn ServerStore) -> Self {
        let cache = Self::new();
        if let Some(changes) = store.changes() {
            cache.spawn_follow(changes);
        }
        cache
    }

    /// Drops records as `changes` announce their change, until the
    /// announcements end or the cache is dropped.
    fn spawn_follow(&self, mut changes: StoreChanges) -> tokio::task::JoinHandle<()> {
        let records: Weak<Records> = Arc::downgrade(&self.records);
        tokio::spawn(async move {
            while let Some(batch) = changes.next_batch().await {
                let Some(records) = records.upgrade() else { return };
                records.apply(&batch);
            }
        })
    }

    /// Drops every cached record, e.g. after the file's consumers were
    /// synced again.
    pub(crate) fn forget_all(&self) {
        self.records.apply(&[StoreChange::Everything]);
    }

    /// The consumer, from the cache when read less than [`RECORD_TTL`] ago,
    /// else from the store.
    pub(crate) async fn consumer(
        &self,
        store: &dyn ServerStore,
        client_id: &str,
    ) -> Result<Option<ConsumerRecord>, StoreError> {
        match self.records.consumers.get(client_id) {
            Some(hit) => Ok(Some(hit)),
            None => self.reload_consumer(store, client_id).await,
        }
    }

    /// The consumer from the store, replacing (or dropping) the cached copy.
    pub(crate) async fn reload_consumer(
        &self,
        store: &dyn ServerStore,
        client_id: &str,
    ) -> Result<Option<ConsumerRecord>, StoreError> {
        let found = store.consumer(client_id).await?;
        match &found {
            Some(c) => self.records.consumers.insert(client_id.to_owned(), c.clone()),
            None => self.records.consumers.invalidate(client_id),
        }
        Ok(found)
    }

    /// The user, from the cache when read less than [`RECORD_TTL`] ago, else
    /// from the store.
    pub(crate) async fn user(
        &self,
        store: &dyn ServerStore,
        username: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        if let Some(hit) = self.records.users.get(username) {
            return Ok(Some(hit));
        }
        let found = store.user(username).await?;
        if let Some(u) = &found {
            self.records.users.insert(username.to_owned(), u.clone());
        }
        Ok(found)
    }
}

/// A cache of at most [`CAPACITY`] entries, each living [`RECORD_TTL`].
fn bounded<V: Clone + Send + Sync + 'static>() -> Cache<String, V> {
    Cache::builder().max_capacity(CAPACITY).time_to_live(RECORD_TTL).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ServerStore, SqliteStore};

    fn consumer(client_id: &str, label: &str) -> ConsumerRecord {
        ConsumerRecord {
            client_id: client_id.into(),
            label: label.into(),
            secret_hash: None,
            confidential: true,
            user_id: None,
            redirect_uris: vec![],
            allowed_origins: vec![],
            third_party: false,
            scopes: vec![],
            grant_types: vec!["client_credentials".into()],
            access_token_ttl: None,
            refresh_token_ttl: None,
            grant_user_access: false,
            limit_requested_access: false,
            limit_user_access: false,
            managed_by_config: false,
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
        }
    }

    #[tokio::test]
    async fn a_cached_consumer_is_served_until_reloaded_and_unknown_ones_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let cache = DirectoryCache::new();
        assert_eq!(cache.consumer(&store, "app").await.unwrap(), None);
        store.put_consumer(&consumer("app", "first")).await.unwrap();
        assert_eq!(
            cache.consumer(&store, "app").await.unwrap().unwrap().label,
            "first",
            "absence is not cached"
        );

        store.put_consumer(&consumer("app", "second")).await.unwrap();
        assert_eq!(
            cache.consumer(&store, "app").await.unwrap().unwrap().label,
            "first",
            "served from the cache"
        );
        assert_eq!(cache.reload_consumer(&store, "app").await.unwrap().unwrap().label, "second");
        assert_eq!(cache.consumer(&store, "app").await.unwrap().unwrap().label, "second");

        store.delete_consumer("app").await.unwrap();
        assert_eq!(cache.reload_consumer(&store, "app").await.unwrap(), None);
        assert_eq!(cache.consumer(&store, "app").await.unwrap(), None, "a reload drops a deleted consumer");
    }

    fn user(username: &str, roles: &[&str]) -> UserRecord {
        UserRecord {
            username: username.into(),
            password_hash: String::new(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            admin: false,
            permissions: vec![],
            disabled: false,
        }
    }

    /// Waits until `check` holds, for half the TTL at most: sooner than the
    /// TTL alone would make it hold.
    async fn eventually(mut check: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + RECORD_TTL / 2;
        while !check().await {
            assert!(tokio::time::Instant::now() < deadline, "not within half the TTL");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn announced_changes_drop_the_cached_records_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let cache = DirectoryCache::new();
        let (announce, changes) = tokio::sync::broadcast::channel(16);
        let task = cache.spawn_follow(changes.into());
        for (id, label) in [("app", "first"), ("other", "first")] {
            store.put_consumer(&consumer(id, label)).await.unwrap();
            cache.consumer(&store, id).await.unwrap();
        }
        store.put_user(&user("alice", &["a"])).await.unwrap();
        cache.user(&store, "alice").await.unwrap();
        store.put_consumer(&consumer("app", "second")).await.unwrap();
        store.put_consumer(&consumer("other", "second")).await.unwrap();
        store.put_user(&user("alice", &["b"])).await.unwrap();

        announce.send(StoreChange::Consumer("app".into())).unwrap();
        eventually(async || cache.consumer(&store, "app").await.unwrap().unwrap().label == "second").await;
        assert_eq!(
            cache.consumer(&store, "other").await.unwrap().unwrap().label,
            "first",
            "a consumer not named stays cached (well within the TTL)"
        );
        assert_eq!(cache.user(&store, "alice").await.unwrap().unwrap().roles, ["a"]);

        announce.send(StoreChange::Everything).unwrap();
        eventually(async || cache.user(&store, "alice").await.unwrap().unwrap().roles == ["b"]).await;
        assert_eq!(cache.consumer(&store, "other").await.unwrap().unwrap().label, "second");

        drop(cache);
        announce.send(StoreChange::SigningKeys).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends with the cache")
            .unwrap();
    }
}
