//! Public keys from a JWKS (RFC 7517), each pinned to one algorithm.
//!
//! A key is used with its own algorithm only: its `alg` member when the
//! JWK has one, else the usual one for its type (`RS256` for RSA, `ES256`
//! for P-256, `ES384` for P-384, `EdDSA` for Ed25519). A token whose header
//! names another algorithm is refused, so an RSA public key can never be
//! turned into an HMAC secret, and `none` never verifies anything. Keys for
//! encryption (`use: enc`), symmetric keys and unknown types are skipped.
//! Signatures are checked with `ring`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{
    self, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm,
};
use serde_json::Value;

/// A JWS algorithm the gate verifies: asymmetric only, `none` and HMAC
/// never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlg {
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
}

impl JwsAlg {
    /// Every algorithm the gate can verify.
    pub const ALL: [JwsAlg; 9] = [
        JwsAlg::EdDSA,
        JwsAlg::ES256,
        JwsAlg::ES384,
        JwsAlg::RS256,
        JwsAlg::RS384,
        JwsAlg::RS512,
        JwsAlg::PS256,
        JwsAlg::PS384,
        JwsAlg::PS512,
    ];

    /// The JWS name.
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlg::EdDSA => "EdDSA",
            JwsAlg::ES256 => "ES256",
            JwsAlg::ES384 => "ES384",
            JwsAlg::RS256 => "RS256",
            JwsAlg::RS384 => "RS384",
            JwsAlg::RS512 => "RS512",
            JwsAlg::PS256 => "PS256",
            JwsAlg::PS384 => "PS384",
            JwsAlg::PS512 => "PS512",
        }
    }

    fn rsa_parameters(self) -> Option<&'static RsaParameters> {
        Some(match self {
            JwsAlg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            JwsAlg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            JwsAlg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            JwsAlg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            JwsAlg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            JwsAlg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }

    fn is_rsa(self) -> bool {
        self.rsa_parameters().is_some()
    }
}

impl fmt::Display for JwsAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JwsAlg {
    type Err = String;

    /// Parses the JWS name, case-sensitively (RFC 7515).
    fn from_str(s: &str) -> Result<Self, String> {
        JwsAlg::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not an accepted algorithm"))
    }
}

enum Material {
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    Point(UnparsedPublicKey<Vec<u8>>),
}

/// One verifying key, pinned to its algorithm.
pub(crate) struct PublicKey {
    pub(crate) kid: Option<String>,
    pub(crate) alg: JwsAlg,
    material: Material,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl PublicKey {
    /// True when `signature` is this key's signature of `message` with its
    /// own algorithm.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Rsa(key) => {
                self.alg.rsa_parameters().is_some_and(|params| key.verify(params, message, signature).is_ok())
            }
            Material::Point(key) => key.verify(message, signature).is_ok(),
        }
    }

    /// Reads one JWK; `Ok(None)` for a key the gate does not use.
    fn from_jwk(jwk: &Value) -> Result<Option<PublicKey>, String> {
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            let v = text(name).ok_or_else(|| format!("no `{name}`"))?;
            URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).map_err(|_| format!("`{name}` is not base64url"))
        };
        if text("use").is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array)
            && !ops.iter().any(|o| o.as_str() == Some("verify"))
        {
            return Ok(None);
        }
        let kid = text("kid").map(str::to_owned);
        let declared = match text("alg") {
            None => None,
            Some(a) => match a.parse::<JwsAlg>() {
                Ok(alg) => Some(alg),
                // An algorithm the gate does not verify (HS256, RSA-OAEP...).
                Err(_) => return Ok(None),
            },
        };
        let (alg, material) = match text("kty") {
            Some("RSA") => {
                let alg = declared.unwrap_or(JwsAlg::RS256);
                if !alg.is_rsa() {
                    return Err(format!("an RSA key cannot be used with {alg}"));
                }
                (alg, Material::Rsa(RsaPublicKeyComponents { n: bytes("n")?, e: bytes("e")? }))
            }
            Some("EC") => {
                let (alg, ring_alg, size): (JwsAlg, &'static dyn VerificationAlgorithm, usize) =
                    match text("crv") {
                        Some("P-256") => (JwsAlg::ES256, &signature::ECDSA_P256_SHA256_FIXED, 32),
                        Some("P-384") => (JwsAlg::ES384, &signature::ECDSA_P384_SHA384_FIXED, 48),
                        _ => return Ok(None),
                    };
                if declared.is_some_and(|d| d != alg) {
                    return Err(format!(
                        "an EC {} key cannot be used with {}",
                        text("crv").unwrap_or_default(),
                        declared.map_or("", JwsAlg::as_str)
                    ));
                }
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != size || y.len() != size {
                    return Err("the EC coordinates have the wrong length".into());
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (alg, Material::Point(UnparsedPublicKey::new(ring_alg, point)))
            }
            Some("OKP") => {
                if text("crv") != Some("Ed25519") {
                    return Ok(None);
                }
                if declared.is_some_and(|d| d != JwsAlg::EdDSA) {
                    return Err("an Ed25519 key can only be used with EdDSA".into());
                }
                let x = bytes("x")?;
                if x.len() != 32 {
                    return Err("the Ed25519 key has the wrong length".into());
                }
                (JwsAlg::EdDSA, Material::Point(UnparsedPublicKey::new(&signature::ED25519, x)))
            }
            _ => return Ok(None),
        };
        Ok(Some(PublicKey { kid, alg, material }))
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    keys: Vec<Arc<PublicKey>>,
}

impl KeySet {
    /// Reads a JWKS document (`{"keys": [...]}`). A malformed key is skipped
    /// with a warning, so one bad key does not take the others down; a
    /// document without a `keys` array is an error.
    pub(crate) fn from_jwks(doc: &Value, source: &str) -> Result<KeySet, String> {
        let list = doc.get("keys").and_then(Value::as_array).ok_or("the document has no `keys` array")?;
        let mut keys: Vec<Arc<PublicKey>> = Vec::with_capacity(list.len());
        for jwk in list {
            match PublicKey::from_jwk(jwk) {
                Ok(Some(key)) => {
                    if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) {
                        tracing::warn!(source, kid = ?key.kid, "a JWKS lists a kid twice; the first is used");
                        continue;
                    }
                    keys.push(Arc::new(key));
                }
                Ok(None) => {}
                Err(e) => {
                    let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("");
                    tracing::warn!(source, kid, error = %e, "a key of the JWKS is unusable; skipped");
                }
            }
        }
        Ok(KeySet { keys })
    }

    /// The key a token names: by `kid`, or, for a token without one, the
    /// only key of the set.
    pub(crate) fn find(&self, kid: Option<&str>) -> Option<&Arc<PublicKey>> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }

    /// How many keys the set holds.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_pinned_to_their_algorithm() {
        let doc = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([7u8; 32]), "kid": "ed"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "pss", "alg": "PS256"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "enc", "use": "enc"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "bad", "alg": "ES256"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AQAB", "kid": "short"},
        ]});
        let set = KeySet::from_jwks(&doc, "test").unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.find(Some("ed")).unwrap().alg, JwsAlg::EdDSA);
        assert_eq!(set.find(Some("rsa")).unwrap().alg, JwsAlg::RS256);
        assert_eq!(set.find(Some("pss")).unwrap().alg, JwsAlg::PS256);
        for skipped in ["hmac", "enc", "bad", "short"] {
            assert!(set.find(Some(skipped)).is_none(), "{skipped}");
        }
        assert!(set.find(None).is_none(), "no kid with several keys");
        assert!(KeySet::from_jwks(&json!({"nokeys": []}), "test").is_err());
    }

    #[test]
    fn none_and_hmac_are_not_algorithms_here() {
        for name in ["none", "HS256", "hs256", "rs256", ""] {
            assert!(name.parse::<JwsAlg>().is_err(), "{name}");
        }
        assert_eq!("ES384".parse::<JwsAlg>(), Ok(JwsAlg::ES384));
    }
}
