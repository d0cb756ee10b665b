//! `{base}/api/consumers`: list, create, read, change and delete the
//! authorization server's consumers. A generated secret is answered once,
//! to a caller holding `manage oauth client secrets`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, Body, Caller, reply};
use crate::admin::{Site, records};
use crate::server::admin::{self as ops, ConsumerSpec, CreatedConsumer};
use crate::store::MANAGE_SECRETS;

/// The fields of a consumer a request sets; those left out stay as they
/// are (on `PUT`) or take their defaults (on `POST`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ConsumerBody {
    client_id: Option<String>,
    label: Option<String>,
    confidential: Option<bool>,
    third_party: Option<bool>,
    user_id: Option<String>,
    redirect_uris: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
    grant_user_access: Option<bool>,
    limit_requested_access: Option<bool>,
    limit_user_access: Option<bool>,
    post_logout_redirect_uris: Option<Vec<String>>,
    backchannel_logout_uri: Option<String>,
    new_secret: bool,
}

impl ConsumerBody {
    fn spec(self) -> ConsumerSpec {
        ConsumerSpec {
            label: self.label,
            public: self.confidential.map(|c| !c),
            third_party: self.third_party,
            user_id: self.user_id,
            redirect_uris: self.redirect_uris,
            allowed_origins: self.allowed_origins,
            scopes: self.scopes,
            grant_types: self.grant_types,
            grant_user_access: self.grant_user_access,
            limit_requested_access: self.limit_requested_access,
            limit_user_access: self.limit_user_access,
            secret: None,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            backchannel_logout_uri: self.backchannel_logout_uri,
        }
    }
}

/// The consumer as saved, and its new secret for a caller who may see it.
fn saved(caller: &Caller, status: StatusCode, saved: CreatedConsumer) -> Response {
    let mut body = json!({ "consumer": records::consumer(&saved.consumer) });
    match saved.secret {
        Some(secret) if caller.may(MANAGE_SECRETS) => body["client_secret"] = json!(secret.expose()),
        Some(_) => {
            body["note"] = json!(
                "a client secret was generated and stored as a hash; it is shown only to callers with \
                 the permission “manage oauth client secrets”, who can renew it with \"new_secret\": true"
            );
        }
        None => {}
    }
    reply(status, body)
}

/// `GET {base}/api/consumers`.
pub(crate) async fn consumers(_caller: Caller, State(site): State<Arc<Site>>) -> Result<Response, ApiError> {
    let all = site.store.consumers().await?;
    Ok(reply(StatusCode::OK, all.iter().map(records::consumer).collect()))
}

/// `POST {base}/api/consumers`.
pub(crate) async fn create_consumer(
    caller: Caller,
    State(site): State<Arc<Site>>,
    Body(mut body): Body<ConsumerBody>,
) -> Result<Response, ApiError> {
    if body.new_secret {
        return Err(ApiError::BadRequest("`new_secret` is for changing a consumer (PUT)".into()));
    }
    let client_id = body.client_id.take();
    let created =
        ops::create_consumer(site.store.as_ref(), &site.server.load_full(), client_id, &body.spec()).await?;
    tracing::info!(admin_token = %caller, client_id = %created.consumer.client_id, "consumer created");
    Ok(saved(&caller, StatusCode::CREATED, created))
}

/// `GET {base}/api/consumers/{client_id}`.
pub(crate) async fn consumer(
    _caller: Caller,
    State(site): State<Arc<Site>>,
    Path(client_id): Path<String>,
) -> Result<Response, ApiError> {
    let found = ops::show_consumer(site.store.as_ref(), &client_id).await?;
    Ok(reply(StatusCode::OK, records::consumer(&found.0)))
}

/// `PUT {base}/api/consumers/{client_id}`: the fields sent, and a new
/// secret with `"new_secret": true` (for callers who may see secrets).
pub(crate) async fn update_consumer(
    caller: Caller,
    State(site): State<Arc<Site>>,
    Path(client_id): Path<String>,
    Body(body): Body<ConsumerBody>,
) -> Result<Response, ApiError> {
    if body.client_id.as_ref().is_some_and(|c| *c != client_id) {
        return Err(ApiError::BadRequest("a consumer's client_id cannot change".into()));
    }
    let new_secret = body.new_secret;
    if new_secret && !caller.may(MANAGE_SECRETS) {
        // A secret nobody may see would only lock the consumer out (the page refuses it too).
        return Err(ApiError::Forbidden(
            "renewing a secret needs the permission “manage oauth client secrets”".into(),
        ));
    }
    let updated = ops::update_consumer(
        site.store.as_ref(),
        &site.server.load_full(),
        &client_id,
        &body.spec(),
        new_secret,
    )
    .await?;
    tracing::info!(admin_token = %caller, client_id = %client_id, new_secret = updated.secret.is_some(), "consumer updated");
    Ok(saved(&caller, StatusCode::OK, updated))
}

/// `DELETE {base}/api/consumers/{client_id}`: with its codes and refresh tokens.
pub(crate) async fn delete_consumer(
    caller: Caller,
    State(site): State<Arc<Site>>,
    Path(client_id): Path<String>,
) -> Result<Response, ApiError> {
    ops::delete_consumer(site.store.as_ref(), &client_id).await?;
    tracing::info!(admin_token = %caller, client_id = %client_id, "consumer deleted");
    Ok(reply(StatusCode::OK, json!({ "deleted": client_id })))
}
