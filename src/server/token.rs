//! `POST /oauth/token`: client authentication and the grants.
//!
//! Clients authenticate with `client_secret_basic` (RFC 6749 section 2.3.1:
//! id and secret form-urlencoded, then Basic) or `client_secret_post`, never
//! both. A public consumer (`confidential: false`) only names itself.
//!
//! Grants, each allowed only when the consumer lists it in `grant_types`:
//!
//! - `client_credentials`: confidential consumers only; the token acts as the
//!   consumer's `user_id` user (its `sub`), or as the consumer itself when it
//!   has none (then it carries no roles).
//! - `password`: the user's argon2 password is checked; a refresh token is
//!   issued too when the consumer also lists `refresh_token`.
//! - `refresh_token`: rotated on every use; presenting a rotated token
//!   revokes its whole family, except within `server.refresh_reuse_grace`
//!   of its rotation while the pair it got is unused: then the same pair is
//!   answered again (a retry after a lost response, see [`super::grace`]).
//!   The scope may be narrowed for the new access token (the new refresh
//!   token keeps the original scope, RFC 6749 section 6), never widened.
//!
//! Granted roles come from [`super::policy::granted_roles`]. A requested
//! scope that is neither a role, the base role nor one of `openid`,
//! `offline_access`, `profile`, `email` is refused with `invalid_scope`.
//! Disabled users get `invalid_grant`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Extension;
use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::HeaderMap;
use http::header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::Inner;
use super::error::OAuthError;
use super::grace;
use super::jwt::{self, ACCESS_TOKEN_TYP, AccessClaims};
use super::oidc::{self, IdTokenInput};
use super::policy::{ConsumerPolicy, Roles, granted_roles};
use crate::clock;
use crate::config::server::NON_ROLE_SCOPES;
use crate::ops::trace;
use crate::proxy::ConnectionInfo;
use crate::store::{
    CodeRedemption, ConsumerRecord, RefreshGrace, RefreshRotation, RefreshTokenRecord, UserRecord, token_hash,
};
use crate::web::secrets::{SlowCheck, random_token};
use crate::web::signin::Checked;

/// The form parameters of a token request. Unknown parameters are ignored
/// (RFC 6749 section 3.2); a repeated one is an error.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TokenRequest {
    grant_type: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    scope: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
}

/// A successful token response (RFC 6749 section 5.1).
#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        ([(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")], Json(self)).into_response()
    }
}

/// The token endpoint. With traces on, each call is a `token grant` span
/// naming the grant type, the client and the error code, nothing more.
pub(crate) async fn token(
    state: State<Arc<Inner>>,
    headers: HeaderMap,
    conn: Option<Extension<ConnectionInfo>>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Result<Response, OAuthError> {
    let span = trace::span_if_enabled(|| {
        tracing::info_span!(
            "token grant",
            otel.name = "token grant",
            otel.status_code = tracing::field::Empty,
            oauth.grant_type = tracing::field::Empty,
            oauth.client_id = tracing::field::Empty,
            oauth.error = tracing::field::Empty,
        )
    });
    let result = answer(state, headers, conn, form).instrument(span.clone()).await;
    if let Err(e) = &result {
        span.record("oauth.error", e.code());
        trace::record_status(&span, e.status());
    }
    result
}

async fn answer(
    State(server): State<Arc<Inner>>,
    headers: HeaderMap,
    conn: Option<Extension<ConnectionInfo>>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Result<Response, OAuthError> {
    let Form(req) = form.map_err(|e| OAuthError::InvalidRequest(e.body_text()))?;
    let ip = server.signin.client_ip(&headers, conn.as_deref());
    let consumer = authenticate(&server, &headers, ip, &req).await?;
    let grant_type = req.grant_type.as_deref().ok_or_else(|| missing("grant_type"))?;
    if trace::enabled() {
        let span = tracing::Span::current();
        span.record("oauth.client_id", consumer.client_id.as_str());
        let known = ["client_credentials", "password", "refresh_token", "authorization_code"];
        span.record("oauth.grant_type", known.into_iter().find(|g| *g == grant_type).unwrap_or("other"));
    }
    let allowed = |g: &str| consumer.grant_types.iter().any(|t| t == g);
    let response = match grant_type {
        "client_credentials" => {
            if !consumer.confidential || !allowed(grant_type) {
                return Err(not_allowed(&consumer, grant_type));
            }
            client_credentials(&server, &consumer, &req).await?
        }
        "password" => {
            if !allowed(grant_type) {
                return Err(not_allowed(&consumer, grant_type));
            }
            password_grant(&server, &consumer, ip, &req).await?
        }
        "refresh_token" => {
            if !allowed(grant_type) {
                return Err(not_allowed(&consumer, grant_type));
            }
            return refresh(&server, &consumer, &req).await;
        }
        "authorization_code" => {
            if !allowed(grant_type) {
                return Err(not_allowed(&consumer, grant_type));
            }
            authorization_code(&server, &consumer, &req).await?
        }
        other => return Err(OAuthError::UnsupportedGrantType(format!("unknown grant type `{other}`"))),
    };
    Ok(response.into_response())
}

fn missing(name: &str) -> OAuthError {
    OAuthError::InvalidRequest(format!("the `{name}` parameter is missing"))
}

fn not_allowed(consumer: &ConsumerRecord, grant: &str) -> OAuthError {
    let why = if grant == "client_credentials" && !consumer.confidential {
        "a public client may not use client_credentials".to_owned()
    } else {
        format!("the client may not use the {grant} grant")
    };
    OAuthError::UnauthorizedClient(why)
}

/// Finds and authenticates the consumer (see the module docs); the revocation
/// and introspection endpoints authenticate clients the same way. `ip` is
/// the client's address, for the throttle.
pub(crate) async fn authenticate(
    server: &Inner,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
    req: &TokenRequest,
) -> Result<ConsumerRecord, OAuthError> {
    let basic = match headers.get(AUTHORIZATION) {
        Some(value) => parse_basic(value.as_bytes()),
        None => None,
    };
    let (client_id, secret, is_basic) = match basic {
        Some(Ok((id, secret))) => {
            if req.client_secret.is_some() {
                return Err(OAuthError::InvalidRequest(
                    "use one client authentication method, not Basic and client_secret both".into(),
                ));
            }
            if req.client_id.as_ref().is_some_and(|body_id| *body_id != id) {
                return Err(OAuthError::InvalidRequest(
                    "client_id differs from the Basic credentials".into(),
                ));
            }
            (id, Some(secret), true)
        }
        Some(Err(())) => {
            return Err(OAuthError::InvalidClient {
                basic: true,
                description: "malformed Basic credentials".into(),
            });
        }
        None => match &req.client_id {
            Some(id) => (id.clone(), req.client_secret.clone(), false),
            None => {
                return Err(OAuthError::InvalidClient {
                    basic: false,
                    description: "no client authentication".into(),
                });
            }
        },
    };
    let refused =
        |description: &str| OAuthError::InvalidClient { basic: is_basic, description: description.into() };
    let consumer = server
        .cache
        .consumer(server.store.as_ref(), &client_id)
        .await
        .map_err(OAuthError::server)?
        .ok_or_else(|| refused("unknown client"))?;
    if !consumer.confidential {
        return Ok(consumer);
    }
    let (Some(secret), Some(stored)) = (secret, consumer.secret_hash.as_deref()) else {
        return Err(refused("the client must authenticate with its secret"));
    };
    if check_secret(server, ip, &consumer.client_id, stored, &secret).await? {
        return Ok(consumer);
    }
    // The cached record may predate a secret rotation: check the store's once.
    let fresh = server.cache.reload_consumer(server.store.as_ref(), &client_id).await;
    if let Some(fresh) = fresh.map_err(OAuthError::server)?
        && fresh.confidential
        && fresh.secret_hash != consumer.secret_hash
        && let Some(stored) = fresh.secret_hash.as_deref()
        && check_secret(server, ip, &fresh.client_id, stored, &secret).await?
    {
        return Ok(fresh);
    }
    tracing::warn!(client_id = %client_id, ip = ?ip, "client authentication failed");
    Err(refused("client authentication failed"))
}

/// Checks a client secret. What costs an argon2 check (a secret set by
/// hand, not checked successfully within the last minute) is counted by the
/// client throttle first, per `client_id` and per address, and refused
/// without a check once either used up its attempts (429); it then waits
/// for an argon2 slot (503 when none frees in time). A generated secret
/// costs one HMAC and cannot be guessed, so it is never throttled.
async fn check_secret(
    server: &Inner,
    ip: Option<IpAddr>,
    client_id: &str,
    stored: &str,
    secret: &str,
) -> Result<bool, OAuthError> {
    if let Some(known) = server.secrets.verify_fast(client_id, stored, secret) {
        return Ok(known);
    }
    match server.secrets.verify_slow_throttled(&server.client_throttle, ip, client_id, stored, secret).await {
        SlowCheck::Checked(ok) => Ok(ok),
        SlowCheck::Refused(left) => {
            tracing::warn!(client_id, ip = ?ip, "client authentication refused: too many failed attempts");
            Err(OAuthError::slow_down(
                "too many failed authentications for this client or from this address",
                left,
            ))
        }
        SlowCheck::Busy => {
            tracing::warn!(client_id, "client authentication not checked: every argon2 slot is busy");
            Err(OAuthError::busy())
        }
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))`; `None` for another scheme.
fn parse_basic(value: &[u8]) -> Option<Result<(String, String), ()>> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let parse = || -> Result<(String, String), ()> {
        let decoded = STANDARD.decode(rest.trim()).map_err(drop)?;
        let decoded = String::from_utf8(decoded).map_err(drop)?;
        let (id, secret) = decoded.split_once(':').ok_or(())?;
        Ok((form_decode(id).ok_or(())?, form_decode(secret).ok_or(())?))
    };
    Some(parse())
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The requested scopes; refuses any that is not a role, the base role or
/// an OpenID Connect scope.
pub(crate) fn requested_scopes(server: &Inner, scope: Option<&str>) -> Result<Roles, OAuthError> {
    let mut requested = Roles::new();
    let file = server.file.load();
    for s in scope.unwrap_or_default().split(' ').filter(|s| !s.is_empty()) {
        if !(file.roles.contains(s) || s == server.base_role || NON_ROLE_SCOPES.contains(&s)) {
            return Err(OAuthError::InvalidScope(format!("`{s}` is not a scope of this server")));
        }
        requested.insert(s.to_owned());
    }
    Ok(requested)
}

fn policy_of(consumer: &ConsumerRecord) -> (Roles, bool, bool, bool) {
    (
        consumer.scopes.iter().cloned().collect(),
        consumer.grant_user_access,
        consumer.limit_requested_access,
        consumer.limit_user_access,
    )
}

pub(crate) fn grant(
    server: &Inner,
    consumer: &ConsumerRecord,
    user: Option<&UserRecord>,
    requested: &Roles,
) -> Roles {
    let (roles, grant_user_access, limit_requested_access, limit_user_access) = policy_of(consumer);
    let policy =
        ConsumerPolicy { roles: &roles, grant_user_access, limit_requested_access, limit_user_access };
    let user_roles: Option<Roles> = user.map(|u| u.roles.iter().cloned().collect());
    granted_roles(policy, user_roles.as_ref(), requested, &server.base_role)
}

pub(crate) fn join(roles: &Roles) -> String {
    roles.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
}

/// Loads an acting user, refusing unknown and disabled ones.
async fn acting_user(server: &Inner, username: &str) -> Result<UserRecord, OAuthError> {
    match server.cache.user(server.store.as_ref(), username).await.map_err(OAuthError::server)? {
        Some(user) if user.disabled => Err(OAuthError::InvalidGrant("the user is disabled".into())),
        Some(user) => Ok(user),
        None => Err(OAuthError::InvalidGrant("the acting user does not exist".into())),
    }
}

/// A signed access token, with what revoking it takes.
pub(crate) struct IssuedAccess {
    /// The JWT.
    pub(crate) token: String,
    /// Its lifetime in seconds.
    pub(crate) expires_in: u64,
    /// Its `jti`.
    pub(crate) jti: String,
    /// Its `exp`.
    pub(crate) exp: i64,
}

/// Signs an access token (RFC 9068) and records it in the store with the
/// consumer and the `user` it acts for (none for a consumer acting as
/// itself), so that deleting the one or disabling the other revokes it.
pub(crate) async fn issue_access(
    server: &Inner,
    consumer: &ConsumerRecord,
    user: Option<&str>,
    sub: &str,
    scope: &str,
    auth_time: Option<i64>,
) -> Result<IssuedAccess, OAuthError> {
    let ttl = consumer.access_token_ttl.unwrap_or(server.access_ttl);
    let now = clock::now();
    let claims = AccessClaims {
        iss: server.issuer.clone(),
        sub: sub.to_owned(),
        aud: vec![server.audience.clone()],
        client_id: consumer.client_id.clone(),
        scope: scope.to_owned(),
        iat: now,
        exp: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
        jti: uuid::Uuid::new_v4().to_string(),
        auth_time,
    };
    let token = jwt::sign(&server.keys.current(), server.access_alg, ACCESS_TOKEN_TYP, &claims)
        .map_err(OAuthError::server)?;
    server
        .store
        .record_access_token(&claims.jti, &consumer.client_id, user, claims.exp)
        .await
        .map_err(OAuthError::server)?;
    Ok(IssuedAccess { token, expires_in: ttl, jti: claims.jti, exp: claims.exp })
}

/// A new refresh token and its record; `access` is the access token issued
/// with it, revoked when its family is.
fn new_refresh(
    server: &Inner,
    consumer: &ConsumerRecord,
    username: Option<&str>,
    scope: &str,
    family_id: String,
    auth_time: Option<i64>,
    access: Option<&IssuedAccess>,
) -> (String, RefreshTokenRecord) {
    let token = random_token();
    let ttl = consumer.refresh_token_ttl.unwrap_or(server.refresh_ttl);
    let record = RefreshTokenRecord {
        token_hash: token_hash(&token),
        family_id,
        client_id: consumer.client_id.clone(),
        username: username.map(str::to_owned),
        scope: scope.to_owned(),
        auth_time,
        expires_at: clock::now().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
        access: access.map(|a| (a.jti.clone(), a.exp)),
        sid: None,
    };
    (token, record)
}

/// The authorization code grant (RFC 6749 section 4.1.3, RFC 7636 section 4.6).
async fn authorization_code(
    server: &Inner,
    consumer: &ConsumerRecord,
    req: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let code = req.code.as_deref().ok_or_else(|| missing("code"))?;
    let hash = token_hash(code);
    let invalid = |why: &str| OAuthError::InvalidGrant(why.to_owned());
    let record = match server.store.redeem_auth_code(&hash).await.map_err(OAuthError::server)? {
        CodeRedemption::Fresh(record) => record,
        CodeRedemption::Reused { family_id, access_jtis } => {
            tracing::warn!(client_id = %consumer.client_id, "an authorization code was used twice; the tokens issued from it are revoked");
            if let Some(family) = family_id {
                server.store.revoke_refresh_family(&family).await.map_err(OAuthError::server)?;
            }
            for (jti, exp) in access_jtis {
                server.store.revoke_access_token(&jti, exp).await.map_err(OAuthError::server)?;
            }
            return Err(invalid("the authorization code was already used"));
        }
        CodeRedemption::Unknown => return Err(invalid("the authorization code is invalid")),
    };
    if record.client_id != consumer.client_id {
        return Err(invalid("the authorization code was issued to another client"));
    }
    if record.expires_at <= clock::now() {
        return Err(invalid("the authorization code has expired"));
    }
    match req.redirect_uri.as_deref() {
        Some(uri) if uri == record.redirect_uri => {}
        Some(_) => return Err(invalid("redirect_uri differs from the authorization request")),
        // It may be left out only where the authorization request could
        // leave it out: the consumer has one redirect URI.
        None if consumer.redirect_uris.len() == 1 => {}
        None => return Err(missing("redirect_uri")),
    }
    match (&record.code_challenge, req.code_verifier.as_deref()) {
        (Some(challenge), Some(verifier)) => {
            if !is_code_verifier(verifier) {
                return Err(invalid("code_verifier must be 43 to 128 unreserved characters"));
            }
            let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
            if URL_SAFE_NO_PAD.encode(digest) != *challenge {
                return Err(invalid("code_verifier does not match the code_challenge"));
            }
        }
        (Some(_), None) => return Err(invalid("the code_verifier is missing (PKCE was used)")),
        // RFC 9700 section 4.8.2: a verifier without a challenge is refused.
        (None, Some(_)) => {
            return Err(invalid("code_verifier sent but the authorization request had no code_challenge"));
        }
        (None, None) => {}
    }
    let user = acting_user(server, &record.username).await?;
    let scope = record.scope;
    let access =
        issue_access(server, consumer, Some(&user.username), &user.username, &scope, Some(record.auth_time))
            .await?;
    let family = if consumer.grant_types.iter().any(|g| g == "refresh_token") {
        let family = uuid::Uuid::new_v4().to_string();
        let (token, mut refresh) = new_refresh(
            server,
            consumer,
            Some(&user.username),
            &scope,
            family.clone(),
            Some(record.auth_time),
            Some(&access),
        );
        refresh.sid.clone_from(&record.sid);
        server.store.add_refresh_token(&refresh).await.map_err(OAuthError::server)?;
        Some((family, token))
    } else {
        None
    };
    server
        .store
        .record_code_issue(&hash, family.as_ref().map(|(f, _)| f.as_str()), &access.jti, access.exp)
        .await
        .map_err(OAuthError::server)?;
    let id_token = if scope.split(' ').any(|s| s == "openid") {
        let claims = IdTokenInput {
            consumer,
            sub: &user.username,
            auth_time: record.auth_time,
            nonce: record.nonce.as_deref(),
            access_token: &access.token,
            sid: record.sid.as_deref(),
        };
        if let Some(sid) = &record.sid {
            let expires_at = record.auth_time.saturating_add(server.session_ttl);
            server
                .store
                .record_session_consumer(sid, &consumer.client_id, &user.username, expires_at)
                .await
                .map_err(OAuthError::server)?;
        }
        Some(oidc::id_token(server, &claims)?)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        refresh_token: family.map(|(_, token)| token),
        scope,
        id_token,
    })
}

/// RFC 7636 section 4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn is_code_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

async fn client_credentials(
    server: &Inner,
    consumer: &ConsumerRecord,
    req: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let requested = requested_scopes(server, req.scope.as_deref())?;
    let user = match &consumer.user_id {
        Some(name) => Some(acting_user(server, name).await?),
        None => None,
    };
    let scope = join(&grant(server, consumer, user.as_ref(), &requested));
    let sub = user.as_ref().map_or(consumer.client_id.as_str(), |u| u.username.as_str());
    let user = user.as_ref().map(|u| u.username.as_str());
    let IssuedAccess { token: access_token, expires_in, .. } =
        issue_access(server, consumer, user, sub, &scope, None).await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in,
        refresh_token: None,
        scope,
        id_token: None,
    })
}

async fn password_grant(
    server: &Inner,
    consumer: &ConsumerRecord,
    ip: Option<IpAddr>,
    req: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let username = req.username.as_deref().ok_or_else(|| missing("username"))?;
    let presented = req.password.as_deref().ok_or_else(|| missing("password"))?;
    let requested = requested_scopes(server, req.scope.as_deref())?;
    // The sign-in forms' throttle and check: counted before the check.
    let checked =
        server.signin.check_credentials(username, presented, ip).await.map_err(OAuthError::server)?;
    let user = match checked {
        Checked::Yes(user) => user,
        Checked::Disabled(_) => return Err(OAuthError::InvalidGrant("the user is disabled".into())),
        Checked::No => return Err(OAuthError::InvalidGrant("wrong username or password".into())),
        Checked::Throttled(left) => {
            return Err(OAuthError::slow_down(
                "too many failed sign-in attempts for this user or from this address",
                left,
            ));
        }
        Checked::Busy => return Err(OAuthError::busy()),
    };
    let scope = join(&grant(server, consumer, Some(&user), &requested));
    let auth_time = clock::now();
    let access =
        issue_access(server, consumer, Some(&user.username), &user.username, &scope, Some(auth_time)).await?;
    let refresh_token = if consumer.grant_types.iter().any(|g| g == "refresh_token") {
        let family = uuid::Uuid::new_v4().to_string();
        let (token, record) = new_refresh(
            server,
            consumer,
            Some(&user.username),
            &scope,
            family,
            Some(auth_time),
            Some(&access),
        );
        server.store.add_refresh_token(&record).await.map_err(OAuthError::server)?;
        Some(token)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        refresh_token,
        scope,
        id_token: None,
    })
}

async fn refresh(
    server: &Inner,
    consumer: &ConsumerRecord,
    req: &TokenRequest,
) -> Result<Response, OAuthError> {
    let presented = req.refresh_token.as_deref().ok_or_else(|| missing("refresh_token"))?;
    let hash = token_hash(presented);
    let now = clock::now();
    let invalid = || OAuthError::InvalidGrant("the refresh token is invalid, expired or revoked".into());
    let Some(current) = server.store.refresh_token(&hash, now).await.map_err(OAuthError::server)? else {
        // Not a current token. Presenting it to the rotation still matters:
        // if it was rotated before, the store revokes its whole family
        // (unless this is a retry within the grace window).
        let (_, probe) = new_refresh(server, consumer, None, "", String::new(), None, None);
        match server.store.rotate_refresh_token(&hash, &probe, now).await.map_err(OAuthError::server)? {
            RefreshRotation::Reused => {
                tracing::warn!(client_id = %consumer.client_id, "a rotated refresh token was presented again; its family is revoked");
            }
            RefreshRotation::Retry { presented: record, sealed } => {
                return retry_within_grace(server, consumer, presented, &record, &sealed, now).await;
            }
            // It turned current in between (cannot happen with one store):
            // the probe successor is useless, so end the family.
            RefreshRotation::Rotated(record) => {
                server.store.revoke_refresh_family(&record.family_id).await.map_err(OAuthError::server)?;
            }
            RefreshRotation::Invalid => {}
        }
        return Err(invalid());
    };
    // Checks that need no rotation come first, so that a refused request
    // leaves the token usable.
    if current.client_id != consumer.client_id {
        return Err(invalid());
    }
    let granted: Roles = current.scope.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let requested = requested_scopes(server, req.scope.as_deref())?;
    if let Some(extra) = requested.iter().find(|s| !granted.contains(*s)) {
        return Err(OAuthError::InvalidScope(format!("`{extra}` was not granted to this refresh token")));
    }
    if let Some(username) = &current.username
        && let Err(e) = acting_user(server, username).await
    {
        server.store.revoke_refresh_family(&current.family_id).await.map_err(OAuthError::server)?;
        return Err(e);
    }
    // The successor joins the family (the store sets it) with the original
    // scope; only this access token is narrowed. The response is made before
    // the rotation, so that the grace window can keep it with the rotation.
    let scope = if requested.is_empty() { current.scope.clone() } else { join(&requested) };
    let sub = current.username.as_deref().unwrap_or(&consumer.client_id);
    let access =
        issue_access(server, consumer, current.username.as_deref(), sub, &scope, current.auth_time).await?;
    let (token, mut next) = new_refresh(
        server,
        consumer,
        current.username.as_deref(),
        &current.scope,
        String::new(),
        current.auth_time,
        Some(&access),
    );
    next.sid.clone_from(&current.sid);
    let IssuedAccess { token: access_token, expires_in, .. } = access;
    // OpenID Connect Core section 12.2: a refresh renews the ID token too,
    // with the original auth_time and no nonce.
    let id_token = match (&current.username, current.auth_time) {
        (Some(username), Some(auth_time)) if scope.split(' ').any(|s| s == "openid") => {
            let input = IdTokenInput {
                consumer,
                sub: username,
                auth_time,
                nonce: None,
                access_token: &access_token,
                sid: current.sid.as_deref(),
            };
            Some(oidc::id_token(server, &input)?)
        }
        _ => None,
    };
    let response = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in,
        refresh_token: Some(token),
        scope,
        id_token,
    };
    let grace = if server.refresh_grace > 0 {
        let json = serde_json::to_value(&response).map_err(OAuthError::server)?;
        let sealed = grace::seal(presented, &json, now)
            .ok_or_else(|| OAuthError::server("cannot seal the refresh response for the grace window"))?;
        // Whole seconds, rounded up: a retry up to the configured time
        // after the rotation is always within the window.
        let expires_at =
            now.saturating_add(i64::try_from(server.refresh_grace).unwrap_or(i64::MAX)).saturating_add(1);
        Some(RefreshGrace { sealed, expires_at })
    } else {
        None
    };
    match server
        .store
        .rotate_refresh_token_with_grace(&hash, &next, grace.as_ref(), now)
        .await
        .map_err(OAuthError::server)?
    {
        RefreshRotation::Rotated(_) => Ok(response.into_response()),
        // A concurrent request with the same token rotated it first, within
        // the grace window: both answer its pair.
        RefreshRotation::Retry { presented: record, sealed } => {
            retry_within_grace(server, consumer, presented, &record, &sealed, now).await
        }
        // Another request rotated it first: exactly one wins.
        RefreshRotation::Reused | RefreshRotation::Invalid => Err(invalid()),
    }
}

/// A rotated refresh token presented again within the grace window: answers
/// the pair its rotation issued, when the same client presents it and its
/// user may still get tokens; otherwise it is a reuse after all, and the
/// family is revoked.
async fn retry_within_grace(
    server: &Inner,
    consumer: &ConsumerRecord,
    presented: &str,
    record: &RefreshTokenRecord,
    sealed: &[u8],
    now: i64,
) -> Result<Response, OAuthError> {
    let response =
        if record.client_id == consumer.client_id { grace::open(presented, sealed, now) } else { None };
    let user_ok = match &record.username {
        Some(username) => acting_user(server, username).await.is_ok(),
        None => true,
    };
    match response {
        Some(response) if user_ok => {
            tracing::info!(client_id = %consumer.client_id, "a rotated refresh token was retried within the grace window; answering the same pair");
            Ok(([(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")], Json(response)).into_response())
        }
        _ => {
            server.store.revoke_refresh_family(&record.family_id).await.map_err(OAuthError::server)?;
            tracing::warn!(client_id = %consumer.client_id, "a rotated refresh token was presented again; its family is revoked");
            Err(OAuthError::InvalidGrant("the refresh token is invalid, expired or revoked".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20app:p%3Ass+w%2Bd"));
        assert_eq!(parse_basic(header.as_bytes()), Some(Ok(("my app".into(), "p:ss w+d".into()))));
        assert_eq!(parse_basic(b"Bearer abc"), None);
        assert_eq!(parse_basic(b"basic !!!"), Some(Err(())));
        let no_colon = format!("Basic {}", STANDARD.encode("nocolon"));
        assert_eq!(parse_basic(no_colon.as_bytes()), Some(Err(())));
    }

    #[test]
    fn form_decoding_refuses_broken_escapes() {
        assert_eq!(form_decode("a%2"), None);
        assert_eq!(form_decode("a%zz"), None);
        assert_eq!(form_decode("%E2%82%AC"), Some("€".into()));
    }
}
