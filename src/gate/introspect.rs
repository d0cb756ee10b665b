//! RFC 7662 token introspection, for opaque (non-JWT) access tokens.
//!
//! The gate posts `token=...&token_type_hint=access_token` to the
//! configured endpoint, authenticating with HTTP Basic (RFC 6749 section
//! 2.3.1). An active answer becomes an [`Identity`] kept in the token cache
//! until the token's `exp` or `max_ttl`; an inactive one is remembered for
//! `max_ttl` (at most a minute) so a repeated bad token does not reach the
//! endpoint again. An active answer whose `token_type` is not an access
//! token's (a refresh token is not a bearer token) or whose `aud` does not
//! name the gate's audience counts as inactive.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::error::GateError;
use super::identity::Identity;
use super::jwks::{chain, read_json};
use super::verify::TokenKey;
use crate::clock;
use crate::config::Secret;

/// Where and how to introspect opaque tokens.
#[derive(Debug, Clone)]
pub struct IntrospectionSettings {
    /// The RFC 7662 endpoint.
    pub endpoint: String,
    /// The gate's client id there.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// Answers are kept until the token's `exp`, or at most this long.
    pub max_ttl: Duration,
    /// The audience an answer's `aud` must name, when it has one.
    pub audience: String,
}

/// `token_type` values of an access token in an introspection answer
/// (RFC 7662 section 2.2 takes them from RFC 6749 section 7.1, RFC 9449 and
/// RFC 8693); `refresh_token` and anything else is refused.
const ACCESS_TOKEN_TYPES: [&str; 4] =
    ["Bearer", "DPoP", "access_token", "urn:ietf:params:oauth:token-type:access_token"];

pub(crate) struct Introspector {
    client: reqwest::Client,
    endpoint: String,
    authorization: String,
    max_ttl: Duration,
    audience: String,
    inactive: moka::sync::Cache<TokenKey, ()>,
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Introspector {
    pub(crate) fn new(settings: IntrospectionSettings, client: reqwest::Client) -> Self {
        let credentials =
            format!("{}:{}", form_encode(&settings.client_id), form_encode(settings.client_secret.expose()));
        Introspector {
            client,
            endpoint: settings.endpoint,
            authorization: format!("Basic {}", STANDARD.encode(credentials)),
            max_ttl: settings.max_ttl,
            audience: settings.audience,
            inactive: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(settings.max_ttl.min(Duration::from_secs(60)))
                .build(),
        }
    }

    /// The identity of an active token and how long it may be kept.
    pub(crate) async fn introspect(
        &self,
        key: &TokenKey,
        token: &str,
    ) -> Result<(Identity, Duration), GateError> {
        let inactive = || GateError::InvalidToken("the token is not active".into());
        if self.inactive.contains_key(key) {
            return Err(inactive());
        }
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        let res = self
            .client
            .post(&self.endpoint)
            .header(http::header::AUTHORIZATION, &self.authorization)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.unavailable(chain(&e)))?;
        let answer = read_json(res, &self.endpoint).await.map_err(|e| self.unavailable(e))?;
        if answer.get("active").and_then(Value::as_bool) != Some(true) {
            self.inactive.insert(*key, ());
            return Err(inactive());
        }
        if let Err(e) = self.bearer_usable(&answer) {
            self.inactive.insert(*key, ());
            return Err(e);
        }
        let text = |name: &str| answer.get(name).and_then(Value::as_str).map(str::to_owned);
        let now = clock::now();
        let exp = answer.get("exp").and_then(Value::as_i64);
        if exp.is_some_and(|exp| exp <= now) {
            return Err(GateError::InvalidToken("the token has expired".into()));
        }
        let client_id = text("client_id");
        let username = text("username");
        let subject = text("sub")
            .or_else(|| username.clone())
            .or_else(|| client_id.clone())
            .ok_or_else(|| GateError::InvalidToken("the introspection answer names no subject".into()))?;
        let scopes: Vec<String> = text("scope").unwrap_or_default().split(' ').map(str::to_owned).collect();
        let identity = Identity::new(
            text("iss").unwrap_or_else(|| self.endpoint.clone()),
            subject,
            client_id,
            scopes,
            username,
            text("jti"),
            exp.unwrap_or(now.saturating_add(i64::try_from(self.max_ttl.as_secs()).unwrap_or(i64::MAX))),
        )
        .map_err(GateError::InvalidToken)?;
        let left = exp.map_or(self.max_ttl, |exp| Duration::from_secs(u64::try_from(exp - now).unwrap_or(0)));
        Ok((identity, left.min(self.max_ttl)))
    }

    /// Refuses an active answer for a token that is not an access token
    /// (`token_type`, when given) or not meant for this gate (`aud`, when
    /// given).
    fn bearer_usable(&self, answer: &Value) -> Result<(), GateError> {
        if let Some(kind) = answer.get("token_type") {
            let access =
                kind.as_str().is_some_and(|k| ACCESS_TOKEN_TYPES.iter().any(|t| t.eq_ignore_ascii_case(k)));
            if !access {
                return Err(GateError::InvalidToken("the token is not an access token".into()));
            }
        }
        if let Some(aud) = answer.get("aud") {
            let names = |a: &Value| a.as_str() == Some(self.audience.as_str());
            let ours = match aud {
                Value::Array(list) => list.iter().any(names),
                one => names(one),
            };
            if !ours {
                return Err(GateError::InvalidToken("the token is meant for another audience".into()));
            }
        }
        Ok(())
    }

    fn unavailable(&self, cause: String) -> GateError {
        tracing::warn!(endpoint = %self.endpoint, error = %cause, "token introspection failed");
        GateError::Unavailable(cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_reserved_bytes() {
        assert_eq!(form_encode("a b+c/d=é"), "a+b%2Bc%2Fd%3D%C3%A9");
        assert_eq!(form_encode("AZaz09-._*"), "AZaz09-._*");
    }
}
