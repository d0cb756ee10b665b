//! Browser state at the authorization server: the login session cookie, the
//! CSRF cookie and its token, and the sign-in throttle.
//!
//! - The session cookie holds 256 random bits; the store keeps only their
//!   SHA-256. It is `HttpOnly`, `SameSite=Lax` (a top-level navigation from
//!   the client's site to `/oauth/authorize` must carry it), `Secure` when the
//!   public URL is https, and scoped to `/oauth/` so the upstream app never
//!   sees it.
//! - CSRF: a random cookie (`SameSite=Strict`) and, in each form, a keyed
//!   hash of it. A post counts only when both are present and agree, so a
//!   page on another site can neither read the token nor send the cookie.
//! - Failed sign-ins are counted per account and per client address; once
//!   the account reaches `server.login_attempts`, or the address
//!   `server.login_attempts_per_address`, within `server.login_window`,
//!   sign-in is refused for that account or address until the window ends,
//!   before the password is even checked. Counts live in memory, per replica.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

use super::consumer::{Secrets, random_token};
use crate::config::types::TrustedProxy;
use crate::proxy::ConnectionInfo;

/// The login session cookie.
pub(crate) const SESSION_COOKIE: &str = "oauth_sidecar_session";
/// The CSRF cookie.
pub(crate) const CSRF_COOKIE: &str = "oauth_sidecar_csrf";
/// The hidden form field carrying the CSRF token.
pub(crate) const CSRF_FIELD: &str = "csrf_token";
const CSRF_PURPOSE: &str = "csrf";

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

/// A `Set-Cookie` value scoped to `/oauth/`; `max_age: Some(0)` deletes it.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    max_age: Option<u64>,
    same_site: &str,
    secure: bool,
) -> HeaderValue {
    set_cookie_at("/oauth/", name, value, max_age, same_site, secure)
}

/// A `Set-Cookie` value scoped to `path`; `max_age: Some(0)` deletes it.
pub(crate) fn set_cookie_at(
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

/// True when `value` looks like one of our random tokens (43 base64url
/// characters), so a forged cookie never reaches the store or a page.
pub(crate) fn is_token(value: &str) -> bool {
    value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

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

/// The client's address: the TCP peer, or, when the peer is a trusted proxy,
/// the nearest address in `X-Forwarded-For` that is not a trusted proxy.
pub(crate) fn client_ip(
    headers: &HeaderMap,
    conn: Option<&ConnectionInfo>,
    trusted: &[TrustedProxy],
) -> Option<IpAddr> {
    let peer = conn?.peer.ip();
    if !crate::proxy::headers::is_trusted(trusted, peer) {
        return Some(peer);
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if crate::proxy::headers::is_trusted(trusted, ip) => continue,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(peer)
}

/// Counts failed sign-ins per account and per address (see the module docs).
#[derive(Debug)]
pub(crate) struct Throttle {
    per_account: u32,
    per_address: u32,
    window: Duration,
    failures: moka::sync::Cache<String, Arc<AtomicU32>>,
}

impl Throttle {
    pub(crate) fn new(per_account: u32, per_address: u32, window: Duration) -> Self {
        let failures = moka::sync::Cache::builder().max_capacity(100_000).time_to_live(window).build();
        Throttle { per_account, per_address, window, failures }
    }

    fn keys(&self, username: &str, ip: Option<IpAddr>) -> [Option<(String, u32)>; 2] {
        [
            Some((format!("user:{username}"), self.per_account)),
            ip.map(|ip| (format!("ip:{ip}"), self.per_address)),
        ]
    }

    /// True when the account or the address has used up its attempts.
    pub(crate) fn blocked(&self, username: &str, ip: Option<IpAddr>) -> bool {
        self.keys(username, ip)
            .into_iter()
            .flatten()
            .any(|(k, limit)| self.failures.get(&k).is_some_and(|n| n.load(Ordering::Relaxed) >= limit))
    }

    /// Counts a failed attempt against the account and the address.
    pub(crate) fn failed(&self, username: &str, ip: Option<IpAddr>) {
        for (key, _) in self.keys(username, ip).into_iter().flatten() {
            self.failures.get_with(key, || Arc::new(AtomicU32::new(0))).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets the account's failures after a successful sign-in (the
    /// address keeps its count: one address guessing many accounts stays slow).
    pub(crate) fn succeeded(&self, username: &str) {
        self.failures.invalidate(&format!("user:{username}"));
    }

    /// How long a block lasts at most, for the page that says so.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn cookies_are_found_among_several_headers() {
        let h = headers(&[("cookie", "a=1; b=2"), ("cookie", "oauth_sidecar_csrf=xyz")]);
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, CSRF_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }

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

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".parse::<TrustedProxy>().unwrap()];
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.0.0.3")]);
        let via_proxy = ConnectionInfo { peer: "10.0.0.2:5000".parse().unwrap(), tls: false };
        assert_eq!(client_ip(&h, Some(&via_proxy), &trusted), Some("198.51.100.7".parse().unwrap()));
        let direct = ConnectionInfo { peer: "192.0.2.1:5000".parse().unwrap(), tls: false };
        assert_eq!(client_ip(&h, Some(&direct), &trusted), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(client_ip(&h, None, &trusted), None);
    }

    #[test]
    fn the_throttle_blocks_the_account_and_the_address_separately() {
        let t = Throttle::new(2, 2, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        t.failed("ann", Some(ip));
        assert!(!t.blocked("ann", Some(ip)));
        t.failed("ann", Some(other));
        assert!(t.blocked("ann", Some("192.0.2.3".parse().unwrap())), "the account is used up");
        assert!(!t.blocked("bob", Some(other)), "one failure from this address");
        t.failed("carl", Some(other));
        assert!(t.blocked("bob", Some(other)), "the address is used up");
        t.succeeded("ann");
        assert!(!t.blocked("ann", None));
    }
}
