//! The authorization server's consent step at `/oauth/authorize`: which
//! roles a consumer gets, shown to the signed-in user before a third-party
//! consumer (or `prompt=consent`) receives a code, and the form's answer.
//! First-party consumers skip it. Its template, `consent.html`, loads with
//! the other pages ([`crate::web::pages`]).

use axum::response::Response;
use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

use super::Inner;
use super::authorize::{AuthRequest, Params, Step, issue_code, label, login_page, refuse};
use super::policy::Roles;
use super::token::grant;
use crate::store::{StoreError, UserRecord};
use crate::web::pages::Pages;

/// A scope on the consent page.
#[derive(Debug, Clone, Serialize)]
pub struct ScopeView {
    /// The role's name, the value sent back when ticked.
    pub name: String,
    /// Its short label.
    pub label: String,
    /// What it allows.
    pub description: String,
}

/// The values of the consent page.
#[derive(Debug, Serialize)]
pub struct ConsentView<'a> {
    /// The consumer's label.
    pub client_label: &'a str,
    /// The signed-in user.
    pub username: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// The form's CSRF token.
    pub csrf_token: &'a str,
    /// True when the user may untick scopes (`limit_requested_access`).
    pub choice: bool,
    /// The roles to be granted.
    pub scopes: Vec<ScopeView>,
}

/// The consent page; its form posts back to the authorization request.
fn page(pages: &Pages, view: &ConsentView<'_>, form_target: Option<&str>) -> Response {
    pages.render("consent.html", "Allow access?", view, StatusCode::OK, form_target)
}

/// After sign-in: the consent page when needed, else the code.
pub(super) async fn proceed(
    server: &Inner,
    request: &AuthRequest,
    headers: &HeaderMap,
    user: &UserRecord,
    auth_time: i64,
    cookie: Option<HeaderValue>,
) -> Result<Step, StoreError> {
    let granted = grant(server, &request.consumer, Some(user), &request.requested);
    if !(request.consumer.third_party || request.prompt.consent) {
        return issue_code(server, request, headers, user, auth_time, &granted, cookie).await;
    }
    if request.prompt.none {
        return Ok(Step::Refuse(refuse("consent_required", "the user has not approved this client")));
    }
    let (csrf_token, new_csrf) = server.signin.csrf_token_for(headers, cookie.as_ref());
    let file = server.file.load();
    let scopes = granted
        .iter()
        .filter_map(|name| {
            let role = file.role_info.get(name)?;
            let label = if role.label.is_empty() { name.clone() } else { role.label.clone() };
            Some(ScopeView { name: name.clone(), label, description: role.description.clone() })
        })
        .collect();
    let view = ConsentView {
        client_label: label(&request.consumer),
        username: &user.username,
        action: &request.action,
        csrf_token: &csrf_token,
        choice: request.consumer.limit_requested_access,
        scopes,
    };
    let mut page = page(server.signin.pages(), &view, request.form_target.as_deref());
    for cookie in new_csrf.into_iter().chain(cookie) {
        page.headers_mut().append(SET_COOKIE, cookie);
    }
    Ok(Step::Page(page))
}

/// The consent form: deny, or allow the ticked scopes.
pub(super) async fn decide(
    server: &Inner,
    request: &AuthRequest,
    headers: &HeaderMap,
    form: &Params,
) -> Result<Step, StoreError> {
    let Some((user, auth_time)) = server.signin.current_session(headers).await? else {
        return Ok(login_page(
            server,
            request,
            headers,
            "",
            Some("Your session ended. Sign in again."),
            StatusCode::OK,
        ));
    };
    match form.one("decision") {
        Ok(Some("allow")) => {}
        Ok(Some("deny")) => {
            tracing::info!(username = %user.username, client_id = %request.consumer.client_id, "access denied by the user");
            return Ok(Step::Refuse(refuse("access_denied", "the user denied the request")));
        }
        _ => {
            return Ok(Step::Page(server.signin.pages().error(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The form is not one of this server's.",
            )));
        }
    }
    // With a choice, only what was both requested and left ticked counts,
    // so a forged form cannot widen the grant.
    let requested = if request.consumer.limit_requested_access {
        let ticked: Roles = form.all("scope").map(str::to_owned).collect();
        let file = server.file.load();
        request
            .requested
            .iter()
            .filter(|s| ticked.contains(*s) || !file.roles.contains(*s))
            .cloned()
            .collect()
    } else {
        request.requested.clone()
    };
    let granted = grant(server, &request.consumer, Some(&user), &requested);
    issue_code(server, request, headers, &user, auth_time, &granted, None).await
}
