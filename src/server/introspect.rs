//! `POST /oauth/introspect` (RFC 7662): a resource server asks whether a
//! token is active and what it carries.
//!
//! The caller must be a confidential consumer authenticated as at the token
//! endpoint ([`super::token`]); any such consumer may
//! introspect any token, since resource servers are clients too. A public
//! consumer cannot authenticate, so it is refused. Every client
//! authentication failure is `401 invalid_client` with `WWW-Authenticate:
//! Basic` (RFC 7662 section 2.3).
//!
//! The form carries `token` and an optional `token_type_hint`, which is
//! accepted and not needed: access tokens are JWTs (three dot-separated
//! parts), refresh tokens never contain a dot. The answer is
//! `{"active":false}` for an unknown, malformed, expired or revoked token,
//! else:
//!
//! - access token (signature, `typ`, `iss`, `aud` and `exp` checked, not on
//!   the revocation list): `active`, `scope`, `client_id`, `username` (when
//!   the token acts for a user, i.e. `sub` is not the client), `sub`, `aud`,
//!   `iss`, `exp`, `iat`, `jti`, `token_type: "Bearer"`;
//! - refresh token (current: not rotated, revoked or expired): `active`,
//!   `scope`, `client_id`, `username` (when it acts for a user), `exp`,
//!   `token_type: "refresh_token"`.
//!
//! Answers carry `Cache-Control: no-store`.

use std::sync::Arc;

use axum::Extension;
use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::header::{CACHE_CONTROL, PRAGMA};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Inner;
use super::error::OAuthError;
use super::jwt::{ACCESS_TOKEN_TYP, AccessClaims, Expect};
use super::token::{TokenRequest, authenticate};
use crate::clock;
use crate::proxy::ConnectionInfo;
use crate::store::{RefreshTokenRecord, token_hash};

/// The form of a revocation or introspection request: the token, and
/// `client_secret_post` credentials when the client does not use Basic.
/// Other parameters, `token_type_hint` among them, are ignored.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TokenForm {
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

impl TokenForm {
    /// The client credentials, as the token endpoint's authentication takes them.
    pub(crate) fn client(&self) -> TokenRequest {
        let mut client = TokenRequest::default();
        client.client_id.clone_from(&self.client_id);
        client.client_secret.clone_from(&self.client_secret);
        client
    }

    /// The `token` parameter, required.
    pub(crate) fn token(&self) -> Result<&str, OAuthError> {
        self.token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::InvalidRequest("the `token` parameter is missing".into()))
    }
}

/// What a presented token turned out to be.
pub(crate) enum Found {
    /// An access token with a good signature, not expired, for this issuer
    /// and audience (the revocation list not consulted).
    Access(AccessClaims),
    /// A current refresh token.
    Refresh(RefreshTokenRecord),
}

/// True when `token` has the shape of a compact JWS, as access tokens do.
pub(crate) fn is_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

/// The expectation every access token of this server meets.
pub(crate) fn access_expect(server: &Inner) -> Expect {
    Expect::new(ACCESS_TOKEN_TYP, server.issuer.clone()).audience(server.audience.clone())
}

/// Finds what `token` is: a verified access token or a current refresh
/// token; `None` when it is neither.
pub(crate) async fn find(server: &Inner, token: &str) -> Result<Option<Found>, OAuthError> {
    if is_jwt(token) {
        return Ok(server
            .keys
            .verify::<AccessClaims>(token, &access_expect(server))
            .await
            .ok()
            .map(Found::Access));
    }
    let record =
        server.store.refresh_token(&token_hash(token), clock::now()).await.map_err(OAuthError::server)?;
    Ok(record.map(Found::Refresh))
}

/// The introspection endpoint (see the module docs).
pub(crate) async fn introspect(
    State(server): State<Arc<Inner>>,
    headers: HeaderMap,
    conn: Option<Extension<ConnectionInfo>>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, OAuthError> {
    let Form(req) = form.map_err(|e| OAuthError::InvalidRequest(e.body_text()))?;
    let ip = server.signin.client_ip(&headers, conn.as_deref());
    // RFC 7662 section 2.3: a client that fails to authenticate gets 401.
    let as_401 = |e: OAuthError| match e {
        OAuthError::InvalidClient { description, .. } => {
            OAuthError::InvalidClient { basic: true, description }
        }
        other => other,
    };
    let consumer = authenticate(&server, &headers, ip, &req.client()).await.map_err(as_401)?;
    if !consumer.confidential {
        return Err(OAuthError::InvalidClient {
            basic: true,
            description: "a public client cannot authenticate, so it may not introspect tokens".into(),
        });
    }
    let token = req.token()?;
    let answer = match find(&server, token).await? {
        Some(Found::Access(claims)) => {
            if server.store.is_access_token_revoked(&claims.jti).await.map_err(OAuthError::server)? {
                inactive()
            } else {
                access_answer(&claims)
            }
        }
        Some(Found::Refresh(record)) => refresh_answer(&record),
        None => inactive(),
    };
    Ok(([(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")], Json(answer)).into_response())
}

fn inactive() -> Value {
    json!({ "active": false })
}

/// The answer for an active access token.
fn access_answer(claims: &AccessClaims) -> Value {
    let aud = match claims.aud.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    let mut answer = json!({
        "active": true,
        "scope": claims.scope,
        "client_id": claims.client_id,
        "sub": claims.sub,
        "aud": aud,
        "iss": claims.iss,
        "exp": claims.exp,
        "iat": claims.iat,
        "jti": claims.jti,
        "token_type": "Bearer",
    });
    if let Some(username) = token_user(claims) {
        answer["username"] = username.into();
    }
    answer
}

/// The answer for a current refresh token.
fn refresh_answer(record: &RefreshTokenRecord) -> Value {
    let mut answer = json!({
        "active": true,
        "scope": record.scope,
        "client_id": record.client_id,
        "exp": record.expires_at,
        "token_type": "refresh_token",
    });
    if let Some(username) = &record.username {
        answer["username"] = username.as_str().into();
    }
    answer
}

/// The user an access token acts for: its `sub`, unless that is the client
/// itself (`client_credentials` by a consumer without `user_id`).
pub(crate) fn token_user(claims: &AccessClaims) -> Option<&str> {
    (claims.sub != claims.client_id).then_some(claims.sub.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, aud: &[&str]) -> AccessClaims {
        AccessClaims {
            iss: "https://auth.example".into(),
            sub: sub.into(),
            aud: aud.iter().map(|a| (*a).to_owned()).collect(),
            client_id: "reporting".into(),
            scope: "authenticated farm_viewer".into(),
            iat: 100,
            exp: 3700,
            jti: "j-1".into(),
            auth_time: None,
        }
    }

    #[test]
    fn an_access_token_answer_names_the_user_only_when_there_is_one() {
        let answer = access_answer(&claims("reporter", &["https://auth.example"]));
        assert_eq!(
            answer,
            json!({
                "active": true, "scope": "authenticated farm_viewer", "client_id": "reporting",
                "username": "reporter", "sub": "reporter", "aud": "https://auth.example",
                "iss": "https://auth.example", "exp": 3700, "iat": 100, "jti": "j-1", "token_type": "Bearer",
            })
        );
        let userless = access_answer(&claims("reporting", &["a", "b"]));
        assert!(userless.get("username").is_none(), "sub is the client itself");
        assert_eq!(userless["aud"], json!(["a", "b"]));
    }

    #[test]
    fn a_refresh_token_answer_has_its_scope_client_user_and_expiry() {
        let record = RefreshTokenRecord {
            token_hash: "h".into(),
            family_id: "f".into(),
            client_id: "legacy".into(),
            username: Some("alice".into()),
            scope: "farm_viewer".into(),
            auth_time: None,
            expires_at: 5000,
            access: None,
            sid: None,
        };
        assert_eq!(
            refresh_answer(&record),
            json!({
                "active": true, "scope": "farm_viewer", "client_id": "legacy", "username": "alice",
                "exp": 5000, "token_type": "refresh_token",
            })
        );
    }

    #[test]
    fn only_three_part_tokens_are_taken_for_jwts() {
        assert!(is_jwt("a.b.c"));
        assert!(!is_jwt("abc"));
        assert!(!is_jwt("a.b"));
        assert!(!is_jwt("a.b.c.d"));
    }
}
