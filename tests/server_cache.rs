//! The token endpoint keeps consumer and user records for at most
//! `server::cache::RECORD_TTL`: changes the CLI makes to the store while the
//! sidecar runs reach it within that bound, and a rotated secret at once.
//! Over real sockets, against the real binary; the CLI is the real binary too.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Sidecar;
use oauth_sidecar::server::cache::RECORD_TTL;
use serde_json::Value;

const SERVER: &str = r#"
server:
  roles:
    farm_viewer: { label: Viewer, description: Read farm records }
"#;

/// Runs `oauth-sidecar ARGS --config DIR/sidecar.yaml` with `stdin`; returns
/// its standard output, failing the test when the command fails.
fn cli(dir: &Path, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
        .args(args)
        .arg("--config")
        .arg(dir.join("sidecar.yaml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oauth-sidecar");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn printed_secret(text: &str) -> String {
    text.lines().find_map(|l| l.strip_prefix("client_secret: ")).expect("a secret is printed").to_owned()
}

/// A sidecar serving the `reporting` consumer (client_credentials, acting as
/// `reporter`), both made by the CLI; returns it with the consumer's secret.
fn start() -> (Sidecar, String) {
    let dir = common::write_config(SERVER, "listen: 127.0.0.1:0\n");
    let created = cli(
        dir.path(),
        &[
            "consumer",
            "create",
            "--client-id",
            "reporting",
            "--user-id",
            "reporter",
            "--scope",
            "farm_viewer",
            "--grant-type",
            "client_credentials",
        ],
        "",
    );
    cli(dir.path(), &["user", "add", "reporter", "--role", "farm_viewer"], "reporter-password\n");
    (Sidecar::start_in(dir), printed_secret(&created))
}

/// A client_credentials request with client_secret_basic.
async fn client_credentials(sidecar: &Sidecar, secret: &str) -> (u16, Value) {
    let res = common::client()
        .post(sidecar.url("/oauth/token"))
        .basic_auth("reporting", Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("token request");
    (res.status().as_u16(), res.json().await.expect("json"))
}

/// Waits out the cache's bound, from now: whatever was cached before has
/// expired afterwards. Not a timing assertion: the bound is what is tested.
async fn wait_out_the_bound() {
    tokio::time::sleep(RECORD_TTL + Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_consumer_deleted_by_the_cli_is_refused_once_the_bound_has_passed() {
    let (sidecar, secret) = start();
    let (status, body) = client_credentials(&sidecar, &secret).await;
    assert_eq!(status, 200, "{body}");

    cli(sidecar.dir.path(), &["consumer", "delete", "reporting"], "");
    wait_out_the_bound().await;
    let (status, body) = client_credentials(&sidecar, &secret).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
}

#[tokio::test]
async fn a_user_disabled_by_the_cli_gets_no_token_once_the_bound_has_passed() {
    let (sidecar, secret) = start();
    let (status, body) = client_credentials(&sidecar, &secret).await;
    assert_eq!(status, 200, "{body}");

    cli(sidecar.dir.path(), &["user", "disable", "reporter"], "");
    wait_out_the_bound().await;
    let (status, body) = client_credentials(&sidecar, &secret).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
}

#[tokio::test]
async fn a_rotated_secret_works_at_once_and_the_old_one_stops_within_the_bound() {
    let (sidecar, old) = start();
    let (status, body) = client_credentials(&sidecar, &old).await;
    assert_eq!(status, 200, "{body}");

    let new =
        printed_secret(&cli(sidecar.dir.path(), &["consumer", "update", "reporting", "--new-secret"], ""));
    assert_ne!(new, old);
    let (status, body) = client_credentials(&sidecar, &new).await;
    assert_eq!(status, 200, "the new secret works before the cached record expires: {body}");

    wait_out_the_bound().await;
    let (status, body) = client_credentials(&sidecar, &old).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    let (status, body) = client_credentials(&sidecar, &new).await;
    assert_eq!(status, 200, "{body}");
}
