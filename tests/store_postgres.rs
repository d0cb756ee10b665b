//! What only the PostgreSQL store does, against the server `scripts/test.sh`
//! starts (a fresh schema per test, see `common::stores`): change
//! announcements over LISTEN/NOTIFY, made by another session's writes,
//! kept apart per schema, and announced as "everything" after the
//! listener's connection was lost; TLS to the server when the URL asks.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::stores::fresh_database;
use oauth_sidecar::server::keys::{Alg, generate_record};
use oauth_sidecar::store::{
    ClientRegistrationRecord, ClientStore, ConsumerRecord, PostgresOptions, PostgresStore,
    ProviderTokenRecord, ServerStore, StoreBase, StoreChange, StoreChanges, UserRecord,
};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

async fn open(url: &str) -> Arc<PostgresStore> {
    Arc::new(PostgresStore::open(url, PostgresOptions::default()).await.expect("open PostgreSQL"))
}

/// The next announcement, within 5 s.
async fn next(changes: &mut StoreChanges) -> StoreChange {
    tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .expect("an announcement within 5 s")
        .expect("the announcements go on")
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn consumer(client_id: &str) -> ConsumerRecord {
    ConsumerRecord {
        client_id: client_id.into(),
        label: "Farm".into(),
        secret_hash: Some("hmac-sha256:c2VjcmV0".into()),
        confidential: true,
        user_id: None,
        redirect_uris: vec![],
        allowed_origins: vec!["https://farm.example".into()],
        third_party: false,
        scopes: vec![],
        grant_types: vec!["client_credentials".into()],
        access_token_ttl: None,
        refresh_token_ttl: None,
        grant_user_access: false,
        limit_requested_access: false,
        limit_user_access: false,
        managed_by_config: false,
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
    }
}

fn provider_token() -> ProviderTokenRecord {
    ProviderTokenRecord {
        id: 0,
        client: "mail".into(),
        tag: "box".into(),
        grant_type: "authorization_code".into(),
        scopes: vec![],
        token_type: "Bearer".into(),
        access_token: vec![1, 2, 3],
        refresh_token: None,
        expires_at: Some(now() + 3600),
        owner_id: None,
        owner_name: None,
        owner_email: None,
        raw: vec![],
        status: "ok".into(),
        last_error: None,
        created_at: now(),
        updated_at: now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_announced_by_kind_and_key_to_listeners_on_the_same_schema_only() {
    let url = fresh_database().await;
    let reader = open(&url).await;
    let mut changes = reader.changes().expect("PostgreSQL announces changes");
    assert_eq!(next(&mut changes).await, StoreChange::Everything, "what changed before listening is unknown");
    let writer = open(&url).await;
    let elsewhere = open(&fresh_database().await).await;
    elsewhere.put_consumer(&consumer("elsewhere")).await.unwrap();

    writer.revoke_access_token("jti-1", now() + 60).await.unwrap();
    writer.put_consumer(&consumer("farm")).await.unwrap();
    writer
        .put_user(&UserRecord {
            username: "alice".into(),
            password_hash: "$argon2id$x".into(),
            roles: vec![],
            admin: false,
            permissions: vec![],
            disabled: false,
        })
        .await
        .unwrap();
    writer.add_signing_key(&generate_record(Alg::EdDSA, now()).unwrap()).await.unwrap();
    let mut sql = PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, client_id, scope, expires_at) \
         VALUES ('h1', 'family-1', 'farm', '', $1), ('h2', 'family-1', 'farm', '', $1)",
    )
    .bind(now() + 60)
    .execute(&mut sql)
    .await
    .unwrap();
    writer.revoke_refresh_family("family-1").await.unwrap();
    writer
        .put_client_registration(&ClientRegistrationRecord {
            name: "mail".into(),
            provider: "demo".into(),
            label: "Mail".into(),
            client_id: "me".into(),
            client_secret: None,
            tenant: None,
            scopes: None,
            created_at: now(),
        })
        .await
        .unwrap();
    let id = writer.save_provider_token(&provider_token()).await.unwrap();
    assert!(writer.lease_provider_token(id, "replica-a", now() + 30, now()).await.unwrap());
    writer.release_provider_token(id, "replica-a").await.unwrap();
    writer.set_provider_token_status(id, "needs_reauthorization", Some("refused"), now()).await.unwrap();
    writer.delete_consumer("farm").await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..9 {
        seen.push(next(&mut changes).await);
    }
    let token = || StoreChange::ProviderToken { client: "mail".into(), tag: "box".into() };
    assert_eq!(
        seen,
        [
            StoreChange::AccessTokenRevoked("jti-1".into()),
            StoreChange::Consumer("farm".into()),
            StoreChange::User("alice".into()),
            StoreChange::SigningKeys,
            StoreChange::RefreshFamilyRevoked("family-1".into()),
            StoreChange::ClientRegistration("mail".into()),
            token(),
            token(),
            StoreChange::Consumer("farm".into()),
        ],
        "in commit order; another schema's consumer, the refresh tokens' insert and the lease are not announced"
    );
    for store in [reader, writer, elsewhere] {
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_connects_again_and_announces_that_anything_may_have_changed() {
    let url = fresh_database().await;
    let store = open(&url).await;
    let mut changes = store.changes().unwrap();
    assert_eq!(next(&mut changes).await, StoreChange::Everything);
    let first = store.listener_backend_pid().expect("listening");

    let mut sql = PgConnection::connect(&url).await.unwrap();
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(first).fetch_one(&mut sql).await.unwrap();
    assert!(killed);
    assert_eq!(next(&mut changes).await, StoreChange::Everything, "told after connecting again");
    let second = store.listener_backend_pid().expect("listening again");
    assert_ne!(first, second);
    // And it listens: a change is announced again.
    store.revoke_access_token("jti-after", now() + 60).await.unwrap();
    assert_eq!(next(&mut changes).await, StoreChange::AccessTokenRevoked("jti-after".into()));

    store.close().await;
    let ended =
        tokio::time::timeout(Duration::from_secs(5), changes.next()).await.expect("ended with the store");
    assert_eq!(ended, None, "closing the store ends the announcements");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
        .bind(second)
        .fetch_one(&mut sql)
        .await
        .unwrap();
    assert_eq!(left, 0, "the listener's connection is closed with the store");
}

/// `url` with the query parameter `sslmode` set.
fn with_sslmode(url: &str, mode: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.query_pairs_mut().append_pair("sslmode", mode);
    url.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_use_tls_when_the_url_asks_for_it() {
    let url = fresh_database().await;
    let tls = open(&with_sslmode(&url, "require")).await;
    assert!(tls.encrypted().await.unwrap(), "sslmode=require: the store's connections are encrypted");
    let mut changes = tls.changes().unwrap();
    assert_eq!(next(&mut changes).await, StoreChange::Everything);
    let listener = tls.listener_backend_pid().unwrap();
    let mut sql = PgConnection::connect(&url).await.unwrap();
    let listener_ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = $1")
        .bind(listener)
        .fetch_one(&mut sql)
        .await
        .unwrap();
    assert!(listener_ssl, "the change listener's connection too");

    let plain = open(&with_sslmode(&url, "disable")).await;
    assert!(!plain.encrypted().await.unwrap(), "sslmode=disable: not encrypted, so the check can tell");
    tls.close().await;
    plain.close().await;
}

/// A server that is not there is named by the cause: the refused address,
/// after the store waited its acquire timeout for it to come up, not the
/// pool's "timed out". Needs no server: a loopback port nobody listens on.
#[tokio::test]
async fn an_unreachable_server_is_reported_as_connection_refused_at_its_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://sidecar:hunter2@127.0.0.1:{port}/sidecar");
    let options = PostgresOptions { acquire_timeout: Duration::from_secs(1), ..PostgresOptions::default() };
    let Err(err) = PostgresStore::open(&url, options).await else { panic!("nothing listens there") };
    let err = err.to_string();
    assert!(err.contains(&format!("connection refused at 127.0.0.1:{port}")), "{err}");
    assert!(err.contains("(tried for "), "it waited for the server to come up: {err}");
    assert!(!err.contains("hunter2") && !err.contains("timed out"), "{err}");
}

/// A password the server refuses is final: reported at once with the
/// server's reason, not waited on like a server that is still starting.
#[tokio::test]
async fn a_refused_password_is_reported_at_once_without_waiting() {
    let mut url = url::Url::parse(&common::stores::postgres_url()).unwrap();
    url.set_password(Some("not-the-password")).unwrap();
    let options = PostgresOptions { acquire_timeout: Duration::from_secs(5), ..PostgresOptions::default() };
    let Err(err) = PostgresStore::open(url.as_str(), options).await else { panic!("a wrong password") };
    let err = err.to_string();
    assert!(err.contains("refused the connection") && err.contains("password"), "{err}");
    assert!(!err.contains("tried for"), "one try, no waiting: {err}");
    assert!(!err.contains("not-the-password"), "{err}");
}
