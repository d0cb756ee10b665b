//! `GET` and `POST /oauth/userinfo` (OpenID Connect Core section 5.3): who
//! the user behind an access token is.
//!
//! The access token comes in `Authorization: Bearer` (RFC 6750 section 2.1)
//! and must verify (signature, `typ`, issuer, audience, expiry) and not be on
//! the revocation list. It must act for a user: a `client_credentials` token
//! of a consumer without `user_id` (its `sub` is the client) is refused, and
//! so is a token whose user no longer exists or is disabled. The answer is
//! `sub`, `preferred_username` (both the username) and `roles`, the user's
//! roles as they are now, with `Cache-Control: no-store`.
//!
//! Refusals follow RFC 6750 section 3 ([`BearerError`]): `401` with
//! `WWW-Authenticate: Bearer realm="oauth"` and no error code when no bearer
//! token was sent (or another scheme was), `401` with
//! `error="invalid_token"` for a token that is not good (any reason above),
//! `400` with `error="invalid_request"` for a malformed `Authorization`
//! header.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

use super::Inner;
use super::introspect::{access_expect, token_user};
use super::jwt::AccessClaims;

/// A refusal of a bearer-token request, rendered as RFC 6750 section 3 says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// No bearer token in the request: 401 with a challenge and no error code.
    #[error("no bearer token")]
    Missing,
    /// The `Authorization` header is malformed: 400 `invalid_request`.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// The token is malformed, expired, revoked, for another audience, or
    /// acts for no (usable) user: 401 `invalid_token`.
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// The server failed; the cause is logged, not sent.
    #[error("server_error")]
    ServerError,
}

impl BearerError {
    /// Logs `cause` and returns [`BearerError::ServerError`].
    fn server(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "userinfo endpoint failed");
        BearerError::ServerError
    }
}

/// RFC 6750 section 3: `error_description` is printable ASCII without `"`
/// and `\`.
fn clean(description: &str) -> String {
    description
        .chars()
        .map(|c| if (' '..='~').contains(&c) && c != '"' && c != '\\' { c } else { '\'' })
        .collect()
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let (status, code, description) = match &self {
            BearerError::Missing => (StatusCode::UNAUTHORIZED, None, None),
            BearerError::InvalidRequest(d) => {
                (StatusCode::BAD_REQUEST, Some("invalid_request"), Some(clean(d)))
            }
            BearerError::InvalidToken(d) => (StatusCode::UNAUTHORIZED, Some("invalid_token"), Some(clean(d))),
            BearerError::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, None, None),
        };
        let mut challenge = String::from("Bearer realm=\"oauth\"");
        let mut body = json!({});
        if let Some(code) = code {
            challenge.push_str(&format!(", error=\"{code}\""));
            body["error"] = code.into();
        }
        if let Some(description) = &description {
            challenge.push_str(&format!(", error_description=\"{description}\""));
            body["error_description"] = description.as_str().into();
        }
        let mut res =
            if code.is_some() { (status, Json(body)).into_response() } else { status.into_response() };
        let headers = res.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        if status != StatusCode::INTERNAL_SERVER_ERROR
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        res
    }
}

/// The bearer token of `Authorization: Bearer <token>` (RFC 6750 section
/// 2.1: the scheme is case-insensitive, the token is `b64token`).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Err(BearerError::Missing) };
    if values.next().is_some() {
        return Err(BearerError::InvalidRequest("more than one Authorization header".into()));
    }
    let value = value
        .to_str()
        .map_err(|_| BearerError::InvalidRequest("the Authorization header is not ASCII".into()))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Missing);
    }
    let token = token.trim_matches(' ');
    let body = token.trim_end_matches('=');
    let b64token =
        !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !b64token {
        return Err(BearerError::InvalidRequest("the Bearer credentials are not a token".into()));
    }
    Ok(token)
}

/// The userinfo endpoint (see the module docs).
pub(crate) async fn userinfo(
    State(server): State<Arc<Inner>>,
    headers: HeaderMap,
) -> Result<Response, BearerError> {
    let token = bearer_token(&headers)?;
    let claims: AccessClaims = server
        .keys
        .verify(token, &access_expect(&server))
        .await
        .map_err(|e| BearerError::InvalidToken(format!("the access token is not valid: {e}")))?;
    if server.store.is_access_token_revoked(&claims.jti).await.map_err(BearerError::server)? {
        return Err(BearerError::InvalidToken("the access token was revoked".into()));
    }
    let Some(username) = token_user(&claims) else {
        return Err(BearerError::InvalidToken("the access token acts for no user".into()));
    };
    let user = match server.store.user(username).await.map_err(BearerError::server)? {
        Some(user) if !user.disabled => user,
        _ => return Err(BearerError::InvalidToken("the token's user is unknown or disabled".into())),
    };
    let body = json!({
        "sub": user.username,
        "preferred_username": user.username,
        "roles": user.roles,
    });
    Ok(([(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")], Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        assert_eq!(bearer_token(&headers(&["Bearer abc.DEF-_~+/=="])), Ok("abc.DEF-_~+/=="));
        assert_eq!(bearer_token(&headers(&["bearer  x "])), Ok("x"));
        assert_eq!(bearer_token(&headers(&[])), Err(BearerError::Missing));
        assert_eq!(bearer_token(&headers(&["Basic YTpi"])), Err(BearerError::Missing), "another scheme");
        for bad in ["Bearer", "Bearer ", "Bearer a b", "Bearer =", "Bearer a\"b"] {
            assert!(matches!(bearer_token(&headers(&[bad])), Err(BearerError::InvalidRequest(_))), "{bad}");
        }
        assert!(matches!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(BearerError::InvalidRequest(_))
        ));
    }

    async fn render(e: BearerError) -> (StatusCode, HeaderMap, Vec<u8>) {
        let (parts, body) = e.into_response().into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
    }

    #[tokio::test]
    async fn refusals_follow_rfc6750_section_3() {
        let (status, headers, body) = render(BearerError::Missing).await;
        assert_eq!(status, 401);
        assert_eq!(headers[WWW_AUTHENTICATE], "Bearer realm=\"oauth\"", "no error code without a token");
        assert!(body.is_empty());

        let (status, headers, body) = render(BearerError::InvalidToken("it is \"bad\"".into())).await;
        assert_eq!(status, 401);
        assert_eq!(
            headers[WWW_AUTHENTICATE],
            "Bearer realm=\"oauth\", error=\"invalid_token\", error_description=\"it is 'bad'\""
        );
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "invalid_token");

        let (status, headers, _) = render(BearerError::InvalidRequest("x".into())).await;
        assert_eq!(status, 400);
        assert!(headers[WWW_AUTHENTICATE].to_str().unwrap().contains("error=\"invalid_request\""));

        let (status, headers, _) = render(BearerError::server("disk full")).await;
        assert_eq!(status, 500);
        assert!(headers.get(WWW_AUTHENTICATE).is_none());
    }
}
