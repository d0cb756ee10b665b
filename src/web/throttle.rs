//! The sign-in throttle. Failed sign-ins are counted per account and per
//! client address; once the account reaches `server.login_attempts`, or the
//! address `server.login_attempts_per_address`, within `server.login_window`,
//! sign-in is refused for that account or address until the window ends,
//! before the password is even checked. Counts live in memory, per replica.
//! The address is the TCP peer's, or the forwarded one behind a trusted proxy.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::HeaderMap;

use crate::config::types::TrustedProxy;
use crate::proxy::ConnectionInfo;

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
    /// At most `per_account` failures per account and `per_address` per
    /// address within `window`.
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
    use crate::web::cookie::headers_of as headers;

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
