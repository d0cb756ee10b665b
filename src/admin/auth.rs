//! Who is asking: the signed-in admin behind a page request, checked for a
//! permission, and the CSRF token of every posted form.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::header::LOCATION;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, Uri};

use super::Site;
use super::forms::Form;
use crate::store::{ADMINISTER_OAUTH, UserRecord};
use crate::web::origin::public_address;

/// A signed-in admin on a page: the user, and the CSRF token for the
/// page's forms (with the cookie to set when the browser has none yet).
pub(crate) struct Viewer {
    pub(crate) user: UserRecord,
    pub(crate) csrf: String,
    pub(crate) csrf_cookie: Option<HeaderValue>,
}

impl Viewer {
    /// True when the admin holds `permission`.
    pub(crate) fn may(&self, permission: &str) -> bool {
        self.user.may(permission)
    }
}

impl super::privilege::Admin for Viewer {
    fn may(&self, permission: &str) -> bool {
        self.user.may(permission)
    }
}

/// `admin NAME`, for the logs.
impl std::fmt::Display for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "admin {}", self.user.username)
    }
}

/// The largest admin form body read.
const FORM_LIMIT: usize = 256 * 1024;

/// A page handler's signed-in admin with `administer oauth`; any other
/// request gets [`viewer`]'s answer instead of the handler's.
impl FromRequestParts<Arc<Site>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, site: &Arc<Site>) -> Result<Self, Response> {
        if let Some(moved) = public_address(&site.public_url, &parts.method, &parts.headers, &parts.uri) {
            return Err(moved);
        }
        viewer(site, &parts.headers, &parts.uri, ADMINISTER_OAUTH).await
    }
}

/// A posted admin form: the admin who sent it, with `administer oauth` and a
/// matching CSRF token (see [`poster`]), and its fields.
pub(crate) struct Posted {
    pub(crate) viewer: Viewer,
    pub(crate) form: Form,
}

impl FromRequest<Arc<Site>> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, site: &Arc<Site>) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let Ok(body) = axum::body::to_bytes(body, FORM_LIMIT).await else {
            return Err(site.templates.error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Form too large",
                "The form was larger than the admin pages accept.",
            ));
        };
        let (viewer, form) = poster(site, &parts.headers, &parts.uri, &body, ADMINISTER_OAUTH).await?;
        Ok(Posted { viewer, form })
    }
}

/// The admin behind a page request holding `administer oauth` and
/// `permission`; else the answer: the sign-in page for a browser without
/// a session, 403 for a user without the permission.
pub(crate) async fn viewer(
    site: &Arc<Site>,
    headers: &HeaderMap,
    uri: &Uri,
    permission: &str,
) -> Result<Viewer, Response> {
    let user = match site.signin.current_user(headers).await {
        Ok(Some(user)) => user,
        Ok(None) if cross_site(headers) => return Err(site.templates.continue_to(uri)),
        Ok(None) => return Err(to_sign_in(site, uri)),
        Err(e) => return Err(site.templates.failure(&e)),
    };
    if !user.may(ADMINISTER_OAUTH) || !user.may(permission) {
        tracing::warn!(username = %user.username, path = %uri.path(), permission, "admin page refused");
        return Err(forbidden(site, headers, &user, permission));
    }
    let (csrf, csrf_cookie) = site.signin.csrf_token(headers);
    Ok(Viewer { user, csrf, csrf_cookie })
}

/// [`viewer`] for a posted form, whose CSRF token must match the browser's
/// cookie; the form's fields.
pub(crate) async fn poster(
    site: &Arc<Site>,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
    permission: &str,
) -> Result<(Viewer, Form), Response> {
    let viewer = viewer(site, headers, uri, permission).await?;
    let form = Form::parse(body);
    if !site.signin.csrf_ok(headers, form.get(crate::web::csrf::CSRF_FIELD)) {
        tracing::warn!(username = %viewer.user.username, path = %uri.path(), "admin form refused: CSRF token");
        return Err(site.templates.error(
            StatusCode::FORBIDDEN,
            "Form expired",
            "The form expired or was not sent from this site. Open the page again.",
        ));
    }
    Ok((viewer, form))
}

/// True for a navigation that came from another site, for example the
/// redirect back from a provider's consent page through `/oauth/return`:
/// the browser leaves the `SameSite=Strict` session cookie out of it, so
/// "no session" may be wrong. Such a request gets a page with a link to the
/// same address; following it is a same-site navigation that carries the
/// cookie (and a browser that is really signed out gets the sign-in page then).
fn cross_site(headers: &HeaderMap) -> bool {
    headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
}

/// 303 to the sign-in page, which comes back to `uri` afterwards.
pub(crate) fn to_sign_in(site: &Site, uri: &Uri) -> Response {
    let back = uri.path_and_query().map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let next: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
    see_other(&format!("{}/login?next={next}", site.base))
}

/// A 303 redirect to a path of ours.
pub(crate) fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        res.headers_mut().insert(LOCATION, value);
    }
    res
}

/// The 403 page for a signed-in user, with a sign-out button.
pub(crate) fn forbidden(site: &Site, headers: &HeaderMap, user: &UserRecord, permission: &str) -> Response {
    let (csrf, cookie) = site.signin.csrf_token(headers);
    let message = if user.may(ADMINISTER_OAUTH) {
        format!("This page needs the permission “{permission}”, which {} does not have.", user.username)
    } else {
        format!("{} may not use the admin pages.", user.username)
    };
    let mut res = site.templates.forbidden(&message, &csrf);
    if let Some(cookie) = cookie {
        res.headers_mut().append(http::header::SET_COOKIE, cookie);
    }
    res
}

/// True when `next` is one of our admin paths (no open redirect after sign-in).
pub(crate) fn safe_next<'a>(site: &Site, next: Option<&'a str>) -> Option<&'a str> {
    next.filter(|n| {
        n.starts_with(&format!("{}/", site.base)) && !n.starts_with("//") && !n.contains(['\\', '\r', '\n'])
    })
}
