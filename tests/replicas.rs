//! Several sidecar processes on one PostgreSQL database, as behind a load
//! balancer: what one replica issues the others honour, what must happen
//! once happens once (migrations, the first signing keys, a code's
//! redemption, a refresh token's rotation), over real sockets with the real
//! binary. Each test gets a fresh schema on the server `scripts/test.sh`
//! starts (see `common::stores`).

mod common;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::Sidecar;
use common::stores::fresh_database;
use oauth_sidecar::store::{AuthCodeRecord, PostgresOptions, PostgresStore, Store};
use serde_json::Value;
use sqlx::Connection;

const SERVER: &str = r#"
server:
  roles:
    farm_viewer: { label: Viewer, description: Read farm records }
    farm_manager: { label: Manager, description: Create and edit farm records }
  consumers:
    - client_id: reporting
      secret: reporting-secret-0123456789
      user_id: alice
      scopes: [farm_viewer]
      grant_types: [client_credentials]
    - client_id: legacy
      secret: legacy-secret-0123456789
      scopes: [farm_viewer, farm_manager]
      grant_types: [password, refresh_token]
    - client_id: web
      secret: web-secret-0123456789
      redirect_uris: [https://app.example/cb]
      scopes: [farm_manager]
      grant_types: [authorization_code, refresh_token]
  users:
    - username: alice
      password: alice-password
      roles: [farm_viewer, farm_manager]
"#;

const REPORTING: (&str, &str) = ("reporting", "reporting-secret-0123456789");
const LEGACY: (&str, &str) = ("legacy", "legacy-secret-0123456789");
const WEB: (&str, &str) = ("web", "web-secret-0123456789");

/// Two replicas on one fresh database, started one after the other.
fn two_replicas(url: &str) -> (Sidecar, Sidecar) {
    (common::start_on_store(url, SERVER), common::start_on_store(url, SERVER))
}

/// POSTs a form with Basic credentials; the status and the JSON body.
async fn post(sidecar: &Sidecar, path: &str, client: (&str, &str), form: &[(&str, &str)]) -> (u16, Value) {
    post_to(&sidecar.url(path), client, form).await
}

async fn post_to(url: &str, (id, secret): (&str, &str), form: &[(&str, &str)]) -> (u16, Value) {
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

async fn introspect(sidecar: &Sidecar, token: &str) -> Value {
    let (status, body) = post(sidecar, "/oauth/introspect", REPORTING, &[("token", token)]).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_issued_by_one_replica_is_introspected_and_revoked_by_the_other() {
    let url = fresh_database().await;
    let (a, b) = two_replicas(&url);
    let (status, body) = post(&a, "/oauth/token", REPORTING, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("an access token").to_owned();
    assert_eq!(introspect(&b, &token).await["active"], true, "B verifies A's token: the keys are shared");
    let (status, _) = post(&b, "/oauth/revoke", REPORTING, &[("token", &token)]).await;
    assert_eq!(status, 200);
    assert_eq!(introspect(&a, &token).await["active"], false, "A sees B's revocation");
    let res = common::client().get(a.url("/oauth/userinfo")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 401, "A refuses the revoked token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemptions_of_one_code_across_replicas_yield_exactly_one_token() {
    let url = fresh_database().await;
    let (a, b) = two_replicas(&url);
    // The code as /oauth/authorize would have stored it (only its hash).
    let code = "a-code-both-replicas-race-for";
    let store = PostgresStore::open(&url, PostgresOptions::default()).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    store
        .add_auth_code(&AuthCodeRecord {
            code_hash: URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, code.as_bytes())),
            client_id: "web".into(),
            username: "alice".into(),
            redirect_uri: "https://app.example/cb".into(),
            scope: "farm_manager".into(),
            code_challenge: None,
            nonce: None,
            auth_time: now,
            expires_at: now + 60,
        })
        .await
        .unwrap();
    store.close().await;
    let endpoints = Arc::new([a.url("/oauth/token"), b.url("/oauth/token")]);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let endpoints = Arc::clone(&endpoints);
            tokio::spawn(async move {
                let form = [
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", "https://app.example/cb"),
                ];
                post_to(&endpoints[i % 2], WEB, &form).await
            })
        })
        .collect();
    let mut issued = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => issued += 1,
            400 => assert_eq!(body["error"], "invalid_grant", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(issued, 1, "exactly one redemption gets tokens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotation_of_one_refresh_token_across_replicas_has_one_winner() {
    let url = fresh_database().await;
    let (a, b) = two_replicas(&url);
    let form = [("grant_type", "password"), ("username", "alice"), ("password", "alice-password")];
    let (status, body) = post(&a, "/oauth/token", LEGACY, &form).await;
    assert_eq!(status, 200, "{body}");
    let rt = body["refresh_token"].as_str().expect("a refresh token").to_owned();
    let endpoints = Arc::new([a.url("/oauth/token"), b.url("/oauth/token")]);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (endpoints, rt) = (Arc::clone(&endpoints), rt.clone());
            tokio::spawn(async move {
                let form = [("grant_type", "refresh_token"), ("refresh_token", rt.as_str())];
                post_to(&endpoints[i % 2], LEGACY, &form).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => winners.push(body["refresh_token"].as_str().unwrap().to_owned()),
            400 => assert_eq!(body["error"], "invalid_grant", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rotation wins");
    // The losers presented a rotated token: reuse detection revoked the family.
    let form = [("grant_type", "refresh_token"), ("refresh_token", winners[0].as_str())];
    let (status, body) = post(&b, "/oauth/token", LEGACY, &form).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_replicas_starting_together_migrate_once_and_create_one_key_per_algorithm() {
    let url = fresh_database().await;
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || common::start_on_store(&url, SERVER))
        })
        .collect();
    let replicas: Vec<Sidecar> = starts.into_iter().map(|t| t.join().expect("a replica started")).collect();
    let mut jwks = Vec::new();
    for replica in &replicas {
        let res = common::client().get(replica.url("/readyz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let keys: Value = common::client()
            .get(replica.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks.push(keys);
    }
    assert!(jwks.windows(2).all(|w| w[0] == w[1]), "every replica publishes the same keys: {jwks:?}");
    let mut conn = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
    let migrations: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let expected: Vec<(i64, bool)> =
        oauth_sidecar::store::postgres_migrations().iter().map(|m| (m.version, true)).collect();
    assert_eq!(migrations, expected, "each migration applied once");
    let keys: Vec<(String, i64)> =
        sqlx::query_as("SELECT alg, count(*) FROM signing_keys GROUP BY alg ORDER BY alg")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(keys, vec![("EdDSA".to_owned(), 1), ("RS256".to_owned(), 1)], "one first key per algorithm");
}
