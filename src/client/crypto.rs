//! Provider tokens at rest: XChaCha20-Poly1305 with the key of
//! `client.token_key`, a random 192-bit nonce per value (stored in front of
//! the ciphertext), and the value's place (client, tag, field) as associated
//! data, so a ciphertext moved to another row does not decrypt.
//!
//! At first start a check value (a known text encrypted with the key) is
//! stored; every later start decrypts it, so a wrong key stops the start
//! with a clear error instead of producing garbage later.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::store::{ClientStore, StoreError};

const NONCE_LEN: usize = 24;
const CHECK_KEY: &str = "client_token_key_check";
const CHECK_TEXT: &[u8] = b"oauth-sidecar provider token key";

/// Why a value could not be decrypted, or the key not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key does not open what the store holds.
    #[error(
        "client.token_key is not the key the stored provider tokens were encrypted with; \
         use the original key (or delete the store's provider tokens and authorize again)"
    )]
    WrongKey,
    /// A stored value is damaged or belongs elsewhere.
    #[error("a stored provider value does not decrypt ({0}); it was damaged or moved")]
    Corrupt(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Encrypts and decrypts provider secrets. Its `Debug` shows no key.
#[derive(Clone)]
pub struct TokenCipher {
    aead: XChaCha20Poly1305,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher([redacted])")
    }
}

impl TokenCipher {
    /// A cipher with this 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        TokenCipher { aead: XChaCha20Poly1305::new(key.into()) }
    }

    /// A cipher whose key is checked against the store's check value
    /// (stored now when the store has none).
    pub async fn open(key: &[u8; 32], store: &dyn ClientStore) -> Result<Self, CryptoError> {
        let cipher = TokenCipher::new(key);
        let check = cipher.seal(CHECK_KEY, CHECK_TEXT);
        let stored = store.meta_get_or_insert(CHECK_KEY, &check).await?;
        match cipher.open_bytes(CHECK_KEY, &stored) {
            Ok(text) if text == CHECK_TEXT => Ok(cipher),
            _ => Err(CryptoError::WrongKey),
        }
    }

    /// Encrypts `plain`, bound to `place`.
    pub fn seal(&self, place: &str, plain: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self.aead.encrypt(&nonce, Payload { msg: plain, aad: place.as_bytes() });
        // Encryption fails only for inputs past 256 GiB.
        let sealed = sealed.unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`TokenCipher::seal`] made for the same `place`.
    pub fn open_bytes(&self, place: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Corrupt("too short"));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Corrupt("too short"))?;
        self.aead
            .decrypt(&XNonce::from(nonce), Payload { msg: body, aad: place.as_bytes() })
            .map_err(|_| CryptoError::Corrupt("authentication failed"))
    }

    /// Decrypts a text value.
    pub fn open_text(&self, place: &str, sealed: &[u8]) -> Result<String, CryptoError> {
        String::from_utf8(self.open_bytes(place, sealed)?).map_err(|_| CryptoError::Corrupt("not text"))
    }
}

/// The associated data of a token field: `token:{client}:{tag}:{field}`.
pub(crate) fn token_place(client: &str, tag: &str, field: &str) -> String {
    format!("token:{}:{}:{field}", client.len(), [client, tag].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_open_only_with_their_key_and_place() {
        let a = TokenCipher::new(&[7; 32]);
        let sealed = a.seal("token:mail:x:access", b"secret");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(a.open_bytes("token:mail:x:access", &sealed).unwrap(), b"secret");
        assert!(a.open_bytes("token:mail:y:access", &sealed).is_err(), "another place");
        assert!(
            TokenCipher::new(&[8; 32]).open_bytes("token:mail:x:access", &sealed).is_err(),
            "another key"
        );
        assert_ne!(a.seal("p", b"v"), a.seal("p", b"v"), "a fresh nonce each time");
    }

    #[test]
    fn token_places_do_not_collide_across_client_and_tag() {
        assert_ne!(token_place("a", "bc", "access"), token_place("ab", "c", "access"));
    }
}
