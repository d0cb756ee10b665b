//! Users: the list, add, set roles and admin permissions, disable, and
//! reset the password. An admin cannot take their own admin access away.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use serde_json::json;

use super::value;
use crate::admin::Site;
use crate::admin::auth::{Posted, Viewer, see_other};
use crate::admin::forms::Form;
use crate::admin::privilege::{check_sign_out, check_user_change};
use crate::admin::records;
use crate::config::Secret;
use crate::server::admin::{self as ops, AdminError};
use crate::store::{ADMINISTER_OAUTH, PERMISSIONS};

/// `GET {base}/users`.
pub(crate) async fn list(State(site): State<Arc<Site>>, viewer: Viewer) -> Response {
    let listed = match site.store.users().await {
        Ok(users) => site.store.federated_identities().await.map(|links| (users, links)),
        Err(e) => Err(e),
    };
    match listed {
        Ok((users, links)) => {
            // A user signed in through a provider: where each role came from.
            let rows: Vec<_> = users
                .iter()
                .map(|u| {
                    let mut row = records::user(u);
                    let sources: Vec<_> = links
                        .iter()
                        .filter(|l| l.username == u.username)
                        .flat_map(|l| {
                            l.role_sources.iter().map(|s| json!({ "role": s.role, "source": s.source }))
                        })
                        .collect();
                    row["signed_in_with"] = json!(
                        links
                            .iter()
                            .filter(|l| l.username == u.username)
                            .map(|l| &l.provider)
                            .collect::<Vec<_>>()
                    );
                    row["role_sources"] = json!(sources);
                    row
                })
                .collect();
            site.templates.page(
                &viewer,
                "users.html",
                "Users",
                "users",
                minijinja::context! { users => value(rows) },
            )
        }
        Err(e) => site.templates.failure(&e),
    }
}

fn form_page(
    site: &Site,
    viewer: &Viewer,
    status: StatusCode,
    user: serde_json::Value,
    editing: bool,
    error: Option<String>,
) -> Response {
    let roles: Vec<_> =
        site.server.load().roles.iter().map(|(name, r)| json!({ "name": name, "label": r.label })).collect();
    let title = if editing { "Edit user" } else { "Add user" };
    let ctx = minijinja::context! {
        account => value(user), roles => value(roles), permissions => value(PERMISSIONS), editing, error,
    };
    site.templates.page_with_status(viewer, status, "user_form.html", title, "users", ctx)
}

fn from_form(form: &Form, username: &str) -> serde_json::Value {
    json!({
        "username": username, "roles": form.all("roles"), "admin": form.checked("admin"),
        "permissions": form.all("permissions"), "disabled": form.checked("disabled"),
    })
}

/// `GET {base}/users/new`.
pub(crate) async fn new_form(State(site): State<Arc<Site>>, viewer: Viewer) -> Response {
    let blank = json!({ "username": "", "roles": [], "admin": false, "permissions": [], "disabled": false });
    form_page(&site, &viewer, StatusCode::OK, blank, false, None)
}

/// `POST {base}/users`.
pub(crate) async fn create(State(site): State<Arc<Site>>, Posted { viewer, form }: Posted) -> Response {
    let username = form.text("username");
    let shown = from_form(&form, &username);
    let Some(password) = form.get("password") else {
        return form_page(
            &site,
            &viewer,
            StatusCode::BAD_REQUEST,
            shown,
            false,
            Some("Enter a password.".into()),
        );
    };
    let permissions = ops::permissions_for(form.checked("admin"), form.all("permissions"));
    if let Err(e) = check_user_change(&viewer, &username, None, Some(&permissions)) {
        return form_page(&site, &viewer, StatusCode::FORBIDDEN, shown, false, Some(e.to_string()));
    }
    let added = ops::add_user(
        site.store.as_ref(),
        &site.server.load_full(),
        &username,
        &Secret::new(password.to_owned()),
        form.all("roles"),
        form.checked("admin"),
        permissions,
    )
    .await;
    match added {
        Ok(()) => {
            tracing::info!(admin = %viewer.user.username, username = %username, "user added");
            see_other(&format!("{}/users", site.base))
        }
        Err(AdminError::Store(e)) => site.templates.failure(&e),
        Err(e) => form_page(&site, &viewer, StatusCode::BAD_REQUEST, shown, false, Some(e.to_string())),
    }
}

/// `GET {base}/users/{username}`.
pub(crate) async fn edit_form(
    State(site): State<Arc<Site>>,
    Path(username): Path<String>,
    viewer: Viewer,
) -> Response {
    match site.store.user(&username).await {
        Ok(Some(u)) => form_page(&site, &viewer, StatusCode::OK, records::user(&u), true, None),
        Ok(None) => site.templates.error(StatusCode::NOT_FOUND, "Not found", "There is no such user."),
        Err(e) => site.templates.failure(&e),
    }
}

/// `POST {base}/users/{username}`: roles, admin permissions, disabled, and
/// a new password when one is typed.
pub(crate) async fn update(
    State(site): State<Arc<Site>>,
    Path(username): Path<String>,
    Posted { viewer, form }: Posted,
) -> Response {
    let shown = from_form(&form, &username);
    let permissions = ops::permissions_for(form.checked("admin"), form.all("permissions"));
    let disabled = form.checked("disabled");
    if username == viewer.user.username && (disabled || !permissions.iter().any(|p| p == ADMINISTER_OAUTH)) {
        let e = "You cannot disable yourself or take your own “administer oauth” permission away; \
                 ask another admin.";
        return form_page(&site, &viewer, StatusCode::BAD_REQUEST, shown, true, Some(e.into()));
    }
    let current = match site.store.user(&username).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return site.templates.error(StatusCode::NOT_FOUND, "Not found", "There is no such user.");
        }
        Err(e) => return site.templates.failure(&e),
    };
    if let Err(e) = check_user_change(&viewer, &username, Some(&current), Some(&permissions)) {
        return form_page(&site, &viewer, StatusCode::FORBIDDEN, shown, true, Some(e.to_string()));
    }
    let change = ops::UserChange {
        roles: Some(form.all("roles")),
        permissions: Some(permissions),
        disabled: Some(disabled),
        password: form.get("new_password").map(|p| Secret::new(p.to_owned())),
    };
    match ops::change_user(site.store.as_ref(), &site.server.load_full(), &username, change).await {
        Ok(()) => {
            tracing::info!(admin = %viewer.user.username, username = %username, "user updated");
            see_other(&format!("{}/users", site.base))
        }
        Err(AdminError::NotFound(_)) => {
            site.templates.error(StatusCode::NOT_FOUND, "Not found", "There is no such user.")
        }
        Err(AdminError::Store(e)) => site.templates.failure(&e),
        Err(e) => form_page(&site, &viewer, StatusCode::BAD_REQUEST, shown, true, Some(e.to_string())),
    }
}

/// `POST {base}/users/{username}/sign-out`: "sign out everywhere" ends
/// every sign-in session of the user (the admin pages' and `/oauth/`'s);
/// each consumer that got an ID token in one is sent a back-channel logout.
pub(crate) async fn sign_out_everywhere(
    State(site): State<Arc<Site>>,
    Path(username): Path<String>,
    Posted { viewer, .. }: Posted,
) -> Response {
    let user = match site.store.user(&username).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return site.templates.error(StatusCode::NOT_FOUND, "Not found", "There is no such user.");
        }
        Err(e) => return site.templates.failure(&e),
    };
    if let Err(e) = check_sign_out(&viewer, &user) {
        return site.templates.error(StatusCode::FORBIDDEN, "Not allowed", &e.to_string());
    }
    match ops::sign_out_everywhere(site.store.as_ref(), &username).await {
        Ok(()) => {
            tracing::info!(admin = %viewer.user.username, username = %username, "user signed out everywhere");
            see_other(&format!("{}/users", site.base))
        }
        Err(AdminError::Store(e)) => site.templates.failure(&e),
        Err(e) => site.templates.error(StatusCode::BAD_REQUEST, "Not signed out", &e.to_string()),
    }
}
