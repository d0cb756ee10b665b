//! The edge where the gate and the upstream could disagree, over real
//! sockets with the real binary: identity headers in other spellings,
//! `Connection` naming the gate's headers, and paths an upstream may
//! resolve to another route than the one the rules judged.

mod common;
mod gate_common;

use common::{Sidecar, raw, spawn_upstream};
use gate_common::{REPORTING_SECRET, REPORTING_SERVER, client_token};
use serde_json::Value;

const GATE: &str = r#"
gate:
  rules:
    - { path: /open/**, public: true }
    - { path: /api/**, scopes: { any_of: [farm_viewer] } }
"#;

async fn start(gate: &str) -> Sidecar {
    let upstream = spawn_upstream().await;
    Sidecar::start(&format!("upstream: http://{upstream}\n{REPORTING_SERVER}{gate}"))
}

async fn token(sidecar: &Sidecar) -> String {
    client_token(&sidecar.url(""), "reporting", REPORTING_SECRET).await
}

/// One request over its own connection, as written; the status and the
/// upstream echo's JSON (`null` when the sidecar answered itself).
fn send(sidecar: &Sidecar, path: &str, headers: &[(&str, &str)]) -> (u16, Value, String) {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let response = raw(sidecar.addr, request.as_bytes());
    let status = response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null), response)
}

/// The identity headers the upstream received, in any spelling.
fn identity_seen(echo: &Value) -> Vec<(String, Value)> {
    echo["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter(|(k, _)| k.replace('_', "-").starts_with("x-auth-"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

const SPELLINGS: [(&str, &str); 5] = [
    ("X-Auth_Subject", "admin"),
    ("x_auth_subject", "admin"),
    ("X_AUTH_SCOPES", "farm_manager admin"),
    ("X-Auth_Client", "admin-console"),
    ("x-auth_username", "admin"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_in_any_spelling_never_reach_the_upstream() {
    let sidecar = start(GATE).await;
    let (status, echo, response) = send(&sidecar, "/open/page", &SPELLINGS);
    assert_eq!(status, 200, "{response}");
    assert_eq!(identity_seen(&echo), vec![], "public route");

    let bearer = format!("Bearer {}", token(&sidecar).await);
    let mut headers = SPELLINGS.to_vec();
    headers.push(("Authorization", &bearer));
    let (status, echo, response) = send(&sidecar, "/api/x", &headers);
    assert_eq!(status, 200, "{response}");
    let seen = identity_seen(&echo);
    let names: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["x-auth-client", "x-auth-scopes", "x-auth-subject", "x-auth-username"], "{seen:?}");
    assert_eq!(echo["headers"]["x-auth-subject"], serde_json::json!(["reporter"]));

    let upstream = spawn_upstream().await;
    let plain = Sidecar::start(&format!("upstream: http://{upstream}\n"));
    let (status, echo, response) = send(&plain, "/x", &SPELLINGS);
    assert_eq!(status, 200, "{response}");
    assert_eq!(identity_seen(&echo), vec![], "without a gate section");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cannot_remove_the_identity_headers_the_gate_set() {
    let sidecar = start(GATE).await;
    let bearer = format!("Bearer {}", token(&sidecar).await);
    let (status, echo, response) = send(
        &sidecar,
        "/api/x",
        &[("Authorization", &bearer), ("Connection", "x-auth-subject, X-Auth-Scopes, x_auth_client")],
    );
    assert_eq!(status, 200, "{response}");
    let headers = &echo["headers"];
    assert_eq!(headers["x-auth-subject"], serde_json::json!(["reporter"]), "{echo}");
    assert_eq!(headers["x-auth-scopes"], serde_json::json!(["authenticated farm_viewer"]), "{echo}");
    assert_eq!(headers["x-auth-client"], serde_json::json!(["reporting"]), "{echo}");
    assert!(headers.get("connection").is_none(), "{echo}");

    // A header the client named in Connection is still not forwarded.
    let (status, echo, response) =
        send(&sidecar, "/open/x", &[("Connection", "x-hop"), ("X-Hop", "1"), ("X-Kept", "1")]);
    assert_eq!(status, 200, "{response}");
    assert!(echo["headers"].get("x-hop").is_none(), "{echo}");
    assert_eq!(echo["headers"]["x-kept"], serde_json::json!(["1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confusable_paths_are_refused_and_the_upstream_gets_the_judged_path() {
    let sidecar = start(GATE).await;
    for path in [
        "/open/..;/api/x",
        "/open/%2e%2e/api/x",
        "/open/%2e%2E/api/x",
        "/open/..%2fapi/x",
        "/open/.;x/../api/x",
        "/open/%2e%2e;/api/x",
        "/open/..%5capi/x",
        "/open/;x/api/x",
    ] {
        let (status, echo, response) = send(&sidecar, path, &[]);
        assert_eq!(status, 400, "{path}: {response}");
        assert_eq!(echo["error"], "invalid_request", "{path}: {response}");
        assert!(echo["error_description"].as_str().unwrap().contains("the path has"), "{path}: {response}");
    }
    // Parameters do not hide a protected segment.
    let (status, _, response) = send(&sidecar, "/api;jsessionid=1/x", &[]);
    assert_eq!(status, 401, "judged as /api/x: {response}");
    // The upstream gets the canonical path, the one the rules judged.
    for (path, judged) in
        [("//open//x", "/open/x"), ("/%6Fpen/x", "/open/x"), ("/open/a;v=1//b/", "/open/a;v=1/b/")]
    {
        let (status, echo, response) = send(&sidecar, &format!("{path}?q=1"), &[]);
        assert_eq!(status, 200, "{path}: {response}");
        assert_eq!(echo["path"], judged, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_case_insensitive_judges_any_case_under_the_rule() {
    let rules = "  default: allow\n  rules:\n    - { path: /api/**, scopes: { any_of: [farm_viewer] } }\n";
    let sensitive = start(&format!("gate:\n{rules}")).await;
    let (status, echo, _) = send(&sensitive, "/API/x", &[]);
    assert_eq!(
        (status, echo["path"].as_str()),
        (200, Some("/API/x")),
        "another path to a case-sensitive upstream"
    );
    let insensitive = start(&format!("gate:\n  path_case: insensitive\n{rules}")).await;
    let (status, _, response) = send(&insensitive, "/API/x", &[]);
    assert_eq!(status, 401, "{response}");
    let (status, _, response) = send(&insensitive, "/%41pi/x", &[]);
    assert_eq!(status, 401, "{response}");
}
