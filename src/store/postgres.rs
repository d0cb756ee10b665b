//! The PostgreSQL store, for several replicas sharing one database: a pool
//! of connections sized by `store_pool_size`, TLS (rustls) when the URL asks
//! for it with `sslmode=require`, `verify-ca` or `verify-full`, and its own
//! migrations (`migrations/postgres/`) applied at open under sqlx's advisory
//! lock, so replicas starting together apply each migration once.
//!
//! The queries live by concept as in the SQLite store: `directory`
//! (consumers, users, keys), `grants` (codes, tokens, sessions,
//! revocations) and `client` (the OAuth client role). Anything that must
//! happen once across replicas is decided by the database: conditional
//! `UPDATE ... RETURNING` for single use, `ON CONFLICT` for first values,
//! transaction-scoped advisory locks where a check and an insert must not
//! interleave.
//!
//! Changes other processes may have cached are announced by triggers and
//! followed with LISTEN/NOTIFY (`changes`, [`Store::changes`]).

mod admin;
mod changes;
mod client;
mod directory;
mod grants;
mod migrate;

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

pub use changes::{APPLICATION_NAME as LISTENER_APPLICATION_NAME, CHANNEL as CHANGES_CHANNEL};
pub use migrate::migrations;

use super::{
    AdminTokenRecord, AuthCodeRecord, ClientRegistrationRecord, ClientStateRecord, CodeRedemption,
    ConsumerRecord, Migration, ProviderTokenRecord, RefreshGrace, RefreshRotation, RefreshTokenRecord,
    SessionRecord, SigningKeyRecord, Store, StoreChanges, StoreError, UserRecord,
};

/// The PostgreSQL backend of [`Store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    location: String,
    /// The change listener, started by the first [`Store::changes`].
    feed: Arc<Mutex<Option<changes::Feed>>>,
}

/// How the PostgreSQL store connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Connections in the pool at most (`store_pool_size`).
    pub max_connections: u32,
    /// How long a query waits for a free connection, or for the server to
    /// answer a new connection, before it fails.
    pub acquire_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions { max_connections: 10, acquire_timeout: Duration::from_secs(10) }
    }
}

impl PostgresStore {
    /// Connects to the database `url` names and applies the embedded
    /// migrations. The URL is never logged or put in an error whole: see
    /// [`redacted_url`].
    pub async fn open(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        Self::open_with_migrations(url, options, migrations()).await
    }

    /// [`PostgresStore::open`] with the given migrations; other sets than
    /// [`migrations`] are for tests and tools.
    pub async fn open_with_migrations(
        url: &str,
        options: PostgresOptions,
        migrations: Vec<Migration>,
    ) -> Result<Self, StoreError> {
        let location = redacted_url(url);
        let open_err = |reason: String| StoreError::Open { location: location.clone(), reason };
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| open_err(format!("not a PostgreSQL URL: {}", strip_url(&e.to_string(), url))))?
            .application_name("oauth-sidecar");
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| open_err(strip_url(&e.to_string(), url)))?;
        if let Err(e) = migrate::run(&pool, &migrations).await {
            pool.close().await;
            return Err(e);
        }
        Ok(PostgresStore { pool, location, feed: Arc::default() })
    }

    /// The backend pid of the connection listening for changes (see
    /// [`Store::changes`]), while it listens; for diagnostics and tests.
    pub fn listener_backend_pid(&self) -> Option<i32> {
        self.feed.lock().unwrap_or_else(PoisonError::into_inner).as_ref().and_then(changes::Feed::backend_pid)
    }

    /// True when the store's connections to the server are encrypted (TLS),
    /// as the server sees them (`pg_stat_ssl`).
    pub async fn encrypted(&self) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(query_err)
    }

    /// The connection pool, for `store copy` and change notifications.
    pub(super) fn pool_ref(&self) -> &PgPool {
        &self.pool
    }

    /// Where this store lives, without the password (for logs).
    pub fn location(&self) -> &str {
        &self.location
    }
}

/// A PostgreSQL URL fit for a log line: the password (in the user info or a
/// `password` parameter) is replaced by `[redacted]`.
pub fn redacted_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "postgres://[unparsable URL]".into();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("[redacted]"));
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword") {
                "[redacted]".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if pairs.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string().replace("%5Bredacted%5D", "[redacted]")
}

/// An error message with the URL, should the driver quote it, made safe.
fn strip_url(message: &str, url: &str) -> String {
    message.replace(url, &redacted_url(url))
}

/// A failed query, as the store reports it. PostgreSQL's messages name
/// tables, columns and constraints, never the values bound to a query.
fn query_err(e: sqlx::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

/// Lists of strings are stored as JSON arrays, as in the SQLite store.
fn encode_list(list: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(list).map_err(|e| StoreError::Query(format!("cannot encode a list: {e}")))
}

fn decode_list(row: &PgRow, column: &str) -> Result<Vec<String>, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text)
        .map_err(|e| sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(e) })
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(query_err)
    }

    async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.pool)
            .await
            .map_err(query_err)?;
        rows.iter().map(|r| r.try_get::<i64, _>(0).map_err(query_err)).collect()
    }

    async fn close(&self) {
        let feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(feed) = feed {
            feed.stop().await;
        }
        self.pool.close().await;
    }

    fn changes(&self) -> Option<StoreChanges> {
        let mut feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
        if feed.is_none() && !self.pool.is_closed() {
            *feed = changes::Feed::start(&self.pool);
        }
        feed.as_ref().map(changes::Feed::subscribe)
    }

    async fn meta_get_or_insert(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        directory::meta_get_or_insert(&self.pool, key, value).await
    }

    async fn put_consumer(&self, consumer: &ConsumerRecord) -> Result<(), StoreError> {
        directory::put_consumer(&self.pool, consumer).await
    }

    async fn consumer(&self, client_id: &str) -> Result<Option<ConsumerRecord>, StoreError> {
        directory::consumer(&self.pool, client_id).await
    }

    async fn consumers(&self) -> Result<Vec<ConsumerRecord>, StoreError> {
        directory::consumers(&self.pool).await
    }

    async fn delete_consumer(&self, client_id: &str) -> Result<bool, StoreError> {
        directory::delete_consumer(&self.pool, client_id).await
    }

    async fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        directory::put_user(&self.pool, user).await
    }

    async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        directory::user(&self.pool, username).await
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        directory::users(&self.pool).await
    }

    async fn add_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        directory::add_signing_key(&self.pool, key).await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        directory::signing_keys(&self.pool).await
    }

    async fn add_first_signing_key(&self, key: &SigningKeyRecord) -> Result<bool, StoreError> {
        directory::add_first_signing_key(&self.pool, key).await
    }

    async fn add_auth_code(&self, code: &AuthCodeRecord) -> Result<(), StoreError> {
        grants::add_auth_code(&self.pool, code).await
    }

    async fn redeem_auth_code(&self, code_hash: &str) -> Result<CodeRedemption, StoreError> {
        grants::redeem_auth_code(&self.pool, code_hash).await
    }

    async fn record_code_issue(
        &self,
        code_hash: &str,
        family_id: Option<&str>,
        access_jti: &str,
        access_exp: i64,
    ) -> Result<(), StoreError> {
        grants::record_code_issue(&self.pool, code_hash, family_id, access_jti, access_exp).await
    }

    async fn add_refresh_token(&self, token: &RefreshTokenRecord) -> Result<(), StoreError> {
        grants::add_refresh_token(&self.pool, token).await
    }

    async fn rotate_refresh_token_with_grace(
        &self,
        token_hash: &str,
        next: &RefreshTokenRecord,
        grace: Option<&RefreshGrace>,
        now: i64,
    ) -> Result<RefreshRotation, StoreError> {
        grants::rotate_refresh_token(&self.pool, token_hash, next, grace, now).await
    }

    async fn refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        grants::refresh_token(&self.pool, token_hash, now).await
    }

    async fn revoke_refresh_family(&self, family_id: &str) -> Result<(), StoreError> {
        grants::revoke_refresh_family(&self.pool, family_id).await
    }

    async fn add_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        grants::add_session(&self.pool, session).await
    }

    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<SessionRecord>, StoreError> {
        grants::session(&self.pool, id_hash, now).await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        grants::delete_session(&self.pool, id_hash).await
    }

    async fn touch_session(&self, id_hash: &str, expires_at: i64) -> Result<(), StoreError> {
        admin::touch_session(&self.pool, id_hash, expires_at).await
    }

    async fn add_admin_token(&self, token: &AdminTokenRecord) -> Result<(), StoreError> {
        admin::add_token(&self.pool, token).await
    }

    async fn admin_token(&self, token_hash: &str) -> Result<Option<AdminTokenRecord>, StoreError> {
        admin::token(&self.pool, token_hash).await
    }

    async fn admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        admin::tokens(&self.pool).await
    }

    async fn delete_admin_token(&self, id: &str) -> Result<bool, StoreError> {
        admin::delete_token(&self.pool, id).await
    }

    async fn current_refresh_tokens(&self, now: i64) -> Result<Vec<RefreshTokenRecord>, StoreError> {
        admin::current_refresh_tokens(&self.pool, now).await
    }

    async fn revoke_access_token(&self, jti: &str, exp: i64) -> Result<(), StoreError> {
        grants::revoke_access_token(&self.pool, jti, exp).await
    }

    async fn is_access_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        grants::is_access_token_revoked(&self.pool, jti).await
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        grants::purge_expired(&self.pool, now).await
    }

    async fn put_client_registration(&self, c: &ClientRegistrationRecord) -> Result<(), StoreError> {
        client::put_registration(&self.pool, c).await
    }

    async fn client_registrations(&self) -> Result<Vec<ClientRegistrationRecord>, StoreError> {
        client::registrations(&self.pool).await
    }

    async fn delete_client_registration(&self, name: &str) -> Result<bool, StoreError> {
        client::delete_registration(&self.pool, name).await
    }

    async fn save_provider_token(&self, token: &ProviderTokenRecord) -> Result<i64, StoreError> {
        client::save_token(&self.pool, token).await
    }

    async fn provider_token(&self, id: i64) -> Result<Option<ProviderTokenRecord>, StoreError> {
        client::token_by_id(&self.pool, id).await
    }

    async fn provider_token_by_tag(
        &self,
        client: &str,
        tag: &str,
    ) -> Result<Option<ProviderTokenRecord>, StoreError> {
        client::token_by_tag(&self.pool, client, tag).await
    }

    async fn provider_tokens(&self) -> Result<Vec<ProviderTokenRecord>, StoreError> {
        client::tokens(&self.pool).await
    }

    async fn delete_provider_token(&self, id: i64) -> Result<bool, StoreError> {
        client::delete_token(&self.pool, id).await
    }

    async fn set_provider_token_status(
        &self,
        id: i64,
        status: &str,
        last_error: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        client::set_token_status(&self.pool, id, status, last_error, now).await
    }

    async fn lease_provider_token(
        &self,
        id: i64,
        holder: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        client::lease_token(&self.pool, id, holder, until, now).await
    }

    async fn release_provider_token(&self, id: i64, holder: &str) -> Result<(), StoreError> {
        client::release_token(&self.pool, id, holder).await
    }

    async fn add_client_state(&self, state: &ClientStateRecord) -> Result<(), StoreError> {
        client::add_state(&self.pool, state).await
    }

    async fn take_client_state(
        &self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<ClientStateRecord>, StoreError> {
        client::take_state(&self.pool, state_hash, now).await
    }
}
