//! [`ForwardAuth`]: the gate's decision for a request another proxy
//! describes, without proxying it (`gate.forward_auth`, default path
//! `/oauth/check`; docs/forward-auth.md has the proxies' snippets).
//!
//! An ingress that proxies by itself (nginx `auth_request`, Caddy
//! `forward_auth`, Traefik `ForwardAuth`, Envoy `ext_authz`) asks here
//! before it sends a request on. The request to judge is read from the
//! conventions each proxy uses:
//!
//! | proxy | path and query | method |
//! |---|---|---|
//! | Traefik, Caddy | `X-Forwarded-Uri` | `X-Forwarded-Method` |
//! | nginx (the documented snippet) | `X-Original-URI` | `X-Original-Method` |
//! | Envoy HTTP `ext_authz` | appended to the path: `{path}/api/x?q` | the check request's own |
//!
//! Every other header of the check request (`Authorization`, `Origin`, ...)
//! is taken as the original request's. Where a request is described more
//! than once, the descriptions must agree, else it is refused (400): a client
//! may have added the other proxy's headers to be judged on another path.
//! A check request that describes none is refused too.
//!
//! The description is believed only from a trusted peer: loopback, or an
//! address in `proxy.trusted_proxies`; anyone else gets `403`.
//!
//! The judgement is the gate's own, not a copy: the same
//! [`BearerGateLayer`] the reverse proxy path uses (route rules on the
//! canonical path, bearer token, scopes, the token's consumer's origins,
//! revocation) wraps a service that answers `200` with the identity headers
//! ([`IdentityHeadersLayer`]'s names) and no body; a refusal is the gate's
//! refusal, as [`GateError`] renders it (`401` with `WWW-Authenticate`,
//! `403` with `insufficient_scope`, ...). A token in a form body cannot be
//! seen here: the proxies send no body.
//!
//! ```
//! use oauth_sidecar::gate::rules::RouteRule;
//! use oauth_sidecar::gate::{BearerGateLayer, ForwardAuth, ForwardAuthSettings, GateSettings, IdentityHeadersLayer};
//!
//! let gate = BearerGateLayer::new(GateSettings::default().rule(RouteRule::public("/public/**"))).unwrap();
//! let check = ForwardAuth::new(ForwardAuthSettings::default(), gate, IdentityHeadersLayer::default());
//! let mount = check.mount();
//! assert!(mount.owned().contains("/oauth/check"));
//! assert!(mount.owned().contains("/oauth/check/api/records")); // Envoy's shape
//! ```

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::routing::any;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::uri::PathAndQuery;
use http::{Method, Response, Uri};
use tower::{Layer, Service, ServiceExt};

use super::bearer::BearerGateLayer;
use super::error::GateError;
use super::identity::{Identity, IdentityHeadersLayer, IdentitySettings};
use crate::config::types::TrustedProxy;
use crate::mount::Mount;
use crate::proxy::ConnectionInfo;

/// `X-Forwarded-Uri` (Traefik, Caddy).
const FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
/// `X-Forwarded-Method` (Traefik, Caddy).
const FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// `X-Original-URI` (nginx, set by the documented snippet).
const ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// `X-Original-Method` (nginx, set by the documented snippet).
const ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");

/// Where the endpoint answers and whom it believes, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthSettings {
    /// The endpoint's path (`/oauth/check`); Envoy appends the original
    /// path to it.
    pub path: String,
    /// Peers whose descriptions are believed, besides loopback.
    pub trusted_proxies: Vec<TrustedProxy>,
}

impl Default for ForwardAuthSettings {
    fn default() -> Self {
        ForwardAuthSettings { path: "/oauth/check".into(), trusted_proxies: Vec::new() }
    }
}

/// The forward-auth endpoint (see the module docs): the gate and identity
/// header names the reverse proxy path uses, and the endpoint's settings.
#[derive(Debug, Clone)]
pub struct ForwardAuth {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ForwardAuthSettings,
    gate: GateSource,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Where the endpoint takes the gate it decides with, once per request: a
/// fixed one, or the one a configuration reload swapped in (`None` when the
/// running configuration has no gate with forward-auth: then it refuses).
type GateSource = Box<dyn Fn() -> Option<(BearerGateLayer, IdentityHeadersLayer)> + Send + Sync>;

impl ForwardAuth {
    /// The endpoint deciding with `bearer`, naming the identity as
    /// `identity` names it for the upstream.
    pub fn new(
        settings: ForwardAuthSettings,
        bearer: BearerGateLayer,
        identity: IdentityHeadersLayer,
    ) -> Self {
        Self::following(settings, move || Some((bearer.clone(), identity.clone())))
    }

    /// The endpoint deciding with whatever gate `gate` returns at each
    /// request: the sidecar passes the live one, so that a configuration
    /// reload changes the decisions of this endpoint as it changes the
    /// proxy path's. Where `gate` returns `None`, every request is refused.
    pub fn following(
        settings: ForwardAuthSettings,
        gate: impl Fn() -> Option<(BearerGateLayer, IdentityHeadersLayer)> + Send + Sync + 'static,
    ) -> Self {
        ForwardAuth { inner: Arc::new(Inner { settings, gate: Box::new(gate) }) }
    }

    /// The routes: `{path}` (Traefik, Caddy, nginx) and everything under
    /// `{path}/` (Envoy).
    pub fn mount(&self) -> Mount {
        let path = self.inner.settings.path.trim_end_matches('/');
        let this = self.clone();
        let handler = move |req: Request| {
            let this = this.clone();
            async move { this.decide(req).await }
        };
        Mount::new()
            .route(path, any(handler.clone()))
            .route(&format!("{path}/"), any(handler.clone()))
            .route(&format!("{path}/{{*original}}"), any(handler))
    }

    /// The gate's answer for the request `req` describes.
    pub async fn decide(&self, req: Request) -> Response<Body> {
        let inner = &*self.inner;
        let Some((bearer, identity)) = (inner.gate)() else {
            tracing::warn!(
                "forward-auth request while the running configuration has no gate with forward_auth; refused"
            );
            return GateError::Denied.into_response("");
        };
        let realm = bearer.realm();
        let peer = req.extensions().get::<ConnectionInfo>().map(|c| c.peer.ip());
        if !peer.is_some_and(|ip| self.trusts(ip)) {
            let peer = peer.map(|ip| ip.to_string()).unwrap_or_default();
            tracing::warn!(peer, "forward-auth request from an address that is not a trusted proxy; refused");
            return GateError::UntrustedProxy.into_response(realm);
        }
        let described = match describe(&inner.settings.path, req) {
            Ok(described) => described,
            Err(e) => {
                tracing::info!(reason = %e, "forward-auth request refused");
                return e.into_response(realm);
            }
        };
        let answer = Answer { identity };
        match bearer.layer(answer).oneshot(described).await {
            Ok(res) => res,
            Err(never) => match never {},
        }
    }

    /// Loopback, or a trusted proxy.
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_loopback() || crate::proxy::headers::is_trusted(&self.inner.settings.trusted_proxies, ip)
    }
}

/// The one value of `name`; `None` when absent, refused when repeated or
/// not text.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, GateError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(GateError::InvalidRequest(format!("{name} is sent more than once")));
    }
    value.to_str().map(Some).map_err(|_| GateError::InvalidRequest(format!("{name} is not text")))
}

/// The request the check request describes: method, path and query from
/// the proxy's convention, the other headers as sent, no body.
fn describe(path: &str, req: Request) -> Result<Request, GateError> {
    let bad = |m: String| GateError::InvalidRequest(m);
    let (parts, _) = req.into_parts();
    let headers = &parts.headers;
    let mut uris: Vec<(String, String)> = Vec::new();
    let mut methods: Vec<(String, Method)> = Vec::new();
    let base = path.trim_end_matches('/');
    if let Some(original) = parts.uri.path().strip_prefix(base).filter(|rest| rest.starts_with('/')) {
        let uri = match parts.uri.query() {
            Some(query) => format!("{original}?{query}"),
            None => original.to_owned(),
        };
        uris.push((format!("the path under {base}/"), uri));
        methods.push(("the request's method".into(), parts.method.clone()));
    }
    for name in [ORIGINAL_URI, FORWARDED_URI] {
        if let Some(uri) = single(headers, &name)? {
            uris.push((name.to_string(), uri.to_owned()));
        }
    }
    for name in [ORIGINAL_METHOD, FORWARDED_METHOD] {
        if let Some(method) = single(headers, &name)? {
            let method = Method::from_bytes(method.trim().as_bytes())
                .map_err(|_| bad(format!("{name} is not an HTTP method")))?;
            methods.push((name.to_string(), method));
        }
    }
    let Some((_, uri)) = uris.first() else {
        return Err(bad(format!(
            "no request to judge: send X-Forwarded-Uri (Traefik, Caddy), X-Original-URI (nginx), \
             or append the path to {base}/ (Envoy)"
        )));
    };
    if let Some((other, _)) = uris.iter().find(|(_, u)| u != uri) {
        return Err(bad(format!("{} and {other} describe different requests", uris[0].0)));
    }
    let method = match methods.first() {
        Some((first, method)) => {
            if let Some((other, _)) = methods.iter().find(|(_, m)| m != method) {
                return Err(bad(format!("{first} and {other} name different methods")));
            }
            method.clone()
        }
        None => parts.method.clone(),
    };
    let target = path_and_query(uri)
        .ok_or_else(|| bad("the described request's URI is not a path with an optional query".into()))?;

    let mut described = Request::new(Body::empty());
    *described.method_mut() = method;
    *described.uri_mut() = Uri::from(target);
    let mut headers = parts.headers;
    for name in
        [ORIGINAL_URI, FORWARDED_URI, ORIGINAL_METHOD, FORWARDED_METHOD, CONTENT_LENGTH, TRANSFER_ENCODING]
    {
        headers.remove(name);
    }
    *described.headers_mut() = headers;
    Ok(described)
}

/// A request target in origin form (`/api/x?q`), or the path and query of
/// one in absolute form (`http://host/api/x?q`, as a client may send it).
fn path_and_query(uri: &str) -> Option<PathAndQuery> {
    if uri.starts_with('/') {
        return uri.parse().ok();
    }
    let uri: Uri = uri.parse().ok()?;
    uri.scheme()?;
    uri.path_and_query().filter(|pq| pq.path().starts_with('/')).cloned()
}

/// What the gate wraps here instead of the reverse proxy: `200`, the
/// identity headers, no body. Each identity header is sent, empty when the
/// identity has no such part (or on a public route, without one): a proxy
/// that copies a header the answer lacks may set a placeholder instead
/// (Caddy 2.6 writes `{http.reverse_proxy.header.X-Auth-Subject}`), and
/// nginx sends no header for an empty value.
#[derive(Debug, Clone)]
struct Answer {
    identity: IdentityHeadersLayer,
}

impl Service<Request> for Answer {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let identity = req.extensions().get::<Arc<Identity>>();
        let mut res = Response::new(Body::empty());
        let settings: &IdentitySettings = self.identity.settings();
        settings.apply(res.headers_mut(), identity.map(|i| &**i));
        let names = &settings.names;
        for name in [&names.subject, &names.client, &names.scopes, &names.username] {
            if !res.headers().contains_key(name) {
                res.headers_mut().insert(name.clone(), HeaderValue::from_static(""));
            }
        }
        res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = uri.parse().unwrap();
        for (k, v) in headers {
            req.headers_mut().append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        req
    }

    #[test]
    fn each_proxys_convention_describes_the_request() {
        let traefik = check(
            "/oauth/check",
            &[
                ("x-forwarded-method", "DELETE"),
                ("x-forwarded-uri", "/api/x?y=1"),
                ("authorization", "Bearer t"),
            ],
        );
        let d = describe("/oauth/check", traefik).unwrap();
        assert_eq!((d.method().as_str(), d.uri().to_string().as_str()), ("DELETE", "/api/x?y=1"));
        assert_eq!(d.headers()["authorization"], "Bearer t");
        assert!(d.headers().get("x-forwarded-uri").is_none());

        let nginx = check("/oauth/check", &[("x-original-method", "POST"), ("x-original-uri", "/api/x")]);
        let d = describe("/oauth/check", nginx).unwrap();
        assert_eq!((d.method().as_str(), d.uri().path()), ("POST", "/api/x"));

        let mut envoy = check("/oauth/check/api/x?y=1", &[("content-length", "0")]);
        *envoy.method_mut() = Method::PUT;
        let d = describe("/oauth/check", envoy).unwrap();
        assert_eq!((d.method().as_str(), d.uri().to_string().as_str()), ("PUT", "/api/x?y=1"));
        assert!(d.headers().get("content-length").is_none());

        let d = describe("/oauth/check", check("/oauth/check/", &[])).unwrap();
        assert_eq!(d.uri().path(), "/", "Envoy asking about the root");

        let absolute = check("/oauth/check", &[("x-original-uri", "http://app.example/api/x?q")]);
        assert_eq!(describe("/oauth/check", absolute).unwrap().uri().to_string(), "/api/x?q");
    }

    #[test]
    fn missing_repeated_or_contradicting_descriptions_are_refused() {
        let refused = |req| matches!(describe("/oauth/check", req), Err(GateError::InvalidRequest(_)));
        assert!(refused(check("/oauth/check", &[])), "nothing described");
        assert!(refused(check("/oauth/check", &[("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")])));
        assert!(refused(check(
            "/oauth/check",
            &[("x-original-uri", "/admin"), ("x-forwarded-uri", "/public")]
        )));
        assert!(refused(check("/oauth/check/admin", &[("x-forwarded-uri", "/public")])));
        assert!(refused(check(
            "/oauth/check",
            &[("x-forwarded-uri", "/a"), ("x-original-method", "DELETE"), ("x-forwarded-method", "GET")]
        )));
        assert!(refused(check("/oauth/check", &[("x-forwarded-uri", "api/x")])), "not a path");
        assert!(refused(check("/oauth/check", &[("x-forwarded-uri", "/a"), ("x-forwarded-method", "GE T")])));
        // Agreeing descriptions are fine.
        assert!(!refused(check("/oauth/check", &[("x-original-uri", "/a"), ("x-forwarded-uri", "/a")])));
    }

    fn endpoint(trusted: &[&str]) -> ForwardAuth {
        use crate::gate::rules::RouteRule;
        use crate::gate::settings::GateSettings;
        let bearer =
            BearerGateLayer::new(GateSettings::default().rule(RouteRule::public("/public/**"))).unwrap();
        let settings = ForwardAuthSettings {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            ..ForwardAuthSettings::default()
        };
        ForwardAuth::new(settings, bearer, IdentityHeadersLayer::default())
    }

    fn from(peer: Option<&str>, uri: &str) -> Request {
        let mut req = check("/oauth/check", &[("x-forwarded-uri", uri), ("x-auth-subject", "admin")]);
        if let Some(peer) = peer {
            req.extensions_mut().insert(ConnectionInfo { peer: peer.parse().unwrap(), tls: false });
        }
        req
    }

    #[tokio::test]
    async fn descriptions_are_believed_from_loopback_and_trusted_proxies_only() {
        let open = endpoint(&["10.1.0.0/16"]);
        for peer in ["127.0.0.1:1234", "[::1]:1234", "[::ffff:127.0.0.1]:1234", "10.1.2.3:80"] {
            let res = open.decide(from(Some(peer), "/public/x")).await;
            assert_eq!(res.status(), 200, "{peer}");
            assert_eq!(res.headers()["x-auth-subject"], "", "{peer}: a client's identity is never echoed");
        }
        for peer in [Some("10.2.0.1:80"), Some("192.0.2.7:80"), None] {
            let res = open.decide(from(peer, "/public/x")).await;
            assert_eq!(res.status(), 403, "{peer:?}");
            assert!(res.headers().get("x-auth-subject").is_none());
        }
        let res = open.decide(from(Some("127.0.0.1:1"), "/private")).await;
        assert_eq!(res.status(), 403, "the gate's own refusal: no rule allows it");
    }
}
