//! The cookies of our pages. Each sign-in keeps its session cookie in its own
//! [`CookieScope`]; every cookie is `HttpOnly`, and `Secure` when the public
//! URL is https.
//!
//! - The session cookie holds 256 random bits; the store keeps only their
//!   SHA-256, with the kind of the sign-in that made it (`oauth`, `admin`),
//!   and a session counts only for its own kind: one cookie's value is
//!   refused as the other's. Under `/oauth/` it is `oauth_sidecar_session`,
//!   `SameSite=Lax` (a top-level navigation from the client's site to
//!   `/oauth/authorize` must carry it), scoped to `/oauth/` so the upstream
//!   app never sees it, and shared by `/oauth/authorize` and `/oauth/start`.
//!   The admin pages keep their own, stricter one.
//! - The CSRF cookie ([`super::csrf`]) lives beside the session cookie, on
//!   the same path: `oauth_sidecar_csrf` under `/oauth/`,
//!   `oauth_sidecar_admin_csrf` under the admin path.
//! - When the public URL is https, each of these names starts with
//!   `__Host-`, which the browser accepts only from this host, over https,
//!   for the path `/`: no other host of the domain can set or replace
//!   them. The path is then `/`, and the proxy takes these cookies out of
//!   the requests it forwards (`proxy::headers::strip_own_cookies`), so the upstream app
//!   still never sees them.

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

/// The login session cookie under `/oauth/` (with `__Host-` on https).
pub(crate) const SESSION_COOKIE: &str = "oauth_sidecar_session";

/// Where a sign-in's session and CSRF cookies live and how long a session lasts.
#[derive(Debug, Clone)]
pub(crate) struct CookieScope {
    /// The kind of session this sign-in makes and accepts (`oauth`, `admin`).
    pub(crate) kind: &'static str,
    /// The session cookie's name.
    pub(crate) name: String,
    /// The CSRF cookie's name.
    pub(crate) csrf_name: String,
    /// The cookies' `Path`, ending in `/`.
    pub(crate) path: String,
    /// The session cookie's `SameSite`.
    pub(crate) same_site: &'static str,
    /// Seconds without a request after which the session ends; `None`: only
    /// the session lifetime counts.
    pub(crate) idle: Option<i64>,
    /// The session's longest life in seconds; `None`: `server.session_ttl`.
    pub(crate) ttl: Option<i64>,
    /// The path the sign-in's pages live under (`/oauth/`, `/admin/`), even
    /// where the cookies' path is `/`: sign-in through a provider starts
    /// and returns under it, and comes back only to a page under it.
    pub(crate) home: String,
}

impl CookieScope {
    /// A scope of `kind` whose cookies are `session` and `csrf` on `path`;
    /// on https (`secure`) they are `__Host-` cookies on `/`.
    pub(crate) fn new(
        kind: &'static str,
        (session, csrf): (&str, &str),
        path: String,
        same_site: &'static str,
        secure: bool,
    ) -> Self {
        let name = |n: &str| if secure { format!("__Host-{n}") } else { n.to_owned() };
        let home = path.clone();
        let path = if secure { "/".to_owned() } else { path };
        CookieScope {
            home,
            kind,
            name: name(session),
            csrf_name: name(csrf),
            path,
            same_site,
            idle: None,
            ttl: None,
        }
    }

    /// The session of `/oauth/authorize` and `/oauth/start`: `oauth_sidecar_session` on `/oauth/`.
    pub(crate) fn oauth(secure: bool) -> Self {
        CookieScope::new("oauth", (SESSION_COOKIE, "oauth_sidecar_csrf"), "/oauth/".into(), "Lax", secure)
    }
}

/// The value of the cookie `name` in the request, if sent.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value scoped to `path`; `max_age: Some(0)` deletes it.
pub(crate) fn set_cookie(
    path: &str,
    name: &str,
    value: &str,
    max_age: Option<u64>,
    same_site: &str,
    secure: bool,
) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path={path}; HttpOnly; SameSite={same_site}");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    // Names and values are ours: ASCII without controls.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A header map of `pairs`, for tests.
#[cfg(test)]
pub(crate) fn headers_of(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(*k, HeaderValue::from_str(v).unwrap());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_several_headers() {
        let h = headers_of(&[("cookie", "a=1; b=2"), ("cookie", "oauth_sidecar_csrf=xyz")]);
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "oauth_sidecar_csrf"), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn https_scopes_use_host_cookies_on_the_root_path() {
        let plain = CookieScope::oauth(false);
        assert_eq!((plain.name.as_str(), plain.path.as_str()), ("oauth_sidecar_session", "/oauth/"));
        let secure = CookieScope::oauth(true);
        assert_eq!(secure.name, "__Host-oauth_sidecar_session");
        assert_eq!(secure.csrf_name, "__Host-oauth_sidecar_csrf");
        assert_eq!(secure.path, "/");
    }
}
