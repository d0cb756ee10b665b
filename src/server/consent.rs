//! The authorization server's consent page: which roles a consumer gets,
//! shown to the signed-in user before a third-party consumer (or
//! `prompt=consent`) receives a code. Its template, `consent.html`, loads
//! with the other pages ([`crate::web::pages`]).

use axum::response::Response;
use http::StatusCode;
use serde::Serialize;

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
pub(crate) fn page(pages: &Pages, view: &ConsentView<'_>, form_target: Option<&str>) -> Response {
    pages.render("consent.html", "Allow access?", view, StatusCode::OK, form_target)
}
