//! OpenID Connect: the ID token issued beside an access token when the
//! `openid` scope was granted (OpenID Connect Core sections 2 and 3.1.3.6).
//!
//! The ID token is signed with `server.id_token_alg` (RS256 by default, the
//! one algorithm every OpenID client must support). Its `aud` is the client,
//! `azp` too; `auth_time` is when the user signed in; `nonce` is the
//! authorization request's, echoed so the client can tie the token to its
//! request; `at_hash` binds the access token issued with it; `sid` names
//! the sign-in session, as the session's back-channel logout token will.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::Inner;
use super::error::OAuthError;
use super::jwt::{self, ID_TOKEN_TYP};
use super::keys::Alg;
use crate::clock;
use crate::store::ConsumerRecord;

/// The claims of an ID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    /// The issuer.
    pub iss: String,
    /// The user.
    pub sub: String,
    /// The client the token is for.
    pub aud: String,
    /// The authorized party: the same client.
    pub azp: String,
    /// Issued at.
    pub iat: i64,
    /// Expires at.
    pub exp: i64,
    /// When the user signed in.
    pub auth_time: i64,
    /// The authorization request's `nonce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The left half of the access token's hash, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// The sign-in session the token was issued in (OpenID Connect
    /// Back-Channel Logout 1.0 section 2.1), named again in its logout token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// What an ID token is made from.
pub(crate) struct IdTokenInput<'a> {
    pub(crate) consumer: &'a ConsumerRecord,
    pub(crate) sub: &'a str,
    pub(crate) auth_time: i64,
    pub(crate) nonce: Option<&'a str>,
    pub(crate) access_token: &'a str,
    pub(crate) sid: Option<&'a str>,
}

/// Signs an ID token, valid as long as an access token of this consumer.
pub(crate) fn id_token(server: &Inner, input: &IdTokenInput<'_>) -> Result<String, OAuthError> {
    let now = clock::now();
    let ttl = input.consumer.access_token_ttl.unwrap_or(server.access_ttl);
    let claims = IdClaims {
        iss: server.issuer.clone(),
        sub: input.sub.to_owned(),
        aud: input.consumer.client_id.clone(),
        azp: input.consumer.client_id.clone(),
        iat: now,
        exp: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
        auth_time: input.auth_time,
        nonce: input.nonce.map(str::to_owned),
        at_hash: Some(at_hash(server.id_alg, input.access_token)),
        sid: input.sid.map(str::to_owned),
    };
    jwt::sign(&server.keys.current(), server.id_alg, ID_TOKEN_TYP, &claims).map_err(OAuthError::server)
}

/// `at_hash` (OpenID Connect Core section 3.1.3.6): the left half of the
/// access token's hash with the ID token algorithm's hash function (SHA-256
/// for RS256, SHA-512 for EdDSA with Ed25519), base64url.
pub fn at_hash(alg: Alg, access_token: &str) -> String {
    let function = match alg {
        Alg::RS256 => &ring::digest::SHA256,
        Alg::EdDSA => &ring::digest::SHA512,
    };
    let digest = ring::digest::digest(function, access_token.as_bytes());
    let bytes = digest.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_the_specification_example() {
        // OpenID Connect Core, appendix A.3 (RS256).
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
        assert_eq!(at_hash(Alg::RS256, token), "77QmUPtjPfzWtF2AnpK9RQ");
        assert_eq!(at_hash(Alg::EdDSA, token).len(), 43);
    }
}
