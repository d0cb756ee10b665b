//! The first routing step: paths the sidecar answers itself go to the axum
//! [`Router`]; everything else goes to the upstream through the front stack:
//!
//! ```text
//! with `gate:`     CORS (per consumer) -> bearer gate -> identity headers
//!                  -> provider token (`upstream_token` rules) -> reverse proxy
//! without `gate:`                                        identity headers -> reverse proxy
//! ```
//!
//! Nothing on this path is boxed: each connection builds its own stack once
//! ([`Dispatch::for_connection`]), and a request whose token the gate
//! already knows goes through the layers' own futures.
//!
//! The front is live ([`LiveFront`]): a configuration reload swaps it whole.
//! Each request reads it once and, when it is not the one the connection's
//! stack was built from, rebuilds the stack first, so kept-alive
//! connections follow a reload at their next request and every request is
//! judged entirely by one configuration, old or new.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::routing::future::RouteFuture;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{Either, Map};
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service};

use crate::gate::{
    BearerGate, BearerGateLayer, ConsumerCors, ConsumerCorsLayer, IdentityHeaders, IdentityHeadersLayer,
    UpstreamTokenLayer, UpstreamTokens,
};
use crate::listener::ClientBody;
use crate::mount::{Mount, OwnedPaths};
use crate::proxy::{self, ConnectionInfo, ResponseBody, ReverseProxy};

/// The request body on the way to the upstream: hyper's, or the copy the
/// gate put back after reading a form body for its token.
pub(crate) type ProxyBody = http_body_util::Either<ClientBody, Full<Bytes>>;

/// The router's response, in the proxy's body type.
type Routed = Map<
    RouteFuture<Infallible>,
    fn(Result<Response<Body>, Infallible>) -> Result<Response<ResponseBody>, Infallible>,
>;

/// The reverse proxy, knowing the connection it serves.
#[derive(Clone)]
pub(crate) struct ProxyAt {
    proxy: ReverseProxy<ProxyBody>,
    conn: ConnectionInfo,
}

impl Service<Request<ProxyBody>> for ProxyAt {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = proxy::ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ProxyBody>) -> proxy::ResponseFuture {
        self.proxy.start_from(self.conn, req)
    }
}

/// The layers in front of the proxy.
#[derive(Clone)]
pub(crate) struct Front {
    /// Always there: client-sent identity headers never reach the upstream.
    pub(crate) identity: IdentityHeadersLayer,
    /// With a `gate:` section.
    pub(crate) gate: Option<(ConsumerCorsLayer, BearerGateLayer)>,
    /// The provider tokens of `upstream_token` rules (with a `gate:` section).
    pub(crate) upstream_token: UpstreamTokenLayer,
}

/// The front in use, swapped whole when the configuration is reloaded.
pub(crate) type LiveFront = Arc<ArcSwap<Front>>;

type Plain = IdentityHeaders<ProxyAt>;
type Gated = ConsumerCors<BearerGate<IdentityHeaders<UpstreamTokens<ProxyAt>>>>;

#[derive(Clone)]
enum Stack {
    Plain(Plain),
    Gated(Gated),
}

impl Front {
    fn stack(&self, proxy: ProxyAt) -> Stack {
        match &self.gate {
            None => Stack::Plain(self.identity.layer(proxy)),
            Some((cors, bearer)) => {
                Stack::Gated(cors.layer(bearer.layer(self.identity.layer(self.upstream_token.layer(proxy)))))
            }
        }
    }
}

/// Sends owned paths to the router, the rest through the front stack to
/// the proxy. Each connection gets its own copy that knows the connection
/// ([`Dispatch::for_connection`]).
#[derive(Clone)]
pub(crate) struct Dispatch {
    router: Router,
    proxy: ReverseProxy<ProxyBody>,
    live: LiveFront,
    /// The front `stack` was built from.
    front: Arc<Front>,
    owned: Arc<OwnedPaths>,
    conn: ConnectionInfo,
    stack: Stack,
}

impl Dispatch {
    /// Owned paths go to `routes` (every role's mount, merged; its tasks
    /// taken out first), the rest through the front `live` holds to `proxy`.
    pub(crate) fn new(routes: Mount, proxy: ReverseProxy<ProxyBody>, live: LiveFront) -> Self {
        let (router, owned) = routes.into_parts();
        let conn = ConnectionInfo { peer: SocketAddr::from(([0, 0, 0, 0], 0)), tls: false };
        let front = live.load_full();
        let stack = front.stack(ProxyAt { proxy: proxy.clone(), conn });
        Dispatch { router, proxy, live, front, owned: Arc::new(owned), conn, stack }
    }

    /// A copy for the connection `conn`.
    pub(crate) fn for_connection(&self, conn: ConnectionInfo) -> Self {
        let front = self.live.load_full();
        let stack = front.stack(ProxyAt { proxy: self.proxy.clone(), conn });
        Dispatch { conn, stack, front, ..self.clone() }
    }

    /// Rebuilds the stack when the live front is not the one it was built from.
    fn follow_reload(&mut self) {
        let current = self.live.load();
        if !Arc::ptr_eq(&current, &self.front) {
            self.front = Arc::clone(&current);
            self.stack = self.front.stack(ProxyAt { proxy: self.proxy.clone(), conn: self.conn });
        }
    }
}

type GatedFuture = <Gated as Service<Request<ProxyBody>>>::Future;

impl Service<Request<ClientBody>> for Dispatch {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Either<Routed, Either<proxy::ResponseFuture, GatedFuture>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<ClientBody>) -> Self::Future {
        if self.owned.contains(req.uri().path()) {
            req.extensions_mut().insert(self.conn);
            return Either::Left(self.router.call(req).map(local as _));
        }
        self.follow_reload();
        let req = req.map(http_body_util::Either::Left);
        match &mut self.stack {
            Stack::Plain(s) => Either::Right(Either::Left(s.call(req))),
            Stack::Gated(s) => Either::Right(Either::Right(s.call(req))),
        }
    }
}

fn local(res: Result<Response<Body>, Infallible>) -> Result<Response<ResponseBody>, Infallible> {
    res.map(|res| res.map(http_body_util::Either::Right))
}
