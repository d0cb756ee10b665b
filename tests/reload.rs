//! Configuration reload on the real binary: SIGHUP (and `reload.watch`)
//! while clients keep their connections open, a broken file refused, a
//! setting that needs a restart named, consumers, users, roles and
//! identity header names taken from the new file.

mod common;
mod gate_common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Sidecar;
use gate_common::{REPORTING_SECRET, REPORTING_SERVER, client_token, reqwest_client};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// `/api/**` open to anyone.
const OPEN: &str = "gate:\n  default: deny\n  rules:\n    - { path: /api/**, public: true }\n";
/// `/api/**` for `farm_viewer` tokens only.
const CLOSED: &str =
    "gate:\n  default: deny\n  rules:\n    - { path: /api/**, scopes: { any_of: [farm_viewer] } }\n";

fn config_path(sidecar: &Sidecar) -> std::path::PathBuf {
    sidecar.dir.path().join("sidecar.yaml")
}

/// The file the sidecar started on, with `from` replaced by `to`.
fn rewrite(sidecar: &Sidecar, from: &str, to: &str) {
    let path = config_path(sidecar);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

fn hangup(sidecar: &Sidecar) {
    let status = Command::new("kill").args(["-HUP", &sidecar.pid().to_string()]).status().expect("kill");
    assert!(status.success());
}

async fn start(sections: &str) -> Sidecar {
    let upstream = common::spawn_upstream().await;
    Sidecar::start(&format!("upstream: http://{upstream}\n{REPORTING_SERVER}{sections}"))
}

async fn status(sidecar: &Sidecar, path: &str) -> u16 {
    reqwest_client().get(sidecar.url(path)).send().await.unwrap().status().as_u16()
}

/// The value of a counter on `/metrics`, by its full series name.
async fn metric(sidecar: &Sidecar, series: &str) -> f64 {
    let text = reqwest_client().get(sidecar.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

/// One kept-alive connection (HTTP/1.1, or HTTP/2 with `h2`) sending
/// `GET /api/records` back to back until `until`; every answer's status
/// with the time it came. A request that fails (the connection dropped, no
/// answer) fails the test.
async fn stream_requests(addr: SocketAddr, until: Instant, h2: bool) -> Vec<(Instant, u16)> {
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let mut h1 = None;
    let mut h2_sender = None;
    if h2 {
        let (sender, conn) =
            hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        h2_sender = Some(sender);
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await.unwrap();
        tokio::spawn(conn);
        h1 = Some(sender);
    }
    let mut seen = Vec::new();
    while Instant::now() < until {
        let req = http::Request::get(format!("http://{addr}/api/records"))
            .header("host", addr.to_string())
            .body(Empty::new())
            .unwrap();
        let res = match (&mut h1, &mut h2_sender) {
            (Some(sender), _) => sender.send_request(req).await,
            (_, Some(sender)) => sender.send_request(req).await,
            _ => unreachable!("one sender"),
        };
        let res = res.expect("a request on the kept-alive connection failed");
        let status = res.status().as_u16();
        res.into_body().collect().await.expect("the response body");
        seen.push((Instant::now(), status));
    }
    seen
}

#[tokio::test]
async fn sighup_changes_the_rules_for_kept_alive_connections_without_failing_a_request() {
    let sidecar = start(OPEN).await;
    assert_eq!(status(&sidecar, "/api/records").await, 200);
    let until = Instant::now() + Duration::from_secs(4);
    // Two HTTP/1.1 and two HTTP/2 connections.
    let clients: Vec<_> =
        (0..4).map(|n| tokio::spawn(stream_requests(sidecar.addr, until, n % 2 == 1))).collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    rewrite(&sidecar, OPEN, CLOSED);
    let sent = Instant::now();
    hangup(&sidecar);
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    for client in clients {
        let seen = client.await.expect("every request answered on its own connection");
        answered += seen.len();
        assert!(seen.iter().any(|(at, s)| *at < sent && *s == 200), "the old rule decided before the reload");
        // Each request is judged by one rule set: open (200) until the
        // reload, then closed (401), never back.
        let first_new = seen.iter().position(|(_, s)| *s == 401).expect("the new rule decided");
        assert!(seen[..first_new].iter().all(|(_, s)| *s == 200), "{seen:?}");
        assert!(seen[first_new..].iter().all(|(_, s)| *s == 401), "{seen:?}");
        let (at, _) = seen[first_new];
        assert!(
            at.saturating_duration_since(sent) < Duration::from_secs(1),
            "the new rule decided within 1 s"
        );
        assert!(seen.len() > first_new + 10, "the connection kept serving after the reload");
        slowest = slowest.max(at.saturating_duration_since(sent));
    }
    eprintln!(
        "{answered} requests on 4 kept-alive connections (2 HTTP/1.1, 2 HTTP/2), none failed; the new rule decided {slowest:?} after SIGHUP at the latest"
    );
    sidecar.wait_for_log(&["configuration reloaded"]);
    assert_eq!(metric(&sidecar, "oauth_sidecar_config_reload_total{outcome=\"applied\"}").await, 1.0);
}

#[tokio::test]
async fn a_broken_file_is_refused_with_its_place_and_the_old_rules_keep_deciding() {
    let sidecar = start(OPEN).await;
    rewrite(&sidecar, "default: deny", "default: sometimes");
    hangup(&sidecar);
    let line = sidecar.wait_for_log(&["sidecar.yaml:", "gate.default"]);
    let text = std::fs::read_to_string(config_path(&sidecar)).unwrap();
    let row = text.lines().position(|l| l.contains("default: sometimes")).unwrap() + 1;
    assert!(line.contains(&format!("sidecar.yaml:{row}:12: gate.default")), "{line}");
    sidecar.wait_for_log(&["the configuration file was refused"]);
    assert_eq!(status(&sidecar, "/api/records").await, 200, "the old rule still decides");
    assert_eq!(metric(&sidecar, "oauth_sidecar_config_reload_total{outcome=\"rejected\"}").await, 1.0);
    assert_eq!(metric(&sidecar, "oauth_sidecar_config_reload_total{outcome=\"applied\"}").await, 0.0);

    // A file only the gate's own conversion refuses (a rule both public
    // and scoped) is refused too, as check-config refuses it.
    rewrite(&sidecar, "default: sometimes", "default: deny");
    rewrite(&sidecar, "public: true", "public: true, scopes: { any_of: [farm_viewer] }");
    hangup(&sidecar);
    sidecar.wait_for_log(&["gate.rules[0].scopes", "not both"]);
    eventually(async || {
        metric(&sidecar, "oauth_sidecar_config_reload_total{outcome=\"rejected\"}").await == 2.0
    })
    .await;
    assert_eq!(status(&sidecar, "/api/records").await, 200, "the old rule still decides");
}

#[tokio::test]
async fn a_setting_that_needs_a_restart_is_named_and_keeps_its_running_value() {
    let sidecar = start(OPEN).await;
    let other_port = gate_common::free_port();
    rewrite(
        &sidecar,
        "listen: 127.0.0.1:0",
        &format!("listen: 127.0.0.1:{other_port}\nproxy: {{ timeout: 5s }}"),
    );
    rewrite(&sidecar, OPEN, CLOSED);
    hangup(&sidecar);
    let line = sidecar.wait_for_log(&["change only with a restart"]);
    let json: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["fields"]["settings"], "listen, proxy.timeout", "{line}");
    sidecar.wait_for_log(&["configuration reloaded"]);
    // The rules changed; the listener did not move.
    assert_eq!(status(&sidecar, "/api/records").await, 401);
    assert!(std::net::TcpStream::connect(("127.0.0.1", other_port)).is_err());
}

#[tokio::test]
async fn watch_reloads_a_changed_file_without_a_signal() {
    let sidecar = start(&format!("reload: {{ watch: true }}\n{OPEN}")).await;
    assert_eq!(status(&sidecar, "/api/records").await, 200);
    rewrite(&sidecar, OPEN, CLOSED);
    sidecar.wait_for_log(&["the configuration file changed; reloading"]);
    sidecar.wait_for_log(&["configuration reloaded"]);
    assert_eq!(status(&sidecar, "/api/records").await, 401);
    // A broken save is refused like a broken file on SIGHUP.
    rewrite(&sidecar, "default: deny", "default: [");
    eventually(async || {
        metric(&sidecar, "oauth_sidecar_config_reload_total{outcome=\"rejected\"}").await == 1.0
    })
    .await;
    assert_eq!(status(&sidecar, "/api/records").await, 401);
}

/// A second consumer, acting as a new user with a new role.
const AUDITING: &str = r#"
    farm_auditor: { label: Auditor }
  consumers:
    - client_id: auditing
      secret: auditing-secret-0123456789
      user_id: auditor
      scopes: [farm_auditor]
      grant_types: [client_credentials]
"#;

#[tokio::test]
async fn consumers_users_roles_and_identity_headers_come_from_the_reloaded_file() {
    let rules = "gate:\n  default: deny\n  rules:\n    - { path: /api/**, scopes: { any_of: [farm_viewer, farm_auditor] } }\n";
    let sidecar = start(&rules.replace("farm_auditor", "farm_viewer")).await;
    let denied = reqwest_client()
        .post(sidecar.url("/oauth/token"))
        .basic_auth("auditing", Some("auditing-secret-0123456789"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401, "no such consumer yet");

    rewrite(&sidecar, "\n  consumers:\n", AUDITING);
    rewrite(
        &sidecar,
        "  users:\n",
        "  users:\n    - { username: auditor, password: auditor-password, roles: [farm_auditor] }\n",
    );
    rewrite(&sidecar, "any_of: [farm_viewer, farm_viewer]", "any_of: [farm_viewer, farm_auditor]");
    rewrite(&sidecar, "  default: deny\n", "  default: deny\n  identity_headers: { subject: X-Who }\n");
    hangup(&sidecar);
    sidecar.wait_for_log(&["configuration reloaded"]);

    let token = client_token(&sidecar.url(""), "auditing", "auditing-secret-0123456789").await;
    let res = reqwest_client().get(sidecar.url("/api/records")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let echoed: Value = res.json().await.unwrap();
    assert_eq!(echoed["headers"]["x-who"][0], "auditor", "{echoed}");
    assert!(echoed["headers"]["x-auth-subject"].is_null(), "{echoed}");
    // The consumer the file kept still works.
    let token = client_token(&sidecar.url(""), "reporting", REPORTING_SECRET).await;
    let res = reqwest_client().get(sidecar.url("/api/records")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// Polls `check` for up to 5 s.
async fn eventually(mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "not within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn egress_routes_and_the_log_level_come_from_the_reloaded_file() {
    let sidecar = Sidecar::start(
        "client:\n  token_key: 3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=\n  clients:\n    - { name: mail, provider: demo, client_id: mailapp }\n\
         egress:\n  listen: 127.0.0.1:0\n  routes:\n    - { prefix: /old/, target: \"http://127.0.0.1:9\", client: mail, tag: box }\n",
    );
    let egress = sidecar.egress_addr();
    let egress_status = async |path: &str| {
        reqwest_client().get(format!("http://{egress}{path}")).send().await.unwrap().status().as_u16()
    };
    // A route without a token yet: 503; no route: 404.
    assert_eq!(egress_status("/old/me").await, 503);
    assert_eq!(egress_status("/new/me").await, 404);
    assert_eq!(status(&sidecar, "/healthz").await, 200);
    sidecar.wait_for_log(&["\"access\"", "/healthz"]);
    rewrite(&sidecar, "prefix: /old/", "prefix: /new/");
    rewrite(&sidecar, "level: info", "level: warn");
    hangup(&sidecar);
    eventually(async || egress_status("/new/me").await == 503).await;
    assert_eq!(egress_status("/old/me").await, 404);
    // At `warn`, a request's access line (at `info`) is no longer written.
    let before = sidecar.logs().len();
    assert_eq!(status(&sidecar, "/healthz").await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = sidecar.logs();
    assert!(!after[before..].iter().any(|l| l.contains("/healthz")), "{:#?}", &after[before..]);
}

/// A CORS preflight for `path` from `origin`.
async fn preflight(sidecar: &Sidecar, path: &str, origin: &str) -> reqwest::Response {
    reqwest_client()
        .request(reqwest::Method::OPTIONS, sidecar.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_settings_and_allowed_origins_come_from_the_reloaded_file() {
    let app = "http://app.example.org";
    let sidecar = start(&format!("{CLOSED}  cors: {{ max_age: 1h }}\n")).await;
    for path in ["/api/records", "/oauth/token"] {
        let res = preflight(&sidecar, path, app).await;
        assert_eq!(res.status(), 403, "{path}: no consumer lists the origin yet");
    }
    rewrite(
        &sidecar,
        "      user_id: reporter\n",
        &format!("      user_id: reporter\n      allowed_origins: [{app}]\n"),
    );
    rewrite(&sidecar, "max_age: 1h", "max_age: 2m");
    hangup(&sidecar);
    sidecar.wait_for_log(&["configuration reloaded"]);
    for path in ["/api/records", "/oauth/token"] {
        let res = preflight(&sidecar, path, app).await;
        assert_eq!(res.status(), 204, "{path}");
        assert_eq!(res.headers()["access-control-allow-origin"], app, "{path}");
        assert_eq!(res.headers()["access-control-max-age"], "120", "{path}");
    }
}

#[tokio::test]
async fn the_admin_api_checks_users_against_the_reloaded_roles() {
    let upstream = common::spawn_upstream().await;
    let dir = common::write_config(
        &format!("upstream: http://{upstream}\n{REPORTING_SERVER}{OPEN}"),
        "listen: 127.0.0.1:0\n",
    );
    let out = common::cli(
        dir.path(),
        &["admin", "token", "create", "--label", "ops", "--permission", "administer oauth"],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.lines().find_map(|l| l.strip_prefix("token: ")).expect("a token").to_owned();
    let sidecar = Sidecar::start_in(dir);
    let add = async |username: &str| {
        reqwest_client()
            .post(sidecar.url("/admin/api/users"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "username": username, "password": "carol-password", "roles": ["farm_auditor"] }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(add("carol").await, 400, "farm_auditor is not a role yet");
    rewrite(&sidecar, "\n  consumers:\n", "\n    farm_auditor: { label: Auditor }\n  consumers:\n");
    hangup(&sidecar);
    sidecar.wait_for_log(&["configuration reloaded"]);
    assert_eq!(add("carol").await, 201);
}

#[tokio::test]
async fn an_issuer_added_to_the_file_is_trusted_after_the_reload() {
    let issuer = gate_common::spawn_issuer().await;
    let key = gate_common::ed25519_key("remote-1");
    issuer.set_keys(&[&key]);
    let now = gate_common::now();
    let token = gate_common::sign(
        &key,
        &serde_json::json!({
            "iss": issuer.issuer(), "sub": "remote-user", "aud": "https://api.example.test",
            "client_id": "remote-app", "scope": "farm_viewer", "iat": now, "exp": now + 600,
        }),
    );
    let sidecar = start(CLOSED).await;
    let get = async || {
        reqwest_client().get(sidecar.url("/api/records")).bearer_auth(&token).send().await.unwrap().status()
    };
    assert_eq!(get().await, 401, "an issuer the gate does not know");
    rewrite(
        &sidecar,
        CLOSED,
        &format!(
            "{CLOSED}  issuers:\n    - {{ issuer: \"{}\", audience: https://api.example.test }}\n",
            issuer.issuer()
        ),
    );
    hangup(&sidecar);
    sidecar.wait_for_log(&["configuration reloaded"]);
    assert_eq!(get().await, 200);
}

/// The answer of the forward-auth endpoint for `GET /api/records`, as nginx
/// asks it.
async fn forward_auth_status(sidecar: &Sidecar) -> u16 {
    reqwest_client()
        .get(sidecar.url("/oauth/check"))
        .header("x-original-uri", "/api/records")
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_forward_auth_endpoint_decides_with_the_reloaded_rules() {
    let with_check = |rules: &str| {
        rules.replace("  default: deny\n", "  default: deny\n  forward_auth: { enabled: true }\n")
    };
    let sidecar = start(&with_check(OPEN)).await;
    assert_eq!(forward_auth_status(&sidecar).await, 200);
    rewrite(
        &sidecar,
        &with_check(OPEN),
        &with_check(CLOSED).replace("enabled: true }", "enabled: true, path: /check }"),
    );
    hangup(&sidecar);
    // Its route is mounted at start: a new path is named, the old one kept.
    let line = sidecar.wait_for_log(&["change only with a restart"]);
    let json: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["fields"]["settings"], "gate.forward_auth", "{line}");
    sidecar.wait_for_log(&["configuration reloaded"]);
    assert_eq!(forward_auth_status(&sidecar).await, 401, "the new rule decides at the endpoint too");
    assert_eq!(status(&sidecar, "/api/records").await, 401);
}
