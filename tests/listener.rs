//! The listener's limits over real sockets with the real binary, on the
//! public and the egress listener alike: the connection cap and what
//! happens beyond it, the idle keep-alive timeout (HTTP/1.1 and HTTP/2),
//! the pause allowed in a request body, and the 431 for a head with too
//! many or too large header fields, on every request of a connection.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{Sidecar, read_response, spawn_upstream};

const TOKEN_KEY: &str = "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=";

async fn start(extra: &str) -> Sidecar {
    let upstream = spawn_upstream().await;
    Sidecar::start(&format!("upstream: http://{upstream}\n{extra}"))
}

/// True when the peer closed `stream` (read returns end of stream) before
/// the read timeout.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n").unwrap();
    read_response(&mut stream)
}

fn status(response: &str) -> u16 {
    response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Opens `n` connections that send nothing.
fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n).map(|_| TcpStream::connect(addr).expect("connect an idle client")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_do_not_stop_a_new_client() {
    // Under the default cap (10,000): all are held, and a new client is served.
    let sidecar = start("").await;
    let idle = idle_connections(sidecar.addr, 2_000);
    let response = get(sidecar.addr, "/x");
    assert_eq!(status(&response), 200, "{response}");
    drop(idle);

    // Over a cap of 100: each new connection closes the longest-idle one.
    let capped = start("listener: { max_connections: 100 }\n").await;
    let mut idle = idle_connections(capped.addr, 2_000);
    let response = get(capped.addr, "/x");
    assert_eq!(status(&response), 200, "{response}");
    assert!(closed_by_peer(&mut idle[0]), "the longest-idle connection made room");
    assert!(closed_by_peer(&mut idle[1000]), "and so did the ones after it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let sidecar = start("listener: { idle_timeout: 1s }\n").await;
    let mut stream = TcpStream::connect(sidecar.addr).unwrap();
    write!(stream, "GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n").unwrap();
    let response = read_response(&mut stream);
    assert_eq!(status(&response), 200, "{response}");
    assert!(closed_by_peer(&mut stream), "HTTP/1.1: closed while the header timeout (30 s) still runs");

    // HTTP/2 (prior knowledge): the connection ends with GOAWAY.
    let tcp = tokio::net::TcpStream::connect(sidecar.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/x", sidecar.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.expect("h2 request");
    assert_eq!(res.status(), 200);
    drop(res);
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_arriving_gets_408() {
    let sidecar = start("listener: { body_timeout: 1s }\n").await;
    let mut stream = TcpStream::connect(sidecar.addr).unwrap();
    write!(stream, "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    let response = read_response(&mut stream);
    assert_eq!(status(&response), 408, "{response}");
    assert!(response.contains("the request body stopped arriving"), "{response}");
    assert!(response.to_ascii_lowercase().contains("connection: close"), "{response}");
}

/// A request head with `n` extra header fields.
fn with_headers(n: usize) -> String {
    let mut head = String::from("GET /x HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: many-headers-1\r\n");
    for i in 0..n {
        head.push_str(&format!("X-Extra-{i}: {i}\r\n"));
    }
    head.push_str("\r\n");
    head
}

fn assert_431(response: &str, says: &str) {
    assert_eq!(status(response), 431, "{response}");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(body.starts_with("431 Request Header Fields Too Large: "), "{response}");
    assert!(body.contains(says), "{response}");
    assert!(head.to_ascii_lowercase().contains("\r\nx-request-id: "), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_over_the_limits_gets_431_with_a_reason_and_a_request_id() {
    let sidecar = start("").await;
    // 101 fields do not pass, on a new and on a kept-alive connection (the
    // first request stays under 100 with the forwarding headers the sidecar
    // adds, which the test upstream, hyper's default, counts too).
    let mut stream = TcpStream::connect(sidecar.addr).unwrap();
    stream.write_all(with_headers(90).as_bytes()).unwrap();
    let response = read_response(&mut stream);
    assert_eq!(status(&response), 200, "{response}");
    stream.write_all(with_headers(99).as_bytes()).unwrap();
    let response = read_response(&mut stream);
    assert_431(&response, "101 header fields, more than 100");
    assert!(response.contains("x-request-id: many-headers-1"), "the client's id: {response}");

    let mut stream = TcpStream::connect(sidecar.addr).unwrap();
    stream.write_all(with_headers(150).as_bytes()).unwrap();
    assert_431(&read_response(&mut stream), "more than 100");

    // A head over proxy.max_header_size (64 KiB) on a connection's first request.
    let mut stream = TcpStream::connect(sidecar.addr).unwrap();
    let big = "a".repeat(70 << 10);
    write!(stream, "GET /x HTTP/1.1\r\nHost: app.test\r\nX-Big: {big}\r\n\r\n").unwrap();
    assert_431(&read_response(&mut stream), "larger than 65536 bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_egress_listener_has_the_same_limits() {
    let upstream = spawn_upstream().await;
    let sidecar = Sidecar::start(&format!(
        r#"upstream: http://{upstream}
listener: {{ idle_timeout: 1s }}
client:
  token_key: {TOKEN_KEY}
  providers:
    - name: counter
      authorize_url: http://127.0.0.1:1/authorize
      token_url: http://127.0.0.1:1/token
  clients:
    - name: api
      provider: counter
      client_id: me
      client_secret: my-secret-0123456789
egress:
  listen: 127.0.0.1:0
  routes:
    - {{ prefix: /egress/api/, target: "http://{upstream}", client: api, tag: box }}
"#
    ));
    let egress = sidecar.egress_addr();
    let mut stream = TcpStream::connect(egress).unwrap();
    stream.write_all(with_headers(120).as_bytes()).unwrap();
    assert_431(&read_response(&mut stream), "more than 100");

    let mut stream = TcpStream::connect(egress).unwrap();
    write!(stream, "GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let response = read_response(&mut stream);
    assert_eq!(status(&response), 404, "{response}");
    assert!(closed_by_peer(&mut stream), "the idle egress connection was closed");
}
