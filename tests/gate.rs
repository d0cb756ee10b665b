//! The resource gate over real sockets, with the real binary: tokens of the
//! local authorization server, route rules and scopes, identity headers,
//! revocation, and where tokens may be carried.

mod common;
mod gate_common;

use std::time::{Duration, Instant};

use common::Sidecar;
use gate_common::{claims_of, client_token, reqwest_client};
use oauth_sidecar::store::{ServerStore, SqliteStore, StoreBase};
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
    - client_id: managing
      secret: managing-secret-0123456789
      user_id: alice
      scopes: [farm_viewer, farm_manager]
      grant_types: [client_credentials]
  users:
    - username: reporter
      password: reporter-password
      roles: [farm_viewer]
    - username: alice
      password: alice-password
      roles: [farm_viewer, farm_manager]
"#;

const GATE: &str = r#"
gate:
  revocation_interval: 1s
  rules:
    - { path: /public/**, public: true }
    - { path: /api/**, methods: [GET], scopes: { any_of: [farm_viewer, farm_manager] } }
    - { path: /api/**, scopes: { any_of: [farm_manager] } }
    - { path: /both/**, scopes: { all_of: [farm_viewer, farm_manager] } }
    - { path: /query/**, allow_query_token: true }
    - { path: /upload, allow_form_token: true }
"#;

async fn start() -> Sidecar {
    let upstream = common::spawn_upstream().await;
    Sidecar::start(&format!("upstream: http://{upstream}\n{SERVER}{GATE}"))
}

async fn reporting(sidecar: &Sidecar) -> String {
    client_token(&sidecar.url(""), "reporting", "reporting-secret-0123456789").await
}

async fn managing(sidecar: &Sidecar) -> String {
    client_token(&sidecar.url(""), "managing", "managing-secret-0123456789").await
}

/// The headers the upstream echo received.
async fn echoed(res: reqwest::Response) -> Value {
    assert_eq!(res.status(), 200, "expected the upstream's answer");
    let body: Value = res.json().await.unwrap();
    body["headers"].clone()
}

fn header<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers[name].as_array().and_then(|a| a.first()).and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_passes_with_identity_headers() {
    let sidecar = start().await;
    let token = reporting(&sidecar).await;
    let res = reqwest_client().get(sidecar.url("/api/logs/1")).bearer_auth(&token).send().await.unwrap();
    let headers = echoed(res).await;
    assert_eq!(header(&headers, "x-auth-subject"), Some("reporter"));
    assert_eq!(header(&headers, "x-auth-client"), Some("reporting"));
    assert_eq!(header(&headers, "x-auth-scopes"), Some("authenticated farm_viewer"));
    assert_eq!(header(&headers, "x-auth-username"), Some("reporter"));
    assert_eq!(
        header(&headers, "authorization"),
        Some(format!("Bearer {token}").as_str()),
        "forwarded by default"
    );

    // A repeat of the same token (served from the cache) passes the same way.
    let res = reqwest_client().head(sidecar.url("/api/logs/1")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200, "HEAD follows the GET rule");

    let managing = managing(&sidecar).await;
    let res =
        reqwest_client().delete(sidecar.url("/api/logs/1")).bearer_auth(&managing).send().await.unwrap();
    assert_eq!(header(&echoed(res).await, "x-auth-subject"), Some("alice"));
    let res = reqwest_client().get(sidecar.url("/both/x")).bearer_auth(&managing).send().await.unwrap();
    assert_eq!(res.status(), 200, "all_of satisfied");

    for line in sidecar.logs() {
        assert!(!line.contains(&token) && !line.contains(&managing), "a token reached the log: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_is_401_with_a_bare_challenge() {
    let sidecar = start().await;
    for req in [
        reqwest_client().get(sidecar.url("/api/logs")),
        reqwest_client().get(sidecar.url("/api/logs")).basic_auth("alice", Some("alice-password")),
    ] {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401);
        let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer realm=\""), "{challenge}");
        assert!(!challenge.contains("error="), "no error code without a token: {challenge}");
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "missing_token", "the body names the problem for programs: {body}");
        assert!(body["error_description"].as_str().unwrap().contains("bearer token"));
        assert!(body.get("headers").is_none(), "the upstream was not reached");
    }
    sidecar.wait_for_log(&["refused by the gate", "rules[1] GET /api/**", "no bearer token"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_scope_is_403_with_the_scope() {
    let sidecar = start().await;
    let token = reporting(&sidecar).await;
    let res = reqwest_client().post(sidecar.url("/api/logs")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    assert!(challenge.ends_with("scope=\"farm_manager\""), "{challenge}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_scope");

    let res = reqwest_client().get(sidecar.url("/both/x")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        res.headers()["www-authenticate"].to_str().unwrap().ends_with("scope=\"farm_viewer farm_manager\"")
    );
    let jti = claims_of(&token)["jti"].as_str().unwrap().to_owned();
    let line = sidecar.wait_for_log(&["refused by the gate", "rules[2] /api/**", "insufficient scope"]);
    assert!(line.contains(&jti), "the log names the token's jti: {line}");
    assert!(line.contains("\"client_id\":\"reporting\""), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_removed_on_public_and_protected_routes() {
    let sidecar = start().await;
    let spoof = |req: reqwest::RequestBuilder| {
        req.header("X-Auth-Subject", "admin")
            .header("x-auth-client", "admin-console")
            .header("X-Auth-Scopes", "farm_manager admin")
            .header("X-Auth-Username", "admin")
    };
    let headers =
        echoed(spoof(reqwest_client().get(sidecar.url("/public/page"))).send().await.unwrap()).await;
    for name in ["x-auth-subject", "x-auth-client", "x-auth-scopes", "x-auth-username"] {
        assert_eq!(header(&headers, name), None, "{name} reached the upstream on a public route");
    }
    let token = reporting(&sidecar).await;
    let res = spoof(reqwest_client().get(sidecar.url("/api/x")).bearer_auth(&token)).send().await.unwrap();
    let headers = echoed(res).await;
    assert_eq!(headers["x-auth-subject"], serde_json::json!(["reporter"]), "only the gate's value");
    assert_eq!(headers["x-auth-scopes"], serde_json::json!(["authenticated farm_viewer"]));
    assert_eq!(headers["x-auth-username"], serde_json::json!(["reporter"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_are_removed_without_a_gate_section() {
    let upstream = common::spawn_upstream().await;
    let sidecar = Sidecar::start(&format!("upstream: http://{upstream}\n"));
    let res = reqwest_client().get(sidecar.url("/x")).header("X-Auth-Subject", "admin").send().await.unwrap();
    assert_eq!(header(&echoed(res).await, "x-auth-subject"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_is_refused_within_the_bound() {
    let sidecar = start().await;
    let token = reporting(&sidecar).await;
    let api = sidecar.url("/api/logs");
    // One client: its keep-alive connection repeats the token, which the
    // gate then recognises without hashing it; revocation must still apply.
    let client = reqwest_client();
    let ok = client.get(&api).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), 200, "valid before its revocation, and now cached");

    let claims = claims_of(&token);
    let store = SqliteStore::open(&sidecar.store_path()).await.unwrap();
    store
        .revoke_access_token(claims["jti"].as_str().unwrap(), claims["exp"].as_i64().unwrap())
        .await
        .unwrap();
    store.close().await;
    let revoked_at = Instant::now();

    // revocation_interval is 1s: refused within that plus one lookup.
    let status = loop {
        let res = client.get(&api).bearer_auth(&token).send().await.unwrap();
        if res.status() != 200 {
            break res;
        }
        assert!(revoked_at.elapsed() < Duration::from_millis(2500), "still accepted 2.5 s after revocation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.status(), 401);
    assert!(status.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    let body: Value = status.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("revoked"));
    // And it stays refused.
    let again = client.get(&api).bearer_auth(&token).send().await.unwrap();
    assert_eq!(again.status(), 401);
    // Other tokens are not affected.
    let fresh = reporting(&sidecar).await;
    assert_eq!(client.get(&api).bearer_auth(&fresh).send().await.unwrap().status(), 200);
    assert_eq!(
        client.get(&api).bearer_auth(&token).send().await.unwrap().status(),
        401,
        "after another token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_requests_are_denied_by_default() {
    let sidecar = start().await;
    let token = managing(&sidecar).await;
    let res = reqwest_client().get(sidecar.url("/internal/report")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "access_denied");
    sidecar.wait_for_log(&["refused by the gate", "default(deny)"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_form_tokens_only_where_enabled() {
    let sidecar = start().await;
    let token = reporting(&sidecar).await;
    let res =
        reqwest_client().get(sidecar.url(&format!("/api/x?access_token={token}"))).send().await.unwrap();
    assert_eq!(res.status(), 400, "the query string is not accepted on /api");
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("invalid_request"));

    let res = reqwest_client()
        .get(sidecar.url(&format!("/query/x?a=1&access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&echoed(res).await, "x-auth-subject"), Some("reporter"));

    let both = reqwest_client()
        .get(sidecar.url(&format!("/query/x?access_token={token}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400, "two methods at once");

    // The form body carries the token and still reaches the upstream whole.
    let form = format!("name=a+b&access_token={token}&x=1");
    let res = reqwest_client()
        .post(sidecar.url("/upload"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), form.len().to_string());

    let res = reqwest_client()
        .post(sidecar.url("/api/x"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a form token is not looked for on /api");

    // The query string is not logged, so neither is a token in it.
    for line in sidecar.logs() {
        assert!(!line.contains(&token), "a token reached the log: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_an_upstream_could_resolve_elsewhere_are_refused() {
    let sidecar = start().await;
    for path in ["/public/../api/x", "/public/%2e%2e/api/x", "/public%2F..%2Fapi", "/public/./x"] {
        let answer = common::raw(
            sidecar.addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }
    // Percent-encoded letters are the letters: /%61pi is /api, which needs a token.
    let answer = common::raw(sidecar.addr, b"GET /%61pi/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_foreign_tokens_are_invalid() {
    let sidecar = start().await;
    for (token, status) in [("not-a-jwt", 401), ("a.b.c", 401), ("a,b", 400)] {
        let res = reqwest_client()
            .get(sidecar.url("/api/x"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{token}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_header_names_and_authorization_forwarding_are_configurable() {
    let upstream = common::spawn_upstream().await;
    let gate = r#"
gate:
  forward_authorization: false
  default: authenticated
  identity_headers: { subject: X-Remote-User, client: X-Remote-Client, scopes: X-Remote-Roles, username: X-Remote-Name }
"#;
    let sidecar = Sidecar::start(&format!("upstream: http://{upstream}\n{SERVER}{gate}"));
    let token = reporting(&sidecar).await;
    let res = reqwest_client()
        .get(sidecar.url("/anything"))
        .bearer_auth(&token)
        .header("X-Remote-User", "admin")
        .send()
        .await
        .unwrap();
    let headers = echoed(res).await;
    assert_eq!(headers["x-remote-user"], serde_json::json!(["reporter"]));
    assert_eq!(header(&headers, "x-remote-roles"), Some("authenticated farm_viewer"));
    assert_eq!(header(&headers, "authorization"), None, "stripped");
    assert_eq!(header(&headers, "x-auth-subject"), None);
}
