//! The egress listener: the app's outbound calls, with a provider token.
//!
//! - `{prefix}...` of each `egress.routes` entry goes to `target` + the rest
//!   of the path (and the query), over TLS with rustls (web PKI roots plus
//!   `client.extra_ca_file`), through [`InjectTokenLayer`] with the route's
//!   client and tag. Bodies are buffered up to `egress.max_body_size`, so a
//!   request refused with 401 can be sent again after a refresh.
//! - `GET /oauth/tokens/{client}/{tag}` (token vending, only with
//!   `egress.vending_secret`, sent as `Authorization: Bearer SECRET`) answers
//!   the current access token as JSON; with `?format=xoauth2` (and
//!   optionally `user=`, default the resource owner's email) the base64
//!   SASL XOAUTH2 string for IMAP and SMTP.
//!
//! The listener binds loopback by default (`127.0.0.1:8081`): only the app
//! beside the sidecar should reach it. A request whose `Host` names another
//! host than a loopback name or one of `egress.hosts` is refused with 421,
//! so a web page cannot reach the listener through a DNS name it controls.
//! A listener on another address (`egress.allow_remote`) asks every request
//! for `Proxy-Authorization: Bearer` with `egress.remote_secret` (407
//! without), and the header goes no further. Refusals are JSON
//! `{"error": ..., "message": ...}`: 404 no route, 413 body too large, 503 no
//! usable token, 502 the API could not be reached, 504 it timed out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tower::{Layer, ServiceExt};
use tracing::Instrument;

use super::inject::{InjectError, InjectTarget, InjectToken, InjectTokenLayer, TokenSource};
use super::tokens::{TokenError, Tokens};
use crate::config::client::{ClientSecrets, EgressConfig, EgressRoute};
use crate::listener::{self, Limits, Listener};
use crate::ops::trace;

type Outbound = HttpClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

struct Route {
    prefix: String,
    target: String,
    service: InjectToken<Outbound>,
}

struct Egress {
    /// Replaced whole on reload ([`EgressRoutes`]).
    routes: ArcSwap<Vec<Route>>,
    /// What the routes send through, kept to build new ones on reload.
    outbound: Outbound,
    tokens: Arc<Tokens>,
    vending_hash: Option<[u8; 32]>,
    timeout: Duration,
    max_body: usize,
}

fn sha256(v: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, v);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The routes of `config`, longest prefix first (a more specific route wins).
fn build_routes(
    config: &[EgressRoute],
    tokens: &Arc<Tokens>,
    client: &Outbound,
) -> Result<Vec<Route>, String> {
    let mut routes = Vec::new();
    for r in config {
        let layer = InjectTokenLayer::builder()
            .source(tokens.clone() as Arc<dyn TokenSource>)
            .target(InjectTarget { client: r.client.value.clone(), tag: r.tag.clone() })
            .build()
            .map_err(|e| e.to_string())?;
        routes.push(Route {
            prefix: r.prefix.value.clone(),
            target: r.target.value.base(),
            service: layer.layer(client.clone()),
        });
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    Ok(routes)
}

/// The routes of a running egress listener, for a configuration reload to
/// replace (`egress.routes`); requests already routed finish on the old ones.
#[derive(Clone)]
pub struct EgressRoutes(Arc<Egress>);

impl std::fmt::Debug for EgressRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressRoutes").field("routes", &self.0.routes.load().len()).finish()
    }
}

impl EgressRoutes {
    /// Replaces every route with those of `routes`.
    pub fn replace(&self, routes: &[EgressRoute]) -> Result<(), String> {
        let built = build_routes(routes, &self.0.tokens, &self.0.outbound)?;
        self.0.routes.store(Arc::new(built));
        Ok(())
    }
}

/// The egress listener, bound and ready to serve.
pub struct EgressListener {
    listener: Listener,
    state: Arc<Egress>,
    router: Router,
    limits: Limits,
    grace: Duration,
}

impl std::fmt::Debug for EgressListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressListener").field("addr", &self.local_addr()).finish()
    }
}

impl EgressListener {
    /// Binds `config.listen` and builds the routes; `secrets` holds the
    /// vending and remote secrets the configuration read.
    pub async fn bind(
        config: &EgressConfig,
        secrets: &ClientSecrets,
        tokens: Arc<Tokens>,
        tls: rustls::ClientConfig,
    ) -> Result<Self, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let client: Outbound = HttpClient::builder(TokioExecutor::new()).build(https);
        let routes = build_routes(&config.routes, &tokens, &client)?;
        let state = Arc::new(Egress {
            routes: ArcSwap::from_pointee(routes),
            outbound: client,
            tokens,
            vending_hash: secrets.vending_secret.as_ref().map(|s| sha256(s.expose().as_bytes())),
            timeout: config.timeout.0,
            max_body: usize::try_from(config.max_body_size.0).unwrap_or(usize::MAX),
        });
        let reach = Arc::new(Reach::new(config, secrets));
        let router = Router::new()
            .route("/oauth/tokens/{client}/{tag}", axum::routing::get(vend))
            .fallback(forward)
            .with_state(state.clone())
            .layer(middleware::from_fn_with_state(reach, guard));
        let listener = Listener::bind_plain(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {} (egress.listen): {e}", config.listen))?;
        let defaults = crate::config::Config::default();
        Ok(EgressListener {
            listener,
            state,
            router,
            limits: Limits::from_config(&defaults),
            grace: defaults.shutdown_grace.0,
        })
    }

    /// Holds the listener to the `listener:` limits of `config` (the same as
    /// the public listener's) and drains for its `shutdown_grace`.
    pub(crate) fn limited_by(self, config: &crate::config::Config) -> Self {
        EgressListener { limits: Limits::from_config(config), grace: config.shutdown_grace.0, ..self }
    }

    /// The routes, for a reload to replace.
    pub fn routes(&self) -> EgressRoutes {
        EgressRoutes(self.state.clone())
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets open requests finish:
    /// the same listener as the public one, with the same limits.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let router = self.router;
        listener::serve(self.listener, |_| router.clone(), self.limits, shutdown, self.grace).await;
    }
}

/// Who may use the listener: which `Host` names it answers to, and the
/// secret remote callers send.
struct Reach {
    /// `egress.hosts`, lower-cased.
    hosts: Vec<String>,
    /// Whether `Host` is checked: always on a loopback listener; on a remote
    /// one only when `egress.hosts` names the hosts (its callers use names
    /// the sidecar cannot know, and must send the secret anyway).
    check_host: bool,
    /// SHA-256 of `egress.remote_secret`.
    secret_hash: Option<[u8; 32]>,
}

impl Reach {
    fn new(config: &EgressConfig, secrets: &ClientSecrets) -> Self {
        Reach {
            hosts: config.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            check_host: !config.allow_remote || !config.hosts.is_empty(),
            secret_hash: secrets.remote_secret.as_ref().map(|s| sha256(s.expose().as_bytes())),
        }
    }

    /// True when `host` (a `Host` value, port optional) names this listener.
    fn answers_to(&self, host: &str) -> bool {
        let Ok(authority) = host.parse::<http::uri::Authority>() else { return false };
        let name = authority.host().to_ascii_lowercase();
        let ip = name.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>();
        name == "localhost" || ip.is_ok_and(|ip| ip.is_loopback()) || self.hosts.contains(&name)
    }
}

/// Refuses requests that name another host (421) or lack the remote secret
/// (407), and removes the secret before anything else sees the request.
async fn guard(State(reach): State<Arc<Reach>>, mut req: Request<Body>, next: Next) -> Response {
    let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
    let host = host.or_else(|| req.uri().authority().map(|a| a.as_str()));
    if reach.check_host && !host.is_some_and(|h| reach.answers_to(h)) {
        tracing::warn!(host = host.unwrap_or("(none)"), "egress request for another host refused");
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected",
            "this listener answers only to its own address (a loopback name or egress.hosts) in Host",
        );
    }
    if let Some(expected) = reach.secret_hash {
        let presented = req
            .headers()
            .get(http::header::PROXY_AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|s| sha256(s.trim().as_bytes()));
        if presented != Some(expected) {
            tracing::warn!("egress request without the remote secret refused");
            let mut res = refuse(
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "proxy_authentication_required",
                "send egress.remote_secret as Proxy-Authorization: Bearer",
            );
            res.headers_mut()
                .insert(http::header::PROXY_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            return res;
        }
    }
    req.headers_mut().remove(http::header::PROXY_AUTHORIZATION);
    next.run(req).await
}

fn refuse(status: StatusCode, error: &str, message: &str) -> Response {
    let mut res = (status, axum::Json(json!({ "error": error, "message": message }))).into_response();
    res.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    res
}

fn token_refusal(e: &TokenError) -> Response {
    let code = match e {
        TokenError::NotFound { .. } => "no_token",
        TokenError::NeedsReauthorization { .. } => "needs_reauthorization",
        TokenError::Unavailable { .. } => "token_unavailable",
        TokenError::Internal(_) => "internal",
    };
    refuse(StatusCode::SERVICE_UNAVAILABLE, code, &e.to_string())
}

/// Relays one call of the app to its route's target. With traces on, the
/// call is an `egress` span continuing the app's `traceparent`, and the
/// target gets a `traceparent` naming it.
async fn forward(State(egress): State<Arc<Egress>>, req: Request<Body>) -> Response {
    let span = trace::span_if_enabled(|| {
        let span = tracing::info_span!(
            "egress",
            otel.name = %format_args!("egress {}", req.method()),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = %req.method(),
            url.path = req.uri().path(),
            http.response.status_code = tracing::field::Empty,
        );
        trace::continue_from(&span, req.headers());
        span
    });
    let res = relay(&egress, req, &span).instrument(span.clone()).await;
    trace::record_status(&span, res.status());
    res
}

async fn relay(egress: &Egress, req: Request<Body>, span: &tracing::Span) -> Response {
    let path = req.uri().path().to_owned();
    let routes = egress.routes.load_full();
    let Some(route) = routes.iter().find(|r| path.starts_with(&r.prefix)) else {
        return refuse(StatusCode::NOT_FOUND, "no_route", "no egress route matches this path");
    };
    let rest = &path[route.prefix.len()..];
    let mut target = format!("{}/{rest}", route.target);
    if let Some(q) = req.uri().query() {
        target.push('?');
        target.push_str(q);
    }
    let Ok(uri) = target.parse::<http::Uri>() else {
        return refuse(StatusCode::BAD_REQUEST, "bad_path", "the path does not make a valid target URL");
    };
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, egress.max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than egress.max_body_size",
            );
        }
    };
    let mut headers = parts.headers;
    crate::proxy::headers::remove_hop_by_hop(&mut headers);
    strip_outbound(&mut headers);
    trace::inject(span, &mut headers);
    let mut out = Request::new(Full::new(body));
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;
    let call = route.service.clone().oneshot(out);
    let res = match tokio::time::timeout(egress.timeout, call).await {
        Ok(Ok(res)) => res,
        Ok(Err(InjectError::Token(e))) => {
            tracing::warn!(path = %route.prefix, error = %e, "egress call without a usable token");
            return token_refusal(&e);
        }
        Ok(Err(InjectError::Inner(e))) => {
            tracing::warn!(path = %route.prefix, error = %e, "egress call failed");
            return refuse(
                StatusCode::BAD_GATEWAY,
                "unreachable",
                &format!("the API could not be reached: {e}"),
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the API did not answer within egress.timeout",
            );
        }
    };
    let (mut parts, body) = res.into_parts();
    crate::proxy::headers::remove_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Body::new(body))
}

/// Headers the app must not send on: the API's host comes from the target,
/// and the token from the sidecar.
fn strip_outbound(headers: &mut HeaderMap) {
    headers.remove(http::header::HOST);
    headers.remove(http::header::AUTHORIZATION);
}

async fn vend(
    State(egress): State<Arc<Egress>>,
    Path((client, tag)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(expected) = egress.vending_hash else {
        return refuse(
            StatusCode::NOT_FOUND,
            "vending_off",
            "token vending is off (set egress.vending_secret)",
        );
    };
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|s| sha256(s.trim().as_bytes()));
    if presented != Some(expected) {
        tracing::warn!(client = %client, "token vending refused: wrong or missing shared secret");
        let mut res = refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the vending secret as Authorization: Bearer",
        );
        res.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        return res;
    }
    let token = match egress.tokens.access_token(&client, &tag).await {
        Ok(t) => t,
        Err(e) => return token_refusal(&e),
    };
    let q: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let now = crate::clock::now();
    let body = if get("format").as_deref() == Some("xoauth2") {
        let Some(user) = get("user").or_else(|| token.owner_email.clone()) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "no_user",
                "give user= (the token has no resource owner email)",
            );
        };
        if user.contains('\u{1}') {
            return refuse(StatusCode::BAD_REQUEST, "bad_user", "the user name has a control character");
        }
        json!({ "user": user, "xoauth2": super::xoauth2(&user, token.access_token.expose()) })
    } else {
        json!({
            "client": client,
            "tag": tag,
            "token_type": "Bearer",
            "access_token": token.access_token.expose(),
            "expires_at": token.expires_at,
            "expires_in": token.expires_at.map(|e| (e - now).max(0)),
        })
    };
    tracing::info!(client = %client, tag = %tag, token_id = token.id, "token vended");
    let mut res = axum::Json(body).into_response();
    res.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a route behind the guard sees of a request with the right secret.
    #[tokio::test]
    async fn the_remote_secret_goes_no_further_than_the_guard() {
        let reach = Arc::new(Reach {
            hosts: vec![],
            check_host: false,
            secret_hash: Some(sha256(b"remote-secret-0123456789")),
        });
        let router = Router::new()
            .fallback(|headers: HeaderMap| async move {
                format!("{:?}", headers.get(http::header::PROXY_AUTHORIZATION))
            })
            .layer(middleware::from_fn_with_state(reach, guard));
        let req = Request::builder()
            .uri("/api/x")
            .header(http::header::HOST, "sidecar.internal")
            .header(http::header::PROXY_AUTHORIZATION, "Bearer remote-secret-0123456789")
            .body(Body::empty())
            .unwrap();
        let res = router.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"None");
    }
}
