//! JSON Web Tokens signed with the [`KeyRing`]: access tokens (RFC 9068,
//! `typ: at+jwt`) and ID tokens (`typ: JWT`).
//!
//! [`sign`] uses the active key of the asked algorithm and puts `alg`, `typ`
//! and `kid` in the header. [`verify`] trusts the header only to find the key:
//! the `kid` must name a published key of the ring, and the header's `alg`
//! must be that key's own algorithm (so no `none`, no HS256 made with a public
//! key). The signature is checked with `ring` (see [`super::keys`]); only
//! after it checks out are `typ`, `exp`, `nbf`, `iss` and `aud` compared with
//! the [`Expect`]ation.
//!
//! ```
//! use std::time::Duration;
//! use oauth_sidecar::server::jwt::{self, AccessClaims, Expect};
//! use oauth_sidecar::server::keys::{Alg, KeyRing, generate_record};
//!
//! let now = 1_700_000_000;
//! let ring = KeyRing::from_records(vec![generate_record(Alg::EdDSA, now).unwrap()], Duration::from_secs(3600)).unwrap();
//! let claims = AccessClaims {
//!     iss: "https://auth.example".into(),
//!     sub: "alice".into(),
//!     aud: vec!["https://farm.example".into()],
//!     client_id: "farm".into(),
//!     scope: "farm_manager".into(),
//!     iat: now,
//!     exp: now + 3600,
//!     jti: "2f1c".into(),
//!     auth_time: None,
//! };
//! let token = jwt::sign(&ring, Alg::EdDSA, jwt::ACCESS_TOKEN_TYP, &claims).unwrap();
//! let expect = Expect::new(jwt::ACCESS_TOKEN_TYP, "https://auth.example").audience("https://farm.example");
//! let back: AccessClaims = jwt::verify_at(&ring, &token, &expect, now + 10).unwrap();
//! assert_eq!(back, claims);
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::keys::{Alg, KeyRing};
use crate::clock;

/// Header `typ` of access tokens (RFC 9068 section 2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Header `typ` of ID tokens.
pub const ID_TOKEN_TYP: &str = "JWT";

/// Why a token could not be signed or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// The ring has no key of the asked algorithm.
    #[error("no signing key for {0}")]
    NoSigningKey(Alg),
    /// The claims could not be serialized as a JSON object.
    #[error("cannot serialize the claims: {0}")]
    Encode(String),
    /// The signature could not be computed.
    #[error("signing failed")]
    Sign,
    /// Not a compact JWS, or its header or payload is not valid base64url
    /// JSON, or the header names an algorithm that does not exist.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header has no `kid`.
    #[error("the token header has no kid")]
    MissingKid,
    /// The `kid` names no key this server has.
    #[error("unknown signing key {0:?}")]
    UnknownKey(String),
    /// The `kid` names a key past its retention: every token it signed has
    /// expired.
    #[error("signing key {0:?} is retired")]
    RetiredKey(String),
    /// The header's `alg` is not the algorithm of the key `kid` names.
    #[error("key {kid:?} verifies {expected} only, the token says {found}")]
    AlgorithmMismatch {
        /// The key named by the token.
        kid: String,
        /// The key's algorithm.
        expected: Alg,
        /// The header's `alg`.
        found: String,
    },
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// The header's `typ` is not the expected one.
    #[error("token type {found:?}, expected {expected:?}")]
    WrongType {
        /// The expected `typ`.
        expected: String,
        /// The header's `typ`, if any.
        found: Option<String>,
    },
    /// A required claim is absent.
    #[error("the token has no {0} claim")]
    MissingClaim(&'static str),
    /// A registered claim has the wrong JSON type.
    #[error("the token's {0} claim is malformed")]
    InvalidClaim(&'static str),
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is still in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the expected issuer.
    #[error("the token was issued by someone else")]
    WrongIssuer,
    /// `aud` does not name the expected audience.
    #[error("the token is meant for another audience")]
    WrongAudience,
    /// The claims are valid but do not have the shape the caller asked for.
    #[error("unexpected claims: {0}")]
    Claims(String),
}

/// What a verified token must say besides a good signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// Header `typ`, compared case-insensitively and with an optional
    /// `application/` prefix (RFC 7515 section 4.1.9).
    pub typ: String,
    /// The `iss` claim, exactly.
    pub issuer: String,
    /// A value the `aud` claim (string or array) must contain; `None` leaves
    /// `aud` unchecked.
    pub audience: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`; 0 by default.
    pub leeway: u64,
}

impl Expect {
    /// Expects this `typ` and issuer, any audience, no leeway.
    pub fn new(typ: impl Into<String>, issuer: impl Into<String>) -> Self {
        Expect { typ: typ.into(), issuer: issuer.into(), audience: None, leeway: 0 }
    }

    /// Also requires `aud` to contain `audience`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Allows `secs` of clock skew on `exp` and `nbf`.
    pub fn leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }
}

/// The claims of an RFC 9068 access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The issuer (the authorization server's `issuer`).
    pub iss: String,
    /// The subject: the user, or the consumer's acting user.
    pub sub: String,
    /// The audiences; one is written as a plain string, as RFC 9068 shows.
    #[serde(with = "one_or_many")]
    pub aud: Vec<String>,
    /// The consumer the token was issued to.
    pub client_id: String,
    /// The granted scopes (roles), space-separated.
    pub scope: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Unique token id, the key of the revocation list.
    pub jti: String,
    /// When the user authenticated, for tokens from an interactive login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'a str,
    kid: &'a str,
}

/// Signs `claims` (which must serialize to a JSON object) with the active key
/// of `alg`, header `{"alg", "typ", "kid"}`; returns the compact JWS.
pub fn sign(ring: &KeyRing, alg: Alg, typ: &str, claims: &impl Serialize) -> Result<String, JwtError> {
    let key = ring.active(alg).ok_or(JwtError::NoSigningKey(alg))?;
    let header = serde_json::to_vec(&Header { alg: alg.as_str(), typ, kid: key.kid() })
        .map_err(|e| JwtError::Encode(e.to_string()))?;
    let payload = serde_json::to_vec(claims).map_err(|e| JwtError::Encode(e.to_string()))?;
    if payload.first() != Some(&b'{') {
        return Err(JwtError::Encode("the claims are not a JSON object".into()));
    }
    let mut token = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 350);
    URL_SAFE_NO_PAD.encode_string(&header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign_message(token.as_bytes()).ok_or(JwtError::Sign)?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}

/// Verifies `token` against the ring and `expect` at the current time and
/// returns its claims as `T`.
pub fn verify<T: DeserializeOwned>(ring: &KeyRing, token: &str, expect: &Expect) -> Result<T, JwtError> {
    verify_at(ring, token, expect, clock::now())
}

/// [`verify`] at `now` (Unix seconds), which decides expiry and whether the
/// token's key is still published.
pub fn verify_at<T: DeserializeOwned>(
    ring: &KeyRing,
    token: &str,
    expect: &Expect,
    now: i64,
) -> Result<T, JwtError> {
    if token.bytes().filter(|&b| b == b'.').count() != 2 {
        return Err(JwtError::Malformed("a compact JWS has exactly three parts".into()));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
    let kid = header.kid.as_deref().ok_or(JwtError::MissingKid)?;
    let key = ring.key(kid).ok_or_else(|| JwtError::UnknownKey(kid.to_owned()))?;
    if !key.is_published_at(now) {
        return Err(JwtError::RetiredKey(kid.to_owned()));
    }
    if header.alg != key.alg().jwt_algorithm() {
        return Err(JwtError::AlgorithmMismatch {
            kid: kid.to_owned(),
            expected: key.alg(),
            found: format!("{:?}", header.alg),
        });
    }
    let (signing_input, signature) = token.rsplit_once('.').unwrap_or_default();
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| JwtError::BadSignature)?;
    if !key.verify_signature(signing_input.as_bytes(), &signature) {
        return Err(JwtError::BadSignature);
    }

    // Authentic from here on: what remains is whether it is the right token.
    if !header.typ.as_deref().is_some_and(|typ| typ_matches(typ, &expect.typ)) {
        return Err(JwtError::WrongType { expected: expect.typ.clone(), found: header.typ });
    }
    let (_, payload) = signing_input.split_once('.').unwrap_or_default();
    let payload =
        URL_SAFE_NO_PAD.decode(payload).map_err(|e| JwtError::Malformed(format!("payload: {e}")))?;
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return Err(JwtError::Malformed("the claims are not a JSON object".into()));
    }
    let registered: Registered =
        serde_json::from_slice(&payload).map_err(|e| JwtError::Malformed(format!("claims: {e}")))?;
    registered.check(expect, now)?;
    serde_json::from_slice(&payload).map_err(|e| JwtError::Claims(e.to_string()))
}

/// RFC 7515 section 4.1.9: media types compare case-insensitively, and
/// `application/` may be left out.
fn typ_matches(found: &str, expected: &str) -> bool {
    fn short(typ: &str) -> &str {
        match typ.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
            _ => typ,
        }
    }
    short(found).eq_ignore_ascii_case(short(expected))
}

/// The registered claims `verify` checks, read apart from the caller's type.
#[derive(Deserialize)]
struct Registered {
    exp: Option<Value>,
    nbf: Option<Value>,
    iss: Option<Value>,
    aud: Option<Value>,
}

impl Registered {
    fn check(&self, expect: &Expect, now: i64) -> Result<(), JwtError> {
        let leeway = i64::try_from(expect.leeway).unwrap_or(i64::MAX);
        let exp = numeric_date(self.exp.as_ref(), "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
        if now >= exp.saturating_add(leeway) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = numeric_date(self.nbf.as_ref(), "nbf")?
            && now.saturating_add(leeway) < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        match &self.iss {
            None => return Err(JwtError::MissingClaim("iss")),
            Some(Value::String(iss)) if *iss == expect.issuer => {}
            Some(Value::String(_)) => return Err(JwtError::WrongIssuer),
            Some(_) => return Err(JwtError::InvalidClaim("iss")),
        }
        if let Some(audience) = &expect.audience {
            let found = match &self.aud {
                None => return Err(JwtError::MissingClaim("aud")),
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
                Some(_) => return Err(JwtError::InvalidClaim("aud")),
            };
            if !found {
                return Err(JwtError::WrongAudience);
            }
        }
        Ok(())
    }
}

/// A NumericDate claim (RFC 7519 section 2), fractions rounded down.
fn numeric_date(value: Option<&Value>, name: &'static str) -> Result<Option<i64>, JwtError> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.floor() as i64))
            .map(Some)
            .ok_or(JwtError::InvalidClaim(name)),
        Some(_) => Err(JwtError::InvalidClaim(name)),
    }
}

/// `aud` as RFC 7519 allows it: one string or an array of strings.
mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(values: &[String], serializer: S) -> Result<S::Ok, S::Error> {
        match values {
            [one] => one.serialize(serializer),
            many => many.serialize(serializer),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        })
    }
}
