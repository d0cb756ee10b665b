//! Operations over real sockets: the demo upstream, health and readiness,
//! metrics, request ids in headers and logs, graceful shutdown, TLS.

mod common;

use std::time::{Duration, Instant};

use common::{Sidecar, client, raw, spawn_upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_upstream_serves_its_page_and_echo_through_the_proxy() {
    let sidecar = Sidecar::start("upstream: demo\n");
    let http = client();
    let res = http.get(sidecar.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("oauth-sidecar demo app"));
    let echo: serde_json::Value =
        http.get(sidecar.url("/echo/path?q=1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["path"], "/echo/path");
    assert_eq!(echo["query"], "q=1");
    assert_eq!(echo["headers"]["x-forwarded-for"][0], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_up_and_readiness_follows_the_upstream() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let sidecar = Sidecar::start(&format!("upstream: http://{closed}\nops: {{ ready: /ready }}\n"));
    let http = client();
    let res = http.get(sidecar.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = http.get(sidecar.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["store"], "ok");
    assert_ne!(body["upstream"], "ok");

    // The upstream comes up on that port: ready.
    common::spawn_upstream_on(closed).await;
    let res = http.get(sidecar.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // The default path is no longer special: it goes to the upstream.
    let echo: serde_json::Value =
        http.get(sidecar.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["path"], "/readyz");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_class_and_upstream_errors() {
    let upstream = spawn_upstream().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let sidecar = Sidecar::start(&format!("upstream: http://{upstream}\n"));
    let broken = Sidecar::start(&format!("upstream: http://{closed}\n"));
    let http = client();
    for _ in 0..3 {
        assert_eq!(http.get(sidecar.url("/echo")).send().await.unwrap().status(), 200);
    }
    assert_eq!(http.get(broken.url("/x")).send().await.unwrap().status(), 502);

    let text = http.get(sidecar.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("oauth_sidecar_requests_total{class=\"2xx\"} 3"), "{text}");
    assert!(text.contains("oauth_sidecar_requests_in_flight 1"), "the scrape itself is in flight: {text}");
    assert!(text.contains("oauth_sidecar_upstream_duration_seconds_count 3"), "{text}");
    assert!(text.contains("oauth_sidecar_upstream_errors_total{kind=\"connect\"} 0"), "{text}");

    let text = http.get(broken.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("oauth_sidecar_requests_total{class=\"5xx\"} 1"), "{text}");
    assert!(text.contains("oauth_sidecar_upstream_errors_total{kind=\"connect\"} 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_kept_or_generated_sent_upstream_and_logged() {
    let upstream = spawn_upstream().await;
    let sidecar = Sidecar::start(&format!("upstream: http://{upstream}\n"));
    let http = client();

    let res = http.get(sidecar.url("/echo")).header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-42");
    let seen: serde_json::Value = res.json().await.unwrap();
    assert_eq!(seen["headers"]["x-request-id"][0], "trace-42");
    let line = sidecar.wait_for_log(&["\"access\"", "trace-42"]);
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["span"]["id"], "trace-42");
    assert_eq!(json["fields"]["status"], 200);

    let res = http.get(sidecar.url("/echo")).send().await.unwrap();
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let seen: serde_json::Value = res.json().await.unwrap();
    assert_eq!(seen["headers"]["x-request-id"][0], generated.as_str());

    // A 502's warning line carries the id too.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let broken = Sidecar::start(&format!("upstream: http://{closed}\n"));
    http.get(broken.url("/x")).header("x-request-id", "broken-7").send().await.unwrap();
    broken.wait_for_log(&["502: upstream unreachable", "broken-7"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_request_in_flight_then_exits_zero() {
    let upstream = spawn_upstream().await;
    let mut sidecar = Sidecar::start(&format!("upstream: http://{upstream}\nshutdown_grace: 10s\n"));
    let url = sidecar.url("/slow?ms=1500");
    let in_flight = tokio::spawn(async move { client().get(url).send().await?.text().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sidecar.terminate();

    // The listener closes at once; the request already inside completes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(std::net::TcpStream::connect(sidecar.addr).is_err(), "still accepting after SIGTERM");
    let body = in_flight.await.unwrap().expect("the in-flight request completes");
    assert_eq!(body, "slow done");
    let status = sidecar.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    sidecar.wait_for_log(&["all connections drained"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_bounds_how_long_a_request_may_hold_the_exit() {
    let upstream = spawn_upstream().await;
    let mut sidecar = Sidecar::start(&format!("upstream: http://{upstream}\nshutdown_grace: 1s\n"));
    let url = sidecar.url("/slow?ms=20000");
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    sidecar.terminate();
    let status = sidecar.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(4), "exit took {:?}", started.elapsed());
    assert!(in_flight.await.unwrap().is_err(), "the request was cut at the end of the grace time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_http1_and_http2() {
    let upstream = spawn_upstream().await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let sidecar = Sidecar::start(&format!(
        "upstream: http://{upstream}\ntls: {{ cert_file: {}, key_file: {} }}\n",
        cert_file.display(),
        key_file.display()
    ));
    common::install_crypto();
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let url = format!("https://localhost:{}/echo", sidecar.addr.port());

    let h1 = reqwest::Client::builder().tls_certs_only([root.clone()]).http1_only().build().unwrap();
    let res = h1.get(&url).send().await.expect("https request");
    assert_eq!(res.version(), reqwest::Version::HTTP_11);
    let seen: serde_json::Value = res.json().await.unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"][0], "https");

    let h2 = reqwest::Client::builder().tls_certs_only([root]).build().unwrap();
    let res = h2.get(&url).send().await.expect("https request over h2");
    assert_eq!(res.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    assert_eq!(res.status(), 200);

    // Plain HTTP on the TLS port is not served.
    let answer = raw(sidecar.addr, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_command_reports_a_running_sidecar() {
    let mut sidecar = Sidecar::start("upstream: demo\n");
    let config = sidecar.dir.path().join("probe.yaml");
    std::fs::write(&config, format!("listen: {}\n", sidecar.addr)).unwrap();
    let healthcheck = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
            .args(["healthcheck", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = healthcheck();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sidecar.terminate();
    sidecar.wait_exit(Duration::from_secs(5));
    let out = healthcheck();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("unhealthy: "));
}

#[test]
fn text_logs_written_to_a_pipe_carry_no_colour_codes() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.yaml");
    let store = dir.path().join("sidecar.db");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nstore: sqlite://{}\nlog: {{ level: info, format: text }}\n",
            store.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let lines: Vec<String> = BufReader::new(stdout).lines().map_while(Result::ok).take(50).collect();
        let _ = tx.send(lines);
    });
    // The first lines up to "listening" are enough; stop the process so the reader ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        if std::fs::metadata(&store).is_ok() {
            std::thread::sleep(Duration::from_millis(500));
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    if let Ok(read) = rx.recv_timeout(Duration::from_secs(10)) {
        lines = read;
    }
    assert!(lines.iter().any(|l| l.contains("listening")), "{lines:?}");
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "a colour code in a line written to a pipe: {line:?}");
    }
}
