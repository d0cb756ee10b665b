//! CSRF protection for every form of ours: a random cookie
//! (`SameSite=Strict`) and, in each form, a keyed hash of it and of the
//! browser's session cookie (none before signing in). A post counts only
//! when the token matches both, so a page on another site can neither read
//! the token nor send the cookie, and a token is good for one session only:
//! a CSRF cookie planted in the browser beforehand does not make a token
//! for the session that follows.

use http::HeaderMap;

use super::cookie::cookie;
use super::secrets::{Secrets, is_token, random_token};

/// The hidden form field carrying the CSRF token.
pub(crate) const CSRF_FIELD: &str = "csrf_token";
const CSRF_PURPOSE: &str = "csrf";

/// What a token is the keyed hash of: the CSRF cookie's value and the
/// session's (both base64url, so the `.` between them is unambiguous).
fn bound(value: &str, session: Option<&str>) -> Vec<u8> {
    format!("{value}.{}", session.unwrap_or_default()).into_bytes()
}

/// The CSRF token for a form, for the CSRF cookie `name` and the session
/// cookie's value `session`, and the cookie to set when the browser has
/// none yet.
pub(crate) fn csrf_token(
    secrets: &Secrets,
    headers: &HeaderMap,
    name: &str,
    session: Option<&str>,
) -> (String, Option<String>) {
    match cookie(headers, name).filter(|v| is_token(v)) {
        Some(value) => (secrets.tag(CSRF_PURPOSE, &bound(value, session)), None),
        None => {
            let value = random_token();
            (secrets.tag(CSRF_PURPOSE, &bound(&value, session)), Some(value))
        }
    }
}

/// True when the form's token matches the browser's CSRF cookie `name`
/// and session cookie value `session`.
pub(crate) fn csrf_ok(
    secrets: &Secrets,
    headers: &HeaderMap,
    name: &str,
    session: Option<&str>,
    presented: Option<&str>,
) -> bool {
    match (cookie(headers, name).filter(|v| is_token(v)), presented) {
        (Some(value), Some(token)) => secrets.check_tag(CSRF_PURPOSE, &bound(value, session), token),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::cookie::headers_of as headers;

    const NAME: &str = "oauth_sidecar_csrf";

    #[test]
    fn csrf_tokens_hold_only_with_their_own_cookie_and_session() {
        let secrets = Secrets::with_key(b"k");
        let session = random_token();
        let s = Some(session.as_str());
        let (token, set) = csrf_token(&secrets, &HeaderMap::new(), NAME, s);
        let value = set.expect("a first visit gets a cookie");
        let with_cookie = headers(&[("cookie", &format!("{NAME}={value}"))]);
        assert!(csrf_ok(&secrets, &with_cookie, NAME, s, Some(&token)));
        assert!(!csrf_ok(&secrets, &with_cookie, NAME, s, None));
        assert!(!csrf_ok(&secrets, &HeaderMap::new(), NAME, s, Some(&token)));
        assert!(!csrf_ok(&secrets, &with_cookie, "other_csrf", s, Some(&token)), "another cookie name");
        let other = headers(&[("cookie", &format!("{NAME}={}", random_token()))]);
        assert!(!csrf_ok(&secrets, &other, NAME, s, Some(&token)));
        // Another session, or none, does not take this token.
        assert!(!csrf_ok(&secrets, &with_cookie, NAME, None, Some(&token)));
        assert!(!csrf_ok(&secrets, &with_cookie, NAME, Some(&random_token()), Some(&token)));
        // A second page view keeps the cookie and yields the same token.
        assert_eq!(csrf_token(&secrets, &with_cookie, NAME, s), (token, None));
    }
}
