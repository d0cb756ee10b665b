//! Token-signing keys: generated at first start, kept in the store, rotated by
//! `oauth-sidecar keys rotate`, published as a JWKS.
//!
//! A [`KeyRing`] is built from the store's [`SigningKeyRecord`]s. Per
//! algorithm, the newest key is *active*: it signs every new token. An older
//! key stays *published* (listed in the JWKS and able to verify) until its
//! successor, the next newer key of the same algorithm, is older than the
//! *retention*: the longest lifetime of a token the old key may have signed.
//! After that it is *retired*: gone from the JWKS, and tokens naming it are
//! refused.
//!
//! The `kid` is the key's RFC 7638 JWK thumbprint (SHA-256, base64url), so it
//! is stable across restarts and replicas and says which public key it is.
//!
//! Private keys are parsed once, into `ring` key pairs, which sign in
//! constant time (the `rsa` crate only generates RSA keys: its private-key
//! operations are not constant time, RUSTSEC-2023-0071) and without the
//! per-call key parsing of `jsonwebtoken::encode` (RS256: 0.65 ms against
//! 2.3 ms). RS256 signatures are verified with `ring` (27 µs against 240 µs
//! through `jsonwebtoken`), Ed25519 ones through `jsonwebtoken`
//! (ed25519-dalek, faster than `ring` for this). No private key appears in
//! `Debug`.
//!
//! The ring itself is pure: [`KeyRing::from_records`] takes records and a
//! retention, and every time-dependent question takes `now` (Unix seconds),
//! so tests control time through `created_at` and `now`.
//!
//! ```
//! use std::time::Duration;
//! use oauth_sidecar::server::keys::{Alg, KeyRing, generate_record};
//!
//! let record = generate_record(Alg::EdDSA, 1_700_000_000).unwrap();
//! let ring = KeyRing::from_records(vec![record], Duration::from_secs(3600)).unwrap();
//! let active = ring.active(Alg::EdDSA).unwrap();
//! assert_eq!(ring.jwks()["keys"][0]["kid"], active.kid());
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use ring::rand::SystemRandom;
use ring::rsa::PublicKeyComponents;
use ring::signature::{
    Ed25519KeyPair, KeyPair, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents,
};
use rsa::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};

use crate::clock;
use crate::store::{ServerStore, SigningKeyRecord, StoreError};

/// Size of generated RSA keys, in bits.
pub const RSA_BITS: usize = 2048;

/// A JWS signing algorithm the authorization server signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    /// Ed25519 (RFC 8037): small keys, fast; the default.
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256, for clients that know nothing else.
    RS256,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 2] = [Alg::EdDSA, Alg::RS256];

    /// The JWS name (`EdDSA`, `RS256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::RS256 => "RS256",
        }
    }

    /// The same algorithm as `jsonwebtoken` names it.
    pub fn jwt_algorithm(self) -> Algorithm {
        match self {
            Alg::EdDSA => Algorithm::EdDSA,
            Alg::RS256 => Algorithm::RS256,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a supported signing algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signing algorithm {0:?} (expected EdDSA or RS256)")]
pub struct UnknownAlg(pub String);

impl FromStr for Alg {
    type Err = UnknownAlg;

    /// Parses the JWS name, which is case-sensitive (RFC 7515).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "EdDSA" => Ok(Alg::EdDSA),
            "RS256" => Ok(Alg::RS256),
            other => Err(UnknownAlg(other.to_owned())),
        }
    }
}

/// Why signing keys could not be loaded, created or rotated.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored key cannot be used (unknown algorithm, unreadable DER).
    #[error("stored signing key {kid:?} is unusable: {reason}")]
    InvalidRecord {
        /// The record's `kid`.
        kid: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A new key could not be generated.
    #[error("cannot generate a {alg} signing key: {reason}")]
    Generate {
        /// The algorithm asked for.
        alg: Alg,
        /// What went wrong.
        reason: String,
    },
}

/// Makes sure `jsonwebtoken` has a crypto provider, once per process, so that
/// callers never have to think about it. If the application installed one
/// first, that one stays.
pub(crate) fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err only means a provider is already in place, which is what we want.
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
            &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
        );
    });
}

/// The private half, parsed once.
enum Signer {
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// The public half, ready to verify: Ed25519 through `jsonwebtoken`
/// (ed25519-dalek, faster than `ring` here), RSA through `ring` (about eight
/// times faster than `jsonwebtoken`'s RustCrypto RSA).
enum Verifier {
    Ed,
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
}

/// The public half, as JWK members.
enum PublicParts {
    Ed { x: String },
    Rsa { n: String, e: String },
}

impl PublicParts {
    /// RFC 7638: the required members, in lexicographic order, no whitespace.
    /// Written by hand so that no JSON map ordering can change it; base64url
    /// text needs no escaping.
    fn thumbprint(&self) -> String {
        let canonical = match self {
            PublicParts::Ed { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            PublicParts::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        };
        URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()))
    }

    fn jwk(&self, kid: &str, alg: Alg) -> Value {
        match self {
            PublicParts::Ed { x } => json!({
                "kty": "OKP", "crv": "Ed25519", "x": x,
                "kid": kid, "alg": alg.as_str(), "use": "sig",
            }),
            PublicParts::Rsa { n, e } => json!({
                "kty": "RSA", "n": n, "e": e,
                "kid": kid, "alg": alg.as_str(), "use": "sig",
            }),
        }
    }
}

/// The parts of one key pair.
struct Parsed {
    signer: Signer,
    verifier: Verifier,
    decoding: DecodingKey,
    public: PublicParts,
}

/// Parses a PKCS#8 private key of `alg` into its parts.
fn parse_private(alg: Alg, der: &[u8]) -> Result<Parsed, String> {
    match alg {
        Alg::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|e| format!("not an Ed25519 PKCS#8 key ({e})"))?;
            let x = pair.public_key().as_ref().to_vec();
            Ok(Parsed {
                decoding: DecodingKey::from_ed_der(&x),
                public: PublicParts::Ed { x: URL_SAFE_NO_PAD.encode(&x) },
                verifier: Verifier::Ed,
                signer: Signer::Ed(pair),
            })
        }
        Alg::RS256 => {
            let pair =
                RsaKeyPair::from_pkcs8(der).map_err(|e| format!("not a usable RSA PKCS#8 key ({e})"))?;
            let c: PublicKeyComponents<Vec<u8>> = pair.public().into();
            Ok(Parsed {
                decoding: DecodingKey::from_rsa_raw_components(&c.n, &c.e),
                public: PublicParts::Rsa { n: URL_SAFE_NO_PAD.encode(&c.n), e: URL_SAFE_NO_PAD.encode(&c.e) },
                verifier: Verifier::Rsa(c),
                signer: Signer::Rsa(pair),
            })
        }
    }
}

/// Generates a new key pair of `alg` as a record ready for
/// [`ServerStore::add_signing_key`], its `kid` the RFC 7638 thumbprint.
///
/// RSA generation takes a noticeable time (tens to hundreds of
/// milliseconds); async callers should use [`KeyRing::rotate`], which runs it
/// on a blocking thread.
pub fn generate_record(alg: Alg, created_at: i64) -> Result<SigningKeyRecord, KeyError> {
    let failed = |reason: String| KeyError::Generate { alg, reason };
    let private_der = match alg {
        Alg::EdDSA => Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| failed("the system random number generator failed".into()))?
            .as_ref()
            .to_vec(),
        Alg::RS256 => {
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
                .map_err(|e| failed(e.to_string()))?;
            key.to_pkcs8_der().map_err(|e| failed(e.to_string()))?.as_bytes().to_vec()
        }
    };
    let parsed = parse_private(alg, &private_der).map_err(failed)?;
    Ok(SigningKeyRecord { kid: parsed.public.thumbprint(), alg: alg.to_string(), private_der, created_at })
}

/// One key of the ring: its private half (never printed), its verifying key
/// and its public JWK.
pub struct SigningKey {
    kid: String,
    alg: Alg,
    created_at: i64,
    retires_at: Option<i64>,
    signer: Signer,
    verifier: Verifier,
    decoding: DecodingKey,
    jwk: Value,
    thumbprint: String,
}

impl SigningKey {
    fn from_record(record: &SigningKeyRecord) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::InvalidRecord { kid: record.kid.clone(), reason };
        let alg: Alg = record.alg.parse().map_err(|e: UnknownAlg| invalid(e.to_string()))?;
        let Parsed { signer, verifier, decoding, public } =
            parse_private(alg, &record.private_der).map_err(invalid)?;
        Ok(SigningKey {
            kid: record.kid.clone(),
            alg,
            created_at: record.created_at,
            retires_at: None,
            signer,
            verifier,
            decoding,
            jwk: public.jwk(&record.kid, alg),
            thumbprint: public.thumbprint(),
        })
    }

    /// The key id, the JWT header's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The RFC 7638 JWK thumbprint of the public key; the `kid` of every key
    /// this crate generated (the `kid` itself is taken from the record).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The one algorithm this key signs and verifies with.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// When the key was created (Unix seconds).
    pub fn created_at(&self) -> i64 {
        self.created_at
    }

    /// When the key leaves the JWKS and stops verifying: its successor's
    /// creation plus the retention. `None` while it is the active key.
    pub fn retires_at(&self) -> Option<i64> {
        self.retires_at
    }

    /// True when the key is in the JWKS and may verify tokens at `now`.
    pub fn is_published_at(&self, now: i64) -> bool {
        self.retires_at.is_none_or(|t| now < t)
    }

    /// The public JWK: `kty`, `crv`/`x` or `n`/`e`, `kid`, `alg`, `use`.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The public key for `jsonwebtoken`, for code that decodes with it.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// True when `signature` is this key's signature of `message` (the JWS
    /// signing input), with this key's own algorithm.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.verifier {
            Verifier::Ed => {
                let signature = URL_SAFE_NO_PAD.encode(signature);
                jsonwebtoken::crypto::verify(&signature, message, &self.decoding, Algorithm::EdDSA)
                    .unwrap_or(false)
            }
            Verifier::Rsa(key) => key.verify(&RSA_PKCS1_2048_8192_SHA256, message, signature).is_ok(),
        }
    }

    /// Signs `message` (the JWS signing input); `None` if the crypto failed.
    pub(crate) fn sign_message(&self, message: &[u8]) -> Option<Vec<u8>> {
        match &self.signer {
            Signer::Ed(pair) => Some(pair.sign(message).as_ref().to_vec()),
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut signature).ok()?;
                Some(signature)
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .field("retires_at", &self.retires_at)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// Every signing key the server knows, oldest first, with the rule for which
/// ones sign, verify and are published (see the module docs).
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
    retention: Duration,
}

impl KeyRing {
    /// Builds the ring from stored records (in any order; ordered here by
    /// `created_at`, ties kept in the given order). `retention` is the longest
    /// lifetime of a token the keys sign. A record whose `kid` was already
    /// seen is skipped; an unusable record is an error.
    pub fn from_records(records: Vec<SigningKeyRecord>, retention: Duration) -> Result<Self, KeyError> {
        ensure_crypto_provider();
        let mut records = records;
        records.sort_by_key(|r| r.created_at);
        let mut keys: Vec<SigningKey> = Vec::with_capacity(records.len());
        for record in &records {
            if !keys.iter().any(|k| k.kid == record.kid) {
                keys.push(SigningKey::from_record(record)?);
            }
        }
        let retention_secs = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        for i in 0..keys.len() {
            let successor = keys[i + 1..].iter().find(|k| k.alg == keys[i].alg).map(|k| k.created_at);
            keys[i].retires_at = successor.map(|t| t.saturating_add(retention_secs));
        }
        Ok(KeyRing { keys, retention })
    }

    /// Loads every stored key.
    pub async fn load(store: &dyn ServerStore, retention: Duration) -> Result<Self, KeyError> {
        Self::from_records(store.signing_keys().await?, retention)
    }

    /// Loads every stored key, first creating one for each algorithm in `algs`
    /// that has none (first start, or an algorithm newly configured).
    pub async fn load_or_create(
        store: &dyn ServerStore,
        algs: &[Alg],
        retention: Duration,
    ) -> Result<Self, KeyError> {
        let mut records = store.signing_keys().await?;
        let mut created = false;
        for &alg in algs {
            if !records.iter().any(|r| r.alg == alg.as_str()) {
                let record = generate_blocking(alg, clock::now()).await?;
                // Added only if no other replica stored one of `alg` meanwhile.
                store.add_first_signing_key(&record).await?;
                created = true;
            }
        }
        if created {
            // Read back, so that replicas starting together agree on the set.
            records = store.signing_keys().await?;
        }
        Self::from_records(records, retention)
    }

    /// Adds a new key of `alg` to the store and returns its `kid`. It becomes
    /// the active key for `alg` when a ring is next loaded; the previous one
    /// keeps verifying for the retention.
    pub async fn rotate(store: &dyn ServerStore, alg: Alg) -> Result<String, KeyError> {
        let record = generate_blocking(alg, clock::now()).await?;
        store.add_signing_key(&record).await?;
        Ok(record.kid)
    }

    /// The active key of `alg`: the newest one, which signs new tokens.
    pub fn active(&self, alg: Alg) -> Option<&SigningKey> {
        self.keys.iter().rev().find(|k| k.alg == alg)
    }

    /// The key with this `kid`, published or not.
    pub fn key(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Every key, oldest first, retired ones included.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The retention the ring was built with.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// The JWKS document (`{"keys":[...]}`) now.
    pub fn jwks(&self) -> Value {
        self.jwks_at(clock::now())
    }

    /// The JWKS document at `now`: every key published then, newest first.
    pub fn jwks_at(&self, now: i64) -> Value {
        let keys: Vec<Value> =
            self.keys.iter().rev().filter(|k| k.is_published_at(now)).map(|k| k.jwk.clone()).collect();
        json!({ "keys": keys })
    }
}

/// Generates a key on a blocking thread (RSA takes a while).
async fn generate_blocking(alg: Alg, created_at: i64) -> Result<SigningKeyRecord, KeyError> {
    tokio::task::spawn_blocking(move || generate_record(alg, created_at))
        .await
        .map_err(|e| KeyError::Generate { alg, reason: e.to_string() })?
}
