//! Who calls the admin API, and the admin API tokens themselves.
//!
//! A caller is an admin API token (`Authorization: Bearer osa_…`, looked
//! up by its SHA-256, made by `oauth-sidecar admin token create`) or, for
//! reading only, a signed-in admin's session cookie. The API takes no CSRF
//! token, so a request that changes something with the cookie and no bearer
//! token is refused; a request body that is not JSON is refused too, so a
//! cross-site form post can never act. A signed-in user who may not use the
//! admin pages gets 403 on every API URL.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, Method};

use super::error::ApiError;
use crate::admin::Site;
use crate::config::Secret;
use crate::server::admin::{AdminError, check_permissions};
use crate::store::{ADMINISTER_OAUTH, AdminTokenRecord, Store, UserRecord};
use crate::web::secrets::random_token;

/// What every admin API token starts with, so a leaked one is recognised.
pub const TOKEN_PREFIX: &str = "osa_";

/// An admin API token just made: the token itself is shown only now.
#[derive(Debug)]
pub struct NewAdminToken {
    /// The public id, for `admin token delete` and the logs.
    pub id: String,
    /// The bearer token: [`TOKEN_PREFIX`] and 43 random characters.
    pub token: Secret,
}

/// Makes an admin API token carrying `permissions` (default: `administer
/// oauth`); only its SHA-256 is stored.
pub async fn create_token(
    store: &dyn Store,
    label: &str,
    permissions: Vec<String>,
) -> Result<NewAdminToken, AdminError> {
    if label.trim().is_empty() {
        return Err(AdminError::Usage("an admin token needs a --label saying what it is for".into()));
    }
    check_permissions(&permissions)?;
    let mut permissions =
        if permissions.is_empty() { vec![ADMINISTER_OAUTH.to_owned()] } else { permissions };
    permissions.dedup();
    let token = format!("{TOKEN_PREFIX}{}", random_token());
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let record = AdminTokenRecord {
        id: id.clone(),
        label: label.trim().to_owned(),
        token_hash: crate::store::token_hash(&token),
        permissions,
        created_at: crate::clock::now(),
    };
    store.add_admin_token(&record).await?;
    Ok(NewAdminToken { id, token: Secret::new(token) })
}

/// Every admin API token; the CLI shows each one's id, label, permissions
/// and creation time, never the token hash.
pub async fn list_tokens(store: &dyn Store) -> Result<Vec<AdminTokenRecord>, AdminError> {
    Ok(store.admin_tokens().await?)
}

/// Deletes the admin API token with this id: it stops working at once.
pub async fn delete_token(store: &dyn Store, id: &str) -> Result<(), AdminError> {
    if store.delete_admin_token(id).await? {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!("no admin token {id:?}")))
    }
}

/// Who is calling, holding `administer oauth` (the extractor refuses others).
#[derive(Debug)]
pub(crate) enum Caller {
    /// An admin API token.
    Token {
        /// Its public id, for the logs.
        id: String,
        /// What it may do.
        permissions: Vec<String>,
    },
    /// A signed-in admin's session cookie: reads only.
    Session(UserRecord),
}

impl Caller {
    /// Refuses a caller without `permission`.
    pub(crate) fn require(&self, permission: &str) -> Result<(), ApiError> {
        if self.may(permission) {
            return Ok(());
        }
        tracing::warn!(caller = %self, permission, "admin API refused: a permission is missing");
        Err(ApiError::Forbidden(format!("this operation needs the permission “{permission}”")))
    }

    /// True when the caller holds `permission`.
    pub(crate) fn may(&self, permission: &str) -> bool {
        match self {
            Caller::Token { permissions, .. } => permissions.iter().any(|p| p == permission),
            Caller::Session(user) => user.may(permission),
        }
    }
}

impl crate::admin::privilege::Admin for Caller {
    fn may(&self, permission: &str) -> bool {
        Caller::may(self, permission)
    }
}

/// The token's id or `session of NAME`, for the logs (never the token).
impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Token { id, .. } => f.write_str(id),
            Caller::Session(user) => write!(f, "session of {}", user.username),
        }
    }
}

impl FromRequestParts<Arc<Site>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, site: &Arc<Site>) -> Result<Self, ApiError> {
        let caller = caller(site, &parts.headers, &parts.method).await.inspect_err(|e| {
            tracing::warn!(method = %parts.method, path = %parts.uri.path(), reason = %e, "admin API refused");
        })?;
        caller.require(ADMINISTER_OAUTH)?;
        if !parts.method.is_safe() && parts.headers.contains_key(CONTENT_TYPE) && !is_json(&parts.headers) {
            return Err(ApiError::UnsupportedMediaType);
        }
        Ok(caller)
    }
}

/// The caller as the module docs say, before any permission is checked.
async fn caller(site: &Site, headers: &HeaderMap, method: &Method) -> Result<Caller, ApiError> {
    if let Some(token) = bearer(headers)? {
        return match site.store.admin_token(&crate::store::token_hash(token)).await? {
            Some(t) => Ok(Caller::Token { id: t.id, permissions: t.permissions }),
            None => {
                Err(ApiError::Unauthorized { invalid_token: true, description: "unknown admin API token" })
            }
        };
    }
    match session_user(site, headers).await? {
        Some(_) if !method.is_safe() => Err(ApiError::Csrf),
        Some(user) => Ok(Caller::Session(user)),
        None => Err(ApiError::Unauthorized {
            invalid_token: false,
            description: "send an admin API token: Authorization: Bearer osa_…",
        }),
    }
}

/// The signed-in user behind the admin session cookie, refused with 403
/// unless an admin holding `administer oauth`.
pub(crate) async fn session_user(site: &Site, headers: &HeaderMap) -> Result<Option<UserRecord>, ApiError> {
    match site.signin.current_user(headers).await? {
        Some(user) if !user.may(ADMINISTER_OAUTH) => Err(not_admin(&user)),
        found => Ok(found),
    }
}

fn not_admin(user: &UserRecord) -> ApiError {
    ApiError::Forbidden(format!("{} may not use the admin API", user.username))
}

/// The `Authorization: Bearer` token, if the request has that header.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else { return Ok(None) };
    let malformed = ApiError::Unauthorized {
        invalid_token: true,
        description: "the Authorization header is not `Bearer TOKEN`",
    };
    let value =
        value.to_str().map_err(|_| ApiError::BadRequest("the Authorization header is not text".into()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(malformed),
    }
}

/// True when the request says its body is JSON (`application/json`, any
/// parameters, or a `+json` type).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header_only() {
        assert_eq!(bearer(&headers(&[("authorization", "Bearer osa_x")])).unwrap(), Some("osa_x"));
        assert_eq!(bearer(&headers(&[("authorization", "bearer  osa_x ")])).unwrap(), Some("osa_x"));
        assert_eq!(bearer(&HeaderMap::new()).unwrap(), None);
        assert!(bearer(&headers(&[("authorization", "Basic YTpi")])).is_err());
        assert!(bearer(&headers(&[("authorization", "Bearer ")])).is_err());
    }

    #[test]
    fn only_json_bodies_count_as_json() {
        assert!(is_json(&headers(&[("content-type", "application/json; charset=utf-8")])));
        assert!(is_json(&headers(&[("content-type", "application/merge-patch+json")])));
        assert!(!is_json(&headers(&[("content-type", "application/x-www-form-urlencoded")])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&HeaderMap::new()));
    }
}
