//! `oauth-sidecar store copy` and `store migrate` with the real binary: a
//! SQLite store in use is copied into PostgreSQL, and a sidecar started on
//! the copy honours what the first one issued.

mod common;

use std::process::Command;

use common::stores::fresh_database;
use oauth_sidecar::store::{ProviderTokenRecord, SqliteStore, Store};
use serde_json::Value;

const SERVER: &str = r#"
server:
  roles:
    farm_viewer: { label: Viewer, description: Read farm records }
  consumers:
    - client_id: reporting
      secret: reporting-secret-0123456789
      user_id: alice
      scopes: [farm_viewer]
      grant_types: [client_credentials]
    - client_id: legacy
      secret: legacy-secret-0123456789
      scopes: [farm_viewer]
      grant_types: [password, refresh_token]
  users:
    - username: alice
      password: alice-password
      roles: [farm_viewer]
"#;

const REPORTING: (&str, &str) = ("reporting", "reporting-secret-0123456789");
const LEGACY: (&str, &str) = ("legacy", "legacy-secret-0123456789");

async fn post(url: &str, (id, secret): (&str, &str), form: &[(&str, &str)]) -> (u16, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let res = common::client()
        .post(url)
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn oauth_sidecar(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run oauth-sidecar")
}

fn provider_token() -> ProviderTokenRecord {
    ProviderTokenRecord {
        id: 0,
        client: "mail".into(),
        tag: "info@example.org".into(),
        grant_type: "authorization_code".into(),
        scopes: vec!["mail.read".into()],
        token_type: "Bearer".into(),
        access_token: vec![1, 2, 3, 0, 254],
        refresh_token: Some(vec![4, 5, 6]),
        expires_at: Some(1_900_000_000),
        owner_id: None,
        owner_name: None,
        owner_email: Some("info@example.org".into()),
        raw: vec![7, 8],
        status: "ok".into(),
        last_error: None,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_copy_moves_a_sqlite_store_in_use_to_postgres_and_its_tokens_still_work() {
    // A one-replica install on SQLite, with tokens issued and one revoked.
    let sqlite = common::Sidecar::start(SERVER);
    let token_url = sqlite.url("/oauth/token");
    let (_, cc) = post(&token_url, REPORTING, &[("grant_type", "client_credentials")]).await;
    let access = cc["access_token"].as_str().unwrap().to_owned();
    let (_, cc2) = post(&token_url, REPORTING, &[("grant_type", "client_credentials")]).await;
    let revoked = cc2["access_token"].as_str().unwrap().to_owned();
    let (status, _) = post(&sqlite.url("/oauth/revoke"), REPORTING, &[("token", &revoked)]).await;
    assert_eq!(status, 200);
    let form = [("grant_type", "password"), ("username", "alice"), ("password", "alice-password")];
    let (_, pw) = post(&token_url, LEGACY, &form).await;
    let refresh = pw["refresh_token"].as_str().unwrap().to_owned();
    let db = sqlite.store_path();
    let dir = sqlite.stop();
    {
        let store = SqliteStore::open(&db).await.unwrap();
        store.save_provider_token(&provider_token()).await.unwrap();
        store.close().await;
    }

    let url = fresh_database().await;
    let from = format!("sqlite://{}", db.display());
    let out = oauth_sidecar(&["store", "copy", "--from", &from], &[("OAUTH_SIDECAR_COPY_TO", &url)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("consumers: 2") && stdout.contains("provider_tokens: 1"), "{stdout}");
    assert!(!stdout.contains("sidecar-test"), "the password is not printed: {stdout}");
    let again = oauth_sidecar(&["store", "copy", "--from", &from], &[("OAUTH_SIDECAR_COPY_TO", &url)]);
    assert!(!again.status.success(), "a second copy into the same store is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    drop(dir);

    // A replica on the copy: the old tokens, secrets and revocations hold.
    let pg = common::start_on_store(&url, SERVER);
    let introspect = pg.url("/oauth/introspect");
    let (status, body) = post(&introspect, REPORTING, &[("token", &access)]).await;
    assert_eq!((status, &body["active"]), (200, &Value::Bool(true)), "{body}");
    let (_, body) = post(&introspect, REPORTING, &[("token", &revoked)]).await;
    assert_eq!(body["active"], false, "still revoked");
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
    let (status, body) = post(&pg.url("/oauth/token"), LEGACY, &form).await;
    assert_eq!(status, 200, "the refresh token issued on SQLite refreshes: {body}");
    let store =
        oauth_sidecar::store::PostgresStore::open(&url, oauth_sidecar::store::PostgresOptions::default())
            .await
            .unwrap();
    let copied = store.provider_token_by_tag("mail", "info@example.org").await.unwrap().unwrap();
    let mut expected = provider_token();
    expected.id = copied.id;
    assert_eq!(copied, expected, "the provider token's ciphertext moved unchanged");
    let next =
        store.save_provider_token(&ProviderTokenRecord { tag: "other".into(), ..provider_token() }).await;
    assert!(next.unwrap() > copied.id, "new ids continue after the copied ones");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_migrate_applies_every_migration_and_prints_the_versions() {
    let url = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.yaml");
    std::fs::write(&config, format!("store: \"{url}\"\n")).unwrap();
    let out = oauth_sidecar(&["store", "migrate", "--config", config.to_str().unwrap()], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    let versions: Vec<String> =
        oauth_sidecar::store::postgres_migrations().iter().map(|m| m.version.to_string()).collect();
    assert!(stdout.contains(&format!("migrations applied: {}", versions.join(", "))), "{stdout}");
    assert!(stdout.contains("[redacted]") && !stdout.contains("sidecar-test"), "no password: {stdout}");
}
