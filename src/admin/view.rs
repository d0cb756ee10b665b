//! The admin pages' templates and how a page is sent: the common values
//! (admin path, signed-in user, CSRF token), security headers that allow
//! no script and only our own stylesheet, and the CSRF cookie when new.

use std::path::Path;

use axum::response::{Html, IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use minijinja::{Environment, Value};

use super::auth::Viewer;
use crate::store::MANAGE_SECRETS;
use crate::web::pages::{TemplateError, environment, framing_and_caching_headers};

/// The built-in admin templates, by name.
const BUILT_IN: [(&str, &str); 13] = [
    ("layout.html", include_str!("../../templates/admin/layout.html")),
    ("message.html", include_str!("../../templates/admin/message.html")),
    ("consumers.html", include_str!("../../templates/admin/consumers.html")),
    ("consumer_form.html", include_str!("../../templates/admin/consumer_form.html")),
    ("consumer_saved.html", include_str!("../../templates/admin/consumer_saved.html")),
    ("confirm.html", include_str!("../../templates/admin/confirm.html")),
    ("users.html", include_str!("../../templates/admin/users.html")),
    ("user_form.html", include_str!("../../templates/admin/user_form.html")),
    ("providers.html", include_str!("../../templates/admin/providers.html")),
    ("provider.html", include_str!("../../templates/admin/provider.html")),
    ("client.html", include_str!("../../templates/admin/client.html")),
    ("token.html", include_str!("../../templates/admin/token.html")),
    ("grants.html", include_str!("../../templates/admin/grants.html")),
];

/// The stylesheet every admin page loads.
const STYLESHEET: &str = include_str!("../../templates/admin/admin.css");

/// The compiled admin templates, with the admin path they link to.
#[derive(Debug)]
pub struct AdminTemplates {
    env: Environment<'static>,
    stylesheet: String,
    base: String,
}

impl AdminTemplates {
    /// Compiles the built-in templates, each replaced by the file of the
    /// same name in `dir` (and `admin.css` too) when there is one.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let env = environment(dir, &BUILT_IN)?;
        let stylesheet = match dir.map(|d| d.join("admin.css")).filter(|p| p.exists()) {
            Some(path) => std::fs::read_to_string(&path).map_err(|e| TemplateError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
            None => STYLESHEET.to_owned(),
        };
        Ok(AdminTemplates { env, stylesheet, base: String::new() })
    }

    /// The same templates, linking under `base` (such as `/admin`).
    pub(crate) fn at(mut self, base: &str) -> Self {
        base.clone_into(&mut self.base);
        self
    }

    /// A page for a signed-in admin: `ctx` plus `base`, `title`, `user`
    /// (`username`, `secrets`), `csrf_token` and `section` (the nav entry).
    pub(crate) fn page(
        &self,
        viewer: &Viewer,
        name: &str,
        title: &str,
        section: &str,
        ctx: Value,
    ) -> Response {
        self.page_with_status(viewer, StatusCode::OK, name, title, section, ctx)
    }

    /// [`Self::page`] with another status (a form sent back with its errors).
    pub(crate) fn page_with_status(
        &self,
        viewer: &Viewer,
        status: StatusCode,
        name: &str,
        title: &str,
        section: &str,
        ctx: Value,
    ) -> Response {
        let user = minijinja::context! {
            username => viewer.user.username.clone(),
            secrets => viewer.may(MANAGE_SECRETS),
        };
        let ctx = minijinja::context! {
            title, section, user, csrf_token => viewer.csrf.clone(), base => self.base.clone(), ..ctx
        };
        let mut res = self.render(status, name, ctx);
        if let Some(cookie) = &viewer.csrf_cookie {
            res.headers_mut().append(SET_COOKIE, cookie.clone());
        }
        res
    }

    /// A message page without the signed-in navigation (errors before or
    /// outside a session).
    pub(crate) fn error(&self, status: StatusCode, title: &str, message: &str) -> Response {
        self.render(status, "message.html", minijinja::context! { title, message, base => self.base.clone() })
    }

    /// A page with one link to `uri` on this site (see `auth::viewer` on
    /// cross-site navigations).
    pub(crate) fn continue_to(&self, uri: &http::Uri) -> Response {
        let target = uri.path_and_query().map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
        let ctx = minijinja::context! {
            title => "Continue", message => "You are back from another site.", link => target,
            link_label => "Continue to the admin page", base => self.base.clone(),
        };
        self.render(StatusCode::OK, "message.html", ctx)
    }

    /// The 403 page for a signed-in user who may not see a page; it offers
    /// sign-out, so another user can sign in.
    pub(crate) fn forbidden(&self, message: &str, csrf: &str) -> Response {
        let ctx = minijinja::context! {
            title => "Access denied", message, signout => true, csrf_token => csrf, base => self.base.clone(),
        };
        self.render(StatusCode::FORBIDDEN, "message.html", ctx)
    }

    /// The 500 page for a failure the admin cannot fix (logged, not shown).
    pub(crate) fn failure(&self, e: &dyn std::fmt::Display) -> Response {
        tracing::error!(error = %e, "admin page failed");
        self.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Server error",
            "The server could not handle the request. Try again later.",
        )
    }

    /// The stylesheet.
    pub(crate) fn stylesheet(&self) -> Response {
        let mut res = self.stylesheet.clone().into_response();
        res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
        res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("private, max-age=300"));
        res
    }

    fn render(&self, status: StatusCode, name: &str, ctx: Value) -> Response {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => {
                let mut res = (status, Html(html)).into_response();
                admin_headers(res.headers_mut());
                res
            }
            Err(e) => {
                tracing::error!(template = name, error = %e, "an admin template failed to render");
                let mut res =
                    (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered\n").into_response();
                admin_headers(res.headers_mut());
                res
            }
        }
    }
}

/// The sign-in pages' headers, with our own stylesheet allowed.
fn admin_headers(headers: &mut HeaderMap) {
    framing_and_caching_headers(headers);
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src data:; base-uri 'none'; \
             frame-ancestors 'none'; form-action 'self'",
        ),
    );
}
