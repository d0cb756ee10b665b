//! [`ApiError`]: every refusal and failure of the admin API, rendered as
//! `{"error": "...", "error_description": "..."}` in one place.
//!
//! | refusal | status | `error` |
//! |---|---|---|
//! | no credentials, an unknown token | 401, `WWW-Authenticate: Bearer realm="oauth-sidecar admin"` | `unauthorized` |
//! | a token or admin without the permission, a signed-in user who is not an admin | 403 | `forbidden` |
//! | a change sent with the session cookie and no token | 403 | `csrf` |
//! | a body that is not `application/json` | 415 | `unsupported_media_type` |
//! | a malformed body or a value the operation refuses | 400 | `invalid_request` |
//! | no such record, or the OAuth client role is off | 404 | `not_found` |
//! | the record exists already, or comes from the configuration file | 409 | `conflict` |
//! | the provider failed or refused | 502 | `provider_error` |
//! | the store or the token key failed (logged, not shown) | 500 | `server_error` |
//!
//! Every answer carries `Cache-Control: no-store`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::client::ClientError;
use crate::server::admin::AdminError;

/// The realm of the API's `WWW-Authenticate` challenge.
const REALM: &str = r#"Bearer realm="oauth-sidecar admin""#;

/// Why an admin API request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// No credentials (`invalid_token: false`), or a token that is not an
    /// admin API token.
    #[error("{description}")]
    Unauthorized {
        /// A token was presented but is unknown or malformed.
        invalid_token: bool,
        /// What was wrong.
        description: &'static str,
    },
    /// The caller lacks a permission, or is a signed-in user who is not an admin.
    #[error("{0}")]
    Forbidden(String),
    /// A change sent with the admin session cookie and no token.
    #[error("changes need an admin API token (Authorization: Bearer); the session cookie may only read")]
    Csrf,
    /// A request body that is not JSON.
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// The body is malformed, or the operation refuses a value.
    #[error("{0}")]
    BadRequest(String),
    /// No such record.
    #[error("{0}")]
    NotFound(String),
    /// The record exists already, or may not be changed here.
    #[error("{0}")]
    Conflict(String),
    /// The route has no such method.
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    /// The provider failed or refused.
    #[error("{0}")]
    Provider(String),
    /// A failure the caller cannot fix (logged, not shown).
    #[error("the server could not handle the request")]
    Server,
}

impl From<crate::admin::privilege::Outranked> for ApiError {
    fn from(e: crate::admin::privilege::Outranked) -> Self {
        ApiError::Forbidden(e.to_string())
    }
}

impl ApiError {
    /// The 500 for `e`, which is logged (the answer says nothing of it).
    pub(crate) fn server(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "admin API request failed");
        ApiError::Server
    }

    /// The 404 for the routes of the OAuth client role when it is off.
    pub(crate) fn no_client_role() -> Self {
        ApiError::NotFound(
            "the OAuth client role is not configured (add a `client:` section with its token key)".into(),
        )
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Csrf => (StatusCode::FORBIDDEN, "csrf"),
            ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Provider(_) => (StatusCode::BAD_GATEWAY, "provider_error"),
            ApiError::Server => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = json!({ "error": code, "error_description": self.to_string() });
        let mut res = (status, Json(body)).into_response();
        res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let ApiError::Unauthorized { invalid_token, .. } = self {
            let challenge =
                if invalid_token { format!(r#"{REALM}, error="invalid_token""#) } else { REALM.into() };
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                res.headers_mut().insert(WWW_AUTHENTICATE, value);
            }
        }
        res
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Usage(m) => ApiError::BadRequest(m),
            AdminError::NotFound(m) => ApiError::NotFound(m),
            e @ (AdminError::Exists(_) | AdminError::ConfigManaged(_)) => ApiError::Conflict(e.to_string()),
            e @ (AdminError::Store(_) | AdminError::Keys(_) | AdminError::Password(_)) => {
                ApiError::server(&e)
            }
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Usage(m) => ApiError::BadRequest(m),
            ClientError::NotFound(m) => ApiError::NotFound(m),
            e @ (ClientError::Provider(_) | ClientError::Token(_)) => ApiError::Provider(e.to_string()),
            e @ (ClientError::Store(_) | ClientError::Crypto(_)) => ApiError::server(&e),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::server(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_render_as_json_with_their_status() {
        let res =
            ApiError::Unauthorized { invalid_token: true, description: "unknown token" }.into_response();
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="oauth-sidecar admin", error="invalid_token""#
        );
        assert_eq!(res.headers()[CACHE_CONTROL], "no-store");
        let res = ApiError::Unauthorized { invalid_token: false, description: "none" }.into_response();
        assert_eq!(res.headers()[WWW_AUTHENTICATE], REALM);
        assert_eq!(ApiError::Csrf.into_response().status(), 403);
        let res = ApiError::from(AdminError::Exists("consumer \"x\" exists already".into())).into_response();
        assert_eq!(res.status(), 409);
        assert!(res.headers().get(WWW_AUTHENTICATE).is_none());
    }
}
