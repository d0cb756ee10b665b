//! The HTTP edge cases a transparent proxy must survive (after
//! linkerd2-proxy's transparency tests), over real sockets with the real
//! binary between a raw client and a small hyper upstream: chunked request
//! and response bodies, trailers, `Expect: 100-continue`, HEAD, 204 and 304
//! without bodies, very long URLs and pipelined HTTP/1.1 requests.
//! (Upgrades: `tests/proxy.rs`, `websocket_upgrade_passes_through`.)

mod common;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use common::{Sidecar, read_response};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

type Body = BoxBody<Bytes, Infallible>;

fn frames(frames: Vec<Frame<Bytes>>) -> Body {
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames.into_iter().map(Ok))))
}

/// The upstream: `/chunked` echoes the request body back in chunks (no
/// length) and ends with a trailer; `/status/N` answers N; `/head` answers
/// a length without a body; anything else says the request line it got.
async fn answer(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/chunked" {
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", body.len().to_string().parse().unwrap());
        let mut parts: Vec<Frame<Bytes>> =
            body.chunks(3).map(|c| Frame::data(Bytes::copy_from_slice(c))).collect();
        parts.push(Frame::trailers(trailers));
        let mut res = Response::new(frames(parts));
        res.headers_mut().insert("trailer", "x-checksum".parse().unwrap());
        return Ok(res);
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let mut res = Response::new(frames(vec![]));
        *res.status_mut() = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
        return Ok(res);
    }
    if path == "/head" {
        let mut res = Response::new(frames(vec![]));
        res.headers_mut().insert("content-length", "100".parse().unwrap());
        return Ok(res);
    }
    let seen = format!("{} {} {}", req.method(), req.uri(), req.uri().to_string().len());
    let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    Ok(Response::new(BodyExt::boxed(Full::new(Bytes::from(format!("{seen} body={body}"))))))
}

async fn start() -> Sidecar {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(answer)));
        }
    });
    Sidecar::start(&format!("upstream: http://{addr}\n"))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Reads until the peer closes (the request said `Connection: close`).
fn read_all(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_and_trailers_pass_both_ways() {
    let sidecar = start().await;
    let mut stream = connect(sidecar.addr);
    stream
        .write_all(
            b"POST /chunked HTTP/1.1\r\nHost: app.test\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n\
              Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .unwrap();
    let response = read_all(&mut stream);
    let (head, body) = response.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{response}");
    let mut text = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if n == 0 {
            rest = after;
            break;
        }
        text.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    assert_eq!(text, "hello world", "{response}");
    assert!(rest.to_ascii_lowercase().starts_with("x-checksum: 11\r\n"), "the trailer: {response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_gets_100_then_the_answer() {
    let sidecar = start().await;
    let mut stream = connect(sidecar.addr);
    stream
        .write_all(b"POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 25];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"abcd").unwrap();
    let response = read_response(&mut stream);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("POST /x 2 body=4"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_204_and_304_have_no_body_and_the_connection_stays_usable() {
    let sidecar = start().await;
    let mut stream = connect(sidecar.addr);
    for (request, status) in [
        ("HEAD /head HTTP/1.1\r\nHost: app.test\r\n\r\n", "200"),
        ("GET /status/204 HTTP/1.1\r\nHost: app.test\r\n\r\n", "204"),
        ("GET /status/304 HTTP/1.1\r\nHost: app.test\r\n\r\n", "304"),
    ] {
        stream.write_all(request.as_bytes()).unwrap();
        // No body follows the head, whatever its Content-Length says.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head}");
        if status == "200" {
            assert!(
                head.to_ascii_lowercase().contains("content-length: 100"),
                "HEAD keeps the length: {head}"
            );
        }
    }
    stream.write_all(b"GET /after HTTP/1.1\r\nHost: app.test\r\n\r\n").unwrap();
    let response = read_response(&mut stream);
    assert!(response.ends_with("GET /after 6 body=0"), "the next request is answered: {response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn very_long_urls_pass_whole() {
    let sidecar = start().await;
    let query = "q".repeat(32 << 10);
    let target = format!("/long?{query}");
    let mut stream = connect(sidecar.addr);
    write!(stream, "GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").unwrap();
    let response = read_all(&mut stream);
    assert!(response.starts_with("HTTP/1.1 200"), "{}", &response[..response.len().min(200)]);
    assert!(response.ends_with(&format!("GET {target} {} body=0", target.len())), "the whole URL arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let sidecar = start().await;
    let mut stream = connect(sidecar.addr);
    let mut requests = String::new();
    for i in 0..5 {
        requests.push_str(&format!("GET /p{i} HTTP/1.1\r\nHost: app.test\r\n\r\n"));
    }
    requests
        .push_str("POST /p5 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
    stream.write_all(requests.as_bytes()).unwrap();
    let response = read_all(&mut stream);
    let answers: Vec<&str> = response.split("HTTP/1.1 200 OK\r\n").skip(1).collect();
    assert_eq!(answers.len(), 6, "{response}");
    for (i, answer) in answers.iter().enumerate() {
        let method = if i == 5 { "POST" } else { "GET" };
        let body = if i == 5 { 3 } else { 0 };
        assert!(answer.ends_with(&format!("{method} /p{i} 3 body={body}")), "answer {i}: {answer}");
    }
}
