//! Opaque tokens checked by RFC 7662 introspection against a real HTTP
//! endpoint in the test, answers cached.

mod common;
mod gate_common;

use std::sync::atomic::Ordering;

use common::Sidecar;
use gate_common::{now, reqwest_client, spawn_issuer};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_introspected_and_cached() {
    let issuer = spawn_issuer().await;
    issuer.active.lock().unwrap().push((
        "opaque-token-0123456789".into(),
        json!({
            "active": true, "sub": "u-7", "username": "carol", "client_id": "legacy-app",
            "scope": "farm_viewer", "exp": now() + 600, "iss": issuer.issuer(),
        }),
    ));
    let upstream = common::spawn_upstream().await;
    let sidecar = Sidecar::start(&format!(
        "upstream: http://{upstream}
gate:
  rules:
    - {{ path: /api/**, scopes: {{ any_of: [farm_viewer] }} }}
  introspection:
    endpoint: http://{}/introspect
    client_id: gate
    client_secret: gate-secret-0123456789
    max_ttl: 1m
",
        issuer.addr
    ));
    let get = |token: &'static str| reqwest_client().get(sidecar.url("/api/x")).bearer_auth(token).send();

    let res = get("opaque-token-0123456789").await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["headers"]["x-auth-subject"], json!(["u-7"]));
    assert_eq!(body["headers"]["x-auth-username"], json!(["carol"]));
    assert_eq!(body["headers"]["x-auth-client"], json!(["legacy-app"]));
    assert_eq!(issuer.introspections.load(Ordering::SeqCst), 1);

    for _ in 0..3 {
        assert_eq!(get("opaque-token-0123456789").await.unwrap().status(), 200);
    }
    assert_eq!(issuer.introspections.load(Ordering::SeqCst), 1, "the answer is cached");

    let res = get("unknown-opaque-token").await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    assert_eq!(get("unknown-opaque-token").await.unwrap().status(), 401);
    assert_eq!(issuer.introspections.load(Ordering::SeqCst), 2, "an inactive answer is cached too");

    issuer.down.store(true, Ordering::SeqCst);
    let res = get("another-opaque-token").await.unwrap();
    assert_eq!(res.status(), 503, "an unreachable endpoint is not the token's fault");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_and_other_audiences_are_refused() {
    let issuer = spawn_issuer().await;
    let answer = |token_type: Option<&str>, aud: Option<Value>| {
        let mut answer = json!({
            "active": true, "sub": "u-7", "client_id": "legacy-app", "scope": "farm_viewer",
            "exp": now() + 600, "iss": issuer.issuer(),
        });
        if let Some(t) = token_type {
            answer["token_type"] = t.into();
        }
        if let Some(aud) = aud {
            answer["aud"] = aud;
        }
        answer
    };
    let cases = [
        ("refresh-token-0123456789", answer(Some("refresh_token"), None), 401),
        ("refresh-urn-0123456789", answer(Some("urn:ietf:params:oauth:token-type:refresh_token"), None), 401),
        ("bearer-token-0123456789", answer(Some("Bearer"), None), 200),
        ("other-aud-0123456789", answer(Some("Bearer"), Some(json!("https://other.test"))), 401),
        ("other-auds-0123456789", answer(None, Some(json!(["https://other.test", "x"]))), 401),
        ("our-aud-0123456789", answer(None, Some(json!(["https://other.test", "https://app.test"]))), 200),
    ];
    issuer.active.lock().unwrap().extend(cases.iter().map(|(t, a, _)| ((*t).to_owned(), a.clone())));
    let upstream = common::spawn_upstream().await;
    let sidecar = Sidecar::start(&format!(
        "upstream: http://{upstream}
gate:
  audience: https://app.test
  rules:
    - {{ path: /api/**, scopes: {{ any_of: [farm_viewer] }} }}
  introspection:
    endpoint: http://{}/introspect
    client_id: gate
    client_secret: gate-secret-0123456789
",
        issuer.addr
    ));
    for (token, _, status) in cases {
        let res = reqwest_client().get(sidecar.url("/api/x")).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), status, "{token}");
        if status == 401 {
            let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(challenge.contains("invalid_token"), "{token}: {challenge}");
        }
    }
}
