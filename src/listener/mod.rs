//! The listener, one implementation for the public listener and the egress
//! listener: TCP, optionally TLS (rustls), HTTP/1.1 and HTTP/2 on the same
//! port, the connection limits of the `listener:` section, and graceful
//! shutdown that stops accepting, lets in-flight requests finish within the
//! grace time, then returns.
//!
//! The limits ([`Limits`]) hold for every request of a connection, HTTP/1.1
//! and HTTP/2 alike:
//!
//! - at most `listener.max_connections` open connections; at the cap the
//!   longest-idle connection makes room ([`connections`]);
//! - a request head within `proxy.max_header_size` bytes and
//!   `proxy.max_headers` fields, else 431 with a short text and an
//!   `X-Request-Id`. hyper's read buffer bounds only what it reads at once,
//!   and a buffer grown on a kept-alive connection lets a later request's
//!   head through, so each head is measured again before the service sees
//!   it ([`service`]). hyper itself refuses (431 without a body) only heads
//!   over twice the size or four times the field count;
//! - `listener.header_timeout` to send a head (HTTP/1.1; the wait for the
//!   next head of a kept-alive connection counts too);
//! - `listener.body_timeout`: the longest pause while a request body
//!   arrives ([`crate::proxy::ReadTimeout`], then 408);
//! - `listener.idle_timeout`: a connection with no request in flight for
//!   this long is closed (HTTP/2: GOAWAY).

mod connections;
mod service;

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
#[cfg(feature = "sidecar")]
use rustls_pki_types::pem::PemObject;
#[cfg(feature = "sidecar")]
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
#[cfg(feature = "sidecar")]
use tokio_rustls::TlsAcceptor;
use tower::Service;

#[cfg(feature = "sidecar")]
use crate::config::TlsConfig;
use crate::config::{Config, ListenerConfig, ProxyConfig};
use crate::proxy::ConnectionInfo;
use connections::{Conn, Connections};
pub(crate) use service::ClientBody;
use service::PerConnection;

/// Time a client gets to finish the TLS handshake.
#[cfg(feature = "sidecar")]
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// hyper's own bounds are this many times ours, so that a head over our
/// limit still reaches [`service`] and gets the 431 with a body.
const HYPER_SLACK: usize = 2;

/// The limits every connection of a listener is held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Open connections at most.
    pub(crate) max_connections: usize,
    /// Time to send a request head.
    pub(crate) header_timeout: Duration,
    /// Longest pause in a request body.
    pub(crate) body_timeout: Duration,
    /// Time a connection may stay without a request in flight.
    pub(crate) idle_timeout: Duration,
    /// Largest request head in bytes.
    pub(crate) max_header_size: usize,
    /// Most header fields in a request head.
    pub(crate) max_headers: usize,
}

impl Limits {
    /// The limits of the `listener:` and `proxy:` sections.
    pub(crate) fn from_config(config: &Config) -> Self {
        let ListenerConfig { max_connections, header_timeout, body_timeout, idle_timeout } = &config.listener;
        let ProxyConfig { max_header_size, max_headers, .. } = &config.proxy;
        Limits {
            max_connections: max_connections.value,
            header_timeout: header_timeout.value.0,
            body_timeout: body_timeout.value.0,
            idle_timeout: idle_timeout.value.0,
            max_header_size: usize::try_from(max_header_size.value.0).unwrap_or(usize::MAX),
            max_headers: max_headers.value,
        }
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(self.max_header_size.saturating_mul(HYPER_SLACK).max(8192))
            .max_headers(self.max_headers.saturating_mul(2 * HYPER_SLACK));
        builder.http2().timer(TokioTimer::new()).max_header_list_size(
            u32::try_from(self.max_header_size.saturating_mul(HYPER_SLACK)).unwrap_or(u32::MAX),
        );
        builder
    }
}

/// A bound listener, plain or TLS.
pub(crate) struct Listener {
    tcp: TcpListener,
    #[cfg(feature = "sidecar")]
    tls: Option<TlsAcceptor>,
}

impl Listener {
    /// Binds `addr`; with `tls`, loads the certificate and key first.
    #[cfg(feature = "sidecar")]
    pub(crate) async fn bind(addr: SocketAddr, tls: Option<&TlsConfig>) -> Result<Self, String> {
        let tls = tls.map(tls_acceptor).transpose()?;
        let tcp = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        Ok(Listener { tcp, tls })
    }

    /// Binds `addr` for plain HTTP.
    pub(crate) async fn bind_plain(addr: SocketAddr) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(addr).await?;
        Ok(Listener {
            tcp,
            #[cfg(feature = "sidecar")]
            tls: None,
        })
    }

    /// The address actually bound (the port is known here when the
    /// configuration asked for port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// True when connections are TLS.
    pub(crate) fn is_tls(&self) -> bool {
        #[cfg(feature = "sidecar")]
        return self.tls.is_some();
        #[cfg(not(feature = "sidecar"))]
        false
    }
}

#[cfg(feature = "sidecar")]
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
/// `listener`, within `limits`, until `shutdown` completes, then drains
/// open connections for at most `grace`.
///
/// The service must always be ready (`poll_ready` returns `Ready` at once):
/// the connection calls it directly, without waiting for readiness.
pub(crate) async fn serve<S, B>(
    listener: Listener,
    for_connection: impl Fn(ConnectionInfo) -> S,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    S: Service<Request<ClientBody>, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = Arc::new(limits.builder());
    let connections = Connections::new(limits.max_connections);
    let tcp = &listener.tcp;
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
        // At the cap with every connection busy: closed at once.
        let Some(slot) = connections.admit() else { continue };
        let _ = stream.set_nodelay(true);
        let info = ConnectionInfo { peer, tls: listener.is_tls() };
        let service =
            PerConnection { service: RefCell::new(for_connection(info)), limits, conn: slot.conn().clone() };
        let builder = builder.clone();
        #[cfg(feature = "sidecar")]
        let tls = listener.tls.clone();
        tokio::spawn(async move {
            let conn = slot.conn().clone();
            #[cfg(feature = "sidecar")]
            if let Some(acceptor) = tls {
                let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                let stream = tokio::select! {
                    done = handshake => match done {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    },
                    () = conn.asked_to_close() => return,
                };
                drive(stream, &builder, service, &conn, limits.idle_timeout, peer).await;
                return;
            }
            drive(stream, &builder, service, &conn, limits.idle_timeout, peer).await;
            drop(slot);
        });
    }

    drop(listener);
    let open = connections.count();
    tracing::info!(open_connections = open, grace = ?grace, "stopped accepting; draining in-flight requests");
    connections.close_all();
    match tokio::time::timeout(grace, connections.emptied()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(grace = ?grace, "grace time over; closing the remaining connections"),
    }
}

/// Serves one connection until it ends, closing it gracefully when the
/// listener asks (room for a new connection, shutdown) or when it has had
/// no request in flight for `idle`.
async fn drive<I, S, B>(
    io: I,
    builder: &auto::Builder<TokioExecutor>,
    service: PerConnection<S>,
    conn: &Arc<Conn>,
    idle: Duration,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<ClientBody>, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let mut closing = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = conn.asked_to_close(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = idle_timer.as_mut(), if !closing => {
                let now = tokio::time::Instant::now();
                match conn.idle_deadline(idle) {
                    Some(deadline) if deadline <= now => {
                        tracing::debug!(%peer, "closing an idle connection");
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    Some(deadline) => idle_timer.as_mut().reset(deadline),
                    None => idle_timer.as_mut().reset(now + idle),
                }
            }
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}
