//! The forward-auth endpoint (`gate.forward_auth`) with the real binary:
//! real nginx and real Caddy in front of an echo upstream, each configured
//! from its snippet in docs/forward-auth.md (ports filled in), and the
//! request shapes Traefik's ForwardAuth and Envoy's HTTP `ext_authz` send,
//! as their docs describe them.
//!
//! nginx and Caddy are run as child processes with their own configuration
//! in a temp dir, on loopback ports. Without them these tests say so and
//! pass, unless `OAUTH_SIDECAR_REQUIRE_PROXIES=1` (scripts/test.sh sets it,
//! so CI cannot pass without running them).

mod common;
mod gate_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Sidecar;
use gate_common::{client_token, free_port, reqwest_client};
use serde_json::Value;

const SERVER: &str = r#"
server:
  roles:
    farm_viewer: { label: Viewer, description: Read farm records }
    farm_manager: { label: Manager, description: Create and edit farm records }
  consumers:
    - client_id: reporting
      secret: reporting-secret-0123456789
      user_id: reporter
      scopes: [farm_viewer]
      grant_types: [client_credentials]
      allowed_origins: [http://app.example.org]
  users:
    - username: reporter
      password: reporter-password
      roles: [farm_viewer]
"#;

const GATE: &str = r#"
gate:
  forward_auth: { enabled: true }
  revocation_interval: 1s
  rules:
    - { path: /public/**, public: true }
    - { path: /api/**, methods: [GET], scopes: { any_of: [farm_viewer, farm_manager] } }
    - { path: /api/**, scopes: { any_of: [farm_manager] } }
"#;

/// The sidecar with forward-auth on, and the echo upstream's address.
async fn start() -> (Sidecar, SocketAddr) {
    let upstream = common::spawn_upstream().await;
    (Sidecar::start(&format!("upstream: http://{upstream}\n{SERVER}{GATE}")), upstream)
}

/// A `farm_viewer` token of the `reporting` consumer.
async fn viewer(sidecar: &Sidecar) -> String {
    client_token(&sidecar.url(""), "reporting", "reporting-secret-0123456789").await
}

/// The first fenced block of `lang` in docs/forward-auth.md.
fn snippet(lang: &str) -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/forward-auth.md"))
        .expect("docs/forward-auth.md");
    let open = format!("```{lang}\n");
    let start =
        doc.find(&open).unwrap_or_else(|| panic!("no ```{lang} block in docs/forward-auth.md")) + open.len();
    let end = doc[start..].find("\n```").expect("the block ends") + start;
    doc[start..=end].to_owned()
}

/// The docs' addresses replaced by the test's: the app (`127.0.0.1:8000`)
/// and the sidecar (`127.0.0.1:8080`).
fn fill(snippet: &str, sidecar: SocketAddr, upstream: SocketAddr) -> String {
    assert!(snippet.contains("127.0.0.1:8080") && snippet.contains("127.0.0.1:8000"), "{snippet}");
    snippet.replace("127.0.0.1:8080", &sidecar.to_string()).replace("127.0.0.1:8000", &upstream.to_string())
}

/// The program, if installed; a panic instead of `None` under CI.
fn tool(name: &str, places: &[&str]) -> Option<PathBuf> {
    let found = places.iter().map(PathBuf::from).find(|p| p.is_file()).or_else(|| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
    });
    if found.is_none() {
        let required =
            std::env::var("OAUTH_SIDECAR_REQUIRE_PROXIES").is_ok_and(|v| !v.is_empty() && v != "0");
        assert!(!required, "{name} is not installed (scripts/test.sh installs it with apt)");
        eprintln!(
            "{name} is not installed: this test checks nothing (OAUTH_SIDECAR_REQUIRE_PROXIES=1 fails instead)"
        );
    }
    found
}

/// A child process, killed when dropped.
struct Proxy {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Proxy {
    fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> Proxy {
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proxy { child, name, log }
    }

    /// Waits up to 10 s until `addr` accepts connections.
    fn wait(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}): {log}", self.name);
            }
            assert!(Instant::now() < deadline, "{} does not listen on {addr}: {log}", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn values<'a>(headers: &'a Value, name: &str) -> Vec<&'a str> {
    headers[name].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// What the Done-when asks of an ingress at `base`: no token 401 with a
/// challenge, wrong scope 403, a good token 200 with the identity reaching
/// the upstream, a client's own `X-Auth-Subject` never reaching it.
async fn ingress_decides_as_the_gate(base: &str, sidecar: &Sidecar) {
    let token = viewer(sidecar).await;
    let client = reqwest_client();

    let res = client.get(format!("{base}/api/records")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer realm=\""), "{challenge}");

    let res = client.delete(format!("{base}/api/records/1")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 403, "a viewer may not delete");
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    assert!(challenge.contains("scope=\"farm_manager\""), "{challenge}");

    let res = client
        .get(format!("{base}/api/records?page=2"))
        .bearer_auth(&token)
        .header("X-Auth-Subject", "admin")
        .header("X-Auth_Subject", "admin")
        .header("X-Auth-Scopes", "farm_manager")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["path"], "/api/records");
    let headers = &echo["headers"];
    assert_eq!(values(headers, "x-auth-subject"), ["reporter"], "{headers}");
    assert_eq!(values(headers, "x-auth-client"), ["reporting"]);
    assert_eq!(values(headers, "x-auth-scopes"), ["authenticated farm_viewer"]);
    assert_eq!(values(headers, "x-auth-username"), ["reporter"]);
    assert!(
        values(headers, "x-auth_subject").is_empty(),
        "a client's own spelling reached the app: {headers}"
    );

    let res = client
        .get(format!("{base}/public/page"))
        .header("X-Auth-Subject", "admin")
        .header("X-Auth_Subject", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a public route needs no token");
    let echo: Value = res.json().await.unwrap();
    let headers = &echo["headers"];
    for name in ["x-auth-subject", "x-auth_subject", "x-auth-client", "x-auth-scopes", "x-auth-username"] {
        assert!(values(headers, name).iter().all(|v| v.is_empty()), "{name} reached the app: {headers}");
    }

    for line in sidecar.logs() {
        assert!(!line.contains(&token), "a token reached the log: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_from_the_docs_snippet() {
    let Some(nginx) = tool("nginx", &["/usr/sbin/nginx"]) else { return };
    let (sidecar, upstream) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().display().to_string();
    let port = free_port();
    let snippet = fill(&snippet("nginx"), sidecar.addr, upstream)
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
    let conf = format!(
        "daemon off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\nevents {{ worker_connections 64; }}\n\
         http {{\n    access_log off;\n    client_body_temp_path {prefix}/body;\n    proxy_temp_path {prefix}/proxy;\n    \
         fastcgi_temp_path {prefix}/fastcgi;\n    uwsgi_temp_path {prefix}/uwsgi;\n    scgi_temp_path {prefix}/scgi;\n\
         {snippet}}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let mut proxy = Proxy::spawn(
        "nginx",
        Command::new(nginx).args([
            "-p",
            &prefix,
            "-e",
            &format!("{prefix}/error.log"),
            "-c",
            &format!("{prefix}/nginx.conf"),
        ]),
        dir.path().join("stderr.log"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    proxy.wait(addr);
    ingress_decides_as_the_gate(&format!("http://{addr}"), &sidecar).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_from_the_docs_snippet() {
    let Some(caddy) = tool("caddy", &["/usr/bin/caddy"]) else { return };
    let (sidecar, upstream) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().display().to_string();
    let port = free_port();
    let site = fill(&snippet("caddyfile"), sidecar.addr, upstream);
    assert!(site.starts_with(":80 {"), "{site}");
    let site = site.replacen(":80 {", &format!("http://127.0.0.1:{port} {{"), 1);
    let conf = format!(
        "{{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n\tstorage file_system {home}/data\n}}\n{site}"
    );
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, conf).unwrap();
    let mut proxy = Proxy::spawn(
        "caddy",
        Command::new(caddy)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .env("XDG_DATA_HOME", &home),
        dir.path().join("caddy.log"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    proxy.wait(addr);
    ingress_decides_as_the_gate(&format!("http://{addr}"), &sidecar).await;
}

/// The identity headers of a forward-auth answer, which has no body.
async fn passed(res: reqwest::Response) -> reqwest::header::HeaderMap {
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert!(res.bytes().await.unwrap().is_empty(), "no body on 200");
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_forward_auth_request_shape() {
    let (sidecar, _) = start().await;
    let token = viewer(&sidecar).await;
    // Traefik: GET to the address, the client's headers, and X-Forwarded-*.
    let check = |method: &str, uri: &str| {
        reqwest_client()
            .get(sidecar.url("/oauth/check"))
            .header("X-Forwarded-Method", method)
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "app.example.org")
            .header("X-Forwarded-Uri", uri)
            .header("X-Forwarded-For", "203.0.113.9")
    };
    let headers = passed(check("GET", "/api/records?page=2").bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(headers["x-auth-subject"], "reporter");
    assert_eq!(headers["x-auth-client"], "reporting");
    assert_eq!(headers["x-auth-scopes"], "authenticated farm_viewer");

    let res = check("GET", "/api/records").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer realm="));

    let res = check("DELETE", "/api/records/1").bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));

    // The gate's canonical path: `/%61pi` is `/api`; dot segments are refused.
    assert_eq!(check("GET", "/%61pi/records").send().await.unwrap().status(), 401);
    assert_eq!(check("GET", "//public/x").send().await.unwrap().status(), 200);
    assert_eq!(check("GET", "/public/../api/records").send().await.unwrap().status(), 400);
    assert_eq!(check("GET", "/public/%2e%2e/api/records").send().await.unwrap().status(), 400);

    // The token's consumer's allowed origins.
    let res = check("GET", "/api/records").bearer_auth(&token).header("Origin", "http://evil.example").send();
    assert_eq!(res.await.unwrap().status(), 403);
    let res =
        check("GET", "/api/records").bearer_auth(&token).header("Origin", "http://app.example.org").send();
    assert_eq!(res.await.unwrap().status(), 200);

    // A client adding nginx's header to be judged on a public path.
    let res = check("GET", "/api/records").header("X-Original-URI", "/public/x").send().await.unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_authz_request_shape() {
    let (sidecar, _) = start().await;
    let token = viewer(&sidecar).await;
    // Envoy: the original method, path_prefix + the original path and query,
    // Host, Authorization and Content-Length: 0.
    let check = |method: reqwest::Method, path: &str| {
        reqwest_client()
            .request(method, sidecar.url(&format!("/oauth/check{path}")))
            .header("Host", "app.example.org")
            .header("Content-Length", "0")
    };
    let res = check(reqwest::Method::GET, "/api/records?page=2").bearer_auth(&token).send().await.unwrap();
    let headers = passed(res).await;
    assert_eq!(headers["x-auth-subject"], "reporter");
    assert_eq!(headers["x-auth-username"], "reporter");

    let res = check(reqwest::Method::GET, "/api/records").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer realm="));

    let res = check(reqwest::Method::POST, "/api/records").bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));

    let headers = passed(check(reqwest::Method::GET, "/public/").send().await.unwrap()).await;
    assert_eq!(headers["x-auth-subject"], "", "a public route names nobody");
    assert_eq!(check(reqwest::Method::GET, "/").send().await.unwrap().status(), 403, "no rule for /");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_is_refused_by_forward_auth_within_the_bound() {
    let (sidecar, _) = start().await;
    let token = viewer(&sidecar).await;
    let check = || {
        reqwest_client()
            .get(sidecar.url("/oauth/check"))
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Uri", "/api/records")
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(check().await.unwrap().status(), 200);
    let (status, _) = common::post_form(
        &sidecar.url("/oauth/revoke"),
        ("reporting", "reporting-secret-0123456789"),
        &[("token", &token)],
    )
    .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let res = check().await.unwrap();
        if res.status() == 401 {
            assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
            break;
        }
        assert!(Instant::now() < deadline, "the revoked token still passes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A local address that is not loopback (the one a default route leaves
/// from); none on a machine without a network.
fn outside_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptions_from_untrusted_peers_are_not_believed() {
    let Some(ip) = outside_address() else {
        eprintln!("no non-loopback address here; the unit test gate::forward covers the trust check");
        return;
    };
    let upstream = common::spawn_upstream().await;
    let config = |trusted: &str| {
        format!("upstream: http://{upstream}\nproxy:\n  trusted_proxies: [{trusted}]\n{SERVER}{GATE}")
    };
    let check = |sidecar: &Sidecar| {
        let url = format!("http://{ip}:{}/oauth/check", sidecar.addr.port());
        reqwest_client()
            .get(url)
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Uri", "/public/x")
            .send()
    };
    let untrusted = Sidecar::start_with(&config("10.255.255.0/24"), "listen: 0.0.0.0:0\n");
    let res = check(&untrusted).await.unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "access_denied");

    let trusted = Sidecar::start_with(&config(&ip.to_string()), "listen: 0.0.0.0:0\n");
    assert_eq!(check(&trusted).await.unwrap().status(), 200);
}

#[test]
fn a_forward_auth_path_another_route_answers_is_refused_at_start() {
    let dir = common::write_config(
        "upstream: http://127.0.0.1:9\ngate:\n  forward_auth: { enabled: true, path: /healthz }\n",
        "listen: 127.0.0.1:0\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
        .args(["serve", "--config"])
        .arg(dir.path().join("sidecar.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("gate.forward_auth.path /healthz is already answered"), "{text}");

    std::fs::write(
        dir.path().join("sidecar.yaml"),
        "upstream: http://127.0.0.1:9\ngate:\n  forward_auth: { enabled: true, path: /check/ }\n",
    )
    .unwrap();
    let out = common::cli(dir.path(), &["check-config"], "");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("sidecar.yaml:3:") && text.contains("gate.forward_auth.path"), "{text}");
}
