//! Floor for the proxy benchmark (`benches/proxy.sh`): a minimal hyper 1 reverse proxy that forwards every request to one upstream with hyper-util's legacy `Client` (keep-alive pool), rewriting only the URI and streaming bodies both ways.
//!
//! Usage: `bench_minimal_proxy [LISTEN_ADDR] [UPSTREAM_URL]` (defaults `127.0.0.1:9101`, `http://127.0.0.1:9100`).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Forwards `req` to the upstream, touching nothing but its URI.
async fn forward(
    client: Client<HttpConnector, Incoming>,
    scheme: Scheme,
    authority: Authority,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, hyper::http::Error> {
    let path_and_query =
        req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() =
        Uri::builder().scheme(scheme).authority(authority).path_and_query(path_and_query).build()?;
    match client.request(req).await {
        Ok(res) => Ok(res.map(Either::Left)),
        Err(err) => {
            eprintln!("upstream error: {err}");
            Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Either::Right(Full::new(Bytes::from_static(b"bad gateway\n"))))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args.next().unwrap_or_else(|| "127.0.0.1:9101".to_owned()).parse()?;
    let upstream: Uri = args.next().unwrap_or_else(|| "http://127.0.0.1:9100".to_owned()).parse()?;
    let scheme = upstream.scheme().cloned().unwrap_or(Scheme::HTTP);
    let authority = upstream.authority().cloned().ok_or("the upstream URL needs a host")?;

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build(connector);

    let listener = TcpListener::bind(addr).await?;
    eprintln!("bench_minimal_proxy listening on http://{addr}, forwarding to {upstream}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                eprintln!("accept error: {err}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let scheme = scheme.clone();
        let authority = authority.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |req| forward(client.clone(), scheme.clone(), authority.clone(), req));
            if let Err(err) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                eprintln!("connection error: {err}");
            }
        });
    }
}
