//! `examples/axum_service.rs` protects an axum app with the gate's layers
//! against a real sidecar's JWKS (a separate process, reached over HTTP):
//! the example's own `app` is served here on a real socket.

mod common;
mod gate_common;

#[allow(dead_code)]
#[path = "../examples/axum_service.rs"]
mod example;

use common::Sidecar;
use gate_common::{client_token, free_port, reqwest_client};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_example_checks_tokens_of_a_remote_issuer() {
    let port = free_port();
    let issuer_url = format!("http://127.0.0.1:{port}");
    let issuer = Sidecar::start_with(
        r#"
server:
  roles:
    farm_viewer: { label: Viewer, description: Read farm records }
    farm_manager: { label: Manager, description: Edit farm records }
  consumers:
    - client_id: viewer
      secret: viewer-secret-0123456789
      user_id: reporter
      scopes: [farm_viewer]
      grant_types: [client_credentials]
    - client_id: manager
      secret: manager-secret-0123456789
      user_id: reporter
      scopes: [farm_manager]
      grant_types: [client_credentials]
  users:
    - username: reporter
      password: reporter-password
      roles: [farm_viewer, farm_manager]
"#,
        &format!("listen: 127.0.0.1:{port}\npublic_url: {issuer_url}\n"),
    );

    let options = example::Options {
        issuer: issuer_url.clone(),
        audience: issuer_url.clone(),
        jwks_uri: None,
        origins: vec![("viewer".into(), vec!["http://localhost:5173".into()])],
    };
    let app = example::app(&options).expect("the example's app builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = |path: &str| format!("http://{addr}{path}");

    assert_eq!(reqwest_client().get(url("/health")).send().await.unwrap().status(), 200);
    let res = reqwest_client().get(url("/api/me")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"axum-service\"");

    let viewer = client_token(&issuer.url(""), "viewer", "viewer-secret-0123456789").await;
    let res = reqwest_client()
        .get(url("/api/me"))
        .bearer_auth(&viewer)
        .header("X-Auth-Subject", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["subject"], "reporter");
    assert_eq!(me["client_id"], "viewer");
    assert_eq!(me["x_auth_subject"], "reporter", "the spoofed header was replaced");

    let res = reqwest_client().post(url("/api/notes")).bearer_auth(&viewer).body("x").send().await.unwrap();
    assert_eq!(res.status(), 403);
    let manager = client_token(&issuer.url(""), "manager", "manager-secret-0123456789").await;
    let res =
        reqwest_client().post(url("/api/notes")).bearer_auth(&manager).body("hello").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"saved_by": "reporter", "bytes": 5}));

    // CORS: the viewer's browser origin, and a token used from elsewhere.
    let res = reqwest_client()
        .get(url("/api/me"))
        .bearer_auth(&viewer)
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], "http://localhost:5173");
    let res = reqwest_client()
        .get(url("/api/me"))
        .bearer_auth(&manager)
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "the manager consumer lists no origin");
}
