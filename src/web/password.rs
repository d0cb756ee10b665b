//! argon2id hashing for user passwords and for client secrets set by hand.
//!
//! Hashes are PHC strings (`$argon2id$v=19$...`) with the crate's default
//! parameters (RFC 9106's second recommendation: 19 MiB, 2 passes). Hashing
//! and checking are slow on purpose; async callers run them with
//! [`hash_blocking`] and [`verify_blocking`], off the reactor threads.
//!
//! ```
//! use oauth_sidecar::web::password;
//!
//! let phc = password::hash("correct horse battery staple").unwrap();
//! assert!(phc.starts_with("$argon2id$"));
//! assert!(password::verify(&phc, "correct horse battery staple"));
//! assert!(!password::verify(&phc, "wrong"));
//! ```

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};

/// Hashes `secret` with argon2id and a random salt; the PHC string.
pub fn hash(secret: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// True when `secret` matches the PHC string `phc` (argon2 compares in
/// constant time); false for a malformed hash.
pub fn verify(phc: &str, secret: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
}

/// [`hash`] on a blocking thread.
pub async fn hash_blocking(secret: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || hash(&secret)).await.map_err(|e| e.to_string())?
}

/// [`verify`] on a blocking thread.
pub async fn verify_blocking(phc: String, secret: String) -> bool {
    tokio::task::spawn_blocking(move || verify(&phc, &secret)).await.unwrap_or(false)
}
