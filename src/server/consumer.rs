//! Consumers (OAuth clients): their secrets, their sync from the YAML file,
//! and redirect URI matching.
//!
//! # Secrets
//!
//! A secret is never stored in clear. A *generated* secret (256 random bits,
//! base64url, shown once) has so much entropy that a keyed hash is enough:
//! it is stored as `hmac-sha256:<base64url>`, keyed with a server key kept in
//! the store (`server_hmac_key`, 32 random bytes made at first start). A
//! secret *set by hand* may be guessable, so it is stored as an argon2id PHC
//! string. Both comparisons run in constant time.
//!
//! argon2 takes tens of milliseconds per check on purpose, which would cap
//! the token endpoint. So a successful argon2 check is remembered for a
//! minute under the HMAC of (client id, presented secret, stored hash): a
//! repeated request with the same secret costs one HMAC. The cache holds no
//! secret, and a changed stored hash misses it.
//!
//! A consumer with `confidential: false` has its secret not validated at all
//! (farmOS semantics, for self-hosted servers that cannot share a secret).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::password;
use crate::config::server::ConsumerConfig;
use crate::store::{ConsumerRecord, ServerStore, StoreError};

/// Prefix of a stored generated secret.
pub const HMAC_PREFIX: &str = "hmac-sha256:";
/// The store's meta key holding the server's HMAC key.
pub const HMAC_KEY_META: &str = "server_hmac_key";
/// How long a successful argon2 check is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);

/// 32 random bytes, base64url without padding: a generated secret, a refresh
/// token, a code.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The system RNG failing is not recoverable; ring reports it only on
    // platforms without one.
    SystemRandom::new().fill(&mut bytes).expect("the system random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hashes and checks consumer secrets (see the module docs).
#[derive(Clone)]
pub struct Secrets {
    key: hmac::Key,
    verified: moka::sync::Cache<[u8; 32], ()>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").field("key", &"[redacted]").finish()
    }
}

impl Secrets {
    /// Builds from a raw HMAC key (tests, tools).
    pub fn with_key(key: &[u8]) -> Self {
        Secrets {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            verified: moka::sync::Cache::builder().max_capacity(10_000).time_to_live(VERIFIED_TTL).build(),
        }
    }

    /// Loads the server's HMAC key from the store, creating it on first start.
    pub async fn load(store: &dyn ServerStore) -> Result<Self, StoreError> {
        let mut fresh = [0u8; 32];
        SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| StoreError::Query("the system random number generator failed".into()))?;
        let key = store.meta_get_or_insert(HMAC_KEY_META, &fresh).await?;
        Ok(Self::with_key(&key))
    }

    /// A keyed tag of `data` for one `purpose` (CSRF tokens), base64url.
    pub(crate) fn tag(&self, purpose: &str, data: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, &tagged(purpose, data)))
    }

    /// True when `presented` is the [`Secrets::tag`] of `data`, compared in
    /// constant time.
    pub(crate) fn check_tag(&self, purpose: &str, data: &[u8], presented: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(presented)
            .is_ok_and(|tag| hmac::verify(&self.key, &tagged(purpose, data), &tag).is_ok())
    }

    /// A new generated secret and its stored form.
    pub fn generate(&self) -> (String, String) {
        let secret = random_token();
        let stored = self.hash_generated(&secret);
        (secret, stored)
    }

    /// The stored form of a generated secret: `hmac-sha256:<base64url>`.
    pub fn hash_generated(&self, secret: &str) -> String {
        format!("{HMAC_PREFIX}{}", URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, secret.as_bytes())))
    }

    /// True when `presented` is the secret behind `stored` (either form).
    pub async fn verify(&self, client_id: &str, stored: &str, presented: &str) -> bool {
        if let Some(tag) = stored.strip_prefix(HMAC_PREFIX) {
            return URL_SAFE_NO_PAD
                .decode(tag)
                .is_ok_and(|tag| hmac::verify(&self.key, presented.as_bytes(), &tag).is_ok());
        }
        if !stored.starts_with("$argon2") {
            return false;
        }
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [client_id, presented, stored] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let mut cache_key = [0u8; 32];
        cache_key.copy_from_slice(ctx.sign().as_ref());
        if self.verified.contains_key(&cache_key) {
            return true;
        }
        let ok = password::verify_blocking(stored.to_owned(), presented.to_owned()).await;
        if ok {
            self.verified.insert(cache_key, ());
        }
        ok
    }
}

/// `purpose` and `data`, framed so that no two pairs give the same bytes.
fn tagged(purpose: &str, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(8 + purpose.len() + data.len());
    message.extend_from_slice(&(purpose.len() as u64).to_be_bytes());
    message.extend_from_slice(purpose.as_bytes());
    message.extend_from_slice(data);
    message
}

/// True when `presented` may be used as redirect URI for the `registered`
/// one: the same string (RFC 9700 section 4.1.3), or, for the loopback
/// addresses `http://127.0.0.1` and `http://[::1]`, the same URI with any
/// port (RFC 8252 section 7.3). `localhost` gets no exception.
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    match (split_loopback(registered), split_loopback(presented)) {
        (Some((host_a, rest_a)), Some((host_b, rest_b))) => host_a == host_b && rest_a == rest_b,
        _ => false,
    }
}

/// `http://127.0.0.1[:port]/rest` or `http://[::1][:port]/rest` as
/// (host, rest-with-leading-slash-or-query).
fn split_loopback(uri: &str) -> Option<(&str, &str)> {
    let after = uri.strip_prefix("http://")?;
    let host = ["127.0.0.1", "[::1]"].into_iter().find(|h| after.starts_with(h))?;
    let mut rest = &after[host.len()..];
    if let Some(port) = rest.strip_prefix(':') {
        let digits = port.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        rest = &port[digits..];
    }
    if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') {
        Some((host, if rest.is_empty() { "/" } else { rest }))
    } else {
        None
    }
}

/// What syncing the file's consumers did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Consumers created or updated.
    pub upserted: usize,
    /// Config-managed consumers removed from the file, and so deleted.
    pub deleted: Vec<String>,
}

/// Creates or updates every consumer of the file (marked
/// `managed_by_config`), and deletes config-managed consumers that are no
/// longer in it. Consumers made by the CLI are left alone. A secret from the
/// file is kept as its existing hash when it still matches, else hashed anew
/// with argon2.
pub async fn sync_consumers(
    store: &dyn ServerStore,
    secrets: &Secrets,
    consumers: &[ConsumerConfig],
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    for c in consumers {
        let existing = store.consumer(&c.client_id).await?;
        let secret_hash =
            match &c.secret {
                None => None,
                Some(secret) => {
                    let kept = match existing.as_ref().and_then(|e| e.secret_hash.as_deref()) {
                        Some(old) if secrets.verify(&c.client_id, old, secret.expose()).await => {
                            Some(old.to_owned())
                        }
                        _ => None,
                    };
                    match kept {
                        Some(hash) => Some(hash),
                        None => Some(password::hash_blocking(secret.expose().to_owned()).await.map_err(
                            |reason| SyncError::Hash { client_id: c.client_id.value.clone(), reason },
                        )?),
                    }
                }
            };
        let record = ConsumerRecord {
            client_id: c.client_id.value.clone(),
            label: c.label.clone(),
            secret_hash,
            confidential: c.confidential,
            user_id: c.user_id.clone(),
            redirect_uris: c.redirect_uris.iter().map(|u| u.value.clone()).collect(),
            allowed_origins: c.allowed_origins.clone(),
            third_party: c.third_party,
            scopes: c.scopes.iter().map(|s| s.value.clone()).collect(),
            grant_types: c.grant_types.iter().map(|g| g.value.clone()).collect(),
            access_token_ttl: c.access_token_ttl.map(|d| d.0.as_secs()),
            refresh_token_ttl: c.refresh_token_ttl.map(|d| d.0.as_secs()),
            grant_user_access: c.grant_user_access,
            limit_requested_access: c.limit_requested_access,
            limit_user_access: c.limit_user_access,
            managed_by_config: true,
        };
        if existing.as_ref() != Some(&record) {
            store.put_consumer(&record).await?;
        }
        report.upserted += 1;
    }
    for old in store.consumers().await? {
        if old.managed_by_config && !consumers.iter().any(|c| c.client_id.value == old.client_id) {
            store.delete_consumer(&old.client_id).await?;
            report.deleted.push(old.client_id);
        }
    }
    Ok(report)
}

/// Why the file's consumers could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A secret could not be hashed.
    #[error("cannot hash the secret of consumer {client_id:?}: {reason}")]
    Hash {
        /// The consumer.
        client_id: String,
        /// What went wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_match_exactly() {
        let r = "https://app.example/cb";
        assert!(redirect_uri_matches(r, "https://app.example/cb"));
        for other in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://APP.example/cb",
            "https://app.example:443/cb",
            "http://app.example/cb",
            "https://app.example/c",
        ] {
            assert!(!redirect_uri_matches(r, other), "{other}");
        }
    }

    #[test]
    fn loopback_redirect_uris_match_on_any_port() {
        assert!(redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb"));
        assert!(redirect_uri_matches("http://127.0.0.1:8000/cb", "http://127.0.0.1:9/cb"));
        assert!(redirect_uri_matches("http://[::1]:1/cb?a=b", "http://[::1]:65535/cb?a=b"));
        assert!(redirect_uri_matches("http://127.0.0.1", "http://127.0.0.1:4000/"));
    }

    #[test]
    fn loopback_exception_keeps_host_path_and_scheme() {
        assert!(!redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:5/other"));
        assert!(!redirect_uri_matches("http://127.0.0.1/cb", "http://[::1]:5/cb"));
        assert!(!redirect_uri_matches("http://127.0.0.1/cb", "https://127.0.0.1:5/cb"));
        assert!(!redirect_uri_matches("http://localhost/cb", "http://localhost:5/cb"));
        assert!(!redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1.evil.example/cb"));
        assert!(!redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:80@evil.example/cb"));
        assert!(!redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:/cb"));
    }

    #[tokio::test]
    async fn generated_secrets_verify_by_hmac() {
        let secrets = Secrets::with_key(b"k");
        let (secret, stored) = secrets.generate();
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len(), 32);
        assert!(stored.starts_with(HMAC_PREFIX));
        assert!(!stored.contains(&secret));
        assert!(secrets.verify("c", &stored, &secret).await);
        assert!(!secrets.verify("c", &stored, "nope").await);
        assert!(!Secrets::with_key(b"other").verify("c", &stored, &secret).await, "keyed");
    }

    #[tokio::test]
    async fn hand_set_secrets_verify_by_argon2_and_are_remembered() {
        let secrets = Secrets::with_key(b"k");
        let stored = password::hash("a secret set by hand").unwrap();
        assert!(secrets.verify("c", &stored, "a secret set by hand").await);
        assert_eq!(secrets.verified.iter().count(), 1, "a successful check is remembered");
        assert!(secrets.verify("c", &stored, "a secret set by hand").await);
        assert!(!secrets.verify("c", &stored, "a secret set by han").await);
        assert!(!secrets.verify("d", &password::hash("x").unwrap(), "a secret set by hand").await);
        assert!(!secrets.verify("c", "plain text", "plain text").await, "unknown forms never match");
    }

    fn file_consumer(client_id: &str, secret: Option<&str>) -> ConsumerConfig {
        ConsumerConfig {
            client_id: crate::config::types::At::default_value(client_id.to_owned()),
            secret: secret
                .map(|s| crate::config::types::At::default_value(crate::config::Secret::new(s.into()))),
            ..ConsumerConfig::default()
        }
    }

    #[tokio::test]
    async fn sync_creates_updates_and_deletes_only_file_consumers() {
        let dir = tempfile::tempdir().unwrap();
        use crate::store::{ServerStore, StoreBase};
        let store = crate::store::SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let secrets = Secrets::load(&store).await.unwrap();
        let mut by_cli = ConsumerRecord { managed_by_config: false, ..sample_record("cli") };
        by_cli.secret_hash = Some(secrets.generate().1);
        store.put_consumer(&by_cli).await.unwrap();

        let file = [file_consumer("a", Some("secret-of-a-0123456789")), file_consumer("b", None)];
        let report = sync_consumers(&store, &secrets, &file).await.unwrap();
        assert_eq!(report, SyncReport { upserted: 2, deleted: vec![] });
        let a = store.consumer("a").await.unwrap().unwrap();
        assert!(a.managed_by_config);
        let hash = a.secret_hash.clone().unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(secrets.verify("a", &hash, "secret-of-a-0123456789").await);

        // A restart with the same secret keeps the hash; `b` left the file.
        let report = sync_consumers(&store, &secrets, &file[..1]).await.unwrap();
        assert_eq!(report.deleted, vec!["b".to_owned()]);
        assert_eq!(store.consumer("a").await.unwrap().unwrap().secret_hash, Some(hash));
        assert!(store.consumer("b").await.unwrap().is_none());
        assert_eq!(store.consumer("cli").await.unwrap(), Some(by_cli), "CLI consumers are not touched");
        store.close().await;
    }

    fn sample_record(client_id: &str) -> ConsumerRecord {
        ConsumerRecord {
            client_id: client_id.into(),
            label: String::new(),
            secret_hash: None,
            confidential: true,
            user_id: None,
            redirect_uris: vec![],
            allowed_origins: vec![],
            third_party: true,
            scopes: vec![],
            grant_types: vec!["client_credentials".into()],
            access_token_ttl: None,
            refresh_token_ttl: None,
            grant_user_access: false,
            limit_requested_access: false,
            limit_user_access: false,
            managed_by_config: false,
        }
    }
}
