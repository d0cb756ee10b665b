//! The refresh grace window's sealed responses (`server.refresh_reuse_grace`).
//!
//! When a refresh token is rotated with the window on, the token response
//! (new access and refresh token) is kept in the store for the window, so
//! that a retry with the same token, after the response was lost on the way,
//! gets the same pair instead of revoking the family (RFC 9700 section
//! 4.14.2). The store must never hold a usable token in clear, so the
//! response is sealed with ChaCha20-Poly1305 under a key derived from the
//! presented refresh token: HMAC-SHA256 keyed with the token over a fixed
//! label. The store keeps only the token's SHA-256, from which that key
//! cannot be computed, so only the holder of the old token can open what a
//! rotation left.
//!
//! The sealed plaintext is the response's JSON with the time it was issued;
//! [`open`] answers it with `expires_in` lowered by the time gone since.
//!
//! ```
//! use oauth_sidecar::server::grace;
//! use serde_json::json;
//!
//! let response = json!({ "access_token": "at", "refresh_token": "rt-2", "expires_in": 3600 });
//! let sealed = grace::seal("rt-1", &response, 1_700_000_000).unwrap();
//! assert_eq!(grace::open("rt-1", &sealed, 1_700_000_010).unwrap()["expires_in"], 3590);
//! assert!(grace::open("another token", &sealed, 1_700_000_010).is_none());
//! ```

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The label of the key derivation, also the AEAD's associated data.
const LABEL: &[u8] = b"oauth-sidecar refresh grace v1";
/// ChaCha20-Poly1305 nonce length; the sealed form is nonce || ciphertext.
const NONCE_LEN: usize = 12;

#[derive(Serialize, Deserialize)]
struct Sealed {
    issued_at: i64,
    response: Value,
}

/// The AEAD for the holder of `presented`.
fn cipher(presented: &str) -> ChaCha20Poly1305 {
    let key = hmac::Key::new(hmac::HMAC_SHA256, presented.as_bytes());
    let tag = hmac::sign(&key, LABEL);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(tag.as_ref());
    ChaCha20Poly1305::new(&Key::from(bytes))
}

/// Seals the token `response` (issued at `issued_at`, Unix seconds) for the
/// holder of the refresh token `presented`; `None` if the system random
/// generator or the encryption failed.
pub fn seal(presented: &str, response: &Value, issued_at: i64) -> Option<Vec<u8>> {
    let plain = serde_json::to_vec(&Sealed { issued_at, response: response.clone() }).ok()?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).ok()?;
    let ciphertext =
        cipher(presented).encrypt(&Nonce::from(nonce), Payload { msg: &plain, aad: LABEL }).ok()?;
    let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    Some(sealed)
}

/// Opens what [`seal`] made for `presented` and returns the response as it
/// should be answered at `now`: `expires_in` lowered by the seconds gone
/// since it was issued. `None` for another token or altered bytes.
pub fn open(presented: &str, sealed: &[u8], now: i64) -> Option<Value> {
    let (nonce, ciphertext) = sealed.split_first_chunk::<NONCE_LEN>()?;
    let plain =
        cipher(presented).decrypt(&Nonce::from(*nonce), Payload { msg: ciphertext, aad: LABEL }).ok()?;
    let Sealed { issued_at, mut response } = serde_json::from_slice(&plain).ok()?;
    if let Some(expires_in) = response.get("expires_in").and_then(Value::as_i64) {
        let gone = now.saturating_sub(issued_at).max(0);
        response["expires_in"] = expires_in.saturating_sub(gone).max(0).into();
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response() -> Value {
        json!({
            "access_token": "eyJ.a.b",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": "successor",
            "scope": "farm_viewer",
        })
    }

    #[test]
    fn only_the_presented_token_opens_the_response() {
        let sealed = seal("old-token", &response(), 100).unwrap();
        assert_eq!(open("old-token", &sealed, 100).unwrap(), response());
        assert!(open("old-tokeN", &sealed, 100).is_none());
        assert!(open("", &sealed, 100).is_none());
    }

    #[test]
    fn the_store_sees_no_token_in_clear() {
        let sealed = seal("old-token", &response(), 100).unwrap();
        let text = String::from_utf8_lossy(&sealed);
        for secret in ["eyJ.a.b", "successor", "old-token"] {
            assert!(!text.contains(secret), "{secret}");
        }
        assert_ne!(seal("old-token", &response(), 100).unwrap(), sealed, "a fresh nonce each time");
    }

    #[test]
    fn altered_or_truncated_bytes_do_not_open() {
        let sealed = seal("old-token", &response(), 100).unwrap();
        for i in [0, NONCE_LEN, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open("old-token", &bad, 100).is_none(), "byte {i}");
        }
        assert!(open("old-token", &sealed[..NONCE_LEN - 1], 100).is_none());
        assert!(open("old-token", &sealed[..sealed.len() - 1], 100).is_none());
    }

    #[test]
    fn expires_in_counts_down_from_the_rotation() {
        let sealed = seal("t", &response(), 1_000).unwrap();
        assert_eq!(open("t", &sealed, 1_007).unwrap()["expires_in"], 3593);
        assert_eq!(open("t", &sealed, 999).unwrap()["expires_in"], 3600, "a clock going back adds nothing");
        assert_eq!(open("t", &sealed, 1_000 + 4_000).unwrap()["expires_in"], 0);
    }
}
