//! The streaming reverse proxy: every request the sidecar does not answer
//! itself goes to the upstream app through [`ReverseProxy`].
//!
//! Bodies stream in both directions (nothing is buffered, the request body is
//! counted against `max_body_size` as it passes), upstream connections are
//! kept alive in a pool, hop-by-hop headers are dropped and the forwarding
//! headers set ([`headers`]), and `Upgrade` requests (WebSocket) become a
//! byte tunnel ([`upgrade`]). Failures become short plain responses: 502 when
//! the upstream cannot be reached, 504 when it does not answer in time, 408
//! when the client stops sending the body (the listener's [`ReadTimeout`]),
//! 413 when the body is too large.
//!
//! ```no_run
//! use oauth_sidecar::proxy::{ProxySettings, ReverseProxy};
//!
//! let settings = ProxySettings::new("http://127.0.0.1:8000".parse().unwrap());
//! let proxy = ReverseProxy::new(settings);
//! // `proxy` is a `tower::Service<http::Request<axum::body::Body>>`: mount it
//! // with `axum::Router::fallback_service`, or serve it with hyper.
//! # drop(proxy);
//! ```

mod body_timeout;
mod error;
pub(crate) mod headers;
mod provider_token;
mod upgrade;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body_util::{Either, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::config::{ProxyConfig, TrustedProxy};
use crate::ops::{Metrics, trace};

pub use body_timeout::{BodyTimeout, ReadTimeout};
pub use error::ProxyError;
pub use provider_token::{ProviderTokenError, ProviderTokens};

/// Facts about the connection a request arrived on, put into the request's
/// extensions by the listener. Without it the proxy assumes a plain-HTTP
/// peer at `0.0.0.0:0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// True on a TLS listener.
    pub tls: bool,
}

/// How the proxy reaches the upstream and what it lets through.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The upstream origin (`http://host:port`).
    pub upstream: Uri,
    /// Pass the client's `Host` on (true) or let it become the upstream's.
    pub preserve_host: bool,
    /// Peers whose forwarding headers are kept and extended.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// Time allowed to open an upstream connection.
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's response headers.
    pub timeout: Duration,
    /// How long idle upstream connections stay pooled.
    pub pool_idle_timeout: Duration,
    /// Idle upstream connections kept.
    pub pool_max_idle: usize,
    /// Largest request body in bytes.
    pub max_body_size: u64,
}

impl ProxySettings {
    /// Settings with the configuration file's defaults for `upstream`.
    pub fn new(upstream: Uri) -> Self {
        Self::from_config(&ProxyConfig::default(), upstream)
    }

    /// Settings from the `proxy:` section of the configuration.
    pub fn from_config(config: &ProxyConfig, upstream: Uri) -> Self {
        ProxySettings {
            upstream,
            preserve_host: config.preserve_host,
            trusted_proxies: config.trusted_proxies.clone(),
            connect_timeout: config.connect_timeout.0,
            timeout: config.timeout.0,
            pool_idle_timeout: config.pool_idle_timeout.0,
            pool_max_idle: config.pool_max_idle,
            max_body_size: config.max_body_size.0,
        }
    }
}

/// A Tower service that forwards requests to the upstream app and streams
/// the answer back. Cheap to clone: clones share the connection pool.
///
/// `B` is the request body type: axum's [`Body`] by default, or hyper's
/// `Incoming` when serving straight from a hyper connection (no boxing).
pub struct ReverseProxy<B = Body> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for ReverseProxy<B> {
    fn clone(&self) -> Self {
        ReverseProxy { inner: self.inner.clone() }
    }
}

struct Inner<B> {
    client: Client<HttpConnector, Limited<B>>,
    scheme: Scheme,
    authority: Authority,
    settings: ProxySettings,
    metrics: Metrics,
}

impl ReverseProxy<Body> {
    /// A proxy to `settings.upstream` with its own connection pool.
    pub fn new(settings: ProxySettings) -> Self {
        Self::with_metrics(settings, Metrics::register())
    }
}

impl<B> ReverseProxy<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(crate) fn with_metrics(settings: ProxySettings, metrics: Metrics) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle)
            .build(connector);
        let scheme = settings.upstream.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority =
            settings.upstream.authority().cloned().unwrap_or_else(|| Authority::from_static("127.0.0.1"));
        ReverseProxy { inner: Arc::new(Inner { client, scheme, authority, settings, metrics }) }
    }

    /// Forwards one request; every failure is already a response.
    pub async fn forward(&self, req: Request<B>) -> Response<ResponseBody> {
        match self.start(req).await {
            Ok(res) => res,
            Err(never) => match never {},
        }
    }

    /// Rewrites the request for the upstream and sends it; the returned
    /// future waits for the response headers (or the timeout). The
    /// connection facts come from the request's extensions.
    fn start(&self, req: Request<B>) -> ResponseFuture {
        let conn = req
            .extensions()
            .get::<ConnectionInfo>()
            .copied()
            .unwrap_or(ConnectionInfo { peer: SocketAddr::from(([0, 0, 0, 0], 0)), tls: false });
        self.start_from(conn, req)
    }

    /// [`Self::start`] for a caller that knows the connection: the request
    /// needs no extension (whose map costs three allocations per request).
    pub(crate) fn start_from(&self, conn: ConnectionInfo, req: Request<B>) -> ResponseFuture {
        let inner = &*self.inner;
        let settings = &inner.settings;
        let span = trace::enabled().then(|| upstream_span(req.method(), &inner.authority));
        let state = match self.prepare(conn, req) {
            Ok((mut req, client_upgrade)) => {
                if let Some(span) = &span {
                    trace::inject(span, req.headers_mut());
                }
                let started = Instant::now();
                let deadline = tokio::time::Instant::from_std(started) + settings.timeout;
                State::Waiting {
                    response: inner.client.request(req),
                    deadline: tokio::time::sleep_until(deadline),
                    started,
                    client_upgrade,
                }
            }
            Err(error) => State::Failed { error: Some(error) },
        };
        ResponseFuture {
            state,
            metrics: inner.metrics.clone(),
            timeout: settings.timeout,
            limit: settings.max_body_size,
            span,
        }
    }

    /// The upstream request: hop-by-hop headers dropped, forwarding headers
    /// set, URI pointed at the upstream; with the client's pending upgrade
    /// when it asked for one.
    fn prepare(
        &self,
        conn: ConnectionInfo,
        req: Request<B>,
    ) -> Result<(Request<Limited<B>>, Option<OnUpgrade>), ProxyError> {
        let inner = &*self.inner;
        let settings = &inner.settings;
        if let Some(len) = content_length(req.headers())
            && len > settings.max_body_size
        {
            return Err(ProxyError::BodyTooLarge { limit: settings.max_body_size });
        }

        let (mut parts, body) = req.into_parts();

        let upgrade = headers::remove_hop_by_hop(&mut parts.headers);
        headers::strip_own_cookies(&mut parts.headers);
        let client_upgrade = match (&upgrade, parts.version) {
            (Some(_), Version::HTTP_11) => parts.extensions.remove::<OnUpgrade>(),
            _ => None,
        };

        // HTTP/2 clients name the host in the URI, not in a Host header.
        let host = match parts.headers.get(header::HOST) {
            Some(h) => Some(h.clone()),
            None => parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        };
        let trusted = headers::is_trusted(&settings.trusted_proxies, conn.peer.ip());
        let hop = headers::Hop {
            peer: conn.peer,
            proto: if conn.tls { "https" } else { "http" },
            host: host.as_ref(),
        };
        headers::set_forwarded(&mut parts.headers, hop, trusted);
        match (settings.preserve_host, host) {
            (true, Some(host)) => {
                parts.headers.insert(header::HOST, host);
            }
            // The client sets Host from the upstream URI when none is given.
            _ => {
                parts.headers.remove(header::HOST);
            }
        }
        if let (Some(proto), Some(_)) = (&upgrade, &client_upgrade) {
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, proto.clone());
        }

        let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::builder()
            .scheme(inner.scheme.clone())
            .authority(inner.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
        parts.version = Version::HTTP_11;

        let req = Request::from_parts(parts, Limited::new(body, settings.max_body_size as usize));
        Ok((req, client_upgrade))
    }
}

/// The upstream call's span, a child of the request's: it ends when the
/// response headers arrive (or the call fails).
fn upstream_span(method: &http::Method, authority: &Authority) -> tracing::Span {
    tracing::info_span!(
        "upstream",
        otel.name = %method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        server.address = authority.host(),
        server.port = authority.port_u16(),
        http.response.status_code = tracing::field::Empty,
    )
}

/// The body of the proxy's responses: the upstream's body as hyper hands it
/// over (not boxed), or a short response the proxy wrote itself.
pub type ResponseBody = Either<Incoming, Body>;

/// Turns the upstream's response head into the client's: hop-by-hop
/// headers dropped, and a `101 Switching Protocols` joined into a tunnel.
fn finish(
    mut res: Response<Incoming>,
    client_upgrade: Option<OnUpgrade>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let upstream_upgrade = headers::remove_hop_by_hop(res.headers_mut());
    if res.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        match (client_upgrade, upstream_upgrade) {
            (Some(client), Some(proto)) => {
                let headers = res.headers_mut();
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(header::UPGRADE, proto);
                let upstream = hyper::upgrade::on(&mut res);
                upgrade::tunnel(client, upstream);
            }
            _ => return Err(ProxyError::BadUpgrade),
        }
    }
    Ok(res.map(Either::Left))
}

pin_project! {
    /// Response future of [`ReverseProxy`]: waits for the upstream's
    /// response headers for at most `proxy.timeout` (then 504), and turns
    /// every failure into its response.
    pub struct ResponseFuture {
        #[pin]
        state: State,
        metrics: Metrics,
        timeout: Duration,
        limit: u64,
        // The upstream call's span, with traces on; dropped (ended) with the answer.
        span: Option<tracing::Span>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        // The request failed before it was sent.
        Failed { error: Option<ProxyError> },
        // Sent; waiting for the response headers or the deadline.
        Waiting {
            #[pin]
            response: hyper_util::client::legacy::ResponseFuture,
            #[pin]
            deadline: Sleep,
            started: Instant,
            client_upgrade: Option<OnUpgrade>,
        },
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.state.project() {
            StateProj::Failed { error } => Err(error.take().expect("ResponseFuture polled after completion")),
            StateProj::Waiting { response, deadline, started, client_upgrade } => match response.poll(cx) {
                Poll::Ready(Ok(res)) => {
                    this.metrics.upstream_latency(started.elapsed());
                    finish(res, client_upgrade.take())
                }
                Poll::Ready(Err(err)) => Err(ProxyError::from_client(err, *this.limit)),
                Poll::Pending => match deadline.poll(cx) {
                    Poll::Ready(()) => Err(ProxyError::Timeout { after: *this.timeout }),
                    Poll::Pending => return Poll::Pending,
                },
            },
        };
        let res = result.unwrap_or_else(|err| {
            err.record(this.metrics);
            err.into_response().map(Either::Right)
        });
        if let Some(span) = this.span.take() {
            trace::record_status(&span, res.status());
        }
        Poll::Ready(Ok(res))
    }
}

impl<B> tower::Service<Request<B>> for ReverseProxy<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        self.start(req)
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}
