//! Who reaches the egress listener, over real sockets: a `Host` naming
//! another host (a web page's DNS name resolving to loopback) is refused with
//! 421; a listener on a remote address asks for its secret (407) and lets
//! a caller that sends it through; the configuration refuses a remote
//! address without `allow_remote`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::Sidecar;

const TOKEN_KEY: &str = "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=";
const REMOTE_SECRET: &str = "remote-secret-0123456789";

/// A sidecar with one egress route (no token stored: a request the
/// listener accepts gets 503 `no_token`), its egress address.
fn egress_sidecar(egress: &str) -> (Sidecar, SocketAddr) {
    let config = format!(
        "client:\n  token_key: {TOKEN_KEY}\n  clients:\n    - {{ name: mail, provider: demo, client_id: mailapp }}\n\
         egress:\n{egress}  routes:\n    - {{ prefix: /api/, target: \"http://127.0.0.1:9\", client: mail, tag: box }}\n"
    );
    let sidecar = Sidecar::start_with(&config, "listen: 127.0.0.1:0\n");
    let addr = sidecar.egress_addr();
    (sidecar, addr)
}

/// Sends one HTTP/1.1 GET with exactly these header lines; the status and
/// the whole answer.
fn get(addr: SocketAddr, headers: &[&str]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = "GET /api/me HTTP/1.1\r\nConnection: close\r\n".to_owned();
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

#[test]
fn a_loopback_listener_refuses_requests_for_other_hosts() {
    let (_sidecar, addr) = egress_sidecar("  listen: 127.0.0.1:0\n");
    let port = addr.port();
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), "[::1]".to_owned()] {
        let (status, answer) = get(addr, &[&format!("Host: {host}")]);
        assert_eq!(status, 503, "{host}: through the guard to the route: {answer}");
        assert!(answer.contains("no_token"), "{answer}");
    }
    for host in [format!("evil.example:{port}"), "localhost.evil.example".to_owned(), "10.0.0.5".to_owned()] {
        let (status, answer) = get(addr, &[&format!("Host: {host}")]);
        assert_eq!(status, 421, "{host}: {answer}");
        assert!(answer.contains("misdirected"), "{answer}");
    }
    let (status, _) = get(addr, &[]);
    assert_eq!(status, 421, "a request that names no host is refused too");
}

#[test]
fn a_remote_listener_asks_every_request_for_its_secret() {
    let (_sidecar, addr) = egress_sidecar(&format!(
        "  listen: 0.0.0.0:0\n  allow_remote: true\n  remote_secret: {REMOTE_SECRET}\n"
    ));
    let host = "Host: sidecar.internal:8081";
    let (status, answer) = get(addr, &[host]);
    assert_eq!(status, 407, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("proxy-authenticate: bearer"), "{answer}");
    let (status, _) = get(addr, &[host, "Proxy-Authorization: Bearer wrong-secret-0123456789"]);
    assert_eq!(status, 407);
    let (status, answer) = get(addr, &[host, &format!("Proxy-Authorization: Bearer {REMOTE_SECRET}")]);
    assert_eq!(status, 503, "any host name, with the secret, reaches the route: {answer}");
    assert!(answer.contains("no_token"), "{answer}");
}

#[test]
fn check_config_refuses_a_remote_egress_address_without_allow_remote() {
    let check = |egress: &str| {
        let config = format!("client:\n  token_key: {TOKEN_KEY}\negress:\n{egress}");
        let dir = common::write_config(&config, "listen: 127.0.0.1:0\n");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
            .args(["check-config", "--config"])
            .arg(dir.path().join("sidecar.yaml"))
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = check("  listen: 0.0.0.0:8081\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("egress.listen: `0.0.0.0:8081` is not a loopback address"), "{err}");
    let (code, err) = check("  listen: 0.0.0.0:8081\n  allow_remote: true\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`allow_remote: true` needs `remote_secret`"), "{err}");
    let (code, err) =
        check(&format!("  listen: 0.0.0.0:8081\n  allow_remote: true\n  remote_secret: {REMOTE_SECRET}\n"));
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = check("  listen: 127.0.0.1:8081\n");
    assert_eq!(code, Some(0), "{err}");
}
