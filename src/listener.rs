//! The public listener: TCP, optionally TLS (rustls), HTTP/1.1 and HTTP/2 on
//! the same port, and graceful shutdown that stops accepting, lets in-flight
//! requests finish within the grace time, then returns.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
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
        let service = PerConnection { service: RefCell::new(for_connection(info)) };
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
struct PerConnection<S> {
    service: RefCell<S>,
}

impl<S> hyper::service::Service<Request<Incoming>> for PerConnection<S>
where
    S: Service<Request<Incoming>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: Request<Incoming>) -> S::Future {
        let mut service = self.service.borrow_mut();
        let ready = service.poll_ready(&mut Context::from_waker(Waker::noop()));
        debug_assert!(ready.is_ready(), "the served stack must always be ready");
        service.call(req)
    }
}
