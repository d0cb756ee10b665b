//! Two sidecar processes: the second trusts the first as a remote issuer
//! and validates its tokens through discovery and JWKS only (no shared
//! store, nothing in process).

mod common;
mod gate_common;

use common::Sidecar;
use gate_common::{REPORTING_SECRET, REPORTING_SERVER, client_token, free_port, reqwest_client};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sidecar_validates_tokens_of_the_first_through_jwks_only() {
    let port = free_port();
    let first_url = format!("http://127.0.0.1:{port}");
    let first = Sidecar::start_with(
        REPORTING_SERVER,
        &format!("listen: 127.0.0.1:{port}\npublic_url: {first_url}\n"),
    );
    let token = client_token(&first.url(""), "reporting", REPORTING_SECRET).await;

    let upstream = common::spawn_upstream().await;
    let second = Sidecar::start(&format!(
        "upstream: http://{upstream}
gate:
  rules:
    - {{ path: /api/**, scopes: {{ any_of: [farm_viewer] }} }}
  issuers:
    - {{ issuer: \"{first_url}\", audience: \"{first_url}\" }}
"
    ));

    let res = reqwest_client().get(second.url("/api/records")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["headers"]["x-auth-subject"], json!(["reporter"]));
    assert_eq!(body["headers"]["x-auth-client"], json!(["reporting"]));
    assert_eq!(body["headers"]["x-auth-scopes"], json!(["authenticated farm_viewer"]));

    // The second has no authorization server of its own.
    let res = reqwest_client().get(second.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(res.status(), 403, "proxied path, refused by the default rule");

    // A token for the first issuer but signed by nobody it publishes fails.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    let res =
        reqwest_client().get(second.url("/api/records")).bearer_auth(parts.join(".")).send().await.unwrap();
    assert_eq!(res.status(), 401);

    // When the first stops, tokens already verified keep passing from the
    // second's cache, and its keys stay usable for new tokens it signed.
    let other = client_token(&first.url(""), "reporting", REPORTING_SECRET).await;
    drop(first);
    for t in [&token, &other] {
        let res = reqwest_client().get(second.url("/api/records")).bearer_auth(t).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
}

/// An outside issuer that is not up when the sidecar starts (a common start
/// order in Compose and Kubernetes) is read within seconds of answering,
/// not after `jwks_min_interval`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_that_starts_after_the_sidecar_is_used_within_seconds() {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let upstream = common::spawn_upstream().await;
    let sidecar = Sidecar::start(&format!(
        "upstream: http://{upstream}
gate:
  default: authenticated
  jwks_min_interval: 30s
  issuers:
    - {{ issuer: \"http://{addr}\", audience: https://api.example.test }}
"
    ));
    let key = gate_common::ed25519_key("late-1");
    let now = gate_common::now();
    let token = gate_common::sign(
        &key,
        &json!({
            "iss": format!("http://{addr}"), "sub": "remote-user", "aud": "https://api.example.test",
            "client_id": "remote-app", "scope": "read", "iat": now, "exp": now + 600,
        }),
    );
    let client = reqwest_client();
    let get = || client.get(sidecar.url("/api/x")).bearer_auth(&token).send();
    let res = get().await.unwrap();
    assert_eq!(res.status(), 503, "the issuer is not up yet");

    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let issuer = gate_common::spawn_issuer_on(addr).await;
    issuer.set_keys(&[&key]);
    let up = std::time::Instant::now();
    loop {
        let status = get().await.unwrap().status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            up.elapsed() < std::time::Duration::from_secs(5),
            "still 503 five seconds after the issuer came up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sidecar.wait_for_log(&["refused by the gate", "cached", "s ago"]);
}
