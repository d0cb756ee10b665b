//! CSRF protection for every form of ours: a random cookie
//! (`SameSite=Strict`) and, in each form, a keyed hash of it. A post counts
//! only when both are present and agree, so a page on another site can
//! neither read the token nor send the cookie.

use http::HeaderMap;

use super::cookie::cookie;
use super::secrets::{Secrets, is_token, random_token};

/// The CSRF cookie.
pub(crate) const CSRF_COOKIE: &str = "oauth_sidecar_csrf";
/// The hidden form field carrying the CSRF token.
pub(crate) const CSRF_FIELD: &str = "csrf_token";
const CSRF_PURPOSE: &str = "csrf";

/// The CSRF token for a form, and the cookie to set when the browser has
/// none yet.
pub(crate) fn csrf_token(secrets: &Secrets, headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, CSRF_COOKIE).filter(|v| is_token(v)) {
        Some(value) => (secrets.tag(CSRF_PURPOSE, value.as_bytes()), None),
        None => {
            let value = random_token();
            (secrets.tag(CSRF_PURPOSE, value.as_bytes()), Some(value))
        }
    }
}

/// True when the form's token matches the browser's CSRF cookie.
pub(crate) fn csrf_ok(secrets: &Secrets, headers: &HeaderMap, presented: Option<&str>) -> bool {
    match (cookie(headers, CSRF_COOKIE).filter(|v| is_token(v)), presented) {
        (Some(value), Some(token)) => secrets.check_tag(CSRF_PURPOSE, value.as_bytes(), token),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::cookie::headers_of as headers;

    #[test]
    fn csrf_tokens_hold_only_with_their_own_cookie() {
        let secrets = Secrets::with_key(b"k");
        let (token, set) = csrf_token(&secrets, &HeaderMap::new());
        let value = set.expect("a first visit gets a cookie");
        let with_cookie = headers(&[("cookie", &format!("{CSRF_COOKIE}={value}"))]);
        assert!(csrf_ok(&secrets, &with_cookie, Some(&token)));
        assert!(!csrf_ok(&secrets, &with_cookie, None));
        assert!(!csrf_ok(&secrets, &HeaderMap::new(), Some(&token)));
        let other = headers(&[("cookie", &format!("{CSRF_COOKIE}={}", random_token()))]);
        assert!(!csrf_ok(&secrets, &other, Some(&token)));
        // A second page view keeps the cookie and yields the same token.
        assert_eq!(csrf_token(&secrets, &with_cookie), (token, None));
    }
}
