//! Several sidecar processes on one PostgreSQL database, as behind a load
//! balancer: what one replica issues the others honour, what must happen
//! once happens once (migrations, the first signing keys, a code's
//! redemption, a refresh token's rotation, a provider token's refresh), and
//! what one replica or the CLI changes reaches the others' caches within
//! moments through the store's change announcements, over real sockets with
//! the real binary. Each test gets a fresh schema on the server
//! `scripts/test.sh` starts (see `common::stores`).
//!
//! The periodic re-reads (`gate.revocation_interval`, `gate.cors.refresh`,
//! `server.keys_reload_interval`) are set to ten minutes here, so only an
//! announcement can make a change arrive within the seconds the tests allow.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::Sidecar;
use common::stores::fresh_database;
use oauth_sidecar::store::{AuthCodeRecord, PostgresOptions, PostgresStore, ServerStore, Store, StoreBase};
use serde_json::Value;
use sqlx::Connection;

/// How long a change made on one replica may take to reach another.
const BOUND: Duration = Duration::from_secs(2);

const SERVER: &str = r#"
server:
  keys_reload_interval: 10m
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
    common::post_form(&sidecar.url(path), client, form).await
}

async fn introspect(sidecar: &Sidecar, token: &str) -> Value {
    let (status, body) = post(sidecar, "/oauth/introspect", REPORTING, &[("token", token)]).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// [`SERVER`] with a gate in front of `upstream` (`/api/**` needs a token)
/// whose revocation answers and CORS origins are re-read every ten minutes.
fn gated(upstream: SocketAddr) -> String {
    format!(
        "upstream: http://{upstream}\n{SERVER}gate:\n  revocation_interval: 10m\n  cors: {{ refresh: 10m }}\n  rules:\n    - {{ path: /api/** }}\n"
    )
}

/// The status of `GET /api/records` through `sidecar`'s gate with `token`,
/// from `origin` when given.
async fn through_gate(sidecar: &Sidecar, token: &str, origin: Option<&str>) -> u16 {
    let mut req = common::client().get(sidecar.url("/api/records")).bearer_auth(token);
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    req.send().await.expect("request").status().as_u16()
}

/// Polls `check` every 20 ms until it holds; how long that took. Fails
/// after `limit`, saying `what` did not happen.
async fn within(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

async fn client_credentials(sidecar: &Sidecar, client: (&str, &str)) -> String {
    let (status, body) = post(sidecar, "/oauth/token", client, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("an access token").to_owned()
}

/// The backend pids `sidecar` logged as listening for store changes, in order.
fn listener_pids(sidecar: &Sidecar) -> Vec<i64> {
    sidecar
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["fields"]["backend_pid"].as_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_issued_by_one_replica_is_revoked_by_the_other_and_refused_by_the_first_ones_gate_at_once() {
    let url = fresh_database().await;
    let upstream = common::spawn_upstream().await;
    let (a, b) =
        (common::start_on_store(&url, &gated(upstream)), common::start_on_store(&url, &gated(upstream)));
    let token = client_credentials(&a, REPORTING).await;
    assert_eq!(through_gate(&a, &token, None).await, 200, "A's gate passes it, and caches its answer");
    assert_eq!(introspect(&b, &token).await["active"], true, "B verifies A's token: the keys are shared");
    let (status, _) = post(&b, "/oauth/revoke", REPORTING, &[("token", &token)]).await;
    assert_eq!(status, 200);
    let took = within(BOUND, "A's gate refusing B's revocation", async || {
        through_gate(&a, &token, None).await == 401
    })
    .await;
    eprintln!("revocation on B refused by A's gate after {took:?} (revocation_interval: 10m)");
    assert_eq!(introspect(&a, &token).await["active"], false, "A's introspection asks the shared store");
    let res = common::client().get(a.url("/oauth/userinfo")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 401, "A's userinfo refuses the revoked token");

    // A's listener loses its connection: it connects again and marks every
    // cached answer due, so a revocation made meanwhile is not missed.
    a.wait_for_log(&["listening for store changes"]);
    let second = client_credentials(&a, REPORTING).await;
    assert_eq!(through_gate(&a, &second, None).await, 200);
    let pid = listener_pids(&a)[0];
    let mut sql = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1::int)")
        .bind(pid as i32)
        .fetch_one(&mut sql)
        .await
        .unwrap();
    assert!(killed, "A's listener backend {pid} was found");
    let (status, _) = post(&b, "/oauth/revoke", REPORTING, &[("token", &second)]).await;
    assert_eq!(status, 200);
    let took =
        within(BOUND, "A's gate refusing a revocation made while its listener reconnected", async || {
            through_gate(&a, &second, None).await == 401
        })
        .await;
    eprintln!("revocation during A's listener reconnect refused after {took:?}");
    within(BOUND, "A listening again on a new connection", async || listener_pids(&a).len() >= 2).await;
    assert_ne!(listener_pids(&a)[1], pid);
    a.wait_for_log(&["stopped listening for store changes"]);
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
            sid: None,
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
                common::post_form(&endpoints[i % 2], WEB, &form).await
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
                common::post_form(&endpoints[i % 2], LEGACY, &form).await
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
    // Within the refresh grace window (on by default) every request gets
    // the pair of the one rotation that won, on either replica.
    assert_eq!(winners.len(), 20, "all get the pair");
    assert!(winners.iter().all(|w| *w == winners[0]), "exactly one rotation wins: {winners:?}");
    // The family stays valid: the pair works on the other replica.
    let form = [("grant_type", "refresh_token"), ("refresh_token", winners[0].as_str())];
    let (status, body) = post(&b, "/oauth/token", LEGACY, &form).await;
    assert_eq!(status, 200, "{body}");
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

/// Runs the binary's CLI on a replica's configuration: (success, stdout).
fn cli(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .expect("run oauth-sidecar");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?}: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout)
}

/// The value of `key: value` in the CLI's output.
fn field(output: &str, key: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no {key} in {output}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_changed_through_the_cli_is_seen_by_every_replica_at_once() {
    let url = fresh_database().await;
    let upstream = common::spawn_upstream().await;
    let (a, b) =
        (common::start_on_store(&url, &gated(upstream)), common::start_on_store(&url, &gated(upstream)));
    let config = b.dir.path().join("sidecar.yaml");
    let create = [
        "consumer",
        "create",
        "--client-id",
        "spa",
        "--grant-type",
        "client_credentials",
        "--user-id",
        "alice",
        "--scope",
        "farm_viewer",
        "--allowed-origin",
        "https://one.example",
    ];
    let (_, out) = cli(&config, &create);
    let first_secret = field(&out, "client_secret");
    let token = client_credentials(&b, ("spa", &first_secret)).await;
    assert_eq!(through_gate(&a, &token, Some("https://one.example")).await, 200);
    assert_eq!(through_gate(&a, &token, Some("https://two.example")).await, 403, "not an allowed origin yet");
    let old = client_credentials(&a, ("spa", &first_secret)).await;
    assert!(!old.is_empty(), "A has the consumer cached with its first secret");

    let update = ["consumer", "update", "spa", "--allowed-origin", "https://two.example", "--new-secret"];
    let (_, out) = cli(&config, &update);
    let new_secret = field(&out, "client_secret");
    let took = within(BOUND, "A's gate allowing the consumer's new origin", async || {
        through_gate(&a, &token, Some("https://two.example")).await == 200
    })
    .await;
    eprintln!("origins changed by the CLI seen by A's gate after {took:?} (cors.refresh: 10m)");
    assert_eq!(through_gate(&a, &token, Some("https://one.example")).await, 403, "the old origin is gone");
    let took = within(BOUND, "A's token endpoint refusing the renewed secret", async || {
        let (status, _) =
            post(&a, "/oauth/token", ("spa", &first_secret), &[("grant_type", "client_credentials")]).await;
        status == 401
    })
    .await;
    eprintln!("renewed secret refused by A after {took:?}");
    client_credentials(&a, ("spa", &new_secret)).await;
}

/// The `kid` in a JWT's header.
fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_rotated_through_the_cli_signs_on_every_replica_and_verifies_on_the_others_gate() {
    let url = fresh_database().await;
    let upstream = common::spawn_upstream().await;
    let (a, b) =
        (common::start_on_store(&url, &gated(upstream)), common::start_on_store(&url, &gated(upstream)));
    let before = client_credentials(&a, REPORTING).await;
    assert_eq!(through_gate(&b, &before, None).await, 200, "B's gate knows the first key");

    let (_, out) = cli(&a.dir.path().join("sidecar.yaml"), &["keys", "rotate"]);
    let new_kid = out.trim().to_owned();
    assert_ne!(kid(&before), new_kid);
    let mut signed = String::new();
    let took = within(BOUND, "B signing with the rotated key", async || {
        signed = client_credentials(&b, REPORTING).await;
        kid(&signed) == new_kid
    })
    .await;
    eprintln!("key rotated by the CLI signing on B after {took:?} (keys_reload_interval: 10m)");
    let took =
        within(BOUND, "A's gate accepting B's token", async || through_gate(&a, &signed, None).await == 200)
            .await;
    eprintln!("B's token with the new key accepted by A's gate after {took:?}");
    within(BOUND, "A signing with the rotated key", async || {
        kid(&client_credentials(&a, REPORTING).await) == new_kid
    })
    .await;
    assert_eq!(through_gate(&a, &before, None).await, 200, "the old key still verifies");
    assert_eq!(introspect(&a, &signed).await["active"], true);
}

const TOKEN_KEY: &str = "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=";

/// The client role with one client of the counting provider, and an egress
/// route to `upstream` that injects its token tagged `box`.
fn client_config(provider: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        r#"client:
  token_key: {TOKEN_KEY}
  refresh_ahead: 0s
  providers:
    - name: counter
      authorize_url: http://{provider}/authorize
      token_url: http://{provider}/token
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

fn egress_addr(sidecar: &Sidecar) -> SocketAddr {
    sidecar.egress_addr()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_token_near_expiry_is_refreshed_once_while_both_replicas_inject_it() {
    common::install_crypto();
    let url = fresh_database().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = common::counting_provider(calls.clone(), ("at", "rt")).await;
    let upstream = common::spawn_upstream().await;
    let yaml = client_config(provider, upstream);
    // The token as an authorization stored it, 30 s from expiry: within the
    // default 60 s skew, so the next injection must refresh it first.
    let loaded = oauth_sidecar::config::parse(&format!("store: \"{url}\"\n{yaml}"), "replicas.yaml").unwrap();
    let store: Arc<dyn Store> =
        Arc::new(PostgresStore::open(&url, PostgresOptions::default()).await.unwrap());
    let tokens = oauth_sidecar::client::open_tokens(&loaded, store.clone()).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    common::save_provider_token(&tokens, "at-0", "rt-0", now + 30).await;

    let (a, b) = (common::start_on_store(&url, &yaml), common::start_on_store(&url, &yaml));
    let egress = [egress_addr(&a), egress_addr(&b)];
    let barrier = Arc::new(tokio::sync::Barrier::new(60));
    let calls_made: Vec<_> = (0..60)
        .map(|i| {
            let (barrier, addr) = (barrier.clone(), egress[i % 2]);
            tokio::spawn(async move {
                barrier.wait().await;
                let res =
                    common::client().get(format!("http://{addr}/egress/api/v1/me")).send().await.unwrap();
                let status = res.status().as_u16();
                let echo: Value = res.json().await.unwrap_or(Value::Null);
                (status, echo["headers"]["authorization"][0].as_str().unwrap_or_default().to_owned())
            })
        })
        .collect();
    for call in calls_made {
        let (status, authorization) = call.await.unwrap();
        assert_eq!(
            (status, authorization.as_str()),
            (200, "Bearer at-1"),
            "every call carries the one refreshed token"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one refresh across both replicas");
    let stored = store.provider_token_by_tag("api", "box").await.unwrap().unwrap();
    let (access, refresh, _) = tokens.open(&stored).unwrap();
    assert_eq!((access.expose(), refresh.unwrap().expose()), ("at-1", "rt-1"), "the rotated pair is stored");
    store.close().await;
}
