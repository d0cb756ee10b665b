//! The gate against a remote issuer whose JWKS a small real HTTP server in
//! the test serves: token checks (expiry, nbf, issuer, audience, signature,
//! `alg: none`, HS256 made with the RSA public key, `typ`), key rotation
//! with an unknown `kid`, refetch throttling, stale keys when the issuer is
//! down, discovery.

mod common;
mod gate_common;

use std::time::Duration;

use common::Sidecar;
use gate_common::{
    TestIssuer, TestKey, ed25519_key, now, reqwest_client, rsa_key, sign, sign_typ, spawn_issuer,
};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://api.example.test";

async fn start(issuer: &TestIssuer, jwks_uri: bool) -> Sidecar {
    let upstream = common::spawn_upstream().await;
    let jwks = if jwks_uri { format!(", jwks_uri: {}", issuer.jwks_uri()) } else { String::new() };
    Sidecar::start(&format!(
        "upstream: http://{upstream}
gate:
  default: authenticated
  jwks_refresh: 2s
  jwks_min_interval: 1s
  issuers:
    - {{ issuer: \"{}\", audience: {AUDIENCE}{jwks} }}
",
        issuer.issuer()
    ))
}

fn claims(issuer: &TestIssuer) -> Value {
    json!({
        "iss": issuer.issuer(),
        "sub": "remote-user",
        "aud": AUDIENCE,
        "client_id": "remote-app",
        "scope": "read write",
        "preferred_username": "remote.user",
        "iat": now(),
        "exp": now() + 600,
        "jti": "j-1",
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

/// Status, `WWW-Authenticate` and body of a GET with `token`.
async fn call(sidecar: &Sidecar, token: &str) -> (u16, String, Value) {
    let res = reqwest_client()
        .get(sidecar.url("/api/x"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let challenge =
        res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, challenge, res.json().await.unwrap_or(Value::Null))
}

#[track_caller]
fn assert_invalid(got: (u16, String, Value), why: &str) {
    let (status, challenge, body) = got;
    assert_eq!(status, 401, "{why}: {body}");
    assert!(challenge.contains("error=\"invalid_token\""), "{why}: {challenge}");
    assert_eq!(body["error"], "invalid_token", "{why}");
    assert!(body["error_description"].as_str().unwrap().contains(why), "{why}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_against_the_remote_jwks() {
    let issuer = spawn_issuer().await;
    let ed = ed25519_key("ed-1");
    let rsa = rsa_key("rsa-1");
    issuer.set_keys(&[&ed, &rsa]);
    let sidecar = start(&issuer, true).await;
    let base = claims(&issuer);

    for key in [&ed, &rsa] {
        let (status, _, body) = call(&sidecar, &sign(key, &base)).await;
        assert_eq!(status, 200, "{:?}", key.alg);
        let headers = &body["headers"];
        assert_eq!(headers["x-auth-subject"], json!(["remote-user"]));
        assert_eq!(headers["x-auth-client"], json!(["remote-app"]));
        assert_eq!(headers["x-auth-scopes"], json!(["read write"]));
        assert_eq!(headers["x-auth-username"], json!(["remote.user"]));
    }

    let expired = with(base.clone(), "exp", json!(now() - 120));
    assert_invalid(call(&sidecar, &sign(&ed, &expired)).await, "expired");
    let within_leeway = with(base.clone(), "exp", json!(now() - 5));
    assert_eq!(call(&sidecar, &sign(&ed, &within_leeway)).await.0, 200, "30s of leeway");
    let early = with(base.clone(), "nbf", json!(now() + 600));
    assert_invalid(call(&sidecar, &sign(&ed, &early)).await, "not valid yet");
    let foreign = with(base.clone(), "iss", json!("https://evil.example.test"));
    assert_invalid(call(&sidecar, &sign(&ed, &foreign)).await, "issuer this gate does not trust");
    let elsewhere = with(base.clone(), "aud", json!(["https://other.example.test"]));
    assert_invalid(call(&sidecar, &sign(&ed, &elsewhere)).await, "another audience");
    let no_exp = base
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "exp")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<serde_json::Map<_, _>>();
    assert_invalid(call(&sidecar, &sign(&ed, &Value::Object(no_exp))).await, "exp");

    // Bad signature: signed by another key claiming the published kid.
    let impostor = TestKey { kid: "ed-1".into(), ..ed25519_key("x") };
    assert_invalid(call(&sidecar, &sign(&impostor, &base)).await, "bad signature");
    // A valid token with its payload changed.
    let good = sign(&ed, &base);
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        with(base.clone(), "sub", json!("admin")).to_string(),
    );
    parts[1] = &forged_payload;
    assert_invalid(call(&sidecar, &parts.join(".")).await, "bad signature");

    assert_invalid(call(&sidecar, &gate_common::unsigned("ed-1", &base)).await, "`none` is not accepted");
    assert_invalid(
        call(&sidecar, &gate_common::hs256_with_public_key(&rsa, &base)).await,
        "`HS256` is not accepted",
    );
    assert_invalid(call(&sidecar, &sign_typ(&ed, &base, "JWT")).await, "wrong typ");

    // Nothing above reached the upstream.
    for line in sidecar.logs() {
        assert!(!line.contains(&good), "a token reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_is_found_after_the_jwks_rotates() {
    let issuer = spawn_issuer().await;
    let old = ed25519_key("old");
    let new = ed25519_key("new");
    issuer.set_keys(&[&old]);
    let sidecar = start(&issuer, true).await;
    let base = claims(&issuer);
    assert_eq!(call(&sidecar, &sign(&old, &base)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Not published yet: refused, and a burst of such tokens reads the JWKS
    // at most once per jwks_min_interval (1s).
    let hits = issuer.hits();
    assert_invalid(call(&sidecar, &sign(&new, &base)).await, "signing key is unknown");
    for _ in 0..5 {
        assert_invalid(
            call(&sidecar, &sign(&new, &with(base.clone(), "jti", json!("other")))).await,
            "unknown",
        );
    }
    assert!(issuer.hits() - hits <= 1, "{} JWKS reads for one interval", issuer.hits() - hits);

    // The issuer rotates: the new kid is found at the next allowed read.
    issuer.set_keys(&[&new, &old]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = call(&sidecar, &sign(&new, &base)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(call(&sidecar, &sign(&old, &with(base.clone(), "jti", json!("j-2")))).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_served_stale_while_the_issuer_is_down() {
    let issuer = spawn_issuer().await;
    let key = ed25519_key("k");
    issuer.set_keys(&[&key]);
    let sidecar = start(&issuer, true).await;
    let base = claims(&issuer);
    assert_eq!(call(&sidecar, &sign(&key, &base)).await.0, 200);

    issuer.down.store(true, std::sync::atomic::Ordering::SeqCst);
    // Past jwks_refresh (2s): the keys are due, the issuer answers 503.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    for i in 0..3 {
        let fresh = sign(&key, &with(base.clone(), "jti", json!(format!("stale-{i}"))));
        assert_eq!(call(&sidecar, &fresh).await.0, 200, "verified with the keys read before");
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    sidecar.wait_for_log(&["cannot read the issuer's keys; using the ones read before", "503"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_found_by_discovery_and_missing_keys_are_503() {
    let issuer = spawn_issuer().await;
    let key = rsa_key("r");
    issuer.set_keys(&[&key]);
    issuer.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let sidecar = start(&issuer, false).await;
    let token = sign(&key, &claims(&issuer));
    // Never read: the gate cannot check the token, and says so honestly.
    let (status, _, body) = call(&sidecar, &token).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");

    issuer.down.store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = call(&sidecar, &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(issuer.hits() >= 1, "the jwks_uri came from /.well-known/openid-configuration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_token_expires_on_a_kept_alive_connection() {
    let issuer = spawn_issuer().await;
    let key = ed25519_key("k");
    issuer.set_keys(&[&key]);
    let upstream = common::spawn_upstream().await;
    let sidecar = Sidecar::start(&format!(
        "upstream: http://{upstream}
gate:
  default: authenticated
  leeway: 0s
  issuers:
    - {{ issuer: \"{}\", audience: {AUDIENCE}, jwks_uri: {} }}
",
        issuer.issuer(),
        issuer.jwks_uri()
    ));
    let token = sign(&key, &with(claims(&issuer), "exp", json!(now() + 2)));
    let client = reqwest_client();
    let get = || client.get(sidecar.url("/api/x")).bearer_auth(&token).send();
    for _ in 0..3 {
        assert_eq!(get().await.unwrap().status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let res = get().await.unwrap();
    assert_eq!(res.status(), 401, "expired, though cached and repeated on the same connection");
    let body: Value = res.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("expired"));
}
