//! `POST /oauth/revoke` (RFC 7009): a client says it no longer needs a token.
//!
//! The client authenticates as at the token endpoint
//! ([`super::token`]; a public consumer names itself), then
//! sends `token` and optionally `token_type_hint`, which is accepted and not
//! needed (see [`super::introspect`] for how the two kinds are told apart).
//!
//! - A current refresh token of this client: its whole family is revoked, so
//!   neither it nor any token rotated from the same grant can be used again.
//! - An access token of this client (signature, issuer, audience and expiry
//!   checked): its `jti` goes on the revocation list until its `exp`, which
//!   introspection, userinfo and the gate consult.
//!
//! Anything else (an unknown, malformed, expired or already rotated token, or
//! a token of another client) changes nothing and is answered `200` like a
//! success (RFC 7009 section 2.2), so the endpoint tells no client whether
//! some other client's token exists. Refusals (no `token`, failed client
//! authentication) are RFC 6749 section 5.2 JSON.
//!
//! Access tokens issued from a refresh token's family are not revoked with
//! it: they are short-lived, and the server records each access token's
//! consumer and user (so deleting the consumer, or disabling the user,
//! revokes them), not the family that issued it.

use std::sync::Arc;

use axum::Extension;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::header::{CACHE_CONTROL, PRAGMA};

use super::Inner;
use super::error::OAuthError;
use super::introspect::{Found, TokenForm, find};
use super::token::authenticate;
use crate::proxy::ConnectionInfo;

/// The revocation endpoint (see the module docs).
pub(crate) async fn revoke(
    State(server): State<Arc<Inner>>,
    headers: HeaderMap,
    conn: Option<Extension<ConnectionInfo>>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, OAuthError> {
    let Form(req) = form.map_err(|e| OAuthError::InvalidRequest(e.body_text()))?;
    let ip = server.signin.client_ip(&headers, conn.as_deref());
    let consumer = authenticate(&server, &headers, ip, &req.client()).await?;
    let token = req.token()?;
    match find(&server, token).await? {
        Some(Found::Refresh(record)) if record.client_id == consumer.client_id => {
            server.store.revoke_refresh_family(&record.family_id).await.map_err(OAuthError::server)?;
            tracing::info!(client_id = %consumer.client_id, "refresh token revoked with its family");
        }
        Some(Found::Access(claims)) if claims.client_id == consumer.client_id => {
            server.store.revoke_access_token(&claims.jti, claims.exp).await.map_err(OAuthError::server)?;
            tracing::info!(client_id = %consumer.client_id, jti = %claims.jti, "access token revoked");
        }
        Some(_) => {
            tracing::info!(client_id = %consumer.client_id, "a client asked to revoke another client's token; nothing changed");
        }
        None => {}
    }
    Ok(([(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")], ()).into_response())
}
