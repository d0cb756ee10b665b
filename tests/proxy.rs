//! The reverse proxy over real sockets: the `oauth-sidecar` binary in front of
//! a real upstream server.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Sidecar, client, raw, read_response, spawn_upstream};
use futures_util::{SinkExt, StreamExt};

fn upstream_line(addr: std::net::SocketAddr) -> String {
    format!("upstream: http://{addr}\n")
}

fn json_of(response: &str) -> serde_json::Value {
    let body = response.split("\r\n\r\n").nth(1).expect("a body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_streams_both_ways_with_flat_memory() {
    const GIB: u64 = 1 << 30;
    let upstream = spawn_upstream().await;
    let sidecar = Sidecar::start(&format!("{}proxy: {{ max_body_size: 2GiB }}\n", upstream_line(upstream)));
    let http = client();

    // Upload: 1 GiB produced chunk by chunk, never held whole by anyone.
    let chunk = Bytes::from(vec![b'u'; 256 << 10]);
    let chunks = (GIB / chunk.len() as u64) as usize;
    let stream = futures_util::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let res = http
        .post(sidecar.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), GIB.to_string());

    // Download: the first bytes arrive long before the last are sent.
    let started = Instant::now();
    let res = http.get(sidecar.url(&format!("/download?bytes={GIB}"))).send().await.expect("download");
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let mut total = 0u64;
    let mut first_chunk_after = None;
    while let Some(chunk) = body.next().await {
        total += chunk.expect("chunk").len() as u64;
        first_chunk_after.get_or_insert_with(|| started.elapsed());
    }
    assert_eq!(total, GIB);
    let first = first_chunk_after.unwrap();
    assert!(first < started.elapsed() / 4, "first bytes after {first:?} of {:?}", started.elapsed());

    // 2 GiB went through; a buffering proxy would have grown by at least 1 GiB.
    let peak_mib = sidecar.peak_rss_kib() / 1024;
    assert!(peak_mib < 96, "peak RSS of the sidecar was {peak_mib} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let upstream = spawn_upstream().await;
    let sidecar = Sidecar::start(&upstream_line(upstream));
    let response = raw(
        sidecar.addr,
        b"GET /echo HTTP/1.1\r\nHost: app.test\r\nConnection: close, X-Client-Hop\r\n\
          X-Client-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: gzip\r\nProxy-Connection: keep-alive\r\n\
          Proxy-Authorization: Basic eDp5\r\nX-Kept: yes\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let seen = &json_of(&response)["headers"];
    for gone in ["x-client-hop", "keep-alive", "te", "proxy-connection", "proxy-authorization"] {
        assert!(seen.get(gone).is_none(), "{gone} reached the upstream: {seen}");
    }
    assert_eq!(seen["x-kept"][0], "yes");
    assert!(seen.get("connection").is_none_or(|c| c[0] != "close, X-Client-Hop"), "{seen}");

    // Response side: the upstream's Connection-named header and Keep-Alive stay behind.
    let head = response.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(!head.contains("x-upstream-hop"), "{head}");
    assert!(!head.contains("keep-alive: timeout"), "{head}");
    assert!(head.contains("x-upstream-kept: yes"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecars_own_cookies_never_reach_the_upstream() {
    let upstream = spawn_upstream().await;
    let sidecar = Sidecar::start(&upstream_line(upstream));
    // On https the session and CSRF cookies are `__Host-` cookies on `/`:
    // the browser sends them with every request to the app too.
    let response = raw(
        sidecar.addr,
        b"GET /echo HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\
          Cookie: app_session=a1; __Host-oauth_sidecar_session=s; __Host-oauth_sidecar_admin=x\r\n\
          Cookie: __Host-oauth_sidecar_csrf=c\r\nCookie: theme=dark\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let seen = &json_of(&response)["headers"];
    let cookies: Vec<&str> = seen["cookie"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(cookies, ["app_session=a1", "theme=dark"], "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_an_untrusted_peer_are_replaced() {
    let upstream = spawn_upstream().await;
    let sidecar = Sidecar::start(&upstream_line(upstream));
    let response = raw(
        sidecar.addr,
        b"GET /echo HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\
          X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n\
          Forwarded: for=203.0.113.9\r\n\r\n",
    );
    let seen = &json_of(&response)["headers"];
    assert_eq!(seen["x-forwarded-for"][0], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"][0], "http");
    assert_eq!(seen["x-forwarded-host"][0], "app.test");
    assert_eq!(seen["forwarded"][0], "for=127.0.0.1;host=\"app.test\";proto=http");
    assert_eq!(seen["host"][0], "app.test", "Host is passed through by default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_a_trusted_proxy_are_kept_and_extended() {
    let upstream = spawn_upstream().await;
    let sidecar =
        Sidecar::start(&format!("{}proxy: {{ trusted_proxies: [127.0.0.0/8] }}\n", upstream_line(upstream)));
    let response = raw(
        sidecar.addr,
        b"GET /echo HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\
          X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: public.test\r\n\
          Forwarded: for=203.0.113.9;proto=https\r\n\r\n",
    );
    let seen = &json_of(&response)["headers"];
    assert_eq!(seen["x-forwarded-for"][0], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"][0], "https");
    assert_eq!(seen["x-forwarded-host"][0], "public.test");
    assert_eq!(
        seen["forwarded"][0],
        "for=203.0.113.9;proto=https, for=127.0.0.1;host=\"app.test\";proto=http"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_rewritten_to_the_upstream_when_not_preserved() {
    let upstream = spawn_upstream().await;
    let sidecar = Sidecar::start(&format!("{}proxy: {{ preserve_host: false }}\n", upstream_line(upstream)));
    let response = raw(sidecar.addr, b"GET /echo HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    let seen = &json_of(&response)["headers"];
    assert_eq!(seen["host"][0], upstream.to_string());
    assert_eq!(seen["x-forwarded-host"][0], "app.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_proxied_with_their_authority_as_host() {
    let upstream = spawn_upstream().await;
    let sidecar = Sidecar::start(&upstream_line(upstream));
    common::install_crypto();
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let res = h2.get(sidecar.url("/echo")).send().await.expect("h2c request");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    let seen: serde_json::Value = res.json().await.unwrap();
    assert_eq!(seen["headers"]["host"][0], sidecar.addr.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_gives_502_and_a_log_line() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let sidecar = Sidecar::start(&upstream_line(closed));
    let res = client().get(sidecar.url("/anything")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(res.text().await.unwrap().starts_with("502 Bad Gateway"));
    let line = sidecar.wait_for_log(&["502: upstream unreachable"]);
    assert!(line.contains("\"level\":\"WARN\""), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_gives_504_after_the_timeout() {
    let upstream = spawn_upstream().await;
    let sidecar = Sidecar::start(&format!(
        "{}proxy: {{ connect_timeout: 1s, timeout: 1s }}\n",
        upstream_line(upstream)
    ));
    let started = Instant::now();
    let res = client().get(sidecar.url("/slow?ms=5000")).send().await.unwrap();
    assert_eq!(res.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert!(res.text().await.unwrap().starts_with("504 Gateway Timeout"));
    sidecar.wait_for_log(&["504: upstream timeout"]);

    // A fast answer within the limit still passes.
    let res = client().get(sidecar.url("/slow?ms=10")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_by_length_or_while_streaming() {
    let upstream = spawn_upstream().await;
    let sidecar = Sidecar::start(&format!("{}proxy: {{ max_body_size: 1MiB }}\n", upstream_line(upstream)));
    let http = client();

    // Declared length over the limit: refused before anything is read.
    let res = http.post(sidecar.url("/upload")).body(vec![0u8; (1 << 20) + 1]).send().await.unwrap();
    assert_eq!(res.status(), 413);

    // Chunked body with no length: counted while it streams.
    let chunk = Bytes::from(vec![0u8; 64 << 10]);
    let stream = futures_util::stream::iter((0..64).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let res = http.post(sidecar.url("/upload")).body(reqwest::Body::wrap_stream(stream)).send().await;
    match res {
        Ok(res) => assert_eq!(res.status(), 413),
        // The sidecar may close the connection before the client finished sending.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    sidecar.wait_for_log(&["413: request body too large"]);

    // Exactly at the limit passes.
    let res = http.post(sidecar.url("/upload")).body(vec![0u8; 1 << 20]).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), (1 << 20).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_over_the_limit_get_431() {
    let upstream = spawn_upstream().await;
    let sidecar = Sidecar::start(&format!("{}proxy: {{ max_header_size: 8KiB }}\n", upstream_line(upstream)));
    let big = "a".repeat(16 << 10);
    let response =
        raw(sidecar.addr, format!("GET /echo HTTP/1.1\r\nHost: app.test\r\nX-Big: {big}\r\n\r\n").as_bytes());
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");

    let small = "a".repeat(4 << 10);
    let response = raw(
        sidecar.addr,
        format!("GET /echo HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nX-Big: {small}\r\n\r\n")
            .as_bytes(),
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    // A WebSocket echo server as the upstream.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });
    let sidecar = Sidecar::start(&upstream_line(upstream));
    let (mut ws, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/socket", sidecar.addr)).await.expect("handshake");
    assert_eq!(response.status(), 101);
    for text in ["hello", "through the sidecar"] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(text)).await.unwrap();
        let echoed = ws.next().await.expect("a message").expect("no error");
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_limits_hold_for_every_request_of_a_kept_alive_connection() {
    use std::io::Write;
    let upstream = spawn_upstream().await;
    let sidecar = Sidecar::start(&upstream_line(upstream));
    let big = "a".repeat(64 << 10);
    let mut stream = std::net::TcpStream::connect(sidecar.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"GET /echo HTTP/1.1\r\nHost: app.test\r\n\r\n").unwrap();
    let first = read_response(&mut stream);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    stream
        .write_all(format!("GET /echo HTTP/1.1\r\nHost: app.test\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .unwrap();
    let second = read_response(&mut stream);
    assert!(second.starts_with("HTTP/1.1 431"), "the second request: {}", &second[..second.len().min(200)]);
}
