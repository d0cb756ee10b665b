//! One site, one host name: cookies are kept per host name, so a page
//! opened at `127.0.0.1` while the public URL says `localhost` (or the
//! other way round) sets cookies that the provider's redirect back to the
//! public URL never carries: the authorization then looks "started in
//! another browser". The sign-in pages that start such a round trip send
//! the browser to the public URL first.
//!
//! Only loopback names on the same port are moved: they reach this very
//! listener, so no proxy in between can rewrite the `Host` and loop.

use std::net::IpAddr;

use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, HOST, LOCATION};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

/// A `307` to the same path and query at `public` (a URL whose origin is
/// the one the browser must use) when a GET or HEAD came in under another
/// loopback name for the same port; `None` otherwise.
pub(crate) fn public_address(
    public: &str,
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let public = url::Url::parse(public).ok()?;
    let (public_host, public_port) = (public.host_str()?, public.port_or_known_default()?);
    let asked =
        headers.get(HOST).and_then(|h| h.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str()))?;
    let asked = url::Url::parse(&format!("{}://{asked}", public.scheme())).ok()?;
    let (asked_host, asked_port) = (asked.host_str()?, asked.port_or_known_default()?);
    if asked_port != public_port
        || asked_host.eq_ignore_ascii_case(public_host)
        || !is_loopback(asked_host)
        || !is_loopback(public_host)
    {
        return None;
    }
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = HeaderValue::from_str(&format!("{}{path}", public.origin().ascii_serialization())).ok()?;
    tracing::info!(host = %asked_host, public = %public_host, "sending the browser to the public URL's host name");
    let mut res = StatusCode::TEMPORARY_REDIRECT.into_response();
    res.headers_mut().insert(LOCATION, location);
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(res)
}

/// `localhost` (and its subdomains), or a loopback address.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let lower = host.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(public: &str, method: Method, host: &str, path: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(host).unwrap());
        let uri: Uri = path.parse().unwrap();
        public_address(public, &method, &headers, &uri).map(|res| {
            assert_eq!(res.status(), StatusCode::TEMPORARY_REDIRECT);
            res.headers()[LOCATION].to_str().unwrap().to_owned()
        })
    }

    #[test]
    fn another_loopback_name_for_the_same_port_goes_to_the_public_url() {
        let public = "http://localhost:8080/oauth/return";
        assert_eq!(
            moved(public, Method::GET, "127.0.0.1:8080", "/oauth/start/mail?tag=a%20b").as_deref(),
            Some("http://localhost:8080/oauth/start/mail?tag=a%20b")
        );
        assert_eq!(
            moved("http://127.0.0.1:8080", Method::HEAD, "[::1]:8080", "/x").as_deref(),
            Some("http://127.0.0.1:8080/x")
        );
        assert_eq!(
            moved("http://localhost", Method::GET, "127.0.0.1", "/").as_deref(),
            Some("http://localhost/")
        );
    }

    #[test]
    fn the_public_host_other_ports_other_hosts_and_posts_stay() {
        let public = "http://localhost:8080";
        assert_eq!(moved(public, Method::GET, "localhost:8080", "/"), None);
        assert_eq!(moved(public, Method::GET, "LOCALHOST:8080", "/"), None);
        assert_eq!(
            moved(public, Method::GET, "127.0.0.1:9000", "/"),
            None,
            "another port: a proxy may be between"
        );
        assert_eq!(moved(public, Method::POST, "127.0.0.1:8080", "/"), None);
        assert_eq!(moved("https://app.example", Method::GET, "127.0.0.1:443", "/"), None);
        assert_eq!(moved(public, Method::GET, "app.example:8080", "/"), None);
    }
}
