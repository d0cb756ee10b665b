//! Grants: what this sidecar issued as authorization server and is still
//! current (one row per refresh-token family), by consumer and user, with
//! revoke.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::json;

use super::value;
use crate::admin::Site;
use crate::admin::auth::{Posted, Viewer, see_other};

/// `GET {base}/grants`.
pub(crate) async fn list(State(site): State<Arc<Site>>, viewer: Viewer) -> Response {
    let now = crate::clock::now();
    match site.store.current_refresh_tokens(now).await {
        Ok(current) => {
            let rows: Vec<_> = current
                .iter()
                .map(|t| {
                    json!({
                        "family": t.family_id, "client_id": t.client_id, "username": t.username,
                        "scopes": t.scope, "authenticated": t.auth_time.map(|a| super::when(a, now)),
                        "expires": super::when(t.expires_at, now),
                    })
                })
                .collect();
            site.templates.page(
                &viewer,
                "grants.html",
                "Grants",
                "grants",
                minijinja::context! { grants => value(rows) },
            )
        }
        Err(e) => site.templates.failure(&e),
    }
}

/// `POST {base}/grants/{family}/revoke`: the grant's refresh tokens stop
/// working at once, and the access tokens issued with them are revoked.
pub(crate) async fn revoke(
    State(site): State<Arc<Site>>,
    Path(family): Path<String>,
    Posted { viewer, .. }: Posted,
) -> Response {
    match site.store.revoke_refresh_family(&family).await {
        Ok(()) => {
            tracing::info!(admin = %viewer.user.username, family = %family, "grant revoked");
            see_other(&format!("{}/grants", site.base))
        }
        Err(e) => site.templates.failure(&e),
    }
}
