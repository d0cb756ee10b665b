//! [`LiveKeys`]: the key ring a running server signs and verifies with,
//! reloaded from the store, so that `oauth-sidecar keys rotate` (run by the
//! CLI, another process on the same store) takes effect without a restart.
//!
//! A reload reads every stored key and, when the set of `kid`s changed,
//! builds a new [`KeyRing`] (off the async threads: parsing RSA keys takes a
//! while) and swaps it in. From then on signing uses the newest key of each
//! algorithm, and the JWKS and verification know the new keys, while the old
//! ones stay published for the retention, as in [`super::keys`]. It happens:
//!
//! - every `server.keys_reload_interval` ([`spawn_periodic_reload`]), so a
//!   rotated key starts signing within one interval;
//! - when the store announces a key change (PostgreSQL, see
//!   [`crate::store::change`]; the same task follows them), so every
//!   replica signs with a rotated key moments after `keys rotate`, and the
//!   interval is only the fallback for a lost announcement;
//! - when a token names a `kid` the ring does not know
//!   ([`LiveKeys::verify`]): another replica may already sign with a newer
//!   key. At most once per [`UNKNOWN_KID_RELOAD_MIN`], so tokens with made-up
//!   `kid`s cost one store read per interval, not one per request.
//!
//! The hot path stays cheap: [`LiveKeys::current`] holds a read lock only for
//! the clone of an `Arc` (never while signing or verifying), so concurrent
//! requests share the lock without waiting for each other; the write lock is
//! taken by a reload only for the pointer swap. A failed reload keeps the
//! ring that was loaded and logs the cause.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use oauth_sidecar::server::key_reload::LiveKeys;
//! use oauth_sidecar::server::keys::{Alg, KeyRing};
//! use oauth_sidecar::store::{SqliteStore, Store};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let store: Arc<dyn ServerStore> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
//! let ring = KeyRing::load_or_create(store.as_ref(), &[Alg::EdDSA], Duration::from_secs(3600)).await.unwrap();
//! let keys = LiveKeys::new(store.clone(), ring);
//! let before = keys.current().active(Alg::EdDSA).unwrap().kid().to_owned();
//!
//! let rotated = KeyRing::rotate(store.as_ref(), Alg::EdDSA).await.unwrap();
//! assert!(keys.reload().await.unwrap(), "the set of keys changed");
//! assert_eq!(keys.current().active(Alg::EdDSA).unwrap().kid(), rotated);
//! assert!(keys.current().key(&before).is_some(), "the old key still verifies");
//! # });
//! ```

use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::jwt::{self, Expect, JwtError};
use super::keys::{KeyError, KeyRing};
use crate::store::{ServerStore, StoreChange, change};

/// The least time between two reloads caused by unknown `kid`s.
pub const UNKNOWN_KID_RELOAD_MIN: Duration = Duration::from_secs(5);

/// The current key ring and how to reload it (see the module docs).
pub struct LiveKeys {
    ring: RwLock<Arc<KeyRing>>,
    store: Arc<dyn ServerStore>,
    /// When an unknown `kid` last caused a reload; held across that reload,
    /// so that requests arriving meanwhile wait for it instead of failing.
    unknown_kid_reload: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for LiveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKeys").field("ring", &self.current()).finish_non_exhaustive()
    }
}

impl LiveKeys {
    /// Starts from `ring` (as loaded at start); reloads read `store` and keep
    /// the ring's retention.
    pub fn new(store: Arc<dyn ServerStore>, ring: KeyRing) -> Self {
        LiveKeys {
            ring: RwLock::new(Arc::new(ring)),
            store,
            unknown_kid_reload: tokio::sync::Mutex::new(None),
        }
    }

    /// The ring in force now. Sign and verify with it; a reload meanwhile
    /// does not change the ring a caller already holds.
    pub fn current(&self) -> Arc<KeyRing> {
        Arc::clone(&self.ring.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads the store's keys and swaps in a new ring when the set of `kid`s
    /// differs from the current one; returns whether it did.
    pub async fn reload(&self) -> Result<bool, KeyError> {
        let records = self.store.signing_keys().await?;
        let current = self.current();
        let mut known: Vec<&str> = current.keys().iter().map(|k| k.kid()).collect();
        let mut stored: Vec<&str> = records.iter().map(|r| r.kid.as_str()).collect();
        known.sort_unstable();
        stored.sort_unstable();
        stored.dedup();
        if known == stored {
            return Ok(false);
        }
        let retention = current.retention();
        let ring = tokio::task::spawn_blocking(move || KeyRing::from_records(records, retention))
            .await
            .map_err(|e| KeyError::InvalidRecord { kid: String::new(), reason: e.to_string() })??;
        let kids: Vec<&str> = ring.keys().iter().map(|k| k.kid()).collect();
        tracing::info!(kids = ?kids, "signing keys reloaded from the store");
        *self.ring.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ring);
        Ok(true)
    }

    /// [`jwt::verify`] with the current ring; when the token names a `kid`
    /// the ring does not know, reloads (at most once per
    /// [`UNKNOWN_KID_RELOAD_MIN`]) and tries once more.
    pub async fn verify<T: DeserializeOwned>(&self, token: &str, expect: &Expect) -> Result<T, JwtError> {
        let ring = self.current();
        let first = jwt::verify(&ring, token, expect);
        if !matches!(first, Err(JwtError::UnknownKey(_))) {
            return first;
        }
        let mut last = self.unknown_kid_reload.lock().await;
        let now = self.current();
        if !Arc::ptr_eq(&now, &ring) {
            // Reloaded while this request waited: the new ring decides.
            return jwt::verify(&now, token, expect);
        }
        if last.is_some_and(|t| t.elapsed() < UNKNOWN_KID_RELOAD_MIN) {
            return first;
        }
        *last = Some(Instant::now());
        match self.reload().await {
            Ok(true) => jwt::verify(&self.current(), token, expect),
            Ok(false) => first,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload the signing keys; keeping the ones loaded");
                first
            }
        }
    }
}

/// Reloads `keys` every `every` (zero: never), and whenever their store
/// announces a key change, until they are dropped (the server with them);
/// `None`, and no task, when there is nothing to follow. Call inside a
/// Tokio runtime.
pub fn spawn_periodic_reload(keys: &Arc<LiveKeys>, every: Duration) -> Option<JoinHandle<()>> {
    let mut changes = keys.store.changes();
    if every.is_zero() && changes.is_none() {
        return None;
    }
    let keys: Weak<LiveKeys> = Arc::downgrade(keys);
    Some(tokio::spawn(async move {
        let mut ticks = (!every.is_zero()).then(|| {
            let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        loop {
            tokio::select! {
                _ = tick(&mut ticks) => {}
                batch = change::next_batch(&mut changes) => match batch {
                    Some(batch) if batch.iter().any(|c| matches!(c, StoreChange::SigningKeys | StoreChange::Everything)) => {}
                    Some(_) => continue,
                    // The announcements ended; the interval goes on alone.
                    None if ticks.is_some() => continue,
                    None => break,
                },
            }
            let Some(keys) = keys.upgrade() else { break };
            if let Err(e) = keys.reload().await {
                tracing::warn!(error = %e, "cannot reload the signing keys; keeping the ones loaded");
            }
        }
    }))
}

/// The next tick, or never without an interval.
async fn tick(ticks: &mut Option<tokio::time::Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;
    use crate::server::jwt::{ACCESS_TOKEN_TYP, AccessClaims};
    use crate::server::keys::{Alg, generate_record};
    use crate::store::SqliteStore;

    fn claims() -> AccessClaims {
        let now = clock::now();
        AccessClaims {
            iss: "https://auth.example".into(),
            sub: "alice".into(),
            aud: vec!["https://auth.example".into()],
            client_id: "farm".into(),
            scope: "farm_viewer".into(),
            iat: now,
            exp: now + 600,
            jti: "j".into(),
            auth_time: None,
        }
    }

    async fn live() -> (LiveKeys, Arc<dyn ServerStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ServerStore> =
            Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
        let ring =
            KeyRing::load_or_create(store.as_ref(), &[Alg::EdDSA], Duration::from_secs(3600)).await.unwrap();
        (LiveKeys::new(store.clone(), ring), store, dir)
    }

    #[tokio::test]
    async fn a_token_signed_by_a_key_added_elsewhere_verifies_after_one_reload() {
        let (keys, store, _dir) = live().await;
        // Another replica (a ring of its own on the same store) rotates and signs.
        let kid = KeyRing::rotate(store.as_ref(), Alg::EdDSA).await.unwrap();
        let other = KeyRing::load(store.as_ref(), Duration::from_secs(3600)).await.unwrap();
        let token = jwt::sign(&other, Alg::EdDSA, ACCESS_TOKEN_TYP, &claims()).unwrap();
        assert!(keys.current().key(&kid).is_none());

        let expect = Expect::new(ACCESS_TOKEN_TYP, "https://auth.example");
        let back: AccessClaims = keys.verify(&token, &expect).await.expect("reloaded on the unknown kid");
        assert_eq!(back.sub, "alice");
        assert_eq!(keys.current().active(Alg::EdDSA).unwrap().kid(), kid, "signs with the new key");
        store.close().await;
    }

    #[tokio::test]
    async fn unknown_kids_reload_at_most_once_per_interval() {
        let (keys, store, _dir) = live().await;
        let expect = Expect::new(ACCESS_TOKEN_TYP, "https://auth.example");
        let stranger = KeyRing::from_records(
            vec![generate_record(Alg::EdDSA, clock::now()).unwrap()],
            Duration::from_secs(3600),
        )
        .unwrap();
        let forged = jwt::sign(&stranger, Alg::EdDSA, ACCESS_TOKEN_TYP, &claims()).unwrap();
        let err = keys.verify::<AccessClaims>(&forged, &expect).await.unwrap_err();
        assert!(matches!(err, JwtError::UnknownKey(_)));
        let first = *keys.unknown_kid_reload.lock().await;
        assert!(first.is_some(), "the unknown kid caused a reload");

        // A key rotated now is not seen by the next unknown kid: too soon.
        let kid = KeyRing::rotate(store.as_ref(), Alg::EdDSA).await.unwrap();
        let other = KeyRing::load(store.as_ref(), Duration::from_secs(3600)).await.unwrap();
        let token = jwt::sign(&other, Alg::EdDSA, ACCESS_TOKEN_TYP, &claims()).unwrap();
        let err = keys.verify::<AccessClaims>(&token, &expect).await.unwrap_err();
        assert_eq!(err, JwtError::UnknownKey(kid));
        assert_eq!(*keys.unknown_kid_reload.lock().await, first, "no second reload within the interval");
        store.close().await;
    }

    #[tokio::test]
    async fn reload_without_changes_keeps_the_same_ring() {
        let (keys, store, _dir) = live().await;
        let before = keys.current();
        assert!(!keys.reload().await.unwrap());
        assert!(Arc::ptr_eq(&before, &keys.current()));
        store.close().await;
    }

    #[tokio::test]
    async fn periodic_reload_picks_up_a_rotation_and_stops_with_the_keys() {
        let (keys, store, _dir) = live().await;
        let keys = Arc::new(keys);
        assert!(spawn_periodic_reload(&keys, Duration::ZERO).is_none(), "0s: off");
        let every = Duration::from_millis(100);
        let task = spawn_periodic_reload(&keys, every).unwrap();
        let kid = KeyRing::rotate(store.as_ref(), Alg::EdDSA).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while keys.current().active(Alg::EdDSA).unwrap().kid() != kid {
            assert!(Instant::now() < deadline, "no reload after the interval");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(keys);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the task ends with the keys")
            .unwrap();
        store.close().await;
    }
}
