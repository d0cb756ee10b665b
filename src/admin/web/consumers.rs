//! Consumers: the list, the create and edit form with every field of the
//! seed and the three farmOS options, delete with confirmation, and the
//! generated secret shown once (with `manage oauth client secrets`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::value;
use crate::admin::auth::{Posted, Viewer, see_other};
use crate::admin::forms::Form;
use crate::admin::{Site, records};
use crate::config::server::GRANT_TYPES;
use crate::server::admin::{self as ops, AdminError, ConsumerSpec, CreatedConsumer};
use crate::store::MANAGE_SECRETS;

/// `GET {base}/consumers`.
pub(crate) async fn list(State(site): State<Arc<Site>>, viewer: Viewer) -> Response {
    match site.store.consumers().await {
        Ok(consumers) => {
            let rows: Vec<_> = consumers.iter().map(records::consumer).collect();
            let ctx = minijinja::context! { consumers => value(rows) };
            site.templates.page(&viewer, "consumers.html", "Consumers", "consumers", ctx)
        }
        Err(e) => site.templates.failure(&e),
    }
}

/// The defaults of a new consumer's form (as `consumer create` has them).
fn blank() -> serde_json::Value {
    json!({
        "label": "", "client_id": "", "confidential": true, "third_party": true, "user_id": "",
        "redirect_uris": [], "allowed_origins": [], "scopes": [],
        "post_logout_redirect_uris": [], "backchannel_logout_uri": "",
        "grant_types": ["authorization_code", "refresh_token"],
        "grant_user_access": false, "limit_requested_access": false, "limit_user_access": false,
        "managed_by_config": false,
    })
}

/// The consumer a posted form describes, as the form shows it again.
fn from_form(form: &Form) -> serde_json::Value {
    json!({
        "label": form.text("label"),
        "client_id": form.text("client_id"),
        "confidential": form.checked("confidential"),
        "third_party": form.checked("third_party"),
        "user_id": form.text("user_id"),
        "redirect_uris": form.lines("redirect_uris"),
        "allowed_origins": form.lines("allowed_origins"),
        "post_logout_redirect_uris": form.lines("post_logout_redirect_uris"),
        "backchannel_logout_uri": form.text("backchannel_logout_uri"),
        "scopes": form.all("scopes"),
        "grant_types": form.all("grant_types"),
        "grant_user_access": form.checked("grant_user_access"),
        "limit_requested_access": form.checked("limit_requested_access"),
        "limit_user_access": form.checked("limit_user_access"),
        "managed_by_config": false,
    })
}

/// Every field set from the form: an unticked box is `false`.
fn spec(form: &Form) -> ConsumerSpec {
    ConsumerSpec {
        label: Some(form.text("label")),
        public: Some(!form.checked("confidential")),
        third_party: Some(form.checked("third_party")),
        user_id: Some(form.text("user_id")),
        redirect_uris: Some(form.lines("redirect_uris")),
        allowed_origins: Some(form.lines("allowed_origins")),
        scopes: Some(form.all("scopes")),
        grant_types: Some(form.all("grant_types")),
        grant_user_access: Some(form.checked("grant_user_access")),
        limit_requested_access: Some(form.checked("limit_requested_access")),
        limit_user_access: Some(form.checked("limit_user_access")),
        secret: None,
        post_logout_redirect_uris: Some(form.lines("post_logout_redirect_uris")),
        backchannel_logout_uri: Some(form.text("backchannel_logout_uri")),
    }
}

fn form_page(
    site: &Site,
    viewer: &Viewer,
    status: StatusCode,
    consumer: serde_json::Value,
    editing: bool,
    error: Option<String>,
) -> Response {
    let roles: Vec<_> = site
        .server
        .load()
        .roles
        .iter()
        .map(|(name, r)| json!({ "name": name, "label": r.label, "description": r.description }))
        .collect();
    let title = if editing { "Edit consumer" } else { "Add consumer" };
    let ctx = minijinja::context! {
        consumer => value(consumer), roles => value(roles), grant_types => value(GRANT_TYPES),
        editing, error,
    };
    site.templates.page_with_status(viewer, status, "consumer_form.html", title, "consumers", ctx)
}

/// `GET {base}/consumers/new`.
pub(crate) async fn new_form(State(site): State<Arc<Site>>, viewer: Viewer) -> Response {
    form_page(&site, &viewer, StatusCode::OK, blank(), false, None)
}

/// `POST {base}/consumers`: creates the consumer; the form again with
/// the reason when it cannot be.
pub(crate) async fn create(State(site): State<Arc<Site>>, Posted { viewer, form }: Posted) -> Response {
    let client_id = Some(form.text("client_id")).filter(|c| !c.is_empty());
    match ops::create_consumer(site.store.as_ref(), &site.server.load_full(), client_id, &spec(&form)).await {
        Ok(created) => {
            tracing::info!(admin = %viewer.user.username, client_id = %created.consumer.client_id, "consumer created");
            saved(&site, &viewer, &created)
        }
        Err(e) => refused(&site, &viewer, from_form(&form), false, e),
    }
}

/// The page after a save: the consumer, and its new secret once, for an
/// admin who may see secrets.
fn saved(site: &Site, viewer: &Viewer, created: &CreatedConsumer) -> Response {
    let secret =
        created.secret.as_ref().filter(|_| viewer.may(MANAGE_SECRETS)).map(|s| s.expose().to_owned());
    let ctx = minijinja::context! {
        consumer => value(records::consumer(&created.consumer)), secret, generated => created.secret.is_some(),
    };
    site.templates.page(viewer, "consumer_saved.html", "Consumer saved", "consumers", ctx)
}

fn refused(
    site: &Site,
    viewer: &Viewer,
    consumer: serde_json::Value,
    editing: bool,
    e: AdminError,
) -> Response {
    match e {
        AdminError::Store(e) => site.templates.failure(&e),
        other => form_page(site, viewer, StatusCode::BAD_REQUEST, consumer, editing, Some(other.to_string())),
    }
}

/// `GET {base}/consumers/{client_id}`.
pub(crate) async fn edit_form(
    State(site): State<Arc<Site>>,
    Path(client_id): Path<String>,
    viewer: Viewer,
) -> Response {
    match site.store.consumer(&client_id).await {
        Ok(Some(c)) => form_page(&site, &viewer, StatusCode::OK, records::consumer(&c), true, None),
        Ok(None) => site.templates.error(StatusCode::NOT_FOUND, "Not found", "There is no such consumer."),
        Err(e) => site.templates.failure(&e),
    }
}

/// `POST {base}/consumers/{client_id}`: saves every field; "New secret"
/// (for admins who may see secrets) replaces the secret.
pub(crate) async fn update(
    State(site): State<Arc<Site>>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    Posted { viewer, form }: Posted,
) -> Response {
    let new_secret = form.checked("new_secret");
    if new_secret && !viewer.may(MANAGE_SECRETS) {
        return crate::admin::auth::forbidden(&site, &headers, &viewer.user, MANAGE_SECRETS);
    }
    match ops::update_consumer(
        site.store.as_ref(),
        &site.server.load_full(),
        &client_id,
        &spec(&form),
        new_secret,
    )
    .await
    {
        Ok(updated) => {
            tracing::info!(admin = %viewer.user.username, client_id = %client_id, "consumer updated");
            saved(&site, &viewer, &updated)
        }
        Err(AdminError::NotFound(_)) => {
            site.templates.error(StatusCode::NOT_FOUND, "Not found", "There is no such consumer.")
        }
        Err(e) => {
            let mut shown = from_form(&form);
            shown["client_id"] = json!(client_id);
            refused(&site, &viewer, shown, true, e)
        }
    }
}

/// `GET {base}/consumers/{client_id}/delete`: asks first.
pub(crate) async fn delete_form(
    State(site): State<Arc<Site>>,
    Path(client_id): Path<String>,
    viewer: Viewer,
) -> Response {
    match site.store.consumer(&client_id).await {
        Ok(Some(c)) => {
            let ctx = minijinja::context! {
                question => format!(
                    "Delete the consumer “{}” ({})? Its authorization codes and refresh tokens are deleted too; \
                     access tokens it holds stay valid until they expire.",
                    c.label, c.client_id
                ),
                action => format!("{}/consumers/{}/delete", site.base, c.client_id),
                back => format!("{}/consumers/{}", site.base, c.client_id),
            };
            site.templates.page(&viewer, "confirm.html", "Delete consumer", "consumers", ctx)
        }
        Ok(None) => site.templates.error(StatusCode::NOT_FOUND, "Not found", "There is no such consumer."),
        Err(e) => site.templates.failure(&e),
    }
}

/// `POST {base}/consumers/{client_id}/delete`.
pub(crate) async fn delete(
    State(site): State<Arc<Site>>,
    Path(client_id): Path<String>,
    Posted { viewer, .. }: Posted,
) -> Response {
    match ops::delete_consumer(site.store.as_ref(), &client_id).await {
        Ok(()) => {
            tracing::info!(admin = %viewer.user.username, client_id = %client_id, "consumer deleted");
            see_other(&format!("{}/consumers", site.base))
        }
        Err(AdminError::NotFound(_)) => {
            site.templates.error(StatusCode::NOT_FOUND, "Not found", "There is no such consumer.")
        }
        Err(AdminError::Store(e)) => site.templates.failure(&e),
        Err(e) => site.templates.error(StatusCode::CONFLICT, "Cannot delete", &e.to_string()),
    }
}
