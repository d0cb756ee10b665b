//! Tokens that outlive what issued them, over real sockets with the real
//! binary and its CLI: deleting a consumer, or disabling a user, revokes
//! their access tokens at the gate within `gate.revocation_interval`, and
//! the user's refresh tokens stop working.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Sidecar, cli};
use serde_json::Value;

const GATE: &str = r#"
gate:
  revocation_interval: 1s
  rules:
    - { path: /api/**, scopes: { any_of: [farm_viewer] } }
"#;

/// A folder whose config puts the gate in front of a real upstream.
async fn config() -> tempfile::TempDir {
    let upstream = common::spawn_upstream().await;
    common::write_config(
        &format!("upstream: http://{upstream}\n{}{GATE}", common::LEGACY_SERVER),
        "listen: 127.0.0.1:0\n",
    )
}

fn run(dir: &Path, args: &[&str]) -> String {
    let out = cli(dir, args, "");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A password grant for alice through `client`.
async fn password_grant(sidecar: &Sidecar, client: (&str, &str)) -> Value {
    let form = [("grant_type", "password"), ("username", "alice"), ("password", "alice-password")];
    let (status, body) = common::post_form(&sidecar.url("/oauth/token"), client, &form).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls `/api/records` with `token` until the gate refuses it; fails when
/// it is still accepted after `gate.revocation_interval` (1 s) plus one
/// lookup and some slack.
async fn refused_within_revocation_interval(sidecar: &Sidecar, token: &str) {
    let http = common::client();
    let started = Instant::now();
    loop {
        let res = http.get(sidecar.url("/api/records")).bearer_auth(token).send().await.unwrap();
        if res.status() == 401 {
            let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(challenge.contains("invalid_token"), "{challenge}");
            return;
        }
        assert_eq!(res.status(), 200);
        assert!(started.elapsed() < Duration::from_millis(2500), "still accepted 2.5 s after the revocation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `error` of a refresh with `refresh` through `legacy`, `None` on success.
async fn refresh_error(sidecar: &Sidecar, refresh: &str) -> Option<String> {
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let (_, body) =
        common::post_form(&sidecar.url("/oauth/token"), ("legacy", "legacy-secret-0123456789"), &form).await;
    body["error"].as_str().map(str::to_owned)
}

async fn accepted(sidecar: &Sidecar, token: &str) -> bool {
    let res = common::client().get(sidecar.url("/api/records")).bearer_auth(token).send().await.unwrap();
    res.status() == 200
}

#[tokio::test]
async fn consumer_delete_revokes_its_access_tokens_at_the_gate() {
    let dir = config().await;
    let created = run(
        dir.path(),
        &["consumer", "create", "--client-id", "app", "--scope", "farm_viewer", "--grant-type", "password"],
    );
    let secret = created.lines().find_map(|l| l.strip_prefix("client_secret: ")).expect("secret").to_owned();
    let sidecar = Sidecar::start_in(dir);
    let doomed =
        password_grant(&sidecar, ("app", &secret)).await["access_token"].as_str().unwrap().to_owned();
    let other = password_grant(&sidecar, ("legacy", "legacy-secret-0123456789")).await;
    let other = other["access_token"].as_str().unwrap();
    assert!(accepted(&sidecar, &doomed).await, "valid before the delete, and now cached by the gate");

    run(sidecar.dir.path(), &["consumer", "delete", "app"]);
    refused_within_revocation_interval(&sidecar, &doomed).await;
    assert!(accepted(&sidecar, other).await, "another consumer's token is not affected");
}

#[tokio::test]
async fn user_disable_revokes_their_access_and_refresh_tokens() {
    let sidecar = Sidecar::start_in(config().await);
    let grant = password_grant(&sidecar, ("legacy", "legacy-secret-0123456789")).await;
    let token = grant["access_token"].as_str().unwrap();
    let refresh = grant["refresh_token"].as_str().unwrap();
    assert!(accepted(&sidecar, token).await, "valid before the user is disabled, and now cached by the gate");

    run(sidecar.dir.path(), &["user", "disable", "alice"]);
    refused_within_revocation_interval(&sidecar, token).await;
    assert_eq!(refresh_error(&sidecar, refresh).await.as_deref(), Some("invalid_grant"));

    // Enabled again, the user signs in anew; what was revoked stays revoked.
    run(sidecar.dir.path(), &["user", "disable", "alice", "--enable"]);
    assert_eq!(refresh_error(&sidecar, refresh).await.as_deref(), Some("invalid_grant"));
    assert!(!accepted(&sidecar, token).await);
    let fresh = password_grant(&sidecar, ("legacy", "legacy-secret-0123456789")).await;
    assert!(accepted(&sidecar, fresh["access_token"].as_str().unwrap()).await);
}
