//! The admin pages' handlers: sign-in and sign-out here, one module per
//! section (consumers, users, providers and their clients, grants).

pub(crate) mod consumers;
pub(crate) mod grants;
pub(crate) mod providers;
pub(crate) mod users;

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, RawQuery, State};
use axum::response::Response;
use http::header::SET_COOKIE;
use http::{HeaderMap, Method, StatusCode, Uri};
use serde::Deserialize;

use super::Site;
use super::auth::{self, Viewer, see_other};
use crate::proxy::ConnectionInfo;
use crate::store::ADMINISTER_OAUTH;
use crate::web::origin::public_address;
use crate::web::signin::LoginForm;

/// What the sign-in page shows as the site asking.
const LABEL: &str = "oauth-sidecar administration";

/// `GET {base}/`: the consumers page.
pub(crate) async fn home(State(site): State<Arc<Site>>, _: Viewer) -> Response {
    see_other(&format!("{}/consumers", site.base))
}

/// `GET {base}/admin.css`: for anyone but a signed-in user who may not use
/// the admin pages (the sign-in page needs no stylesheet of ours).
pub(crate) async fn stylesheet(State(site): State<Arc<Site>>, headers: HeaderMap) -> Response {
    match site.signin.current_user(&headers).await {
        Ok(Some(user)) if !user.may(ADMINISTER_OAUTH) => {
            auth::forbidden(&site, &headers, &user, ADMINISTER_OAUTH)
        }
        Ok(_) => site.templates.stylesheet(),
        Err(e) => site.templates.failure(&e),
    }
}

/// The query of the sign-in page.
#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

fn login_action(site: &Site, next: Option<&str>) -> String {
    match auth::safe_next(site, next) {
        Some(n) => {
            let n: String = url::form_urlencoded::byte_serialize(n.as_bytes()).collect();
            format!("{}/login?next={n}", site.base)
        }
        None => format!("{}/login", site.base),
    }
}

/// `GET {base}/login`: the sign-in form; a signed-in admin goes on to `next`.
pub(crate) async fn login_page(
    State(site): State<Arc<Site>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<Next>,
) -> Response {
    if let Some(moved) = public_address(&site.public_url, &Method::GET, &headers, &uri) {
        return moved;
    }
    match site.signin.current_user(&headers).await {
        Ok(Some(user)) if user.may(ADMINISTER_OAUTH) => {
            let next = auth::safe_next(&site, q.next.as_deref());
            see_other(next.unwrap_or(&format!("{}/consumers", site.base)))
        }
        Ok(Some(user)) => auth::forbidden(&site, &headers, &user, ADMINISTER_OAUTH),
        Ok(None) => {
            let action = login_action(&site, q.next.as_deref());
            let form = LoginForm { action: &action, label: LABEL, form_target: None };
            site.signin.login_page(&headers, &form, "", None, StatusCode::OK)
        }
        Err(e) => site.templates.failure(&e),
    }
}

/// `GET {base}/login/start`: sign-in through an outside provider begins.
pub(crate) async fn login_start(
    State(site): State<Arc<Site>>,
    headers: HeaderMap,
    conn: Option<axum::Extension<crate::proxy::ConnectionInfo>>,
    RawQuery(query): RawQuery,
) -> Response {
    site.signin.federated_start(&headers, conn.as_deref(), query.as_deref().unwrap_or_default()).await
}

/// `GET {base}/login/return`: the provider sends the browser back here.
pub(crate) async fn login_return(
    State(site): State<Arc<Site>>,
    headers: HeaderMap,
    conn: Option<axum::Extension<crate::proxy::ConnectionInfo>>,
    RawQuery(query): RawQuery,
) -> Response {
    site.signin.federated_return(&headers, conn.as_deref(), query.as_deref().unwrap_or_default()).await
}

/// `POST {base}/login`: checks the form (CSRF, throttle, password) and
/// starts a session; the browser comes back to the sign-in page's GET.
pub(crate) async fn login(
    State(site): State<Arc<Site>>,
    headers: HeaderMap,
    conn: Option<Extension<ConnectionInfo>>,
    Query(q): Query<Next>,
    body: Bytes,
) -> Response {
    let conn = conn.map(|Extension(c)| c);
    let action = login_action(&site, q.next.as_deref());
    let form = LoginForm { action: &action, label: LABEL, form_target: None };
    site.signin.post_form(&headers, conn.as_ref(), &body, &form).await
}

/// `POST {base}/logout`: ends the session (CSRF-checked, so another site
/// cannot sign an admin out) and shows the sign-in page's address.
pub(crate) async fn logout(State(site): State<Arc<Site>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = super::forms::Form::parse(&body);
    if !site.signin.csrf_ok(&headers, form.get(crate::web::csrf::CSRF_FIELD)) {
        return site.templates.error(
            StatusCode::FORBIDDEN,
            "Form expired",
            "The form expired or was not sent from this site. Open the page again.",
        );
    }
    match site.signin.sign_out(&headers).await {
        Ok(cookie) => {
            let mut res = see_other(&format!("{}/login", site.base));
            res.headers_mut().append(SET_COOKIE, cookie);
            res
        }
        Err(e) => site.templates.failure(&e),
    }
}

/// Any other admin path: 404 for an admin, the usual refusals for others.
pub(crate) async fn not_found(State(site): State<Arc<Site>>, _: Viewer) -> Response {
    site.templates.error(StatusCode::NOT_FOUND, "Not found", "There is no admin page here.")
}

/// A value for a page from a serializable one.
pub(crate) fn value(v: impl serde::Serialize) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(v))
}

/// A Unix time for a table: the UTC date and time, and how far from now,
/// the one way every admin page says it: under a minute, then whole
/// minutes, hours, days (never seconds beside minutes).
pub(crate) fn when(at: i64, now: i64) -> String {
    let delta = at.saturating_sub(now);
    let span = |s: i64| match s {
        s if s < 60 => None,
        s if s < 2 * 3600 => Some(format!("{} min", s / 60)),
        s if s < 2 * 86_400 => Some(format!("{} h", s / 3600)),
        s => Some(format!("{} days", s / 86_400)),
    };
    let stamp = utc(at);
    match span(delta.saturating_abs()) {
        None if delta >= 0 => format!("{stamp} (in under a minute)"),
        None => format!("{stamp} (under a minute ago)"),
        Some(span) if delta >= 0 => format!("{stamp} (in {span})"),
        Some(span) => format!("{stamp} ({span} ago)"),
    }
}

/// `YYYY-MM-DD HH:MM UTC` for a Unix time (proleptic Gregorian calendar,
/// days to civil date as in Howard Hinnant's `civil_from_days`).
fn utc(at: i64) -> String {
    let (days, secs) = (at.div_euclid(86_400), at.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_and_spans() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(when(1_700_000_060, 1_700_000_000), "2023-11-14 22:14 UTC (in 1 min)");
        assert_eq!(when(1_700_000_000, 1_700_000_118), "2023-11-14 22:13 UTC (1 min ago)");
        assert_eq!(when(1_700_000_000, 1_700_000_180), "2023-11-14 22:13 UTC (3 min ago)");
        assert_eq!(when(1_700_000_030, 1_700_000_000), "2023-11-14 22:13 UTC (in under a minute)");
        assert_eq!(when(1_700_000_000, 1_700_000_059), "2023-11-14 22:13 UTC (under a minute ago)");
        assert_eq!(when(1_700_000_000 + 3 * 3600, 1_700_000_000), "2023-11-15 01:13 UTC (in 3 h)");
        assert_eq!(when(1_700_000_000, 1_700_000_000 + 3 * 86_400), "2023-11-14 22:13 UTC (3 days ago)");
    }
}
