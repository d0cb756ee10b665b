//! `{base}/api/users`: list, add, read and change local users (roles,
//! admin permissions, disabled, password). The password hash is never
//! answered.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;

use super::{ApiError, Body, Caller, reply};
use crate::admin::Site;
use crate::admin::privilege::{check_sign_out, check_user_change};
use crate::admin::records;
use crate::config::Secret;
use crate::server::admin as ops;
use crate::store::{Store, UserRecord};

/// `POST {base}/api/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    permissions: Vec<String>,
}

/// `PUT {base}/api/users/{username}`: the fields sent change.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct UserBody {
    roles: Option<Vec<String>>,
    admin: Option<bool>,
    permissions: Option<Vec<String>>,
    disabled: Option<bool>,
    password: Option<String>,
}

async fn found(store: &dyn Store, username: &str) -> Result<UserRecord, ApiError> {
    store.user(username).await?.ok_or_else(|| ApiError::NotFound(format!("no user {username:?}")))
}

/// `GET {base}/api/users`.
pub(crate) async fn users(_caller: Caller, State(site): State<Arc<Site>>) -> Result<Response, ApiError> {
    let all = site.store.users().await?;
    Ok(reply(StatusCode::OK, all.iter().map(records::user).collect()))
}

/// `POST {base}/api/users`: `admin` without `permissions` gives
/// `administer oauth`, as `user add --admin` does.
pub(crate) async fn create_user(
    caller: Caller,
    State(site): State<Arc<Site>>,
    Body(body): Body<NewUser>,
) -> Result<Response, ApiError> {
    if body.password.is_empty() {
        return Err(ApiError::BadRequest("a user needs a password".into()));
    }
    let store = site.store.as_ref();
    let permissions = ops::permissions_for(body.admin, body.permissions);
    check_user_change(&caller, &body.username, None, Some(&permissions))?;
    let password = Secret::new(body.password);
    ops::add_user(
        store,
        &site.server.load_full(),
        &body.username,
        &password,
        body.roles,
        body.admin,
        permissions,
    )
    .await?;
    tracing::info!(admin_token = %caller, username = %body.username, "user added");
    Ok(reply(StatusCode::CREATED, records::user(&found(store, &body.username).await?)))
}

/// `GET {base}/api/users/{username}`.
pub(crate) async fn user(
    _caller: Caller,
    State(site): State<Arc<Site>>,
    Path(username): Path<String>,
) -> Result<Response, ApiError> {
    Ok(reply(StatusCode::OK, records::user(&found(site.store.as_ref(), &username).await?)))
}

/// The permissions a `PUT` leaves the user with, when it changes them:
/// `permissions` replaces the set (empty: no longer an admin); `admin:
/// false` takes them all away; `admin: true` keeps an admin's set and
/// gives others `administer oauth`.
fn new_permissions(current: &UserRecord, body: &mut UserBody) -> Result<Option<Vec<String>>, ApiError> {
    match (body.admin, body.permissions.take()) {
        (Some(false), Some(p)) if !p.is_empty() => Err(ApiError::BadRequest(
            "`admin: false` takes every permission away: send no `permissions` with it".into(),
        )),
        (Some(false), _) => Ok(Some(vec![])),
        (Some(true), None) if current.admin && !current.permissions.is_empty() => Ok(None),
        (Some(true), p) => Ok(Some(ops::permissions_for(true, p.unwrap_or_default()))),
        (None, p) => Ok(p),
    }
}

/// `PUT {base}/api/users/{username}`.
pub(crate) async fn update_user(
    caller: Caller,
    State(site): State<Arc<Site>>,
    Path(username): Path<String>,
    Body(mut body): Body<UserBody>,
) -> Result<Response, ApiError> {
    let store = site.store.as_ref();
    let current = found(store, &username).await?;
    if body.password.as_ref().is_some_and(String::is_empty) {
        return Err(ApiError::BadRequest("the new password is empty".into()));
    }
    let permissions = new_permissions(&current, &mut body)?;
    check_user_change(&caller, &username, Some(&current), permissions.as_deref())?;
    let change = ops::UserChange {
        permissions,
        roles: body.roles,
        disabled: body.disabled,
        password: body.password.map(Secret::new),
    };
    ops::change_user(store, &site.server.load_full(), &username, change).await?;
    tracing::info!(admin_token = %caller, username = %username, "user updated");
    Ok(reply(StatusCode::OK, records::user(&found(store, &username).await?)))
}

/// `POST {base}/api/users/{username}/sign-out`: "sign out everywhere", as
/// the Users page's button: every sign-in session of the user ends and
/// their back-channel logouts are sent.
pub(crate) async fn sign_out_user(
    caller: Caller,
    State(site): State<Arc<Site>>,
    Path(username): Path<String>,
) -> Result<Response, ApiError> {
    let store = site.store.as_ref();
    let user = found(store, &username).await?;
    check_sign_out(&caller, &user)?;
    ops::sign_out_everywhere(store, &username).await?;
    tracing::info!(admin_token = %caller, username = %username, "user signed out everywhere");
    Ok(reply(StatusCode::OK, serde_json::json!({ "signed_out": username })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::privilege::tests::user as admin;

    fn body(admin: Option<bool>, permissions: Option<&[&str]>) -> UserBody {
        UserBody {
            admin,
            permissions: permissions.map(|p| p.iter().map(|x| (*x).to_owned()).collect()),
            ..UserBody::default()
        }
    }

    #[test]
    fn admin_and_permissions_resolve_to_one_set() {
        let both = ["administer oauth", "manage oauth client secrets"];
        let none = admin(&[]);
        assert_eq!(new_permissions(&none, &mut body(None, None)).unwrap(), None);
        assert_eq!(
            new_permissions(&none, &mut body(Some(true), None)).unwrap(),
            Some(vec!["administer oauth".to_owned()])
        );
        assert_eq!(new_permissions(&admin(&both), &mut body(Some(true), None)).unwrap(), None, "kept");
        assert_eq!(new_permissions(&admin(&both), &mut body(Some(false), None)).unwrap(), Some(vec![]));
        assert!(new_permissions(&none, &mut body(Some(false), Some(&both))).is_err());
        assert_eq!(new_permissions(&none, &mut body(None, Some(&both))).unwrap().unwrap().len(), 2);
    }
}
