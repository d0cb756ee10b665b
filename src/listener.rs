//! The public listener: TCP, optionally TLS (rustls), HTTP/1.1 and HTTP/2 on
//! the same port, and graceful shutdown that stops accepting, lets in-flight
//! requests finish within the grace time, then returns.
//!
//! The request head limit (`proxy.max_header_size`) holds for every request
//! of a connection: hyper's read buffer bounds only what it reads at once,
//! and a buffer grown on a kept-alive connection lets a later request's head
//! through, so each head is measured again before the service sees it
//! ([`head_size`]; 431 when over).

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{Either, Map, Ready, ready};
use http::{Request, Response, StatusCode, header};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::config::TlsConfig;
use crate::proxy::ConnectionInfo;

/// Time a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client gets to send a complete request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound listener, plain or TLS.
pub(crate) struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl Listener {
    /// Binds `addr`; with `tls`, loads the certificate and key first.
    pub(crate) async fn bind(addr: SocketAddr, tls: Option<&TlsConfig>) -> Result<Self, String> {
        let tls = tls.map(tls_acceptor).transpose()?;
        let tcp = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        Ok(Listener { tcp, tls })
    }

    /// The address actually bound (the port is known here when the
    /// configuration asked for port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// True when connections are TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

fn tls_acceptor(config: &TlsConfig) -> Result<TlsAcceptor, String> {
    let cert_path = &config.cert_file.value;
    let key_path = &config.key_file.value;
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("cannot read the TLS key {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| format!("the TLS certificate and key do not make a server config: {e}"))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// Serves the service `for_connection` makes for each connection on
/// `listener` until `shutdown` completes, then drains open connections for
/// at most `grace`.
///
/// The service must always be ready (`poll_ready` returns `Ready` at once):
/// the connection calls it directly, without waiting for readiness.
pub(crate) async fn serve<S, B>(
    listener: Listener,
    for_connection: impl Fn(ConnectionInfo) -> S,
    max_header_size: usize,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(max_header_size);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max_header_size).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let Listener { tcp, tls } = listener;
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let info = ConnectionInfo { peer, tls: tls.is_some() };
        let service =
            PerConnection { service: RefCell::new(for_connection(info)), max_head: max_header_size };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(err)) => {
                                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }

    drop(tcp);
    let open = graceful.count();
    tracing::info!(open_connections = open, grace = ?grace, "stopped accepting; draining in-flight requests");
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(grace = ?grace, "grace time over; closing the remaining connections"),
    }
}

/// One connection's tower stack, as a hyper service: calls the stack in
/// place.
///
/// hyper calls services through `&self`, tower through `&mut self`; a
/// connection calls its service from its own task, one request at a time, so
/// a `RefCell` bridges the two without cloning the stack for every request
/// (what `hyper_util::service::TowerToHyperService` does).
///
/// It also refuses, with 431, a request whose head is larger than
/// `max_head` bytes (see the module docs).
struct PerConnection<S> {
    service: RefCell<S>,
    max_head: usize,
}

/// A response of the served stack, or the 431 written here.
type Answer<B> = Response<http_body_util::Either<B, Empty<Bytes>>>;

impl<S, B> hyper::service::Service<Request<Incoming>> for PerConnection<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
{
    type Response = Answer<B>;
    type Error = Infallible;
    type Future = Either<
        Map<S::Future, fn(Result<Response<B>, Infallible>) -> Result<Answer<B>, Infallible>>,
        Ready<Result<Answer<B>, Infallible>>,
    >;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if head_size(&req) > self.max_head {
            tracing::debug!(limit = self.max_head, "request head too large");
            let mut res = Response::new(http_body_util::Either::Right(Empty::new()));
            *res.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            res.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            return Either::Right(ready(Ok(res)));
        }
        let mut service = self.service.borrow_mut();
        let ready = service.poll_ready(&mut Context::from_waker(Waker::noop()));
        debug_assert!(ready.is_ready(), "the served stack must always be ready");
        Either::Left(service.call(req).map(served as _))
    }
}

fn served<B>(res: Result<Response<B>, Infallible>) -> Result<Answer<B>, Infallible> {
    res.map(|res| res.map(http_body_util::Either::Left))
}

/// The size of a request head as HTTP/1.1 writes it: the request line,
/// each header as `name: value` and its line end, and the empty line. Walks
/// the parsed head without allocating.
fn head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    line + fields + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_size_counts_the_head_as_http1_writes_it() {
        let req = Request::get("/echo?x=1").header("host", "app.test").body(()).unwrap();
        let written = "GET /echo?x=1 HTTP/1.1\r\nhost: app.test\r\n\r\n";
        assert_eq!(head_size(&req), written.len());
    }
}
