//! Random tokens and the server's keyed secrets.
//!
//! A random token is 256 bits, base64url without padding: a session or CSRF
//! cookie, a generated client secret, a refresh token, a code, a state.
//!
//! [`Secrets`] holds the server's HMAC key, kept in the store
//! (`server_hmac_key`, 32 random bytes made at first start). It keys the
//! CSRF tokens of every form and the stored form of consumer secrets:
//!
//! A secret is never stored in clear. A *generated* secret (256 random bits,
//! base64url, shown once) has so much entropy that a keyed hash is enough:
//! it is stored as `hmac-sha256:<base64url>`. A secret *set by hand* may be
//! guessable, so it is stored as an argon2id PHC string. Both comparisons
//! run in constant time.
//!
//! argon2 takes tens of milliseconds per check on purpose, which would cap
//! the token endpoint. So a successful argon2 check is remembered for a
//! minute under the HMAC of (client id, presented secret, stored hash): a
//! repeated request with the same secret costs one HMAC. The cache holds no
//! secret, and a changed stored hash misses it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::password::{self, Busy};
use super::throttle::Throttle;
use crate::store::{StoreBase, StoreError};

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

/// True when `value` looks like one of our random tokens (43 base64url
/// characters), so a forged cookie never reaches the store or a page.
pub(crate) fn is_token(value: &str) -> bool {
    value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a throttled argon2 check of a secret came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlowCheck {
    /// Checked: whether the secret matched.
    Checked(bool),
    /// Refused without a check by the throttle, for this long.
    Refused(Duration),
    /// No argon2 slot freed in time.
    Busy,
}

/// Hashes and checks consumer secrets (see the module docs).
#[derive(Clone)]
pub struct Secrets {
    key: hmac::Key,
    verified: moka::sync::Cache<[u8; 32], ()>,
    /// Checks running now, by cache key: concurrent requests with the same
    /// secret share one argon2 check.
    running: moka::sync::Cache<[u8; 32], Arc<tokio::sync::OnceCell<SlowCheck>>>,
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
            running: moka::sync::Cache::builder().max_capacity(10_000).time_to_live(VERIFIED_TTL).build(),
        }
    }

    /// Loads the server's HMAC key from the store, creating it on first start.
    pub async fn load(store: &dyn StoreBase) -> Result<Self, StoreError> {
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

    /// True when `presented` is the secret behind `stored` (either form);
    /// [`Busy`] when an argon2 check found no free slot in time.
    pub async fn verify(&self, client_id: &str, stored: &str, presented: &str) -> Result<bool, Busy> {
        match self.verify_fast(client_id, stored, presented) {
            Some(known) => Ok(known),
            None => self.verify_slow(client_id, stored, presented).await,
        }
    }

    /// The answer when it costs no argon2 check: a generated secret (one
    /// HMAC), an argon2 secret checked successfully within
    /// [`VERIFIED_TTL`], or a stored form we do not know (never a match).
    /// `None` when only [`Secrets::verify_slow`] can tell.
    pub fn verify_fast(&self, client_id: &str, stored: &str, presented: &str) -> Option<bool> {
        if let Some(tag) = stored.strip_prefix(HMAC_PREFIX) {
            return Some(
                URL_SAFE_NO_PAD
                    .decode(tag)
                    .is_ok_and(|tag| hmac::verify(&self.key, presented.as_bytes(), &tag).is_ok()),
            );
        }
        if !stored.starts_with("$argon2") {
            return Some(false);
        }
        self.verified.contains_key(&self.cache_key(client_id, stored, presented)).then_some(true)
    }

    /// The argon2 check of a secret set by hand (see [`password::verify_blocking`]
    /// for its bound); a success is remembered for [`VERIFIED_TTL`].
    pub async fn verify_slow(&self, client_id: &str, stored: &str, presented: &str) -> Result<bool, Busy> {
        let ok = password::verify_blocking(stored.to_owned(), presented.to_owned()).await?;
        if ok {
            self.verified.insert(self.cache_key(client_id, stored, presented), ());
        }
        Ok(ok)
    }

    /// The argon2 check as [`Secrets::verify_slow`], counted by `throttle`
    /// (per `client_id` and `ip`) before it runs; concurrent calls with the
    /// same client, secret and hash share one check and one count, so a
    /// client's burst of first requests costs one argon2 check.
    pub(crate) async fn verify_slow_throttled(
        &self,
        throttle: &Throttle,
        ip: Option<IpAddr>,
        client_id: &str,
        stored: &str,
        presented: &str,
    ) -> SlowCheck {
        let key = self.cache_key(client_id, stored, presented);
        let cell = self.running.get_with(key, || Arc::new(tokio::sync::OnceCell::new()));
        let outcome = *cell
            .get_or_init(|| async {
                if let Err(left) = throttle.attempt(client_id, ip) {
                    return SlowCheck::Refused(left);
                }
                match password::verify_blocking(stored.to_owned(), presented.to_owned()).await {
                    Ok(true) => {
                        throttle.succeeded(client_id, ip);
                        SlowCheck::Checked(true)
                    }
                    Ok(false) => SlowCheck::Checked(false),
                    Err(Busy) => {
                        throttle.not_checked(client_id, ip);
                        SlowCheck::Busy
                    }
                }
            })
            .await;
        self.running.invalidate(&key);
        if outcome == SlowCheck::Checked(true) {
            self.verified.insert(key, ());
        }
        outcome
    }

    /// The HMAC of (client id, presented secret, stored hash), framed.
    fn cache_key(&self, client_id: &str, stored: &str, presented: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [client_id, presented, stored] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let mut cache_key = [0u8; 32];
        cache_key.copy_from_slice(ctx.sign().as_ref());
        cache_key
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn generated_secrets_verify_by_hmac() {
        let secrets = Secrets::with_key(b"k");
        let (secret, stored) = secrets.generate();
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len(), 32);
        assert!(stored.starts_with(HMAC_PREFIX));
        assert!(!stored.contains(&secret));
        assert!(secrets.verify("c", &stored, &secret).await.unwrap());
        assert!(!secrets.verify("c", &stored, "nope").await.unwrap());
        assert!(!Secrets::with_key(b"other").verify("c", &stored, &secret).await.unwrap(), "keyed");
    }

    #[tokio::test]
    async fn hand_set_secrets_verify_by_argon2_and_are_remembered() {
        let secrets = Secrets::with_key(b"k");
        let stored = password::hash("a secret set by hand").unwrap();
        assert!(secrets.verify("c", &stored, "a secret set by hand").await.unwrap());
        assert_eq!(secrets.verified.iter().count(), 1, "a successful check is remembered");
        assert!(secrets.verify("c", &stored, "a secret set by hand").await.unwrap());
        assert!(!secrets.verify("c", &stored, "a secret set by han").await.unwrap());
        assert!(!secrets.verify("d", &password::hash("x").unwrap(), "a secret set by hand").await.unwrap());
        assert!(!secrets.verify("c", "plain text", "plain text").await.unwrap(), "unknown forms never match");
    }
}
