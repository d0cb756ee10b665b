//! [`GateError`]: every refusal of the gate, rendered as RFC 6750 section 3
//! says, with a JSON body of the same content.
//!
//! | refusal | status | `WWW-Authenticate` |
//! |---|---|---|
//! | no token | 401 | `Bearer realm="..."` (no error; the JSON body says `missing_token`) |
//! | malformed request (two tokens, a query token where none is accepted) | 400 | `error="invalid_request"` |
//! | bad, expired, revoked, foreign token | 401 | `error="invalid_token"` |
//! | scopes missing | 403 | `error="insufficient_scope", scope="..."` |
//! | token used from an origin its consumer does not allow, route denied | 403 | none |
//! | forward-auth request from a peer that is not a trusted proxy | 403 | none |
//! | the token cannot be checked now (keys or store unreachable) | 503 | none |
//!
//! Every refusal carries `Cache-Control: no-store`.
//!
//! ```
//! use oauth_sidecar::gate::GateError;
//!
//! let res: http::Response<axum::body::Body> =
//!     GateError::InsufficientScope { scope: "farm_manager".into() }.into_response("farm");
//! assert_eq!(res.status(), 403);
//! assert_eq!(
//!     res.headers()["www-authenticate"],
//!     r#"Bearer realm="farm", error="insufficient_scope", error_description="the token lacks a scope this route needs", scope="farm_manager""#
//! );
//! ```

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

/// A response body type the gate's layers can write their own short answers
/// in (refusals, preflight answers), so that they keep the inner service's
/// body type instead of boxing it.
pub trait RefusalBody {
    /// A body holding `bytes` (JSON, or nothing).
    fn from_bytes(bytes: Bytes) -> Self;
}

impl RefusalBody for axum::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        axum::body::Body::from(bytes)
    }
}

impl RefusalBody for http_body_util::Full<Bytes> {
    fn from_bytes(bytes: Bytes) -> Self {
        http_body_util::Full::new(bytes)
    }
}

/// The reverse proxy's body: the upstream's body or one the sidecar wrote.
impl<L> RefusalBody for http_body_util::Either<L, axum::body::Body> {
    fn from_bytes(bytes: Bytes) -> Self {
        http_body_util::Either::Right(axum::body::Body::from(bytes))
    }
}

/// Marks a response the gate refused because of the request's origin, so the
/// CORS layer adds no CORS headers to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OriginRefused;

/// Why the gate refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// No bearer token, where the route needs one.
    #[error("no bearer token")]
    MissingToken,
    /// The request is malformed (RFC 6750 `invalid_request`).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The token is malformed, badly signed, expired, revoked, from an
    /// unknown issuer or for another audience (RFC 6750 `invalid_token`).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The token lacks scopes the route needs (RFC 6750 `insufficient_scope`).
    #[error("insufficient scope, needs {scope}")]
    InsufficientScope {
        /// The scopes the route asks for, space-separated.
        scope: String,
    },
    /// The token's consumer does not allow the request's origin, or the
    /// origin is `null` or malformed.
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// No rule allows the request.
    #[error("no rule allows this request")]
    Denied,
    /// The body that should carry the token is too large.
    #[error("the form body is too large")]
    TooLarge,
    /// The token cannot be checked now; the cause is logged, not sent.
    #[error("cannot check the token now: {0}")]
    Unavailable(String),
    /// A forward-auth request from a peer that is not a trusted proxy: its
    /// description of a request is not believed.
    #[error("forward-auth request from an untrusted peer")]
    UntrustedProxy,
}

impl GateError {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            GateError::MissingToken | GateError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            GateError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            GateError::InsufficientScope { .. }
            | GateError::OriginNotAllowed
            | GateError::Denied
            | GateError::UntrustedProxy => StatusCode::FORBIDDEN,
            GateError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GateError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `error` code: RFC 6750's where one applies.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            GateError::MissingToken => None,
            GateError::InvalidRequest(_) => Some("invalid_request"),
            GateError::InvalidToken(_) => Some("invalid_token"),
            GateError::InsufficientScope { .. } => Some("insufficient_scope"),
            GateError::OriginNotAllowed | GateError::Denied | GateError::UntrustedProxy => {
                Some("access_denied")
            }
            GateError::TooLarge => Some("invalid_request"),
            GateError::Unavailable(_) => Some("temporarily_unavailable"),
        }
    }

    /// What the client is told.
    fn description(&self) -> String {
        match self {
            GateError::MissingToken => "this route needs a bearer token".into(),
            GateError::InvalidRequest(d) | GateError::InvalidToken(d) => d.clone(),
            GateError::InsufficientScope { .. } => "the token lacks a scope this route needs".into(),
            GateError::OriginNotAllowed => "the token's client may not be used from this origin".into(),
            GateError::Denied => "no rule allows this request".into(),
            GateError::TooLarge => "the form body is too large".into(),
            GateError::Unavailable(_) => "the token cannot be checked right now; try again".into(),
            GateError::UntrustedProxy => {
                "forward-auth answers loopback and the addresses in proxy.trusted_proxies only".into()
            }
        }
    }

    /// The response: status, `WWW-Authenticate` where RFC 6750 asks for
    /// one, a JSON body, `Cache-Control: no-store`.
    pub fn into_response<B: RefusalBody>(self, realm: &str) -> Response<B> {
        let description = clean(&self.description());
        let mut body = serde_json::Map::new();
        // RFC 6750 gives a request without a token no error code in the
        // challenge; the body still names what is wrong, for programs.
        body.insert("error".into(), self.code().unwrap_or("missing_token").into());
        body.insert("error_description".into(), description.clone().into());
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut res = Response::new(B::from_bytes(Bytes::from(bytes)));
        *res.status_mut() = self.status();
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let challenge = match &self {
            GateError::MissingToken => Some(format!("Bearer realm=\"{}\"", clean(realm))),
            GateError::InvalidRequest(_) | GateError::InvalidToken(_) | GateError::TooLarge => Some(format!(
                "Bearer realm=\"{}\", error=\"{}\", error_description=\"{description}\"",
                clean(realm),
                self.code().unwrap_or_default()
            )),
            GateError::InsufficientScope { scope } => Some(format!(
                "Bearer realm=\"{}\", error=\"insufficient_scope\", error_description=\"{description}\", scope=\"{}\"",
                clean(realm),
                clean(scope)
            )),
            GateError::OriginNotAllowed
            | GateError::Denied
            | GateError::Unavailable(_)
            | GateError::UntrustedProxy => None,
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::try_from(c).ok()) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        if matches!(self, GateError::Unavailable(_)) {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if matches!(self, GateError::OriginNotAllowed) {
            res.extensions_mut().insert(OriginRefused);
        }
        res
    }
}

/// RFC 6750: quoted values are printable ASCII without `"` and `\`.
fn clean(s: &str) -> String {
    s.chars().map(|c| if (' '..='~').contains(&c) && c != '"' && c != '\\' { c } else { '\'' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn render(e: GateError) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let res: Response<axum::body::Body> = e.into_response("r");
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn refusals_follow_rfc6750() {
        let (status, headers, body) = render(GateError::MissingToken).await;
        assert_eq!(status, 401);
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"r\"");
        assert_eq!(body["error"], "missing_token", "the body names the problem; the challenge does not");
        assert_eq!(headers["cache-control"], "no-store");

        let (status, headers, body) =
            render(GateError::InvalidToken("the token has \"expired\"".into())).await;
        assert_eq!(status, 401);
        assert_eq!(
            headers["www-authenticate"],
            "Bearer realm=\"r\", error=\"invalid_token\", error_description=\"the token has 'expired'\""
        );
        assert_eq!(body["error"], "invalid_token");

        let (status, headers, _) = render(GateError::InvalidRequest("two tokens".into())).await;
        assert_eq!(status, 400);
        assert!(headers["www-authenticate"].to_str().unwrap().contains("error=\"invalid_request\""));

        let (status, headers, body) = render(GateError::Unavailable("store down".into())).await;
        assert_eq!(status, 503);
        assert!(headers.get("www-authenticate").is_none());
        assert!(!body.to_string().contains("store down"), "the cause stays in the log");
    }
}
