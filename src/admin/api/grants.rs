//! `{base}/api/grants`: what this sidecar issued as authorization server
//! and is still current (one entry per refresh-token family), and revoke.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use serde_json::json;

use super::{ApiError, Caller, reply};
use crate::admin::Site;

/// `GET {base}/api/grants`: by consumer, user and expiry (Unix times).
pub(crate) async fn grants(_caller: Caller, State(site): State<Arc<Site>>) -> Result<Response, ApiError> {
    let current = site.store.current_refresh_tokens(crate::clock::now()).await?;
    let rows = current.iter().map(|t| {
        json!({
            "family_id": t.family_id, "client_id": t.client_id, "username": t.username,
            "scope": t.scope, "auth_time": t.auth_time, "expires_at": t.expires_at,
        })
    });
    Ok(reply(StatusCode::OK, rows.collect()))
}

/// `DELETE {base}/api/grants/{family_id}`: the grant's refresh tokens stop
/// working at once, and the access tokens issued with them are revoked.
pub(crate) async fn revoke_grant(
    caller: Caller,
    State(site): State<Arc<Site>>,
    Path(family_id): Path<String>,
) -> Result<Response, ApiError> {
    let current = site.store.current_refresh_tokens(crate::clock::now()).await?;
    if !current.iter().any(|t| t.family_id == family_id) {
        return Err(ApiError::NotFound(format!("no current grant {family_id:?}")));
    }
    site.store.revoke_refresh_family(&family_id).await?;
    tracing::info!(admin_token = %caller, family = %family_id, "grant revoked");
    Ok(reply(StatusCode::OK, json!({ "revoked": family_id })))
}
