//! Fixed upstream for the proxy benchmark (`benches/proxy.sh`): a tiny hyper 1 HTTP/1.1 server that answers every request with `200 OK` and a fixed small body.
//!
//! Usage: `bench_upstream [LISTEN_ADDR]` (default `127.0.0.1:9100`).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The body of every response.
const BODY: &[u8] = b"hello, world\n";

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut res = Response::new(Full::new(Bytes::from_static(BODY)));
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(BODY.len()));
    Ok(res)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr: SocketAddr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9100".to_owned()).parse()?;
    let listener = TcpListener::bind(addr).await?;
    eprintln!("bench_upstream listening on http://{addr}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                eprintln!("accept error: {err}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // Keep-alive is on by default in hyper's HTTP/1 server.
            if let Err(err) =
                http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(hello)).await
            {
                eprintln!("connection error: {err}");
            }
        });
    }
}
