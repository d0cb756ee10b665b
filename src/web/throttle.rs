//! The sign-in throttle. Attempts are counted per account and per client
//! address, each one *before* its password is checked (a successful one is
//! taken back), so that parallel guesses cannot all pass the check before a
//! failure is counted. Once the account reaches `server.login_attempts`, or
//! the address `server.login_attempts_per_address`, within
//! `server.login_window`, attempts are refused for that account or address
//! until the window ends, without a check. Counts live in memory, per
//! replica, in a map of bounded size.
//!
//! The sign-in forms and the `password` grant share one throttle; failed
//! client authentications at the token endpoint have their own, per
//! `client_id` and per address, both at `server.login_attempts_per_address`.
//! The address is the TCP peer's, or the forwarded one behind a trusted proxy.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

/// One key's attempts within its window.
#[derive(Debug)]
struct Attempts {
    since: Instant,
    count: AtomicU32,
}

/// Counts sign-in attempts per account and per address (see the module docs).
#[derive(Debug)]
pub(crate) struct Throttle {
    per_account: u32,
    per_address: u32,
    window: Duration,
    attempts: moka::sync::Cache<String, Arc<Attempts>>,
}

impl Throttle {
    /// At most `per_account` attempts per account and `per_address` per
    /// address within `window`, not counting successful ones.
    pub(crate) fn new(per_account: u32, per_address: u32, window: Duration) -> Self {
        // Bounded: a flood from many addresses or for many accounts evicts
        // old counts instead of growing the map.
        let attempts = moka::sync::Cache::builder().max_capacity(100_000).time_to_live(window).build();
        Throttle { per_account, per_address, window, attempts }
    }

    fn keys(&self, account: &str, ip: Option<IpAddr>) -> [Option<(String, u32)>; 2] {
        [
            Some((format!("account:{account}"), self.per_account)),
            ip.map(|ip| (format!("ip:{ip}"), self.per_address)),
        ]
    }

    /// Counts an attempt against the account and the address *before* the
    /// password is checked, so that of many parallel guesses no more than
    /// the limit get checked. `Err` with how long until the block ends when
    /// either has used up its attempts (then nothing is counted).
    pub(crate) fn attempt(&self, account: &str, ip: Option<IpAddr>) -> Result<(), Duration> {
        let mut counted: Vec<Arc<Attempts>> = Vec::with_capacity(2);
        for (key, limit) in self.keys(account, ip).into_iter().flatten() {
            let entry = self
                .attempts
                .get_with(key, || Arc::new(Attempts { since: Instant::now(), count: AtomicU32::new(0) }));
            if entry.count.fetch_add(1, Ordering::AcqRel) >= limit {
                entry.count.fetch_sub(1, Ordering::AcqRel);
                for undo in counted {
                    undo.count.fetch_sub(1, Ordering::AcqRel);
                }
                let left = self.window.saturating_sub(entry.since.elapsed());
                return Err(left.max(Duration::from_secs(1)));
            }
            counted.push(entry);
        }
        Ok(())
    }

    /// Takes back an attempt that was never checked (the check was refused
    /// for lack of capacity).
    pub(crate) fn not_checked(&self, account: &str, ip: Option<IpAddr>) {
        for (key, _) in self.keys(account, ip).into_iter().flatten() {
            self.uncount(&key);
        }
    }

    /// A successful attempt: forgets the account's failures, and takes the
    /// attempt back from the address (which keeps its failures: one address
    /// guessing many accounts stays slow).
    pub(crate) fn succeeded(&self, account: &str, ip: Option<IpAddr>) {
        let [account, address] = self.keys(account, ip);
        if let Some((key, _)) = account {
            self.attempts.invalidate(&key);
        }
        if let Some((key, _)) = address {
            self.uncount(&key);
        }
    }

    fn uncount(&self, key: &str) {
        if let Some(entry) = self.attempts.get(key) {
            let _ = entry.count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
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
        assert!(t.attempt("ann", Some(ip)).is_ok());
        assert!(t.attempt("ann", Some(other)).is_ok());
        let left = t.attempt("ann", Some("192.0.2.3".parse().unwrap())).unwrap_err();
        assert!(left <= Duration::from_secs(60) && left >= Duration::from_secs(59), "the account is used up");
        assert!(t.attempt("bob", Some(other)).is_ok(), "one attempt from this address so far");
        assert!(t.attempt("carl", Some(other)).is_err(), "the address is used up");
        t.succeeded("ann", None);
        assert!(t.attempt("ann", None).is_ok());
        t.succeeded("bob", Some(other));
        assert!(t.attempt("dora", Some(other)).is_ok(), "a success is taken back from the address");
        t.not_checked("dora", Some(other));
        assert!(t.attempt("erin", Some(other)).is_ok(), "so is an attempt never checked");
    }
}
