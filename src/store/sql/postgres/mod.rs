//! The PostgreSQL store, for several replicas sharing one database: a pool
//! of connections sized by `store_pool_size`, TLS (rustls) when the URL asks
//! for it with `sslmode=require`, `verify-ca` or `verify-full`, and its own
//! migrations (`migrations/postgres/`) applied at open under sqlx's advisory
//! lock, so replicas starting together apply each migration once.
//!
//! Anything that must happen once across replicas is decided by the
//! database: conditional `UPDATE ... RETURNING` for single use,
//! `ON CONFLICT` for first values, a table lock where a check and an insert
//! must not interleave.
//!
//! Changes other processes may have cached are announced by triggers and
//! followed with LISTEN/NOTIFY (`changes`, [`StoreBase::changes`](crate::store::StoreBase::changes)).

mod changes;

use crate::config::types::redacted_url;
use crate::store::PostgresOptions;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

pub use changes::{APPLICATION_NAME as LISTENER_APPLICATION_NAME, CHANNEL as CHANGES_CHANNEL};

use super::migrate::{self, embedded};
use super::{Dialect, SqlStore, connect, query_err};
use crate::store::{Migration, StoreChanges, StoreError};

/// The PostgreSQL backend of [`Store`](crate::store::Store).
pub type PostgresStore = SqlStore<PostgresDialect>;

/// How PostgreSQL differs, and what the store keeps beside its pool: where
/// it lives and its change listener.
#[derive(Debug, Clone)]
pub struct PostgresDialect {
    location: String,
    /// The pool's connection settings, which the change listener reuses.
    connect: PgConnectOptions,
    /// The change listener, started by the first [`StoreBase::changes`](crate::store::StoreBase::changes).
    feed: Arc<Mutex<Option<changes::Feed>>>,
}

#[async_trait]
impl Dialect for PostgresDialect {
    const NAME: &'static str = "postgres";
    const BEGIN: &'static str = "BEGIN";
    const SIGNING_KEYS: &'static str =
        "SELECT kid, alg, private_der, created_at FROM signing_keys ORDER BY created_at, seq";
    const LOCK_SIGNING_KEYS: Option<&'static str> =
        Some("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE");
    const RECORD_CODE_ISSUE: &'static str = "UPDATE auth_codes SET issued_family_id = COALESCE($1, issued_family_id), \
         issued_access = (issued_access::jsonb || jsonb_build_array(jsonb_build_array($2::text, $3::bigint)))::text \
         WHERE code_hash = $4 AND used RETURNING reuse_seen";
    const REVOKE_JTI: &'static str = "INSERT INTO revoked_access_tokens (jti, exp) VALUES ($1, $2) \
         ON CONFLICT (jti) DO UPDATE SET exp = GREATEST(revoked_access_tokens.exp, excluded.exp)";

    fn changes(&self) -> Option<StoreChanges> {
        let mut feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
        if feed.is_none() {
            *feed = changes::Feed::start(&self.connect);
        }
        feed.as_ref().map(changes::Feed::subscribe)
    }

    async fn before_close(&self) {
        let feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(feed) = feed {
            feed.stop().await;
        }
    }
}

/// The PostgreSQL migrations embedded in this binary: the same versions as
/// the SQLite ones, in PostgreSQL's types; oldest first.
pub fn migrations() -> Vec<Migration> {
    embedded!("postgres")
}

/// The application name of the store's connections (`pg_stat_activity`).
const APPLICATION_NAME: &str = "oauth-sidecar";

impl SqlStore<PostgresDialect> {
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
        let not_pg = |e: String| open_err(format!("not a PostgreSQL URL: {}", strip_url(&e, url)));
        let connect_options = PgConnectOptions::from_str(url)
            .map_err(|e| not_pg(e.to_string()))?
            .application_name(APPLICATION_NAME);
        first_connection(&connect_options, options.acquire_timeout)
            .await
            .map_err(|e| open_err(strip_url(&e, url)))?;
        let pool_options = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout);
        let pool = connect(pool_options, &any_url(url).map_err(not_pg)?)
            .await
            .map_err(|e| open_err(strip_url(&e.to_string(), url)))?;
        if let Err(e) = migrate::run(&pool, &migrations).await {
            pool.close().await;
            return Err(e);
        }
        let dialect = PostgresDialect { location, connect: connect_options, feed: Arc::default() };
        Ok(SqlStore { writer: pool.clone(), readers: pool, dialect })
    }

    /// The backend pid of the connection listening for changes (see
    /// [`StoreBase::changes`](crate::store::StoreBase::changes)), while it listens; for diagnostics and tests.
    pub fn listener_backend_pid(&self) -> Option<i32> {
        let feed = self.dialect.feed.lock().unwrap_or_else(PoisonError::into_inner);
        feed.as_ref().and_then(changes::Feed::backend_pid)
    }

    /// True when the store's connections to the server are encrypted (TLS),
    /// as the server sees them (`pg_stat_ssl`).
    pub async fn encrypted(&self) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
        )
        .fetch_one(&self.readers)
        .await
        .map_err(query_err)
    }

    /// Where this store lives, without the password (for logs).
    pub fn location(&self) -> &str {
        &self.dialect.location
    }
}

/// Waits up to `patience` for the server to take one connection, so that a
/// database starting after the sidecar (as in Compose) is waited for, and
/// one that never answers is reported by its cause ("connection refused at
/// HOST:PORT", a refused password) instead of the pool's timeout. Each
/// failed try is logged with its cause; errors the server gives for the
/// credentials or the database are final at once.
async fn first_connection(options: &PgConnectOptions, patience: Duration) -> Result<(), String> {
    let started = tokio::time::Instant::now();
    let at = format!("{}:{}", options.get_host(), options.get_port());
    let mut pause = Duration::from_millis(200);
    let mut tries = 0_u32;
    loop {
        let error = match options.connect().await {
            Ok(connection) => {
                let _ = connection.close().await;
                return Ok(());
            }
            Err(e) => e,
        };
        let cause = match &error {
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                format!("connection refused at {at}")
            }
            sqlx::Error::Io(io) => format!("cannot reach {at}: {io}"),
            other => format!("{at} refused the connection: {other}"),
        };
        let starting_up =
            error.as_database_error().and_then(|e| e.code()).is_some_and(|code| code == "57P03");
        let waited = if tries == 0 { Duration::ZERO } else { started.elapsed() };
        tries += 1;
        if !(matches!(error, sqlx::Error::Io(_)) || starting_up) || waited + pause > patience {
            return Err(if waited.is_zero() {
                cause
            } else {
                format!("{cause} (tried for {:.1} s)", waited.as_secs_f64())
            });
        }
        tracing::warn!("the PostgreSQL store is not answering yet ({cause}); trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// `url` with the store's application name, for the `Any` driver (which
/// takes its settings from the URL alone).
fn any_url(url: &str) -> Result<url::Url, String> {
    let mut parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "application_name")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs).append_pair("application_name", APPLICATION_NAME);
    Ok(parsed)
}

/// An error message with the URL, should the driver quote it, made safe.
fn strip_url(message: &str, url: &str) -> String {
    message.replace(url, &redacted_url(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_any_url_names_the_store_application_and_keeps_the_rest() {
        let url =
            any_url("postgres://u:p@h/db?sslmode=require&application_name=x&options=-c%20search_path%3Ds1")
                .unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
        assert_eq!(
            pairs,
            [
                ("sslmode".into(), "require".into()),
                ("options".into(), "-c search_path=s1".into()),
                ("application_name".into(), APPLICATION_NAME.into())
            ]
        );
        assert_eq!(url.password(), Some("p"));
    }
}
