//! [`OAuthError`]: every refusal of the token endpoint, rendered as RFC 6749
//! section 5.2 JSON.
//!
//! The status is 400, except `invalid_client` after an attempt at HTTP Basic
//! authentication, which is 401 with `WWW-Authenticate: Basic` (section
//! 5.2), and `server_error`, which is 500 (its cause goes to the log, never
//! to the client). Every answer carries `Cache-Control: no-store`.
//!
//! Two refusals are about load, not about the request, and carry
//! `Retry-After` (seconds):
//!
//! - `slow_down`, 429 (RFC 6585): too many failed attempts for the account,
//!   the client or the address (the throttle). RFC 6749 has no code for
//!   this; `slow_down` is the token endpoint's registered code for "ask
//!   again, later" (RFC 8628 section 3.5). `invalid_grant` would tell the
//!   user the password is wrong, which it may not be: the right password is
//!   refused too until the block ends.
//! - `temporarily_unavailable`, 503: every argon2 slot stayed busy (RFC 6749
//!   section 4.1.2.1 names the code for the same condition at the
//!   authorization endpoint).
//!
//! ```
//! use axum::response::IntoResponse;
//! use oauth_sidecar::server::error::OAuthError;
//!
//! let res = OAuthError::InvalidScope("`admin` is not a role".into()).into_response();
//! assert_eq!(res.status(), 400);
//! assert_eq!(res.headers()["cache-control"], "no-store");
//! ```

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde_json::json;

/// A refusal of the token endpoint, with its RFC 6749 `error` code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// A parameter is missing, repeated, malformed or not supported.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Client authentication failed. `basic` says whether the client tried
    /// the `Authorization: Basic` header (then the answer is 401).
    #[error("invalid_client: {description}")]
    InvalidClient {
        /// True when the client authenticated with HTTP Basic.
        basic: bool,
        /// What went wrong, without naming the secret.
        description: String,
    },
    /// The grant (password, refresh token) is invalid, expired, revoked or
    /// was issued to another client.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// The client may not use this grant type.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// The server does not know this grant type.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// A requested scope is unknown, or exceeds what was granted.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// Too many failed attempts: answered 429 with `Retry-After`.
    #[error("slow_down: {description}")]
    SlowDown {
        /// Whose attempts ran out, without naming a secret.
        description: String,
        /// Seconds until the block ends.
        retry_after: u64,
    },
    /// No capacity to check a password or secret now: answered 503 with
    /// `Retry-After`.
    #[error("temporarily_unavailable")]
    TemporarilyUnavailable {
        /// Seconds after which a retry may find capacity.
        retry_after: u64,
    },
    /// Something failed inside the server; the cause is logged, not sent.
    #[error("server_error")]
    ServerError,
}

impl OAuthError {
    /// The RFC 6749 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::SlowDown { .. } => "slow_down",
            OAuthError::TemporarilyUnavailable { .. } => "temporarily_unavailable",
            OAuthError::ServerError => "server_error",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            OAuthError::InvalidClient { basic: true, .. } => StatusCode::UNAUTHORIZED,
            OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            OAuthError::SlowDown { .. } => StatusCode::TOO_MANY_REQUESTS,
            OAuthError::TemporarilyUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// [`OAuthError::SlowDown`] for a block that ends after `left`.
    pub fn slow_down(description: &str, left: std::time::Duration) -> Self {
        let retry_after = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        OAuthError::SlowDown { description: description.to_owned(), retry_after: retry_after.max(1) }
    }

    /// [`OAuthError::TemporarilyUnavailable`] after every argon2 slot stayed
    /// busy for as long as a check may wait.
    pub fn busy() -> Self {
        OAuthError::TemporarilyUnavailable { retry_after: crate::web::password::ARGON2_WAIT.as_secs().max(1) }
    }

    /// Logs `cause` and returns [`OAuthError::ServerError`].
    pub fn server(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "token endpoint failed");
        OAuthError::ServerError
    }

    fn description(&self) -> Option<&str> {
        match self {
            OAuthError::InvalidRequest(d)
            | OAuthError::InvalidGrant(d)
            | OAuthError::UnauthorizedClient(d)
            | OAuthError::UnsupportedGrantType(d)
            | OAuthError::InvalidScope(d)
            | OAuthError::InvalidClient { description: d, .. }
            | OAuthError::SlowDown { description: d, .. } => Some(d),
            OAuthError::TemporarilyUnavailable { .. } => {
                Some("the server is busy checking credentials; retry after the time in Retry-After")
            }
            OAuthError::ServerError => None,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code() });
        if let Some(description) = self.description() {
            // RFC 6749: error_description is limited to printable ASCII
            // without `"` and `\`.
            let clean: String = description
                .chars()
                .map(|c| if (' '..='~').contains(&c) && c != '"' && c != '\\' { c } else { '\'' })
                .collect();
            body["error_description"] = clean.into();
        }
        let mut res = (self.status(), Json(body)).into_response();
        let headers = res.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        if let OAuthError::SlowDown { retry_after, .. } | OAuthError::TemporarilyUnavailable { retry_after } =
            self
        {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after));
        }
        if matches!(self, OAuthError::InvalidClient { basic: true, .. }) {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"oauth\""));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn render(e: OAuthError) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let res = e.into_response();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn errors_render_as_rfc6749_json_with_no_store() {
        let (status, headers, body) =
            render(OAuthError::InvalidGrant("refresh token \"x\" reused".into())).await;
        assert_eq!(status, 400);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(
            body,
            json!({ "error": "invalid_grant", "error_description": "refresh token 'x' reused" })
        );
    }

    #[tokio::test]
    async fn invalid_client_after_basic_auth_is_401_with_www_authenticate() {
        let basic = OAuthError::InvalidClient { basic: true, description: "wrong secret".into() };
        let (status, headers, body) = render(basic).await;
        assert_eq!(status, 401);
        assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Basic"));
        assert_eq!(body["error"], "invalid_client");

        let post = OAuthError::InvalidClient { basic: false, description: "wrong secret".into() };
        let (status, headers, _) = render(post).await;
        assert_eq!(status, 400);
        assert!(headers.get("www-authenticate").is_none());
    }

    #[tokio::test]
    async fn load_refusals_carry_retry_after() {
        let (status, headers, body) =
            render(OAuthError::slow_down("too many", std::time::Duration::from_millis(1500))).await;
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "2");
        assert_eq!(body["error"], "slow_down");
        let (status, headers, body) = render(OAuthError::busy()).await;
        assert_eq!(status, 503);
        assert!(headers.contains_key("retry-after"));
        assert_eq!(body["error"], "temporarily_unavailable");
    }

    #[tokio::test]
    async fn server_errors_say_nothing_more() {
        let (status, _, body) = render(OAuthError::server("database is locked")).await;
        assert_eq!(status, 500);
        assert_eq!(body, json!({ "error": "server_error" }));
    }
}
