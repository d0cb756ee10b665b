//! How the admin pages and the API show the records: one place, so a page
//! and its API operation cannot disagree. Secrets and hashes never appear
//! here.

use serde_json::{Value, json};

use crate::client::provider::Provider;
use crate::client::tokens::STATUS_REAUTH;
use crate::store::{ConsumerRecord, ProviderTokenRecord, UserRecord};

/// A consumer: every field but the secret hash.
pub(crate) fn consumer(c: &ConsumerRecord) -> Value {
    json!({
        "label": c.label,
        "client_id": c.client_id,
        "confidential": c.confidential,
        "third_party": c.third_party,
        "user_id": c.user_id,
        "redirect_uris": c.redirect_uris,
        "allowed_origins": c.allowed_origins,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "backchannel_logout_uri": c.backchannel_logout_uri,
        "scopes": c.scopes,
        "grant_types": c.grant_types,
        "grant_user_access": c.grant_user_access,
        "limit_requested_access": c.limit_requested_access,
        "limit_user_access": c.limit_user_access,
        "managed_by_config": c.managed_by_config,
    })
}

/// A user: never the password hash.
pub(crate) fn user(u: &UserRecord) -> Value {
    json!({
        "username": u.username, "roles": u.roles, "admin": u.admin,
        "permissions": u.permissions, "disabled": u.disabled,
    })
}

/// A provider token's state: `active`, `expired` (and nothing to renew it
/// with) or `needs re-authorization`.
pub(crate) fn token_status(t: &ProviderTokenRecord, now: i64) -> &'static str {
    if t.status == STATUS_REAUTH {
        "needs re-authorization"
    } else if t.expires_at.is_some_and(|e| e <= now) && t.refresh_token.is_none() {
        "expired"
    } else {
        "active"
    }
}

/// The grants besides the authorization code a provider accepts, as
/// `(client_credentials, password)`: Google takes neither; the others may.
pub(crate) fn other_grants(p: &Provider) -> (bool, bool) {
    match p.name.as_str() {
        "gmail" => (false, false),
        _ => (true, true),
    }
}
