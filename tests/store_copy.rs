//! `oauth-sidecar store copy` and `store migrate` with the real binary: a
//! SQLite store in use is copied into PostgreSQL, and a sidecar started on
//! the copy honours what the first one issued: access tokens (through
//! introspection and the gate), revocations, refresh tokens, consumer
//! secrets, and provider tokens (injected through the egress listener).

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use common::stores::fresh_database;
use oauth_sidecar::store::{ClientStore, ProviderTokenRecord, SqliteStore, Store, StoreBase};
use serde_json::Value;

const TOKEN_KEY: &str = "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=";

/// A gate in front of `upstream`, and the client role with an egress route
/// to it injecting the `api` client's token tagged `box`. The provider's
/// token endpoint is unreachable: the copied token must be used as it is.
fn roles(upstream: SocketAddr) -> String {
    format!(
        r#"upstream: http://{upstream}
gate:
  rules:
    - {{ path: /api/** }}
client:
  token_key: {TOKEN_KEY}
  refresh_ahead: 0s
  providers:
    - name: counter
      authorize_url: http://127.0.0.1:1/authorize
      token_url: http://127.0.0.1:1/token
  clients:
    - name: api
      provider: counter
      client_id: me
      client_secret: my-secret-0123456789
egress:
  listen: 127.0.0.1:0
  routes:
    - {{ prefix: /egress/api/, target: "http://{upstream}", client: api, tag: box }}
"#
    )
}

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

async fn gate_status(sidecar: &common::Sidecar, token: &str) -> u16 {
    let res = common::client().get(sidecar.url("/api/records")).bearer_auth(token).send().await.unwrap();
    res.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_copy_moves_a_sqlite_store_in_use_to_postgres_and_its_tokens_still_work() {
    common::install_crypto();
    let upstream = common::spawn_upstream().await;
    let config = format!("{}{SERVER}", roles(upstream));
    // A one-replica install on SQLite, with tokens issued and one revoked.
    let sqlite = common::Sidecar::start(&config);
    let token_url = sqlite.url("/oauth/token");
    let (_, cc) = common::post_form(&token_url, REPORTING, &[("grant_type", "client_credentials")]).await;
    let access = cc["access_token"].as_str().unwrap().to_owned();
    let (_, cc2) = common::post_form(&token_url, REPORTING, &[("grant_type", "client_credentials")]).await;
    let revoked = cc2["access_token"].as_str().unwrap().to_owned();
    let (status, _) =
        common::post_form(&sqlite.url("/oauth/revoke"), REPORTING, &[("token", &revoked)]).await;
    assert_eq!(status, 200);
    let form = [("grant_type", "password"), ("username", "alice"), ("password", "alice-password")];
    let (_, pw) = common::post_form(&token_url, LEGACY, &form).await;
    let refresh = pw["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(gate_status(&sqlite, &access).await, 200);
    let db = sqlite.store_path();
    let dir = sqlite.stop();
    {
        // A provider token as an authorization stored it (encrypted with
        // the token key), and a raw record to compare after the copy.
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).await.unwrap());
        let yaml = format!("store: sqlite://{}\n{}", db.display(), roles(upstream));
        let loaded = oauth_sidecar::config::parse(&yaml, "sqlite.yaml").unwrap();
        let tokens = oauth_sidecar::client::open_tokens(&loaded, store.clone()).await.unwrap();
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        common::save_provider_token(&tokens, "provider-at-0", "provider-rt-0", now + 3600).await;
        store.save_provider_token(&provider_token()).await.unwrap();
        store.close().await;
    }

    let url = fresh_database().await;
    let from = format!("sqlite://{}", db.display());
    let out = oauth_sidecar(&["store", "copy", "--from", &from], &[("OAUTH_SIDECAR_COPY_TO", &url)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("consumers: 2") && stdout.contains("provider_tokens: 2"), "{stdout}");
    assert!(!stdout.contains("sidecar-test"), "the password is not printed: {stdout}");
    let again = oauth_sidecar(&["store", "copy", "--from", &from], &[("OAUTH_SIDECAR_COPY_TO", &url)]);
    assert!(!again.status.success(), "a second copy into the same store is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    drop(dir);

    // A replica on the copy: the old tokens, secrets and revocations hold.
    let pg = common::start_on_store(&url, &config);
    let introspect = pg.url("/oauth/introspect");
    let (status, body) = common::post_form(&introspect, REPORTING, &[("token", &access)]).await;
    assert_eq!((status, &body["active"]), (200, &Value::Bool(true)), "{body}");
    let (_, body) = common::post_form(&introspect, REPORTING, &[("token", &revoked)]).await;
    assert_eq!(body["active"], false, "still revoked");
    assert_eq!(gate_status(&pg, &access).await, 200, "the gate honours the access token: the keys moved");
    assert_eq!(gate_status(&pg, &revoked).await, 401, "and refuses the revoked one");
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
    let (status, body) = common::post_form(&pg.url("/oauth/token"), LEGACY, &form).await;
    assert_eq!(status, 200, "the refresh token issued on SQLite refreshes: {body}");
    let (status, body) =
        common::post_form(&pg.url("/oauth/token"), REPORTING, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "the consumer's secret still matches its copied hash: {body}");
    let egress = pg.egress_addr();
    let res = common::client().get(format!("http://{egress}/egress/api/v1/me")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    assert_eq!(
        echo["headers"]["authorization"][0], "Bearer provider-at-0",
        "the provider token is decrypted and injected: the token key's check moved with it"
    );
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
