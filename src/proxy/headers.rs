//! Header rewriting on the way to the upstream and back: hop-by-hop removal
//! (RFC 9110 section 7.6.1) and the forwarding headers `X-Forwarded-For`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded` (RFC 7239);
//! and our own cookies, which are not the upstream app's.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::TrustedProxy;

/// Headers that describe one connection, never forwarded (RFC 9110 section
/// 7.6.1, plus the non-standard `Proxy-Connection` and `Keep-Alive`).
/// `Trailer` is not among them: it names the trailer fields that follow the
/// body, end to end (RFC 9110 section 6.6.2), and without it hyper sends
/// no trailers on.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes the hop-by-hop headers and every header the `Connection` header
/// names. Returns the `Upgrade` value when the message asked for a protocol
/// upgrade (`Connection: upgrade`), so the caller can put it back.
///
/// `TE: trailers` stays (as just that): it says the client accepts trailer
/// fields, which the proxy relays end to end, and an upstream sends them
/// only when asked this way (RFC 9110 section 10.1.4).
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    // Most messages carry none: one pass over their few names is cheaper
    // than a hash lookup for each hop-by-hop name.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name) || name == header::PROXY_AUTHORIZATION) {
        return None;
    }
    let trailers =
        headers.get_all(header::TE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
            |coding| coding.split(';').next().is_some_and(|c| c.trim().eq_ignore_ascii_case("trailers")),
        );
    let mut upgrade_requested = false;
    let upgrade = headers.get(header::UPGRADE).cloned();
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<String> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
        for name in named {
            if name == "upgrade" {
                upgrade_requested = true;
            }
            // Headers the proxy relies on are never dropped this way.
            if name != "host" {
                headers.remove(name.as_str());
            }
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::PROXY_AUTHORIZATION);
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    upgrade.filter(|_| upgrade_requested)
}

/// [`remove_hop_by_hop`] for a client's request before any layer adds a
/// header of its own: a `Connection` header naming one (such as an identity
/// header) must not remove it later. A requested upgrade stays, as a bare
/// `Connection: upgrade` and its `Upgrade`, for the proxy to act on.
pub(crate) fn strip_client_hops(headers: &mut HeaderMap) {
    if let Some(proto) = remove_hop_by_hop(headers) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto);
    }
}

/// What the names of all the sidecar's cookies start with, after any `__Host-`.
const OWN_PREFIX: &str = "oauth_sidecar_";

/// Takes our session and CSRF cookies (any name starting `oauth_sidecar_`
/// or `__Host-oauth_sidecar_`) out of a request's `Cookie` headers, for a
/// request forwarded to the upstream app; a header left empty is removed.
pub(crate) fn strip_own_cookies(headers: &mut HeaderMap) {
    let own = |pair: &str| {
        let name = pair.trim_start().split('=').next().unwrap_or_default();
        name.strip_prefix("__Host-").unwrap_or(name).starts_with(OWN_PREFIX)
    };
    if !headers.get_all(header::COOKIE).iter().any(|v| v.to_str().is_ok_and(|v| v.split(';').any(own))) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| match v.to_str() {
            Ok(text) => {
                let rest: Vec<&str> =
                    text.split(';').map(str::trim).filter(|p| !p.is_empty() && !own(p)).collect();
                (!rest.is_empty()).then(|| HeaderValue::from_str(&rest.join("; ")).ok()).flatten()
            }
            Err(_) => Some(v.clone()),
        })
        .collect();
    headers.remove(header::COOKIE);
    for v in kept {
        headers.append(header::COOKIE, v);
    }
}

/// What the sidecar knows about the hop it received a request on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hop<'a> {
    /// The peer's address on the TCP connection.
    pub(crate) peer: SocketAddr,
    /// `https` on a TLS listener, else `http`.
    pub(crate) proto: &'static str,
    /// The host the client asked for (`Host` or the HTTP/2 `:authority`).
    pub(crate) host: Option<&'a HeaderValue>,
}

/// True when `ip` is one of the trusted proxies.
pub(crate) fn is_trusted(trusted: &[TrustedProxy], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    trusted.iter().any(|t| t.0.contains(&ip))
}

/// Sets the forwarding headers. From a trusted peer the incoming values are
/// kept and extended; from anyone else they are replaced, so a client cannot
/// claim another address.
pub(crate) fn set_forwarded(headers: &mut HeaderMap, hop: Hop<'_>, trusted: bool) {
    let peer_ip = hop.peer.ip();
    let peer_ip = match peer_ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer_ip, IpAddr::V4),
        v4 => v4,
    };
    let ip = IpText::new(peer_ip);
    let ip = ip.as_bytes();

    // X-Forwarded-For: append the peer to a trusted list, else start anew.
    let prior = if trusted { list_len(headers.get_all(&X_FORWARDED_FOR)) } else { 0 };
    let mut xff = Vec::with_capacity(prior + ip.len());
    if trusted {
        push_list(&mut xff, headers.get_all(&X_FORWARDED_FOR));
    }
    xff.extend_from_slice(ip);
    insert(headers, &X_FORWARDED_FOR, xff);

    // X-Forwarded-Proto and -Host: a trusted proxy's values stand.
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(hop.proto));
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match hop.host {
            Some(host) => {
                headers.insert(X_FORWARDED_HOST.clone(), host.clone());
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }

    // Forwarded (RFC 7239): one element per hop, comma-separated.
    let host = hop.host.and_then(|h| h.to_str().ok());
    let prior = if trusted { list_len(headers.get_all(header::FORWARDED)) } else { 0 };
    let own =
        "for=\"[]\"".len() + ip.len() + host.map_or(0, |h| ";host=\"\"".len() + h.len()) + ";proto=".len();
    let mut forwarded = Vec::with_capacity(prior + own + hop.proto.len());
    if trusted {
        push_list(&mut forwarded, headers.get_all(header::FORWARDED));
    }
    match peer_ip {
        IpAddr::V4(_) => {
            forwarded.extend_from_slice(b"for=");
            forwarded.extend_from_slice(ip);
        }
        IpAddr::V6(_) => {
            forwarded.extend_from_slice(b"for=\"[");
            forwarded.extend_from_slice(ip);
            forwarded.extend_from_slice(b"]\"");
        }
    }
    if let Some(host) = host {
        forwarded.extend_from_slice(b";host=\"");
        forwarded.extend_from_slice(host.as_bytes());
        forwarded.extend_from_slice(b"\"");
    }
    forwarded.extend_from_slice(b";proto=");
    forwarded.extend_from_slice(hop.proto.as_bytes());
    insert(headers, &header::FORWARDED, forwarded);
}

/// The length [`push_list`] writes.
fn list_len(values: header::GetAll<'_, HeaderValue>) -> usize {
    values
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.len() + 2)
        .sum()
}

/// Appends the non-empty values of a list header, each followed by `, `.
fn push_list(buf: &mut Vec<u8>, values: header::GetAll<'_, HeaderValue>) {
    for v in values.iter().filter_map(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()) {
        buf.extend_from_slice(v.as_bytes());
        buf.extend_from_slice(b", ");
    }
}

/// An address as `Display` writes it, on the stack (IPv4 without the
/// formatting machinery, which is most of the cost on the hot path).
struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> Self {
        let mut text = IpText { buf: [0; 48], len: 0 };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b".");
                    }
                    let digits = [b'0' + octet / 100, b'0' + octet / 10 % 10, b'0' + octet % 10];
                    let skip = if octet >= 100 {
                        0
                    } else if octet >= 10 {
                        1
                    } else {
                        2
                    };
                    text.push(&digits[skip..]);
                }
            }
            IpAddr::V6(v6) => {
                let _ = write!(text, "{v6}");
            }
        }
        text
    }

    fn push(&mut self, bytes: &[u8]) {
        // An IPv6 address is at most 45 characters: this never truncates.
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Inserts a value built to its exact size: it becomes the header value
/// without another copy.
fn insert(headers: &mut HeaderMap, name: &HeaderName, value: Vec<u8>) {
    match HeaderValue::from_maybe_shared(Bytes::from(value)) {
        Ok(v) => {
            headers.insert(name.clone(), v);
        }
        // Only reachable when a trusted proxy sent bytes that are not text.
        Err(_) => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_cookies_are_taken_out_and_the_apps_kept() {
        let mut h = cookie_headers(&[
            ("cookie", "app=1; __Host-oauth_sidecar_session=s; theme=dark"),
            ("cookie", "oauth_sidecar_csrf=c"),
        ]);
        strip_own_cookies(&mut h);
        let left: Vec<_> = h.get_all(header::COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        assert_eq!(left, ["app=1; theme=dark"]);
        let mut none = cookie_headers(&[("cookie", "__Host-oauth_sidecar_admin=a")]);
        strip_own_cookies(&mut none);
        assert!(none.get(header::COOKIE).is_none());
    }

    fn cookie_headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn connection_named_headers_are_removed_with_the_standard_ones() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip, trailers;q=0.5"),
            ("proxy-authorization", "Basic eA=="),
            ("x-kept", "yes"),
        ]);
        assert_eq!(remove_hop_by_hop(&mut h), None);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["x-kept"], "yes");
        assert_eq!(h["te"], "trailers", "only `trailers` of TE goes on");
        let mut h = map(&[("te", "gzip"), ("x-kept", "yes")]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
    }

    #[test]
    fn an_upgrade_request_reports_its_protocol() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert_eq!(remove_hop_by_hop(&mut h).unwrap(), "websocket");
        assert!(h.is_empty());
        let mut h = map(&[("upgrade", "websocket")]);
        assert_eq!(remove_hop_by_hop(&mut h), None, "Upgrade without Connection: upgrade is not a request");
        assert!(h.is_empty());
        let mut h = map(&[("proxy-authorization", "Basic eA=="), ("x-kept", "yes")]);
        assert_eq!(remove_hop_by_hop(&mut h), None);
        assert_eq!(h.len(), 1, "{h:?}");
        let mut h = map(&[("content-type", "text/plain"), ("x-kept", "yes")]);
        assert_eq!(remove_hop_by_hop(&mut h), None);
        assert_eq!(h.len(), 2, "{h:?}");
    }

    #[test]
    fn client_hops_go_but_an_upgrade_stays() {
        let mut h = map(&[("connection", "x-auth-subject, upgrade"), ("upgrade", "websocket"), ("te", "x")]);
        strip_client_hops(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        h.insert("x-auth-subject", HeaderValue::from_static("set later"));
        assert_eq!(remove_hop_by_hop(&mut h).unwrap(), "websocket");
        assert_eq!(h["x-auth-subject"], "set later");
    }

    #[test]
    fn forwarded_headers_from_untrusted_peers_are_replaced() {
        let host = HeaderValue::from_static("app.example");
        let hop = Hop { peer: "192.0.2.7:5000".parse().unwrap(), proto: "https", host: Some(&host) };
        let mut h = map(&[
            ("x-forwarded-for", "10.9.9.9"),
            ("forwarded", "for=10.9.9.9"),
            ("x-forwarded-proto", "http"),
        ]);
        set_forwarded(&mut h, hop, false);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.example");
        assert_eq!(h["forwarded"], "for=192.0.2.7;host=\"app.example\";proto=https");

        let mut h = map(&[
            ("x-forwarded-for", "10.9.9.9"),
            ("forwarded", "for=10.9.9.9"),
            ("x-forwarded-proto", "http"),
        ]);
        set_forwarded(&mut h, hop, true);
        assert_eq!(h["x-forwarded-for"], "10.9.9.9, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["forwarded"], "for=10.9.9.9, for=192.0.2.7;host=\"app.example\";proto=https");
    }

    #[test]
    fn ipv6_peers_are_quoted_in_forwarded() {
        let hop = Hop { peer: "[2001:db8::1]:443".parse().unwrap(), proto: "http", host: None };
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, hop, false);
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=http");
        assert!(!h.contains_key("x-forwarded-host"));
    }

    #[test]
    fn ipv4_peers_are_written_like_display() {
        for ip in ["0.0.0.0", "9.10.99.100", "127.0.0.1", "255.255.255.255", "10.0.200.7"] {
            assert_eq!(IpText::new(ip.parse().unwrap()).as_bytes(), ip.as_bytes());
        }
    }

    #[test]
    fn ipv6_peers_are_written_like_display() {
        for ip in ["::1", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe80::1:2:3:4"] {
            assert_eq!(IpText::new(ip.parse().unwrap()).as_bytes(), ip.as_bytes());
        }
    }

    #[test]
    fn long_trusted_chains_are_kept_whole() {
        let hop = Hop { peer: "192.0.2.7:5000".parse().unwrap(), proto: "http", host: None };
        let chain = vec!["10.1.2.3"; 60].join(", ");
        let mut h = map(&[("x-forwarded-for", &chain)]);
        set_forwarded(&mut h, hop, true);
        assert_eq!(h["x-forwarded-for"], format!("{chain}, 192.0.2.7").as_str());
    }

    #[test]
    fn trust_matches_networks_and_mapped_addresses() {
        let trusted = ["10.0.0.0/8".parse::<TrustedProxy>().unwrap()];
        assert!(is_trusted(&trusted, "10.2.3.4".parse().unwrap()));
        assert!(is_trusted(&trusted, "::ffff:10.2.3.4".parse().unwrap()));
        assert!(!is_trusted(&trusted, "192.168.1.1".parse().unwrap()));
    }
}
