//! The first routing step: paths the sidecar answers itself go to the axum
//! [`Router`]; everything else goes straight to the reverse proxy, so the
//! proxied hot path pays for one string comparison per owned path and
//! nothing else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::routing::future::RouteFuture;
use futures_util::FutureExt;
use futures_util::future::{Either, Map};
use http::{Request, Response};
use hyper::body::Incoming;
use tower::Service;

use crate::proxy::{self, ConnectionInfo, ResponseBody, ReverseProxy};

/// The router's response, in the proxy's body type.
type Routed = Map<
    RouteFuture<Infallible>,
    fn(Result<Response<Body>, Infallible>) -> Result<Response<ResponseBody>, Infallible>,
>;

/// Paths owned by the sidecar: exact paths, and prefixes ending in `/`.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedPaths {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl OwnedPaths {
    /// Adds an exact path such as `/healthz`.
    pub(crate) fn exact(mut self, path: &str) -> Self {
        self.exact.push(path.to_owned());
        self
    }

    /// Adds a prefix such as `/oauth/`: every path starting with it.
    pub(crate) fn prefix(mut self, prefix: &str) -> Self {
        self.prefixes.push(prefix.to_owned());
        self
    }

    fn contains(&self, path: &str) -> bool {
        self.exact.iter().any(|p| p == path) || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }
}

/// Sends owned paths to the router, the rest to the proxy. Each connection
/// gets its own copy that knows the connection ([`Dispatch::for_connection`]).
#[derive(Clone)]
pub(crate) struct Dispatch {
    router: Router,
    proxy: ReverseProxy<Incoming>,
    owned: Arc<OwnedPaths>,
    conn: ConnectionInfo,
}

impl Dispatch {
    pub(crate) fn new(router: Router, proxy: ReverseProxy<Incoming>, owned: OwnedPaths) -> Self {
        let conn = ConnectionInfo { peer: SocketAddr::from(([0, 0, 0, 0], 0)), tls: false };
        Dispatch { router, proxy, owned: Arc::new(owned), conn }
    }

    /// A copy for the connection `conn`.
    pub(crate) fn for_connection(&self, conn: ConnectionInfo) -> Self {
        Dispatch { conn, ..self.clone() }
    }
}

impl Service<Request<Incoming>> for Dispatch {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Either<Routed, proxy::ResponseFuture>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        if self.owned.contains(req.uri().path()) {
            req.extensions_mut().insert(self.conn);
            Either::Left(self.router.call(req).map(local as _))
        } else {
            Either::Right(self.proxy.start_from(self.conn, req))
        }
    }
}

fn local(res: Result<Response<Body>, Infallible>) -> Result<Response<ResponseBody>, Infallible> {
    res.map(|res| res.map(http_body_util::Either::Right))
}
